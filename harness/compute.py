"""How much arithmetic a cell does, and how much the machine can do: the distance to the limit."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

GEMM_SIZE = 1024


def encoder_flops(lineage: Mapping[str, Any], width: int, batch_size: int) -> float:
    """FLOPs of one forward pass over a padded ``batch_size x width`` batch (2 per multiply-add).

    Per layer and token: Q, K, V and output projections (4*h*a), attention scores and the
    weighted sum (2*width*a), and the FFN (2*h*f), where a is the layer's attention width after
    head pruning and f its FFN width. Padding positions are computed too, so they count.
    """
    hidden, head_dim = int(lineage["hidden"]), int(lineage["head_dim"])
    macs_per_token = 0
    for heads, ffn in zip(lineage["heads_per_layer"], lineage["ffn_per_layer"]):
        attention = heads * head_dim
        macs_per_token += 4 * hidden * attention + 2 * width * attention + 2 * hidden * ffn
    return 2.0 * macs_per_token * width * batch_size


def mean_batch_flops(lineage: Mapping[str, Any], batches: Sequence[Mapping[str, np.ndarray]]) -> float:
    """Mean FLOPs per timed call; the timed loop cycles through ``batches`` evenly."""
    return float(np.mean([encoder_flops(lineage, b["input_ids"].shape[1], b["input_ids"].shape[0]) for b in batches]))


def measure_gemm_peak(threads: int, repeats: int = 10) -> dict[str, float | None]:
    """Best-of-``repeats`` GFLOP/s of a large FP32 matrix multiply, and INT8 where the CPU has it."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(GEMM_SIZE, GEMM_SIZE)
    b = torch.randn(GEMM_SIZE, GEMM_SIZE)
    flops = 2.0 * GEMM_SIZE**3
    peak = {"fp32_gflops": flops / _best_seconds(lambda: torch.mm(a, b), repeats) / 1e9, "int8_gflops": None}
    try:
        linear = torch.ao.nn.quantized.dynamic.Linear(GEMM_SIZE, GEMM_SIZE)
        peak["int8_gflops"] = flops / _best_seconds(lambda: linear(a), repeats) / 1e9
    except (RuntimeError, AttributeError):  # no quantised engine on this build
        pass
    return peak


def _best_seconds(call: Any, repeats: int) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best
