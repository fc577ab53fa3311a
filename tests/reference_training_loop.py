"""The hand-written training loop the stages used before they moved to ``transformers.Trainer``
(``harness.compress.trainer_loop``). Kept, in the tests only, as the reference the Trainer loop is
proven equal to (same steps, batches, schedule and losses) and benchmarked against.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.compress.batching import Encoded, bucket_batches, collate
from harness.compress.training import Checkpoint, StepLoss, autocast, set_seed


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
    checkpoint: Checkpoint | None = None,
) -> dict:
    """AdamW + linear warmup/decay over ``ceil(epochs * batches_per_epoch)`` steps.

    Fractional epochs are honoured by stopping mid-epoch; each epoch draws a fresh bucketed
    order from ``seed + epoch`` so runs are reproducible yet epochs differ. ``checkpoint`` is
    called ``checkpoint.count`` times, evenly spaced, the last after the final step (a search
    scores the model there and may stop the trial by raising).
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
            if checkpoint is not None and checkpoint.due(step, total_steps):
                checkpoint.callback(model, step)
                model.train()
        epoch += 1
    bar.close()
    model.eval()
    return {
        "train_seconds": time.perf_counter() - start,
        "steps": step,
        "final_loss": float(np.mean(losses[-100:])) if losses else float("nan"),
    }
