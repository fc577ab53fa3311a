"""The timed loop shared by every backend.

Exactly one thing is inside the clock: ``run(prepared)`` followed by ``synchronize()``, so queued
device work is finished before the stop time is read. Choosing the next input is outside it.
Timing goes in whole passes over the inputs, so every input carries the same weight.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Clock = Callable[[], float]


@dataclass(frozen=True)
class PassPolicy:
    """Untimed warm-up passes over one input of each shape, then whole timed passes until
    ``budget_s`` is spent (at least ``min_passes``, at most ``max_passes``)."""

    budget_s: float
    warmup_passes: int = 1
    min_passes: int = 1
    max_passes: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class TimedPasses:
    """Latency in seconds of every timed call: ``passes[p][i]`` is input ``i`` in pass ``p``."""

    passes: tuple[tuple[float, ...], ...]

    @property
    def samples(self) -> list[float]:
        return [s for one in self.passes for s in one]


def one_per_shape(shapes: Sequence[Hashable]) -> list[int]:
    """Index of the first input of each distinct shape: warming these up covers every shape."""
    first: dict[Hashable, int] = {}
    for index, shape in enumerate(shapes):
        first.setdefault(shape, index)
    return list(first.values())


def time_passes(
    run: Callable[[Any], Any],
    synchronize: Callable[[], None],
    inputs: Sequence[Any],
    shapes: Sequence[Hashable],
    policy: PassPolicy,
    clock: Clock = time.perf_counter,
    warm: Collection[Hashable] = (),
    keep: Callable[[int, Any], None] | None = None,
) -> TimedPasses:
    """Warm up every distinct shape, then time whole passes in a seeded shuffled order per pass.

    ``warm`` holds shapes this process has already run (they skip the first warm-up pass); ``keep``
    receives ``(input index, output)`` for each call of the first timed pass, after the clock is read.
    """
    if not inputs:
        raise ValueError("no inputs to time")
    for warmup in range(policy.warmup_passes):
        for index in one_per_shape(shapes):
            if warmup == 0 and shapes[index] in warm:
                continue
            run(inputs[index])
            synchronize()
    rng = np.random.default_rng(policy.seed)
    passes: list[tuple[float, ...]] = []
    spent = 0.0
    while len(passes) < policy.min_passes or (spent < policy.budget_s and len(passes) < policy.max_passes):
        latency = [0.0] * len(inputs)
        for index in rng.permutation(len(inputs)):
            prepared = inputs[index]
            begin = clock()
            output = run(prepared)
            synchronize()
            latency[index] = clock() - begin
            if keep is not None and not passes:
                keep(int(index), output)
        passes.append(tuple(latency))
        spent += sum(latency)
    return TimedPasses(tuple(passes))


def affordable_count(
    run: Callable[[Any], Any],
    synchronize: Callable[[], None],
    inputs: Sequence[Any],
    budget_s: float,
    min_count: int,
    clock: Clock = time.perf_counter,
) -> int:
    """How many distinct inputs one pass can cover within ``budget_s`` (at least ``min_count``).

    A pilot: the first few inputs, each run once to warm it and once timed; it stops after the first
    when even ``min_count`` inputs of that cost fill the budget (a slow cell pays no more pilot calls).
    """
    if len(inputs) <= min_count:
        return len(inputs)
    seconds = []
    for prepared in inputs[: min(3, len(inputs))]:
        run(prepared)
        synchronize()
        begin = clock()
        run(prepared)
        synchronize()
        seconds.append(clock() - begin)
        if seconds[0] * min_count >= budget_s:  # the minimum alone fills the budget: no more pilot calls
            return min_count
    per_call = max(float(np.mean(seconds)), 1e-9)
    return int(min(len(inputs), max(min_count, budget_s // per_call)))
