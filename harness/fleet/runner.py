"""A suite on a Ray cluster: models and exports are built once, here; every hardware selector is a
lane that runs the same interleaved rounds on its own nodes, one cell per node at a time, and its
rows stream into the run's one results file with the hardware and the environment of the machine
that measured them. Speedups stay within a machine (each lane has its own baseline cells).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from harness.adapters import Artifact
from harness.environment import environment_fingerprint
from harness.errors import HarnessError
from harness.fleet.artifacts import ArtifactRef, pack, reference
from harness.fleet.availability import NOWHERE, FleetAvailability, cell_kinds
from harness.fleet.codec import decode_outcome, decode_probe
from harness.fleet.nodes import FleetError, Node
from harness.measure.execute import VariantOutcome
from harness.results.build import failed_row
from harness.results.rows import CellRow, ResultsWriter, cell_key, read_rows
from harness.results.scenario_rows import scenario_key
from harness.run.exports import Ready
from harness.run.plan import Plan, plan_cells
from harness.run.runner import Runner, set_aside
from harness.run.schedule import CellProgress, schedule
from harness.suite_fleet import ClusterConfig

log = logging.getLogger("harness")


@dataclass
class Lane:
    """One hardware selector's share of the run: its nodes, its machine's record, and its cells."""

    name: str
    nodes: list[Node]
    machine: dict[str, Any]  # the run record's fields that belong to this machine
    peaks: dict[str, Any]
    run_info: dict[str, Any] = field(default_factory=dict)  # the run's record with ``machine`` in it
    done: set[tuple[str, ...]] = field(default_factory=set)  # finished cells found in the results file
    progress: dict[tuple[str, ...], CellProgress] = field(default_factory=dict)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    score_errors: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rounds_done: dict[str, int] = field(default_factory=dict)
    queue: deque = field(default_factory=deque)


class FleetRunner(Runner):
    def __init__(self, *args: Any, cluster: ClusterConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cluster = cluster
        self.timeline: list[tuple[str, float, float]] = []  # (node, started, finished) of every round
        self.requeued: list[tuple[str, str, int]] = []  # (lost node, variant, round) handed to another node

    def run(self) -> list[CellRow]:
        if not self.suite.hardware:
            raise HarnessError(
                "--cluster needs the suite's `hardware:` selectors, which say which nodes are which machine"
            )
        from harness.fleet.dispatch import Fleet

        self.fleet = Fleet(self.cluster, self.suite.hardware)
        try:
            self.lanes = self._probe_lanes()
            return super().run()
        finally:
            self.fleet.close()

    def _probe_lanes(self) -> dict[str, Lane]:
        """Each lane's machine: environment, peaks and which cells it can run, from its first node
        (a lane's nodes are one kind of machine)."""
        lanes, verdicts = {}, {}
        kinds = cell_kinds(self.suite, self.exporters, self.backends)
        versions = self._adapter_versions()
        names = [entry.name for entry in self.suite.backends]
        questions = [kind.to_json() for kind in kinds]
        for selector in self.suite.hardware:
            nodes = self.fleet.nodes_of(selector.name)
            if not nodes:
                continue
            log.info("hardware %s: %d node(s), probing %s", selector.name, len(nodes), nodes[0].short)
            size = self.suite.timing.peak_gemm_size
            answer = self.fleet.probe(nodes[0], self.suite.threads, versions, names, size, questions)
            try:
                probed = decode_probe(answer, len(kinds))
            except FleetError as error:
                raise FleetError(f"hardware {selector.name}, node {nodes[0].short}: {error}") from None
            environment, peaks = probed["environment"], probed["peaks"]
            machine = {"env": environment, "env_fingerprint": environment_fingerprint(environment)}
            machine.update(hardware=selector.name, nodes=[node.short for node in nodes], machine_peak=peaks)
            lanes[selector.name] = Lane(selector.name, nodes, machine, peaks)
            verdicts[selector.name] = probed["availability"]
        if not lanes:
            raise FleetError("no hardware selector of the suite matches a live node: nothing would run")
        self.availability = FleetAvailability(kinds, verdicts)
        self._check_baselines(lanes)
        return lanes

    def _check_baselines(self, lanes: dict[str, Lane]) -> None:
        """Speedups are within a machine: each machine must run the baseline cell on some device."""
        baseline = self.suite.baseline
        artifact_format = self._formats[baseline.exporter]
        cell = {"model": self.suite.baseline_model, "exporter": baseline.exporter, "backend": baseline.backend}
        for lane in lanes:
            reasons = {
                device: ("excluded by the suite" if self.suite.excluded({**cell, "device": device}) else None)
                or self.availability.reason(lane, baseline.backend, artifact_format, device)
                for device in self.suite.devices
            }
            if all(reasons.values()):
                why = "; ".join(f"{device}: {reason}" for device, reason in reasons.items())
                raise FleetError(f"hardware {lane} cannot run the baseline cell, so none of its speedups exist ({why})")

    @cached_property
    def _formats(self) -> dict[str, str]:
        """Each exporter entry's artifact format, by display name."""
        return {e.display_name: self.exporters.get(e.name).format_for(e.options) for e in self.suite.exporters}

    def _check_required_devices(self) -> None:
        for device in self.suite.required_devices:
            for entry in self.suite.backends:
                if device not in self.backends.get(entry.name).devices:
                    continue
                reasons = self.availability.device_reasons(entry.display_name, device)
                if reasons:
                    why = "; ".join(f"{lane}: {reason}" for lane, reason in reasons.items())
                    raise HarnessError(
                        f"device '{device}' is required by the suite but no machine can use it with "
                        f"{entry.display_name} ({why})"
                    )

    def _plan(self, done: Any = ()) -> Plan:
        """Every cell some machine can run is planned (and exported); the others are ``n/a`` rows."""
        return plan_cells(self.suite, self.exporters, self.backends, done, self.availability.plan_reason)

    def lane_reason(self, lane: Lane, names: dict[str, Any]) -> str | None:
        artifact_format = self._formats.get(names["exporter"])
        return self.availability.reason(lane.name, names["backend"], artifact_format, names["device"])

    # --- what the local runner does once, a fleet does per lane ---------------------------------

    def _measure_peaks(self) -> dict[str, Any]:
        return {}  # each machine's own peaks were measured on it (``_probe_lanes``)

    def _remeasure_peaks(self) -> None:
        return None

    def _resume(self) -> set[tuple[str, ...]]:
        """Finished cells of each lane on the same machine and suite are kept; rows of anything else
        are moved aside. Every cell is planned; each lane skips its own finished ones."""
        path = self.results_path  # no round journal: rounds in flight when a fleet run stopped run again
        if path.is_file() and path.stat().st_size:
            rows = read_rows([path])
            mine = [row for row in rows if self._lane_row(row)]
            if self.fresh or len(mine) < len(rows) or not mine:
                log.info("previous results moved to %s", set_aside(path))
            else:
                for row in mine:
                    if row["status"] in ("ok", "n/a"):
                        self.lanes[row["hardware"]].done.add(cell_key({**row, "hardware": None}))
                first = mine[0]["run"]
                self.run_info.update({k: first[k] for k in ("run_id", "started") if k in first})
                log.info("resuming: %d finished cells kept from %s", len(mine), path)
        self.writer = ResultsWriter(path)
        return set()

    def rows_of_this_run(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        latest = {cell_key(row): row for row in rows if self._lane_row(row)}
        return list(latest.values())

    def scenario_rows_of_this_run(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        latest = {scenario_key(row): row for row in rows if self._lane_row(row)}
        return list(latest.values())

    def _lane_row(self, row: dict[str, Any]) -> bool:
        lane = self.lanes.get(row.get("hardware") or "")
        run = row.get("run", {})
        return (
            lane is not None
            and run.get("suite_hash") == self.run_info["suite_hash"]
            and run.get("env_fingerprint") == lane.machine["env_fingerprint"]
        )

    def _progress_bar(self, plan: Any) -> Any:
        bar = super()._progress_bar(plan)
        bar.total = plan.total_cells * len(self.lanes)
        bar.update(sum(len(lane.done) for lane in self.lanes.values()))
        return bar

    def _emit(self, row: CellRow, progress: float = 1.0) -> None:
        if row.hardware is not None:
            super()._emit(row, progress)
            return
        for lane in self.lanes.values():  # a cell that runs nowhere is n/a on every machine, for its reason
            if cell_key(row) not in lane.done:
                names = {"exporter": row.exporter, "backend": row.backend, "device": row.device}
                reason = (self.lane_reason(lane, names) if row.reason == NOWHERE else None) or row.reason
                super()._emit(dataclasses.replace(row, hardware=lane.name, run=lane.run_info, reason=reason), progress)

    # --- the rounds ---------------------------------------------------------------------------

    def _run_rounds(self, ready: list[Ready]) -> None:
        rounds = self.suite.timing.rounds
        shared = dict(self.run_info)
        for lane in self.lanes.values():
            lane.run_info = {**shared, **lane.machine}
            items = [item for item in (self._for_lane(lane, r) for r in ready) if item is not None]
            lane.progress = {item.variant.cell(s): CellProgress() for item in items for s in item.variant.shapes}
            lane.queue = deque(schedule(items, rounds, self.suite.timing.seed))
        while any(lane.queue for lane in self.lanes.values()) or self.fleet.in_flight:
            self._dispatch_free_nodes()
            if self.fleet.in_flight:
                self._finish(self.fleet.wait())
            elif not self._fail_stranded():
                raise RuntimeError("fleet rounds are queued but none can start: a scheduling bug")

    def _for_lane(self, lane: Lane, item: Ready) -> Ready | None:
        """The variant as this lane runs it: its unfinished shapes, its machine's peaks, its hardware;
        None when it has nothing to run there (a machine that cannot run it gets ``n/a`` rows)."""
        shapes = tuple(s for s in item.variant.shapes if item.variant.cell(s) not in lane.done)
        reason = self.lane_reason(lane, item.variant.names())
        if reason and shapes:
            base = {**item.base, "hardware": lane.name}
            self.unmeasured += [
                failed_row({**item.variant.base(s), **base}, "n/a", reason, lane.run_info) for s in shapes
            ]
        if not shapes or reason:
            return None
        variant = dataclasses.replace(item.variant, shapes=shapes)
        # the probe measures the CPU's peaks: a GPU cell has no limit to be a fraction of (as locally)
        context = dataclasses.replace(item.context, peaks=lane.peaks if item.variant.device == "cpu" else {})
        return dataclasses.replace(item, variant=variant, context=context, base={**item.base, "hardware": lane.name})

    def _dispatch_free_nodes(self) -> None:
        for lane in self.lanes.values():
            for node in self.fleet.free(lane.name):
                task = self._next_task(lane)
                if task is None:
                    break
                self._submit(lane, node, *task)

    def _next_task(self, lane: Lane) -> tuple[int, Ready] | None:
        """The first queued round whose variant has finished its previous round (the first round
        fixes how many inputs the later ones time); rounds of a variant that failed everywhere end."""
        for position, (round_index, item) in enumerate(lane.queue):
            if lane.rounds_done.get(item.variant.name, 0) != round_index:
                continue
            del lane.queue[position]
            cells = [lane.progress[item.variant.cell(s)] for s in item.variant.shapes]
            if all(cell.failure for cell in cells):
                self._close_round(lane, item, round_index)
                return self._next_task(lane)
            return round_index, item
        return None

    def _submit(self, lane: Lane, node: Node, round_index: int, item: Ready) -> None:
        from harness.fleet.worker import run_variant_round

        self._enter(lane)
        job = self._job(item, round_index, lane.progress)
        ref, holder = self.ship(item.artifact)
        preload = tuple(self.backends.get(item.variant.backend.name).preload)
        args = (job, ref, holder, self.suite.isolation.timeout_s, preload)
        self.bar.set_postfix_str(f"{lane.name} round {round_index + 1} {item.variant.name}")
        self.fleet.submit(node, (lane.name, round_index, item), run_variant_round, *args)

    def ship(self, artifact: Artifact) -> tuple[ArtifactRef, list[Any]]:
        """The cache entry holding ``artifact``, and its packed blob's object reference left unfetched
        inside a list (a node that has the entry never transfers it); each entry is packed once a run."""
        ref = reference(artifact, self.cache)
        entry = self.cache.path(ref.kind, ref.key)
        return ref, [self.fleet.put_blob(f"{ref.kind}/{ref.key}", lambda: pack(entry))]

    def _finish(self, finished: Any) -> None:
        lane_name, round_index, item = finished.token
        lane = self.lanes[lane_name]
        if finished.lost and self.fleet.nodes_of(lane.name):
            log.warning("%s; %s round %d goes to another node", finished.failure, item.variant.name, round_index + 1)
            lane.queue.appendleft((round_index, item))
            self.requeued.append((finished.node.short, item.variant.name, round_index))
            return
        outcome, load_avg = self._read(finished)
        outcome = dataclasses.replace(outcome, notes={**outcome.notes, "node": finished.node.short})
        self._enter(lane)
        self._record(item, round_index, outcome, lane.progress, load_avg)
        self._close_round(lane, item, round_index)

    def _read(self, finished: Any) -> tuple[VariantOutcome, float]:
        """The round's outcome and its node's load average; the node's busy span goes on the timeline."""
        if finished.answer is None:
            return VariantOutcome("error", finished.failure), float("nan")
        try:
            outcome, environment = decode_outcome(finished.answer)
            span = (float(environment["started"]), float(environment["finished"]))
            load_avg = float(environment.get("load_avg_1m", float("nan")))
        except (FleetError, KeyError, TypeError, ValueError) as error:
            return VariantOutcome("error", f"unreadable answer from {finished.node.short}: {error}"), float("nan")
        self.timeline.append((finished.node.short, *span))
        return outcome, load_avg

    def _close_round(self, lane: Lane, item: Ready, round_index: int) -> None:
        lane.rounds_done[item.variant.name] = round_index + 1
        rounds = self.suite.timing.rounds
        for shape in item.variant.shapes:
            if round_index == rounds - 1:
                self._enter(lane)
                self._emit(self._safe_row(item, shape, lane.progress[item.variant.cell(shape)]), 1 / rounds)
            else:
                self.bar.update(1 / rounds)

    def _fail_stranded(self) -> bool:
        """Queued rounds whose lane has no live node left: error rows that say so."""
        stranded = [lane for lane in self.lanes.values() if lane.queue and not self.fleet.nodes_of(lane.name)]
        for lane in stranded:
            while lane.queue:
                round_index, item = lane.queue.popleft()
                outcome = VariantOutcome("error", f"every node of hardware '{lane.name}' was lost")
                self._enter(lane)
                self._record(item, round_index, outcome, lane.progress, float("nan"))
                self._close_round(lane, item, round_index)
        return bool(stranded)

    def _run_scenarios(self, ready: list[Ready], texts: Any) -> None:
        from harness.fleet.scenarios import FleetScenarios

        self.bar.set_postfix_str("serving scenarios")
        FleetScenarios(self, ready, tuple(texts), self.judging.labels).run()

    def _enter(self, lane: Lane) -> None:
        """Point the shared row-building state at this lane's (the loop is single-threaded)."""
        self.scores, self.score_errors, self.notes = lane.scores, lane.score_errors, lane.notes
        self.run_info = lane.run_info


def cluster_config(suite: Any, address: str) -> ClusterConfig:
    """``--cluster`` wins over the address in the suite's ``cluster:`` block, not over its slot name."""
    slot = {"slot_resource": suite.cluster.slot_resource} if suite.cluster else {}
    try:
        return ClusterConfig(address=address, **slot)
    except ValueError as error:
        raise HarnessError(f"--cluster {address!r}: not an address (host:port, ray://host:port or auto)") from error
