"""Tokenised eval sentences as deterministic, ready-to-run batches.

``dynamic`` pads each batch to its longest real sentence; a number pads or truncates every
sentence to exactly that many tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SeqLen = int | str


@dataclass(frozen=True)
class Batch:
    arrays: dict[str, np.ndarray]
    indices: np.ndarray


def encode(tokenizer: object, texts: Sequence[str], seq_len: SeqLen, max_length: int) -> list[list[int]]:
    limit = max_length if seq_len == "dynamic" else int(seq_len)
    encoded = tokenizer(list(texts), truncation=True, max_length=limit, padding=False)  # type: ignore[operator]
    return encoded["input_ids"]


def pad_batch(token_ids: Sequence[Sequence[int]], seq_len: SeqLen, pad_id: int, indices: np.ndarray) -> Batch:
    width = max(len(ids) for ids in token_ids) if seq_len == "dynamic" else int(seq_len)
    input_ids = np.full((len(token_ids), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(token_ids), width), dtype=np.int64)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    arrays = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": np.zeros_like(input_ids),
    }
    return Batch(arrays, indices)


def make_batches(
    token_ids: Sequence[Sequence[int]], batch_size: int, seq_len: SeqLen, pad_id: int, limit: int | None = None
) -> list[Batch]:
    """Consecutive batches in eval order; with ``limit``, the first ``limit`` of them, wrapping around."""
    count = len(token_ids)
    n_batches = -(-count // batch_size) if limit is None else limit
    batches = []
    for b in range(n_batches):
        indices = np.arange(b * batch_size, (b + 1) * batch_size)
        indices = indices[indices < count] if limit is None else indices % count
        batches.append(pad_batch([token_ids[i] for i in indices], seq_len, pad_id, indices))
    return batches
