"""Stage 2: layer-dropping knowledge distillation (teacher -> shallower student).

The student is initialised from a subset of the teacher's layers (as in DistilBERT / "Poor
Man's BERT"), then trained on a mix of soft teacher targets and hard labels. Teacher logits are
precomputed once (one inference pass) unless a hidden-state loss needs the teacher per batch.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from harness.compress.architectures import architecture_of, model_inputs
from harness.compress.batching import Encoded, encode
from harness.compress.options import DistillOptions
from harness.compress.trainer_loop import trainer_train_loop
from harness.compress.training import (
    Checkpoint,
    accuracy,
    options_dict,
    predict_logits,
    resolve_bf16,
    resolve_device,
    set_seed,
    subsample,
    subset,
)


def _layer_key(layers_path: str) -> re.Pattern[str]:
    """State-dict keys of one encoder layer (``encoder.layer.3.``, DistilBERT's ``transformer.layer.3.``);
    other encoder parameters (DeBERTa's relative embeddings, MPNet's relative bias) are not layers."""
    return re.compile(rf"(^|\.){re.escape(layers_path)}\.(\d+)\.")


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """``alpha*T^2*KL(p_t || p_s) + (1-alpha)*CE(z_s, y)`` with p = softmax(z/T), KL batch-mean.

    The T^2 factor keeps soft-target gradients on the same scale as the hard loss when T changes
    (Hinton et al. 2015).
    """
    s = student_logits.float()
    t = teacher_logits.float()
    kl = F.kl_div(
        F.log_softmax(s / temperature, dim=-1),
        F.log_softmax(t / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    ce = F.cross_entropy(s, labels)
    return alpha * temperature**2 * kl + (1.0 - alpha) * ce


def make_student(teacher_model: torch.nn.Module, layers: list[int]) -> torch.nn.Module:
    """Same architecture with only ``layers`` of the teacher's encoder, weights copied.

    Everything outside the encoder stack (embeddings, pooler, classifier, and encoder parameters
    that are not layers: DeBERTa-v2's relative embeddings and LayerNorm, MPNet's relative attention
    bias) is copied verbatim. The config's depth (DistilBERT's ``n_layers``, others'
    ``num_hidden_layers``) shrinks, so the result reloads with ``from_pretrained``. The layers are
    found by each architecture's own module names (:mod:`harness.compress.architectures`).
    """
    arch = architecture_of(teacher_model)
    layer_key = _layer_key(arch.layers)
    n_teacher = int(getattr(teacher_model.config, arch.depth_key))
    if not layers or any(not 0 <= i < n_teacher for i in layers) or len(set(layers)) != len(layers):
        raise ValueError(f"layers must be distinct indices in [0, {n_teacher}), got {layers}")
    config = copy.deepcopy(teacher_model.config)
    setattr(config, arch.depth_key, len(layers))
    # Carry head pruning along so the freshly built student has matching attention shapes.
    old_pruned = {int(k): v for k, v in (teacher_model.config.pruned_heads or {}).items()}
    config.pruned_heads = {new: list(old_pruned[old]) for new, old in enumerate(layers) if old in old_pruned}
    config.distilled_from_layers = list(layers)  # provenance, read by lineage.describe_model
    student = type(teacher_model)(config)

    new_of_old = {old: new for new, old in enumerate(layers)}
    state = {}
    for key, value in teacher_model.state_dict().items():
        m = layer_key.search(key)
        if m is None:
            state[key] = value.clone()
        elif int(m.group(2)) in new_of_old:
            new_key = key[: m.start(2)] + str(new_of_old[int(m.group(2))]) + key[m.end(2) :]
            state[new_key] = value.clone()
    missing, unexpected = student.load_state_dict(state, strict=False)
    # Only non-persistent buffers may legitimately be absent; anything else is a mapping bug.
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise RuntimeError(f"student weight copy mismatch: missing={missing} unexpected={unexpected}")
    return student


def compute_teacher_logits(
    teacher_dir: Path,
    texts: Sequence[str],
    batch_size: int = 128,
    max_length: int = 128,
    device: str = "cpu",
    bf16: bool = False,
) -> np.ndarray:
    """Teacher logits for ``texts`` in their original order (float32, shape [n, num_labels])."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    dev = resolve_device(device)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir).to(dev).eval()
    return predict_logits(model, encode(tokenizer, texts, max_length), batch_size, dev, bf16, desc="teacher logits")


