"""The timed loop shared by every backend.

Exactly one thing is inside the clock: ``run(prepared)`` followed by ``synchronize()``, so queued
device work is finished before the stop time is read. Choosing the next input is outside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Clock = Callable[[], float]


@dataclass(frozen=True)
class TimingPolicy:
    warmup: int
    min_iterations: int
    min_seconds: float
    max_seconds: float
    repeats: int = 1


@dataclass(frozen=True)
class TimedRun:
    """Per-iteration latencies in seconds, one tuple per repeat."""

    repeats: tuple[tuple[float, ...], ...]
    hit_time_cap: bool

    @property
    def samples(self) -> list[float]:
        return [s for repeat in self.repeats for s in repeat]


def time_calls(
    run: Callable[[Any], Any],
    synchronize: Callable[[], None],
    inputs: Sequence[Any],
    policy: TimingPolicy,
    clock: Clock = time.perf_counter,
) -> TimedRun:
    """Warm up, then time until both ``min_iterations`` and ``min_seconds`` are met (each repeat).

    ``max_seconds`` caps a repeat of a very slow cell; ``hit_time_cap`` records that it did.
    """
    if not inputs:
        raise ValueError("no inputs to time")
    for i in range(policy.warmup):
        run(inputs[i % len(inputs)])
        synchronize()
    repeats: list[tuple[float, ...]] = []
    capped = False
    for _ in range(policy.repeats):
        samples: list[float] = []
        started = clock()
        while True:
            prepared = inputs[len(samples) % len(inputs)]
            begin = clock()
            run(prepared)
            synchronize()
            end = clock()
            samples.append(end - begin)
            elapsed = end - started
            if len(samples) >= policy.min_iterations and elapsed >= policy.min_seconds:
                break
            if elapsed >= policy.max_seconds:
                capped = True
                break
        repeats.append(tuple(samples))
    return TimedRun(tuple(repeats), capped)
