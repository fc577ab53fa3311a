"""The inputs each shape is timed and scored on, built once per tokenizer and shape.

Timing uses a representative sample of the eval split (see ``harness.data.workload``); scoring
uses every sentence, batched so that a shape's first scoring batches are its timed inputs (the
timed calls' logits then score them). Fixed lengths time the same sentences as ``dynamic``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.data.splits import TextSplit
from harness.data.workload import (
    Batch,
    encode,
    full_batch_count,
    mean_real_tokens,
    ordered_batches,
    scoring_order,
    timing_order,
)
from harness.results.build import Workload
from harness.run.plan import Shape
from harness.suite import TimingConfig


@dataclass(frozen=True)
class TimingInputs:
    """Candidate batches in order; a cell times the first ``count`` (>= ``min_count``)."""

    batches: list[Batch]
    min_count: int
    split_mean_tokens: float

    def workload(self, count: int) -> Workload:
        used = self.batches[:count]
        indices = np.concatenate([b.indices for b in used])
        return Workload(
            shapes=[b.shape for b in used],
            mean_tokens=float(np.mean([b.real_tokens for b in used])),
            split_mean_tokens=self.split_mean_tokens,
            key=hashlib.sha256(indices.astype(np.int64).tobytes()).hexdigest()[:16],
            starts=[int(b.indices[0]) for b in used],
        )


class Workloads:
    def __init__(self, split: TextSplit, max_length: int, timing: TimingConfig) -> None:
        self.split = split
        self.max_length = max_length
        self.timing = timing
        self._encoded: dict[tuple[int, int | str], list[list[int]]] = {}
        self._timing: dict[tuple[int, Shape], TimingInputs] = {}
        self._scoring: dict[tuple[int, Shape], list[Batch]] = {}

    def token_ids(self, tokenizer: Any, seq_len: int | str) -> list[list[int]]:
        """Eval sentences tokenised once per (tokenizer, length rule), not once per cell."""
        key = (id(tokenizer), seq_len)
        if key not in self._encoded:
            self._encoded[key] = encode(tokenizer, self.split.texts, seq_len, self.max_length)
        return self._encoded[key]

    def for_timing(self, tokenizer: Any, shape: Shape) -> TimingInputs:
        key = (id(tokenizer), shape)
        if key not in self._timing:
            self._timing[key] = self._timing_inputs(tokenizer, shape)
        return self._timing[key]

    def _timing_inputs(self, tokenizer: Any, shape: Shape) -> TimingInputs:
        timed = len(self._timed_order(tokenizer, shape))
        batches = self.for_scoring(tokenizer, shape)[: full_batch_count(timed, shape.batch_size)]
        every_sentence = shape.batch_size == 1 and shape.seq_len == "dynamic"
        # batch 1 at real lengths must cover the whole sample; elsewhere a budget pilot may stop early
        min_count = len(batches) if every_sentence else min(self.timing.min_batches, len(batches))
        token_ids = self.token_ids(tokenizer, shape.seq_len)
        return TimingInputs(batches, min_count, _split_mean_tokens(token_ids, shape.seq_len))

    def for_scoring(self, tokenizer: Any, shape: Shape) -> list[Batch]:
        """Every eval sentence once at this shape, the timed inputs first (see ``scoring_order``)."""
        key = (id(tokenizer), shape)
        if key not in self._scoring:
            token_ids = self.token_ids(tokenizer, shape.seq_len)
            order = scoring_order(self._timed_order(tokenizer, shape), len(token_ids))
            self._scoring[key] = ordered_batches(token_ids, order, shape.batch_size, shape.seq_len, _pad_id(tokenizer))
        return self._scoring[key]

    def _timed_order(self, tokenizer: Any, shape: Shape) -> np.ndarray:
        lengths = [len(ids) for ids in self.token_ids(tokenizer, "dynamic")]
        return timing_order(lengths, shape.batch_size, self.timing.single_inputs, self.timing.seed)


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id or 0


def _split_mean_tokens(token_ids: list[list[int]], seq_len: int | str) -> float:
    """Real (unpadded) tokens per sentence over the whole split under this length rule."""
    if seq_len == "dynamic":
        return mean_real_tokens(token_ids)
    return float(np.mean([min(len(ids), int(seq_len)) for ids in token_ids]))
