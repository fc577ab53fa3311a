"""How much arithmetic a cell does, and how much the machine can do: the distance to the limit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def encoder_flops_per_token(
    hidden: int, heads_per_layer: Sequence[int], head_dim: int, ffn_per_layer: Sequence[int], seq_len: int
) -> int:
    linear, attention = _flops_per_token(hidden, heads_per_layer, head_dim, ffn_per_layer, seq_len)
    return linear + attention


def _flops_per_token(
    hidden: int, heads_per_layer: Sequence[int], head_dim: int, ffn_per_layer: Sequence[int], seq_len: int
) -> tuple[int, int]:
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
    linear = attention = 0
    for n_heads, f in zip(heads_per_layer, ffn_per_layer):
        a = n_heads * head_dim
        linear += 4 * hidden * a + 2 * hidden * f
        attention += 2 * seq_len * a
    return 2 * linear, 2 * attention


def _split_flops(lineage: Mapping[str, Any], width: int, batch_size: int) -> tuple[float, float]:
    if not lineage["heads_per_layer"]:  # a BiLSTM or CNN student: a fixed cost per token, no attention
        return float(lineage["flops_per_token"] * width * batch_size), 0.0
    linear, attention = _flops_per_token(
        int(lineage["hidden"]), lineage["heads_per_layer"], int(lineage["head_dim"]), lineage["ffn_per_layer"], width
    )
    return float(linear * width * batch_size), float(attention * width * batch_size)


def encoder_flops(lineage: Mapping[str, Any], width: int, batch_size: int) -> float:
    """FLOPs of one forward pass over a padded ``batch_size x width`` batch; padding is computed
    too, so it counts."""
    return sum(_split_flops(lineage, width, batch_size))


def flops_by_precision(
    lineage: Mapping[str, Any], shapes: Sequence[tuple[int, int]], precision: str, int8_attention: bool = False
) -> dict[str, float]:
    """Mean FLOPs per call over ``(batch, width)`` shapes, split by the precision that runs them.

    Dynamic INT8 quantises the Linear layers only: the attention products stay in FP32. Static
    INT8 graphs that quantise every MatMul (``int8_attention``) run those in INT8 too.
    """
    linear, attention = np.mean([_split_flops(lineage, width, batch) for batch, width in shapes], axis=0)
    if precision == "int8" and int8_attention:
        return {"int8": float(linear + attention)}
    if precision == "int8":
        return {"int8": float(linear), "fp32": float(attention)}
    return {precision: float(linear + attention)}
