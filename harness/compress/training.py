"""Training/inference plumbing shared by fine-tuning, distillation and pruning recovery.

One loop, parameterised by a per-batch loss function, so that the three stages cannot drift
apart in how they seed, schedule, autocast or bucket.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.compress.architectures import model_inputs
from harness.compress.batching import Encoded, bucket_batches, collate
from harness.compress.options import BF16_MARGIN

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


def resolve_bf16(setting: bool | str, device: str = "cpu") -> bool:
    """A stage's ``bf16`` option made concrete: ``"auto"`` measures this machine (once per process)."""
    if setting != "auto":
        return bool(setting)
    return bf16_speedup(resolve_device(device).type) >= BF16_MARGIN


@functools.cache
def bf16_speedup(device_type: str) -> float:
    """How many times faster a training-shaped step (a 512-token x 384 -> 1536 -> 384 MLP, forward
    and backward) runs under bf16 autocast than in fp32; 0 where bf16 is emulated.

    Some CPUs with AVX512-BF16 run bf16 autocast GEMMs at half their fp32 speed, others at twice;
    only a measurement on the machine at hand tells. Warmed up, then interleaved best-of-7, about a
    second in all; the pipeline keeps the answer per machine so that runs do not flip on noise.
    """
    from harness.environment import bf16_unavailable_reason

    if bf16_unavailable_reason(device_type) is not None:
        return 0.0
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(512, 384, generator=generator).to(device_type)
    mlp = torch.nn.Sequential(torch.nn.Linear(384, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 384)).to(device_type)
    best = {False: math.inf, True: math.inf}
    for repeat in range(8):
        for bf16 in (False, True):
            seconds = _time_step(mlp, x, bf16)
            best[bf16] = min(best[bf16], seconds) if repeat else math.inf  # the first pass warms up
    return best[False] / best[True]


def _time_step(mlp: torch.nn.Module, x: torch.Tensor, bf16: bool) -> float:
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(4):
        with autocast(x.device, bf16):
            loss = mlp(x).float().square().mean()
        loss.backward()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


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
@contextlib.contextmanager
def frozen_input_embeddings(model: torch.nn.Module, freeze: bool = True) -> Iterator[None]:
    """The model's token-embedding table takes no gradient inside the block (an optimizer built
    there leaves it out); its earlier setting is restored after."""
    if not freeze:
        yield
        return
    weight = model.get_input_embeddings().weight
    before = weight.requires_grad
    weight.requires_grad_(False)
    try:
        yield
    finally:
        weight.requires_grad_(before)


def predict_logits(
    model: torch.nn.Module,
    encoded: Encoded,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    desc: str | None = None,
) -> np.ndarray:
    """Logits in the original example order (batches are length-sorted internally); ``desc``
    shows a progress bar under that name (a pass over the train split takes minutes)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out: np.ndarray | None = None
    batches = bucket_batches(encoded.lengths, batch_size, shuffle=False)
    for idx in tqdm(batches, desc=desc, unit="batch", mininterval=5.0, disable=desc is None):
        batch = {k: v.to(device) for k, v in collate(encoded, idx).items()}
        # no autograd graph: a pass over the train split would record one per batch for nothing
        with torch.inference_mode(), autocast(device, bf16):
            logits = model(**model_inputs(model, batch)).logits
        logits = logits.float().cpu().numpy()
        if out is None:
            out = np.zeros((len(encoded), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    model.train(was_training)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def accuracy(logits: np.ndarray, labels: Sequence[int]) -> float:
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())


@dataclass(frozen=True)
class Checkpoint:
    """A call into the caller's code at ``count`` evenly spaced steps of a training loop."""

    callback: Callable[[torch.nn.Module, int], None]
    count: int = 4

    def due(self, step: int, total_steps: int) -> bool:
        marks = {math.ceil(total_steps * (i + 1) / self.count) for i in range(self.count)}
        return step in marks
