"""Interleaved rounds: which variant runs when, and what each cell has measured so far.

Every round visits every variant once, in a seeded shuffled order; odd rounds mirror the round
before them (A B C, then C B A), so a machine that drifts steadily slows the early and the late
variants alike and paired per-round ratios cancel the drift to first order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def round_order(items: Sequence[T], round_index: int, seed: int) -> list[T]:
    """Round ``2k`` shuffles with seed ``(seed, k)``; round ``2k + 1`` runs that order backwards."""
    order = np.random.default_rng([seed, round_index // 2]).permutation(len(items))
    if round_index % 2:
        order = order[::-1]
    return [items[i] for i in order]


def schedule(items: Sequence[T], rounds: int, seed: int) -> Iterator[tuple[int, T]]:
    """(round, item) for every item in every round, round by round."""
    for round_index in range(rounds):
        for item in round_order(items, round_index, seed):
            yield round_index, item


@dataclass
class CellProgress:
    """One cell's measurements across rounds; the first failure ends it."""

    passes: list[Sequence[Sequence[float]]] = field(default_factory=list)
    count: int | None = None
    load_avg: list[float] = field(default_factory=list)
    memory: list[dict[str, float | None]] = field(default_factory=list)
    timed_calls: int = 0
    failure: tuple[str, str] | None = None  # (status, reason)

    def add(self, passes: Sequence[Sequence[float]], count: int, load_avg: float, memory: dict) -> None:
        self.passes.append(passes)
        self.count = count  # fixed by the first round: later rounds time the same inputs
        self.load_avg.append(load_avg)
        self.memory.append(dict(memory))
        self.timed_calls += sum(len(p) for p in passes)

    def fail(self, status: str, reason: str, round_index: int) -> None:
        if self.failure is None:
            self.failure = (status, f"round {round_index + 1}: {reason}")

    def peak_memory(self) -> dict[str, float | None]:
        """The memory record of the round whose process peaked highest (its fields belong together)."""
        return dict(max(self.memory, key=lambda m: m.get("peak_rss_mb") or 0.0, default={}))
