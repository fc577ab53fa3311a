"""A suite's serving scenarios on a fleet: each machine serves every variant it can run under every
scenario, one cell per node at a time, after its timed rounds. Each cell's LoadGen logs come back
as text and stay beside the results as a local run's do; its row carries the machine's name and
record, and a resumed run skips each machine's finished scenario cells."""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from harness.adapters import Artifact
from harness.fleet.artifacts import ArtifactRef
from harness.fleet.nodes import FleetError
from harness.fleet.scenario_codec import decode_scenario
from harness.results.rows import ResultsWriter
from harness.run.exports import Ready
from harness.serve.cells import ScenarioCells
from harness.serve.execute import ScenarioOutcome

log = logging.getLogger("harness")


class FleetScenarios:
    def __init__(self, runner: Any, ready: list[Ready], texts: tuple[str, ...], labels: np.ndarray) -> None:
        self.runner = runner
        self.total = len(texts)
        self.writer = ResultsWriter(runner.results_path)
        self.cells: dict[str, ScenarioCells] = {}
        self.queues: dict[str, deque] = {}
        for lane in runner.lanes.values():
            cells = ScenarioCells(
                runner.suite, runner.backends, runner.results_path, lane.run_info, texts, labels, False, lane.name
            )
            runnable = [item for item in ready if not runner.lane_reason(lane, item.variant.names())]
            self.cells[lane.name], self.queues[lane.name] = cells, deque(cells.todo(runnable))

    def run(self) -> None:
        fleet = self.runner.fleet
        total = sum(len(queue) for queue in self.queues.values())
        self.bar = tqdm(total=total, desc="scenarios", unit="cell", disable=not self.runner.progress)
        with self.bar:
            while any(self.queues.values()) or fleet.in_flight:
                self._step(fleet)

    def _step(self, fleet: Any) -> None:
        """Start a cell on every free node that has one queued, then take the next one to end."""
        for lane, queue in self.queues.items():
            for node in fleet.free(lane)[: len(queue)]:
                self._submit(lane, node, *queue.popleft())
        if fleet.in_flight:
            self._finish(fleet.wait())
            return
        for lane, queue in self.queues.items():  # queued cells whose machine has no live node left
            while queue and not fleet.nodes_of(lane):
                item, scenario = queue.popleft()
                self._write(lane, item, scenario, ScenarioOutcome("error", f"every node of '{lane}' was lost"))

    def _submit(self, lane: str, node: Any, item: Ready, scenario: Any) -> None:
        from harness.fleet.worker import run_scenario_cell

        runner, cells = self.runner, self.cells[lane]
        try:
            refs, blobs = zip(runner.ship(item.artifact), self._tokenizer(item), strict=True)
        except (FleetError, OSError) as error:  # nothing to ship: this cell is an error row, the others go on
            self._write(lane, item, scenario, ScenarioOutcome("error", f"cannot ship {item.variant.name}: {error}"))
            return
        job = cells.job(item, scenario, Path("."))  # the node serves into a folder of its own
        timeout, preload = cells.isolation(item, scenario)
        self.bar.set_postfix_str(f"{lane}: {item.variant.name} {scenario.display_name}")
        runner.fleet.submit(node, (lane, item, scenario), run_scenario_cell, job, refs, blobs, timeout, preload)

    def _tokenizer(self, item: Ready) -> tuple[ArtifactRef, list[Any]]:
        """The model's tokenizer alone, as a cache entry of its own: a node tokenises without the weights."""
        cache = self.runner.cache
        key = cache.key("tokenizer", item.model.content_key)
        entry = cache.get_or_build("tokenizers", key, item.model.tokenizer.save_pretrained)
        return self.runner.ship(Artifact(entry, "tokenizer"))

    def _finish(self, finished: Any) -> None:
        lane, item, scenario = finished.token
        if finished.lost and self.runner.fleet.nodes_of(lane):
            log.warning("%s; scenario %s of %s goes to another node", finished.failure, scenario.display_name, lane)
            self.queues[lane].appendleft((item, scenario))
            return
        if finished.answer is None:
            outcome = ScenarioOutcome("error", finished.failure)
        else:
            try:
                outcome, logs, _ = decode_scenario(finished.answer, self.total)
                self._keep_logs(self.cells[lane].log_dir(item, scenario), logs)
            except Exception as error:  # an answer that cannot be read or kept is this cell's error row
                outcome = ScenarioOutcome("error", f"unreadable answer from {finished.node.short}: {error}")
        notes = {**outcome.notes, "node": finished.node.short}
        self._write(lane, item, scenario, dataclasses.replace(outcome, notes=notes))

    def _keep_logs(self, log_dir: Path, logs: dict[str, str]) -> None:
        """The cell's logs where a local run leaves them (paths checked by the codec)."""
        for name, text in logs.items():
            path = log_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")

    def _write(self, lane: str, item: Ready, scenario: Any, outcome: ScenarioOutcome) -> None:
        cells, scores = self.cells[lane], self.runner.lanes[lane].scores.get(item.variant.name, {})
        try:
            row = cells.row(item, scenario, outcome, scores)
        except Exception as error:  # a bug in one row must not lose the run's other rows
            log.exception("building the scenario row of %s on %s failed", item.variant.name, lane)
            failed = ScenarioOutcome("error", f"building the row failed: {type(error).__name__}: {error}")
            row = cells.row(item, scenario, failed, {})
        self.writer.append(row)
        self.bar.update(1)