def _masked_mse(pairs, mask: torch.Tensor, values_per_position: int) -> torch.Tensor:
    """Mean over ``(student, teacher)`` tensor pairs of their squared difference at the positions
    ``mask`` keeps (padding left out, so batch composition does not bias the loss)."""
    denom = mask.sum() * values_per_position
    total = mask.new_zeros((), dtype=torch.float32)
    for student, teacher in pairs:
        total = total + ((student.float() - teacher.float()) * mask).pow(2).sum() / denom
    return total / len(pairs)


def _attention_mse(s_maps, t_maps, layer_map: Sequence[int], mask: torch.Tensor) -> torch.Tensor:
    # Attention probabilities [batch, heads, query, key] of student layer i against teacher layer
    # layer_map[i] (TinyBERT); rows and columns of padding are left out, heads must match.
    pairs = [(s_maps[i], t_maps[t_layer]) for i, t_layer in enumerate(layer_map)]
    if any(student.shape != teacher.shape for student, teacher in pairs):
        raise ValueError("attention_loss_weight needs the student's heads to match the teacher's (unpruned)")
    pair_mask = (mask.unsqueeze(-1) * mask.unsqueeze(-2)).unsqueeze(1).float()
    return _masked_mse(pairs, pair_mask, s_maps[0].shape[1])


def _hidden_mse(s_states, t_states, layer_map: Sequence[int], mask: torch.Tensor) -> torch.Tensor:
    # Index 0 is the embedding output; student layer i (output i+1) imitates teacher layer layer_map[i].
    pairs = [(s_states[i + 1], t_states[t_layer + 1]) for i, t_layer in enumerate(layer_map)]
    return _masked_mse(pairs, mask.unsqueeze(-1).float(), s_states[0].shape[-1])


def train_with_distillation(
    student: torch.nn.Module,
    encoded: Encoded,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    *,
    temperature: float,
    alpha: float,
    epochs: float,
    learning_rate: float,
    batch_size: int,
    seed: int,
    device: torch.device,
    bf16: bool,
    warmup_ratio: float = 0.06,
    weight_decay: float = 0.01,
    teacher: torch.nn.Module | None = None,
    hidden_loss_weight: float = 0.0,
    attention_loss_weight: float = 0.0,
    layer_map: Sequence[int] | None = None,
    desc: str = "distill",
    checkpoint: Checkpoint | None = None,
    freeze_embeddings: bool = False,
) -> dict:
    """The distillation loop proper; used by :func:`distill` and by pruning recovery.

    ``labels``/``teacher_logits`` are indexed by position in ``encoded``. When ``teacher`` is
    given it runs per batch (needed for the hidden-state and attention losses, and supplies
    logits when ``teacher_logits`` is None).
    """
    use_hidden, use_attention = hidden_loss_weight > 0, attention_loss_weight > 0
    if (use_hidden or use_attention) and (teacher is None or layer_map is None):
        raise ValueError("hidden or attention losses need the teacher model and a layer_map")
    if teacher_logits is None and teacher is None:
        raise ValueError("need teacher_logits or a teacher model")
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    outputs = {"output_hidden_states": use_hidden, "output_attentions": use_attention}

    def step_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], idx: np.ndarray) -> torch.Tensor:
        batch = model_inputs(model, batch)
        out = model(**batch, **outputs)
        t_out = None
        if teacher is not None and (use_hidden or use_attention or teacher_logits is None):
            with torch.no_grad():
                t_out = teacher(**model_inputs(teacher, batch), **outputs)
        t_logits = teacher_logits[idx].to(device) if teacher_logits is not None else t_out.logits
        loss = distillation_loss(out.logits, t_logits, labels[idx].to(device), temperature, alpha)
        mask = batch["attention_mask"]
        if use_hidden:
            loss = loss + hidden_loss_weight * _hidden_mse(out.hidden_states, t_out.hidden_states, layer_map, mask)
        if use_attention:
            loss = loss + attention_loss_weight * _attention_mse(out.attentions, t_out.attentions, layer_map, mask)
        return loss

    return trainer_train_loop(
        student,
        encoded,
        step_loss,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        warmup_ratio=warmup_ratio,
        weight_decay=weight_decay,
        seed=seed,
        device=device,
        bf16=bf16,
        desc=desc,
        checkpoint=checkpoint,
        freeze_embeddings=freeze_embeddings,
    )


