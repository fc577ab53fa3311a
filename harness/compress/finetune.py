"""Stage 1: fine-tune a pretrained encoder into a sequence classifier (the teacher)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from harness.compress.batching import encode
from harness.compress.options import FinetuneOptions
from harness.compress.training import (
    accuracy,
    options_dict,
    predict_logits,
    resolve_device,
    set_seed,
    subsample,
    subset,
    train_loop,
)


def finetune(
    base_dir: Path,
    texts: Sequence[str],
    labels: Sequence[int],
    num_labels: int,
    options: FinetuneOptions,
    out_dir: Path,
    eval_texts: Sequence[str] | None = None,
    eval_labels: Sequence[int] | None = None,
) -> dict:
    """Fine-tune ``base_dir`` (any encoder checkpoint) with a fresh classification head.

    Saves model (safetensors) + tokenizer to ``out_dir`` and returns a JSON-able report.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if len(texts) != len(labels):
        raise ValueError("texts and labels differ in length")
    device = resolve_device(options.device)
    set_seed(options.seed)  # the new head's random init must be reproducible too
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=num_labels)

    idx = subsample(len(texts), options.max_train_samples, options.seed)
    enc = subset(encode(tokenizer, texts, options.max_length), idx)
    y = torch.tensor([int(labels[int(i)]) for i in idx], dtype=torch.long)

    def step_loss(m: torch.nn.Module, batch: dict[str, torch.Tensor], bidx) -> torch.Tensor:
        logits = m(**batch).logits.float()
        return torch.nn.functional.cross_entropy(logits, y[bidx].to(logits.device))

    stats = train_loop(
        model,
        enc,
        step_loss,
        epochs=options.epochs,
        learning_rate=options.learning_rate,
        batch_size=options.batch_size,
        warmup_ratio=options.warmup_ratio,
        weight_decay=options.weight_decay,
        seed=options.seed,
        device=device,
        bf16=options.bf16,
        desc="finetune",
    )
    report = {"stage": "finetune", "options": options_dict(options), "train_samples": len(idx), **stats}
    if eval_texts is not None and eval_labels is not None:
        logits = predict_logits(
            model, encode(tokenizer, eval_texts, options.max_length), device=device, bf16=options.bf16
        )
        report["eval_accuracy"] = accuracy(logits, eval_labels)
        report["eval_samples"] = len(eval_labels)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    report["base_dir"] = str(base_dir)
    (out_dir / "compress_report.json").write_text(json.dumps(report, indent=2))
    return report
