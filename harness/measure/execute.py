"""One variant in one round: load it, score it where asked, time each of its cells.

This is the body of every isolated job. It imports no runtime itself: the backend adapter does,
inside ``load``. Exceptions become error outcomes (for the variant, or for the one cell that
failed), so a broken variant costs only its own cells.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

import numpy as np

from harness.adapters import Artifact
from harness.measure.memory import MemoryProbe, peak_rss_mb, reset_peak
from harness.measure.timing import Clock, PassPolicy, affordable_count, time_passes

CellId = tuple[str, ...]


@dataclass(frozen=True)
class TimingTask:
    """One cell's inputs in one round. ``count`` fixes how many to use; None lets a pilot choose
    (at least ``min_count``), and the caller then fixes it for the later rounds."""

    cell: CellId
    inputs: list[dict[str, np.ndarray]]
    min_count: int
    count: int | None = None


@dataclass(frozen=True)
class ScoreTask:
    """Every eval sentence at one shape, whose logits give that shape's accuracy."""

    label: str
    batches: list[dict[str, np.ndarray]]


@dataclass(frozen=True)
class VariantJob:
    backend: str
    artifact: Artifact
    device: str
    threads: int
    policy: PassPolicy
    timing: list[TimingTask]
    scoring: list[ScoreTask] = field(default_factory=list)


@dataclass(frozen=True)
class CellTimes:
    """What one cell measured in one round (seconds), or why it could not."""

    passes: tuple[tuple[float, ...], ...] = ()
    count: int = 0
    error: str | None = None
    # the process's resident peak while this cell alone ran (the model already loaded)
    peak_rss_mb: float | None = None


@dataclass(frozen=True)
class VariantOutcome:
    status: str = "ok"
    reason: str | None = None
    cells: Mapping[CellId, CellTimes] = field(default_factory=dict)
    scores: Mapping[str, np.ndarray] = field(default_factory=dict)
    memory: Mapping[str, float | None] = field(default_factory=dict)
    # wall seconds of each phase (load, time, score): what a round costs beyond the clock
    phases: Mapping[str, float] = field(default_factory=dict)
    score_errors: Mapping[str, str] = field(default_factory=dict)


def describe_error(error: BaseException) -> str:
    where = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    at = f" (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
    return f"{type(error).__name__}: {error}{at}"


def execute_variant(job: VariantJob, clock: Clock = time.perf_counter) -> VariantOutcome:
    """Load once, score every requested shape, then time every cell in the order given."""
    from harness.registry import backends

    probe = MemoryProbe(job.device)
    session = None
    started = time.perf_counter()
    try:
        session = backends().get(job.backend).load(job.artifact, job.device, job.threads)
        loaded = time.perf_counter()
        # timing first, in every round alike; the first round's scoring comes after it
        cells = {task.cell: _time_cell(session, task, job.policy, clock) for task in job.timing}
        timed = time.perf_counter()
        scores, score_errors = _score_all(session, job.scoring)
        phases = {"load": loaded - started, "time": timed - loaded, "score": time.perf_counter() - timed}
        return VariantOutcome("ok", None, cells, scores, probe.report(), phases, score_errors)
    except Exception as error:  # reported as this variant's error rows; the run goes on
        return VariantOutcome("error", describe_error(error), memory=probe.report())
    finally:
        if session is not None:
            session.close()


def _score_all(session: object, tasks: list[ScoreTask]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Logits per shape; a shape that fails (e.g. out of memory) gets its error, the others still score."""
    scores, errors = {}, {}
    for task in tasks:
        try:
            scores[task.label] = np.concatenate([session.logits(session.run(session.prepare(b))) for b in task.batches])  # type: ignore[attr-defined]
        except Exception as error:
            errors[task.label] = describe_error(error)
    return scores, errors


def _time_cell(session: object, task: TimingTask, policy: PassPolicy, clock: Clock) -> CellTimes:
    reset_peak()  # this cell's own peak, not the previous shape's
    try:
        prepared = [session.prepare(batch) for batch in task.inputs]  # type: ignore[attr-defined]
        run, sync = session.run, session.synchronize  # type: ignore[attr-defined]
        count = task.count or affordable_count(run, sync, prepared, policy.budget_s, task.min_count, clock)
        shapes: list[Hashable] = [batch["input_ids"].shape for batch in task.inputs[:count]]
        timed = time_passes(run, sync, prepared[:count], shapes, policy, clock)
        return CellTimes(timed.passes, count, peak_rss_mb=peak_rss_mb())
    except Exception as error:  # one shape failing (e.g. out of memory) leaves the others
        return CellTimes(error=describe_error(error))
