"""Stage 3: structured pruning (attention heads + FFN neurons) with distillation recovery,
plus unstructured magnitude pruning.

Importance follows Michel et al. 2019 ("Are Sixteen Heads Really Better than One?"): put a
multiplicative mask of ones on every head / FFN neuron and accumulate |dLoss/dmask| over a
slice of training data; a low score means the loss barely depends on that unit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils import prune as torch_prune

from harness.compress.architectures import architecture_of, depth_of, encoder_layers, model_inputs
from harness.compress.batching import Encoded, bucket_batches, collate, encode
from harness.compress.distill import save_model, train_with_distillation, validation_report
from harness.compress.options import PruneOptions
from harness.compress.structure import remove_ffn_neurons, remove_heads, unit_masks
from harness.compress.training import (
    Checkpoint,
    autocast,
    options_dict,
    predict_logits,
    resolve_bf16,
    resolve_device,
    set_seed,
    subsample,
    subset,
)
from harness.errors import HarnessError


def compute_importance(
    model: torch.nn.Module,
    encoded: Encoded,
    labels: torch.Tensor,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Return (head importance [layers, heads], per-layer FFN neuron importance).

    The model must not already have pruned heads (the head mask needs a rectangular shape).
    Scores are summed |gradient| per batch -- a cheap stand-in for Michel's per-example mean.
    """
    device = torch.device(device)
    if any((model.config.pruned_heads or {}).values()):
        # prune_heads counts heads by their original index: scores of the remaining ones would not map
        raise ValueError("compute_importance needs a model without pruned heads")
    model.to(device).eval()  # eval: dropout noise would blur the ranking
    saved = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)  # only mask gradients are needed; skip weight grads entirely
    try:
        with unit_masks(model, device) as (head_mask, ffn_masks):
            head_imp = torch.zeros(head_mask.shape)
            ffn_imp = [torch.zeros(m.numel()) for m in ffn_masks]
            for idx in bucket_batches(encoded.lengths, batch_size, shuffle=False):
                batch = {k: v.to(device) for k, v in collate(encoded, idx).items()}
                with autocast(device, bf16):
                    logits = model(**model_inputs(model, batch)).logits.float()
                loss = F.cross_entropy(logits, labels[idx].to(device), reduction="sum")
                grads = torch.autograd.grad(loss, [head_mask, *ffn_masks])
                head_imp += grads[0].abs().float().cpu()
                for acc, g in zip(ffn_imp, grads[1:]):
                    acc += g.abs().float().cpu()
    finally:
        for p, r in zip(model.parameters(), saved):
            p.requires_grad_(r)
    return head_imp, ffn_imp


def select_heads(head_imp: torch.Tensor, fraction: float) -> dict[int, list[int]]:
    """Globally lowest heads, ``round(fraction*total)`` of them, never emptying a layer.

    Scores are L2-normalised per layer first (Michel et al.): raw gradient scale differs
    by depth, which would otherwise make whole layers look unimportant.
    """
    norm = head_imp / head_imp.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n_layers, n_heads = norm.shape
    target = int(round(fraction * n_layers * n_heads))
    left = [n_heads] * n_layers
    chosen: dict[int, list[int]] = {}
    for flat in torch.argsort(norm.flatten(), stable=True).tolist():
        if target == 0:
            break
        layer, head = divmod(flat, n_heads)
        if left[layer] <= 1:
            continue
        chosen.setdefault(layer, []).append(head)
        left[layer] -= 1
        target -= 1
    return {k: sorted(v) for k, v in sorted(chosen.items())}


def prune_structured(
    model: torch.nn.Module,
    head_fraction: float,
    ffn_fraction: float,
    importance_samples: int,
    texts: Sequence[str],
    labels: Sequence[int],
    tokenizer,
    *,
    max_length: int = 128,
    batch_size: int = 32,
    seed: int = 0,
    bf16: bool = False,
    device: str = "cpu",
) -> dict:
    """Score on ``importance_samples`` random examples, then physically remove the lowest
    ``head_fraction`` of heads (global, >=1 per layer) and ``ffn_fraction`` of FFN neurons
    (same count in every layer). Modifies ``model`` in place; returns what was removed."""
    if not (0 <= head_fraction < 1 and 0 <= ffn_fraction < 1):
        raise ValueError("fractions must be in [0, 1)")
    dev = resolve_device(device)
    idx = subsample(len(texts), importance_samples, seed)
    enc = subset(encode(tokenizer, texts, max_length), idx)
    y = torch.tensor([int(labels[int(i)]) for i in idx], dtype=torch.long)
    start = time.perf_counter()
    head_imp, ffn_imp = compute_importance(model, enc, y, batch_size, dev, bf16)

    heads = select_heads(head_imp, head_fraction) if head_fraction > 0 else {}
    width = ffn_imp[0].numel()
    n_keep = max(1, width - int(round(ffn_fraction * width)))
    keep = [torch.argsort(imp, descending=True, stable=True)[:n_keep] for imp in ffn_imp]
    if heads:
        remove_heads(model, heads)
    if n_keep < width:
        remove_ffn_neurons(model, keep)
    return {
        "pruned_heads": {int(k): v for k, v in heads.items()},
        "heads_removed": sum(len(v) for v in heads.values()),
        "ffn_width_before": width,
        "ffn_width_after": n_keep,
        "importance_samples": len(idx),
        "importance_seconds": time.perf_counter() - start,
    }


