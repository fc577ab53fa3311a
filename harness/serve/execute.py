"""The body of one isolated scenario cell: load the variant, serve it under LoadGen, report.

Like ``harness.measure.execute`` for timed cells, it imports no runtime itself (the backend adapter
does, inside ``load``) and turns any exception into an error outcome for this cell alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.adapters import Artifact
from harness.measure.execute import describe_error


@dataclass(frozen=True)
class ScenarioJob:
    backend: str
    artifact: Artifact
    device: str
    threads: int
    scenario: Any  # a harness.suite_scenarios scenario (plain data)
    tokenizer_path: Path
    texts: tuple[str, ...]
    max_length: int
    log_dir: Path
    backend_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScenarioOutcome:
    status: str = "ok"
    reason: str | None = None
    performance: Mapping[str, Any] = field(default_factory=dict)
    probes: list[dict[str, Any]] = field(default_factory=list)
    predictions: np.ndarray | None = None
    accuracy_run: Mapping[str, Any] = field(default_factory=dict)
    pilot: Mapping[str, float] = field(default_factory=dict)
    qps: float | None = None
    notes: Mapping[str, Any] = field(default_factory=dict)


def execute_scenario(job: ScenarioJob) -> ScenarioOutcome:
    from transformers import AutoTokenizer

    from harness.measure.execute import _describe, _load
    from harness.registry import backends
    from harness.serve.scenario import run_scenario
    from harness.serve.sut import Encoder, ServingSystem

    session = None
    try:
        tokenizer = AutoTokenizer.from_pretrained(job.tokenizer_path)
        session = _load(backends().get(job.backend), job)  # type: ignore[arg-type]
        scenario = job.scenario
        encoder = Encoder(tokenizer, job.texts, job.max_length, inside=scenario.tokenize == "inside")
        encoder.load(range(len(job.texts)))  # "outside": tokenised before any query (no-op "inside")
        max_batch = getattr(scenario, "max_batch", 1)
        wait_s = getattr(scenario, "max_wait_ms", 0.0) / 1000 if scenario.type == "server" else 0.0
        system = ServingSystem(session, encoder, max_batch, wait_s)
        result = run_scenario(system, scenario, len(job.texts), job.log_dir)
        return ScenarioOutcome(
            performance=result.performance,
            probes=result.probes,
            predictions=result.predictions,
            accuracy_run=result.accuracy_run,
            pilot=result.pilot,
            qps=result.qps,
            notes=_describe(session),
        )
    except Exception as error:  # this cell's error row; the run goes on
        return ScenarioOutcome("error", describe_error(error))
    finally:
        if session is not None:
            session.close()
