"""Training/inference plumbing shared by fine-tuning, distillation and pruning recovery.

One loop, parameterised by a per-batch loss function, so that the three stages cannot drift
apart in how they seed, schedule, autocast or bucket.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.compress.batching import Encoded, bucket_batches, collate

# (model, batch tensors already on device, original example indices) -> scalar loss
StepLoss = Callable[[torch.nn.Module, dict[str, torch.Tensor], np.ndarray], torch.Tensor]


def options_dict(options: Any) -> dict[str, Any]:
    """JSON-able view of a stage's options (``harness.compress.options`` models)."""
    return options.model_dump(mode="json")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def resolve_device(name: str) -> torch.device:
    """'cuda' silently degrades to CPU when no GPU is present, so one config runs everywhere."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device(name)


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    # bf16 autocast roughly halves matmul time on CPUs with AVX512-BF16/AMX; master weights,
    # optimizer state and the loss stay in fp32 so convergence matches fp32 training closely.
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def subsample(n: int, max_samples: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded random subset (all indices, in order, when no cap applies)."""
    if max_samples is None or max_samples >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))


def subset(encoded: Encoded, idx: np.ndarray) -> Encoded:
    return Encoded([encoded.input_ids[int(i)] for i in idx], encoded.pad_token_id)


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    encoded: Encoded,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> np.ndarray:
    """Logits in the original example order (batches are length-sorted internally)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out: np.ndarray | None = None
    for idx in bucket_batches(encoded.lengths, batch_size, shuffle=False):
        batch = {k: v.to(device) for k, v in collate(encoded, idx).items()}
        with autocast(device, bf16):
            logits = model(**batch).logits
        logits = logits.float().cpu().numpy()
        if out is None:
            out = np.zeros((len(encoded), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    model.train(was_training)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def accuracy(logits: np.ndarray, labels: Sequence[int]) -> float:
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    # Standard BERT recipe: no decay on biases and LayerNorm gains.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _adamw(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    # The fused kernel matters on CPU: the unfused AdamW step over MiniLM's 22M parameters
    # (half of them the word embeddings) took ~100 ms, about half of every training step,
    # versus ~13 ms fused. Same update rule; fall back where a build lacks the kernel.
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr)


def train_loop(
    model: torch.nn.Module,
    encoded: Encoded,
    step_loss: StepLoss,
    *,
    epochs: float,
    learning_rate: float,
    batch_size: int,
    warmup_ratio: float,
    weight_decay: float,
    seed: int,
    device: torch.device,
    bf16: bool,
    max_grad_norm: float = 1.0,
    desc: str = "train",
) -> dict:
    """AdamW + linear warmup/decay over ``ceil(epochs * batches_per_epoch)`` steps.

    Fractional epochs are honoured by stopping mid-epoch; each epoch draws a fresh bucketed
    order from ``seed + epoch`` so runs are reproducible yet epochs differ.
    """
    from transformers import get_linear_schedule_with_warmup

    set_seed(seed)
    model.to(device).train()
    per_epoch = math.ceil(len(encoded) / batch_size)
    total_steps = max(1, math.ceil(epochs * per_epoch))
    optimizer = _adamw(_param_groups(model, weight_decay), learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps)

    losses: list[float] = []
    step = 0
    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc=desc, unit="step", mininterval=5.0)
    epoch = 0
    while step < total_steps:
        for idx in bucket_batches(encoded.lengths, batch_size, shuffle=True, seed=seed + epoch):
            if step >= total_steps:
                break
            batch = {k: v.to(device) for k, v in collate(encoded, idx).items()}
            with autocast(device, bf16):
                loss = step_loss(model, batch, idx)
            loss.backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            step += 1
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        epoch += 1
    bar.close()
    model.eval()
    return {
        "train_seconds": time.perf_counter() - start,
        "steps": step,
        "final_loss": float(np.mean(losses[-100:])) if losses else float("nan"),
    }
