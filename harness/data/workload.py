"""Tokenised eval sentences as ready-to-run batches: the whole split for scoring, a representative
sample of it for timing.

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

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.arrays["input_ids"].shape)  # type: ignore[return-value]

    @property
    def real_tokens(self) -> float:
        """Mean unpadded tokens per sentence of this batch."""
        return float(self.arrays["attention_mask"].sum() / self.arrays["attention_mask"].shape[0])


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


def make_batches(token_ids: Sequence[Sequence[int]], batch_size: int, seq_len: SeqLen, pad_id: int) -> list[Batch]:
    """Every sentence once, in eval order."""
    return ordered_batches(token_ids, np.arange(len(token_ids)), batch_size, seq_len, pad_id)


def ordered_batches(
    token_ids: Sequence[Sequence[int]], order: np.ndarray, batch_size: int, seq_len: SeqLen, pad_id: int
) -> list[Batch]:
    """Consecutive runs of ``batch_size`` sentences along ``order``; a shorter last batch keeps the rest."""
    return [
        pad_batch([token_ids[i] for i in order[s : s + batch_size]], seq_len, pad_id, order[s : s + batch_size])
        for s in range(0, len(order), batch_size)
    ]


def full_batch_count(sentences: int, batch_size: int) -> int:
    """How many batches of ``sentences`` have the full ``batch_size`` (one short batch when none can)."""
    return sentences // batch_size if sentences >= batch_size else min(sentences, 1)


def scoring_order(timed: np.ndarray, total: int) -> np.ndarray:
    """The timed sentences first, in their order, then every other sentence in eval order: scored in
    batches along this order, a shape's first batches are exactly its timed inputs, so the timed
    calls' logits score them and only the rest need another call."""
    rest = np.setdiff1d(np.arange(total), timed, assume_unique=True)
    return np.concatenate([np.asarray(timed, dtype=int), rest])


def in_eval_order(indices: Sequence[np.ndarray], logits: Sequence[np.ndarray]) -> np.ndarray:
    """Per-batch logits (batch ``i`` holds the sentences ``indices[i]``) put back in eval order,
    whatever order the batches were run in."""
    indices = np.concatenate(list(indices))
    stacked = np.concatenate(list(logits))
    ordered = np.empty_like(stacked)
    ordered[indices] = stacked
    return ordered


def stratified_sample(lengths: Sequence[int], count: int, seed: int) -> np.ndarray:
    """``count`` sentence indices whose length distribution matches the split's, in seeded random order.

    The split is sorted by length (ties broken at random) and cut into ``count`` equal-count bins;
    one sentence is drawn from each bin, so every length quantile is represented exactly once.
    """
    rng = np.random.default_rng(seed)
    total = len(lengths)
    count = min(count, total)
    by_length = np.lexsort((rng.random(total), np.asarray(lengths)))
    edges = np.linspace(0, total, count + 1).astype(int)
    picks = np.array([by_length[rng.integers(lo, hi)] for lo, hi in zip(edges[:-1], edges[1:])], dtype=int)
    return rng.permutation(picks)


def timing_order(lengths: Sequence[int], batch_size: int, single_inputs: int, seed: int) -> np.ndarray:
    """The sentence order a shape's timed inputs are cut from (consecutive runs of ``batch_size``).

    At batch 1, a length-stratified sample of ``single_inputs`` sentences; at larger batches the
    whole split in seeded random order, so each batch mixes lengths as live traffic does, and any
    prefix of batches is a random sample of the split.
    """
    if batch_size == 1:
        return stratified_sample(lengths, single_inputs, seed)
    return np.random.default_rng(seed).permutation(len(lengths))


def mean_real_tokens(token_ids: Sequence[Sequence[int]]) -> float:
    return float(np.mean([len(ids) for ids in token_ids])) if len(token_ids) else 0.0
