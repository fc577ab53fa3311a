"""Stage 1: fine-tune a pretrained encoder into a sequence classifier (the teacher)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from harness.compress.architectures import model_inputs
from harness.compress.batching import encode
from harness.compress.distill import save_model, validation_report
from harness.compress.options import FinetuneOptions
from harness.compress.trainer_loop import trainer_train_loop
from harness.compress.training import (
    options_dict,
    resolve_bf16,
    resolve_device,
    set_seed,
    subsample,
    subset,
)


def finetune(
    base_dir: Path,
    texts: Sequence[str],
    labels: Sequence[int],
    num_labels: int,
    options: FinetuneOptions,
    out_dir: Path,
    validation_texts: Sequence[str] | None = None,
    validation_labels: Sequence[int] | None = None,
) -> dict:
    """Fine-tune ``base_dir`` (any encoder checkpoint) with a fresh classification head.

    Saves model (safetensors) + tokenizer to ``out_dir`` and returns a JSON-able report; the
    validation texts (held out of the train split) only score the result.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if len(texts) != len(labels):
        raise ValueError("texts and labels differ in length")
    device = resolve_device(options.device)
    bf16 = resolve_bf16(options.bf16, options.device)
    set_seed(options.seed)  # the new head's random init must be reproducible too
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=num_labels)

    idx = subsample(len(texts), options.max_train_samples, options.seed)
    enc = subset(encode(tokenizer, texts, options.max_length), idx)
    y = torch.tensor([int(labels[int(i)]) for i in idx], dtype=torch.long)

    def step_loss(m: torch.nn.Module, batch: dict[str, torch.Tensor], bidx) -> torch.Tensor:
        logits = m(**model_inputs(m, batch)).logits.float()
        return torch.nn.functional.cross_entropy(logits, y[bidx].to(logits.device))

    stats = trainer_train_loop(
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
        bf16=bf16,
        desc="finetune",
        freeze_embeddings=options.freeze_embeddings,
    )
    report = {
        "stage": "finetune",
        "options": options_dict(options),
        "train_samples": len(idx),
        "training_precision": "bf16" if bf16 else "fp32",
        "base_dir": str(base_dir),
        **stats,
    }
    report.update(validation_report(model, tokenizer, options.max_length, validation_texts, validation_labels))
    save_model(model, tokenizer, out_dir, report)
    return report
