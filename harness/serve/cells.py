"""A suite's scenario cells: every exported variant under every scenario of ``scenarios:``, each in
its own process, after the timed rounds; each row is appended to the run's results file as it
finishes, and a resumed run skips the scenario cells it finds there (``ok`` or ``n/a``).

LoadGen's summary, detail and accuracy logs of each cell's reported runs stay beside the results,
in ``<results stem>-loadgen/<cell>/{performance,accuracy}/``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from harness.adapters import missing_modules
from harness.measure.isolation import run_isolated
from harness.results.rows import ResultsWriter, read_rows, rows_of_run
from harness.results.scenario_rows import ScenarioRow, scenario_key, scenario_row
from harness.run.exports import Ready
from harness.run.plan import Shape
from harness.serve.execute import ScenarioJob, ScenarioOutcome, execute_scenario
from harness.suite import Suite
from harness.suite_scenarios import worst_case_s

log = logging.getLogger("harness")
PRELOAD = ("mlperf_loadgen", "transformers", "harness.serve.execute", "harness.serve.scenario")


class ScenarioCells:
    """The scenario cells of one machine: a local run's, or one machine's of a fleet (``hardware``)."""

    def __init__(
        self,
        suite: Suite,
        backends: Any,
        results_path: Path,
        run_info: dict[str, Any],
        texts: tuple[str, ...],
        labels: np.ndarray,
        progress: bool = True,
        hardware: str | None = None,
    ) -> None:
        self.suite = suite
        self.backends = backends
        self.results_path = Path(results_path)
        self.run_info = run_info
        self.texts = texts
        self.labels = labels
        self.progress = progress
        self.hardware = hardware
        self.log_root = self.results_path.with_name(self.results_path.stem + "-loadgen")

    def finished(self) -> set[tuple[str, ...]]:
        if not self.results_path.is_file():
            return set()
        rows = read_rows([self.results_path], scenarios=True)
        mine = rows_of_run(rows, self.run_info["suite_hash"], self.run_info["env_fingerprint"], key=scenario_key)
        return {scenario_key(r) for r in mine if r["status"] in ("ok", "n/a")}

    def todo(self, ready: list[Ready]) -> list[tuple[Ready, Any]]:
        """Every variant under every scenario, less the cells a resumed run finished."""
        done = self.finished()
        if done:
            log.info("resuming: %d finished scenario cells kept from %s", len(done), self.results_path)
        cells = [(item, s) for item in ready for s in self.suite.scenarios]
        return [(item, s) for item, s in cells if self._key(item, s) not in done]

    def run(self, ready: list[Ready], scores: Mapping[str, Mapping[str, np.ndarray]]) -> list[ScenarioRow]:
        writer, rows = ResultsWriter(self.results_path), []
        bar = tqdm(self.todo(ready), desc="scenarios", unit="cell", disable=not self.progress)
        for item, scenario in bar:
            bar.set_postfix_str(f"{item.variant.name} {scenario.display_name}")
            missing = missing_modules("mlperf_loadgen")
            if missing:
                outcome = ScenarioOutcome("n/a", f"LoadGen is unavailable: {missing}")
            else:
                outcome = self._execute(item, scenario)
            row = self.row(item, scenario, outcome, scores.get(item.variant.name, {}))
            writer.append(row)
            rows.append(row)
        return rows

    def _key(self, item: Ready, scenario: Any) -> tuple[str, ...]:
        cell = item.variant.cell(Shape(getattr(scenario, "max_batch", 1), "dynamic"))
        return (*cell, *([self.hardware] if self.hardware else []), scenario.display_name)

    def log_dir(self, item: Ready, scenario: Any) -> Path:
        names = (*item.variant.names().values(), *([self.hardware] if self.hardware else []), scenario.display_name)
        return self.log_root / ".".join(names)

    def job(self, item: Ready, scenario: Any, log_dir: Path) -> ScenarioJob:
        backend = item.variant.backend
        return ScenarioJob(
            backend.name,
            item.artifact,
            item.variant.device,
            self.suite.threads,
            scenario,
            item.model.path,
            self.texts,
            self.suite.max_length,
            log_dir,
            backend.options,
        )

    def isolation(self, item: Ready, scenario: Any) -> tuple[float, tuple[str, ...]]:
        """The cell process's time limit and what it preloads."""
        preload = (*self.backends.get(item.variant.backend.name).preload, *PRELOAD)
        return self.suite.isolation.timeout_s + worst_case_s(scenario), preload  # load and pilot, then its runs

    def row(
        self, item: Ready, scenario: Any, outcome: ScenarioOutcome, scores: Mapping[str, np.ndarray]
    ) -> ScenarioRow:
        if outcome.status != "ok":
            log.warning(
                "scenario %s on %s: %s: %s", scenario.display_name, item.variant.name, outcome.status, outcome.reason
            )
        base = {**item.variant.names(), **_cell_facts(item), "log_dir": str(self.log_dir(item, scenario))}
        timed = _timed_predictions(scores, getattr(scenario, "max_batch", 1))
        return scenario_row({**base, "hardware": self.hardware}, scenario, outcome, self.labels, timed, self.run_info)

    def _execute(self, item: Ready, scenario: Any) -> ScenarioOutcome:
        job = self.job(item, scenario, self.log_dir(item, scenario))
        if self.suite.isolation.mode == "none":
            return execute_scenario(job)
        timeout, preload = self.isolation(item, scenario)
        return run_isolated(job, timeout, preload, work=execute_scenario, failed=ScenarioOutcome)


def _cell_facts(item: Ready) -> dict[str, Any]:
    """What produced the variant, as its cell rows record it."""
    facts = {k: item.base.get(k) for k in ("params", "size_mb", "versions", "adapter_options")}
    return {k: v for k, v in facts.items() if v is not None}


def _timed_predictions(scores: Mapping[str, np.ndarray], batch_size: int) -> tuple[np.ndarray, str] | None:
    """The timed path's predictions at the shape nearest the scenario's batching: its batch size at
    dynamic length, else batch 1, else whatever shape was scored."""
    for label in (Shape(batch_size, "dynamic").label, Shape(1, "dynamic").label, *scores):
        if label in scores:
            return np.asarray(scores[label]).argmax(axis=-1), label
    return None
