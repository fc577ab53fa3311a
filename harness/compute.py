"""How much arithmetic a cell does, and how much the machine can do: the distance to the limit."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

GEMM_SIZE = 1024


def encoder_flops_per_token(
    hidden: int, heads_per_layer: Sequence[int], head_dim: int, ffn_per_layer: Sequence[int], seq_len: int
) -> int:
    """FLOPs (= 2 x multiply-accumulates) per token for the encoder stack at ``seq_len``.

    Per layer, with a = heads*head_dim (attention width after head pruning), f = FFN width:
      Q, K, V projections   3*h*a MACs
      attention output      a*h
      scores Q.K^T          seq_len*a   (one dot product of width head_dim per key, per head)
      probs x V             seq_len*a
      FFN in + out          2*h*f
    Biases, softmax, LayerNorm, GELU, embeddings, pooler and classifier are ignored: they are
    O(h) per token or once per sequence and below 1% for these shapes.
    """
    macs = 0
    for n_heads, f in zip(heads_per_layer, ffn_per_layer):
        a = n_heads * head_dim
        macs += 4 * hidden * a + 2 * seq_len * a + 2 * hidden * f
    return 2 * macs


def encoder_flops(lineage: Mapping[str, Any], width: int, batch_size: int) -> float:
    """FLOPs of one forward pass over a padded ``batch_size x width`` batch; padding is computed
    too, so it counts."""
    per_token = encoder_flops_per_token(
        int(lineage["hidden"]), lineage["heads_per_layer"], int(lineage["head_dim"]), lineage["ffn_per_layer"], width
    )
    return float(per_token * width * batch_size)


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
