"""One variant in one round: load it, time each of its cells, score it where asked.

A scored shape's first batches are its timed inputs, so the first timed pass's logits score them;
the rest of the split is scored just before that cell is timed, which also warms up its shapes.
This is the body of every isolated job. It imports no runtime itself: the backend adapter does,
inside ``load``. Exceptions become error outcomes (for the variant, or for the one cell that
failed), so a broken variant costs only its own cells.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.adapters import Artifact, Options
from harness.data.workload import in_eval_order
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
    # the ScoreTask whose first batches are these inputs: the timed calls' logits then score them
    score_label: str | None = None


@dataclass(frozen=True)
class ScoreTask:
    """Every eval sentence at one shape, whose logits give that shape's accuracy. ``batches[i]``
    holds the sentences ``indices[i]`` (None: consecutive batches in eval order)."""

    label: str
    batches: list[dict[str, np.ndarray]]
    indices: list[np.ndarray] | None = None


@dataclass(frozen=True)
class VariantJob:
    backend: str
    artifact: Artifact
    device: str
    threads: int
    policy: PassPolicy
    timing: list[TimingTask]
    scoring: list[ScoreTask] = field(default_factory=list)
    # the suite's options for the backend, validated against its ``Options`` where it loads
    backend_options: Mapping[str, Any] = field(default_factory=dict)


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
    # what the session said of itself after timing (``Session.describe``)
    notes: Mapping[str, Any] = field(default_factory=dict)


def describe_error(error: BaseException) -> str:
    where = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    at = f" (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
    return f"{type(error).__name__}: {error}{at}"


def execute_variant(job: VariantJob, clock: Clock = time.perf_counter) -> VariantOutcome:
    """Load once, time every cell in the order given, and score every requested shape."""
    from harness.registry import backends

    probe = MemoryProbe(job.device)
    session = None
    started = time.perf_counter()
    try:
        session = _load(backends().get(job.backend), job)
        loaded = time.perf_counter()
        scorer = _Scorer(session, job.scoring)
        cells = {task.cell: _time_cell(session, task, job.policy, clock, scorer) for task in job.timing}
        timing_seconds = time.perf_counter() - loaded - scorer.seconds  # less the scoring done between cells
        scores, score_errors = scorer.finish()
        phases = {"load": loaded - started, "time": timing_seconds, "score": scorer.seconds}
        notes = _describe(session)
        return VariantOutcome("ok", None, cells, scores, probe.report(), phases, score_errors, notes)
    except Exception as error:  # reported as this variant's error rows; the run goes on
        return VariantOutcome("error", describe_error(error), memory=probe.report())
    finally:
        if session is not None:
            session.close()


def _describe(session: Any) -> dict[str, Any]:
    try:
        return dict(session.describe())
    except Exception as error:  # what the session says of itself must not cost its timings
        return {"describe_error": describe_error(error)}


def _load(backend: Any, job: VariantJob) -> Any:
    if backend.Options is Options and not job.backend_options:
        # no options to give: a drop-in written before backends had options takes three arguments
        return backend.load(job.artifact, job.device, job.threads)
    return backend.load(
        job.artifact, job.device, job.threads, backend.Options.model_validate(dict(job.backend_options))
    )


class _Scorer:
    """Logits per scored shape, batch by batch, from timed calls or from calls of its own.

    A shape that fails (e.g. out of memory) gets its error; the other shapes still score.
    """

    def __init__(self, session: Any, tasks: list[ScoreTask]) -> None:
        self.session = session
        self.tasks = {task.label: task for task in tasks}
        self.logits: dict[str, dict[int, np.ndarray]] = {task.label: {} for task in tasks}
        self.errors: dict[str, str] = {}
        self.seconds = 0.0

    def score(self, label: str, positions: Iterable[int]) -> set[Hashable]:
        """Score these batches of ``label`` that have no logits yet; returns the shapes that ran."""
        task, done, ran = self.tasks[label], self.logits[label], set()
        begin = time.perf_counter()
        try:
            for position in positions:
                if position not in done and label not in self.errors:
                    batch = task.batches[position]
                    done[position] = self.session.logits(self.session.run(self.session.prepare(batch)))
                    ran.add(batch["input_ids"].shape)
        except Exception as error:
            self.errors[label] = describe_error(error)
        self.seconds += time.perf_counter() - begin
        return ran

    def keeper(self, label: str) -> Callable[[int, Any], None]:
        done = self.logits[label]

        def keep(position: int, output: Any) -> None:
            done[position] = self.session.logits(output)

        return keep

    def finish(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Score what the timed calls did not, and put each shape's logits in eval order."""
        scores = {}
        for label, task in self.tasks.items():
            self.score(label, range(len(task.batches)))
            if label in self.errors:
                continue
            per_batch = [self.logits[label][position] for position in range(len(task.batches))]
            consecutive = task.indices is None
            scores[label] = np.concatenate(per_batch) if consecutive else in_eval_order(task.indices, per_batch)
        return scores, dict(self.errors)


def _time_cell(session: Any, task: TimingTask, policy: PassPolicy, clock: Clock, scorer: _Scorer) -> CellTimes:
    try:
        prepared = [session.prepare(batch) for batch in task.inputs]
        run, sync = session.run, session.synchronize
        count = task.count or affordable_count(run, sync, prepared, policy.budget_s, task.min_count, clock)
        shapes: list[Hashable] = [batch["input_ids"].shape for batch in task.inputs[:count]]
        warm: set[Hashable] = set()
        keep = None
        if task.score_label in scorer.tasks:
            # the batches of this shape that are not timed: scoring them now also warms their shapes up
            warm = scorer.score(task.score_label, range(count, len(scorer.tasks[task.score_label].batches)))
            keep = scorer.keeper(task.score_label)
        reset_peak()  # this cell's own peak, not the previous shape's
        timed = time_passes(run, sync, prepared[:count], shapes, policy, clock, warm, keep)
        return CellTimes(timed.passes, count, peak_rss_mb=peak_rss_mb())
    except Exception as error:  # one shape failing (e.g. out of memory) leaves the others
        return CellTimes(error=describe_error(error))