def prune(
    student_dir: Path,
    texts: Sequence[str],
    labels: Sequence[int],
    options: PruneOptions,
    out_dir: Path,
    teacher_logits: np.ndarray | None = None,
    teacher_dir: Path | None = None,
    validation_texts: Sequence[str] | None = None,
    validation_labels: Sequence[int] | None = None,
    checkpoint: Checkpoint | None = None,
) -> dict:
    """Structured prune of ``student_dir`` then distillation recovery; save to ``out_dir``.

    Soft targets come from ``teacher_logits`` (aligned with ``texts``), else from running
    ``teacher_dir``, else from the unpruned student itself (self-distillation). A hidden-state
    loss matches each layer to the teacher layer it was distilled from.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = resolve_device(options.device)
    bf16 = resolve_bf16(options.bf16, options.device)
    set_seed(options.seed)
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    model = AutoModelForSequenceClassification.from_pretrained(student_dir)
    reason = architecture_of(model).no_head_pruning
    if options.head_fraction > 0 and reason is not None:  # said before any slow step
        raise HarnessError(f"cannot prune the heads of a {model.config.model_type} model: {reason}")
    report: dict = {
        "stage": "prune",
        "options": options_dict(options),
        "student_dir": str(student_dir),
        "training_precision": "bf16" if bf16 else "fp32",
    }

    idx = subsample(len(texts), options.max_train_samples, options.seed)
    enc = subset(encode(tokenizer, texts, options.max_length), idx)
    teacher = None
    if teacher_dir is not None and (teacher_logits is None or options.hidden_loss_weight > 0):
        teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    if teacher_logits is not None:
        if len(teacher_logits) != len(texts):
            raise ValueError("teacher_logits must have one row per text")
        t_logits = np.asarray(teacher_logits)[idx]
        report["soft_targets"] = "given"
    else:
        start = time.perf_counter()
        source = teacher if teacher is not None else model
        t_logits = predict_logits(source.to(device), enc, 128, device, bf16, desc="teacher logits")
        report["soft_targets"] = str(teacher_dir) if teacher_dir is not None else "self"
        report["teacher_logits_seconds"] = time.perf_counter() - start

    report["structure"] = prune_structured(
        model,
        options.head_fraction,
        options.ffn_fraction,
        options.importance_samples,
        texts,
        labels,
        tokenizer,
        max_length=options.max_length,
        batch_size=options.batch_size,
        seed=options.seed,
        bf16=bf16,
        device=options.device,
    )
    before = validation_report(model, tokenizer, options.max_length, validation_texts, validation_labels)
    if before:
        report["validation_accuracy_before_recovery"] = before["validation_accuracy"]

    y = torch.tensor([int(labels[int(i)]) for i in idx], dtype=torch.long)
    if options.recovery_epochs > 0:
        report.update(
            train_with_distillation(
                model,
                enc,
                y,
                torch.as_tensor(t_logits, dtype=torch.float32),
                temperature=options.temperature,
                alpha=options.alpha,
                epochs=options.recovery_epochs,
                learning_rate=options.learning_rate,
                batch_size=options.batch_size,
                seed=options.seed,
                device=device,
                bf16=bf16,
                warmup_ratio=options.warmup_ratio,
                weight_decay=options.weight_decay,
                teacher=teacher if options.hidden_loss_weight > 0 else None,
                hidden_loss_weight=options.hidden_loss_weight,
                layer_map=teacher_layers(model, teacher) if options.hidden_loss_weight > 0 else None,
                desc="prune-recovery",
                checkpoint=checkpoint,
                freeze_embeddings=options.freeze_embeddings,
            )
        )
    report["train_samples"] = len(idx)
    report.update(validation_report(model, tokenizer, options.max_length, validation_texts, validation_labels))
    save_model(model, tokenizer, out_dir, report)
    return report


def teacher_layers(model: torch.nn.Module, teacher: torch.nn.Module | None) -> list[int]:
    """The teacher layer each of ``model``'s layers descends from (its distillation record, else
    the same index when depths match)."""
    layers = getattr(model.config, "distilled_from_layers", None)
    if layers:
        return list(layers)
    if teacher is None or depth_of(teacher.config) != depth_of(model.config):
        raise ValueError("hidden_loss_weight needs a model distilled from the teacher or as deep as it")
    return list(range(depth_of(model.config)))


def _magnitude_targets(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str]]:
    # Encoder Linear weights only: embeddings are lookups (sparsity buys no FLOPs) and the
    # tiny classifier is too sensitive for what it would save.
    return [(m, "weight") for m in encoder_layers(model).modules() if isinstance(m, torch.nn.Linear)]


def magnitude_prune(model: torch.nn.Module, sparsity: float) -> torch.nn.Module:
    """Zero the globally smallest-|w| ``sparsity`` fraction of encoder Linear weights, in place.

    ``prune.remove`` bakes the mask in, so the result is plain tensors with zeros (saveable,
    exportable) rather than weight_orig/weight_mask reparametrisations.
    """
    if not 0 <= sparsity < 1:
        raise ValueError("sparsity must be in [0, 1)")
    targets = _magnitude_targets(model)
    torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=sparsity)
    for module, name in targets:
        torch_prune.remove(module, name)
    return model


def sparsity(model: torch.nn.Module) -> float:
    """Fraction of exactly-zero entries over the encoder Linear weights (same set as above)."""
    total = zeros = 0
    for module, name in _magnitude_targets(model):
        w = getattr(module, name)
        total += w.numel()
        zeros += int((w == 0).sum())
    return zeros / total if total else 0.0