def distill(
    teacher_dir: Path,
    texts: Sequence[str],
    labels: Sequence[int],
    options: DistillOptions,
    out_dir: Path,
    teacher_logits: np.ndarray | None = None,
    validation_texts: Sequence[str] | None = None,
    validation_labels: Sequence[int] | None = None,
    checkpoint: Checkpoint | None = None,
) -> dict:
    """Build a student from ``options.layers`` of the teacher (or the lightweight ``options.student``)
    and distil it; save to ``out_dir``.

    ``teacher_logits``, if given, must align with ``texts`` (full list, before subsampling).
    The validation texts (held out of the train split) only score the result.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if len(texts) != len(labels):
        raise ValueError("texts and labels differ in length")
    device = resolve_device(options.device)
    bf16 = resolve_bf16(options.bf16, options.device)
    set_seed(options.seed)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    if options.student is not None:
        from harness.compress.lightweight import build_student

        student = build_student(teacher, options.student, teacher.config.num_labels)
    else:
        student = make_student(teacher, list(options.layers))

    idx = subsample(len(texts), options.max_train_samples, options.seed)
    enc = subset(encode(tokenizer, texts, options.max_length), idx)
    report: dict = {
        "stage": "distill",
        "options": options_dict(options),
        "train_samples": len(idx),
        "training_precision": "bf16" if bf16 else "fp32",
        "teacher_dir": str(teacher_dir),
    }

    per_batch_teacher = options.hidden_loss_weight > 0 or options.attention_loss_weight > 0
    t_logits = None  # a teacher running per batch supplies its logits there: no separate pass
    if teacher_logits is not None:
        if len(teacher_logits) != len(texts):
            raise ValueError("teacher_logits must have one row per text")
        t_logits = torch.as_tensor(np.asarray(teacher_logits)[idx], dtype=torch.float32)
    elif not per_batch_teacher:
        start = time.perf_counter()
        t_logits = torch.as_tensor(predict_logits(teacher.to(device), enc, 128, device, bf16, desc="teacher logits"))
        report["teacher_logits_seconds"] = time.perf_counter() - start
    y = torch.tensor([int(labels[int(i)]) for i in idx], dtype=torch.long)

    stats = train_with_distillation(
        student,
        enc,
        y,
        t_logits,
        temperature=options.temperature,
        alpha=options.alpha,
        epochs=options.epochs,
        learning_rate=options.learning_rate,
        batch_size=options.batch_size,
        seed=options.seed,
        device=device,
        bf16=bf16,
        warmup_ratio=options.warmup_ratio,
        weight_decay=options.weight_decay,
        teacher=teacher if per_batch_teacher else None,
        hidden_loss_weight=options.hidden_loss_weight,
        attention_loss_weight=options.attention_loss_weight,
        layer_map=list(options.layers) if options.student is None else None,
        checkpoint=checkpoint,
        freeze_embeddings=options.freeze_embeddings,
    )
    report.update(stats)
    report.update(validation_report(student, tokenizer, options.max_length, validation_texts, validation_labels))
    save_model(student, tokenizer, out_dir, report)
    return report


def validation_report(
    model: torch.nn.Module,
    tokenizer,
    max_length: int,
    texts: Sequence[str] | None,
    labels: Sequence[int] | None,
) -> dict:
    """Accuracy on the train split's held-out slice (empty when none was given)."""
    if texts is None or labels is None or not len(texts):
        return {}
    device = next(model.parameters()).device  # scored where it was trained
    logits = predict_logits(model, encode(tokenizer, texts, max_length), device=device)
    return {"validation_accuracy": accuracy(logits, labels), "validation_samples": len(labels)}


def save_model(model: torch.nn.Module, tokenizer, out_dir: Path, report: dict) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "compress_report.json").write_text(json.dumps(report, indent=2))
