"""Runs a suite: plan every cell, build the models, export the variants, then interleaved rounds.

Planning (``plan``), scheduling (``schedule``), executing isolated jobs (``harness.measure``) and
building rows (``harness.results.build``) are separate pieces; this module only wires them up.
A cell that cannot run becomes an ``n/a`` row with its reason, one that fails an ``error`` or
``timeout`` row; nothing is silently left out.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from harness.adapters import NotApplicable
from harness.cache import ArtifactCache
from harness.data.splits import load_split
from harness.environment import collect_environment, environment_fingerprint
from harness.errors import HarnessError
from harness.measure.execute import CellTimes, ScoreTask, TimingTask, VariantJob, VariantOutcome, execute_variant
from harness.measure.isolation import run_isolated
from harness.measure.timing import Clock, PassPolicy
from harness.models.pipeline import ModelPipeline
from harness.registry import Registry
from harness.results.build import Scored, failed_row, ok_row, round_matrix_ms
from harness.results.rows import CellRow, ResultsWriter, cell_key, read_rows, rows_of_run
from harness.results.scenario_rows import scenario_key
from harness.run.exports import Judging, Ready, export_variant
from harness.run.journal import RoundJournal
from harness.run.models import PreparedModel, accuracy_shape, prepare_model
from harness.run.plan import Plan, Shape, Variant, plan_cells
from harness.run.schedule import CellProgress, round_order, schedule
from harness.run.workloads import TimingInputs, Workloads
from harness.suite import Suite

log = logging.getLogger("harness")


class Runner:
    def __init__(
        self,
        suite: Suite,
        exporters: Registry,
        backends: Registry,
        results_path: Path,
        suite_file: str = "",
        clock: Clock = time.perf_counter,
        progress: bool = True,
        fresh: bool = False,
    ) -> None:
        self.suite = suite
        self.exporters = exporters
        self.backends = backends
        self.results_path = Path(results_path)
        self.fresh = fresh
        self.cache = ArtifactCache(Path(suite.output.cache_dir))
        self.clock = clock
        self.progress = progress
        self.run_info: dict[str, Any] = {
            "run_id": uuid.uuid4().hex[:12],
            "suite": suite.name,
            "suite_file": suite_file,
            "suite_hash": suite.content_hash(),
            "baseline": f"{suite.baseline_model}/{suite.baseline.exporter}/{suite.baseline.backend}",
            "accuracy_gate": suite.accuracy_gate,
            "rounds": suite.timing.rounds,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.rows: list[CellRow] = []

    def run(self) -> list[CellRow]:
        suite = self.suite
        self._check_required_devices()
        env = collect_environment(suite.threads, self._adapter_versions())
        self.run_info.update(env=env, env_fingerprint=environment_fingerprint(env))
        done = self._resume()
        plan = self._plan(done)
        self.run_info["machine_peak"] = self._measure_peaks()  # quiet machine: before training and cells
        eval_split = load_split(suite.task, suite.task.split, suite.task.max_samples, self.cache.root / "datasets")
        log.info("eval set: %d sentences from %s", len(eval_split.texts), eval_split.origin)
        self.run_info["eval_origin"] = eval_split.origin
        self.workloads = Workloads(eval_split, suite.max_length, suite.timing)
        self.pipeline = ModelPipeline(suite, self.cache)
        built = self.pipeline.build_all()
        models = {
            c.name: prepare_model(suite, c, built[c.name], eval_split, self.backends, self.workloads, self.cache)
            for c in suite.models
        }
        self.judging = Judging(
            labels=np.asarray(eval_split.labels),
            teacher_logits=models[suite.baseline_model].reference_logits,
            accuracy_gate=suite.accuracy_gate,
            peaks=self.run_info["machine_peak"],  # the very dict the last round's remeasure updates
        )
        with self._progress_bar(plan) as self.bar:
            self.unmeasured = [
                failed_row({**c.base, "params": models[c.base["model"]].params}, "n/a", c.reason, self.run_info)
                for c in plan.unavailable
            ]
            ready = [r for r in (self._export(v, models[v.model]) for v in plan.variants) if r is not None]
            self._run_rounds(ready)
            if suite.scenarios:
                self._run_scenarios(self._with_finished(ready, plan, models), eval_split.texts)
            # written last: every row of the run then carries the same run record (peaks included)
            for row in self.unmeasured:
                self._emit(row)
        return self.rows

    def rows_of_this_run(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The latest row of each cell this run (or the run it resumed) wrote in ``rows``."""
        return rows_of_run(rows, self.run_info["suite_hash"], self.run_info["env_fingerprint"])

    def scenario_rows_of_this_run(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The latest row of each scenario cell this run (or the run it resumed) wrote in ``rows``."""
        info = self.run_info
        return rows_of_run(rows, info["suite_hash"], info["env_fingerprint"], key=scenario_key)

    def _plan(self, done: Iterable[tuple[str, ...]] = ()) -> Plan:
        return plan_cells(self.suite, self.exporters, self.backends, done)

    def _progress_bar(self, plan: Plan) -> tqdm:
        return tqdm(
            total=plan.total_cells,
            initial=plan.already_done,
            desc="cells",
            unit="cell",
            disable=not self.progress,
            bar_format="{l_bar}{bar}| {n:.0f}/{total} [{elapsed}<{remaining}{postfix}]",
        )

    def _adapter_versions(self) -> dict[str, str]:
        adapters = [self.exporters.get(e.name) for e in self.suite.exporters]
        adapters += [self.backends.get(b.name) for b in self.suite.backends]
        return dict(sorted({k: v for adapter in adapters for k, v in adapter.versions().items()}.items()))

    def _check_required_devices(self) -> None:
        for device in self.suite.required_devices:
            for entry in self.suite.backends:
                if device not in self.backends.get(entry.name).devices:
                    continue  # a CPU-only runtime (OpenVINO) gives n/a rows there, by design
                reason = self.backends.get(entry.name).unavailable_reason(device)
                if reason:
                    name = entry.display_name
                    raise HarnessError(f"device '{device}' is required by the suite but {name} cannot use it: {reason}")

    def _resume(self) -> set[tuple[str, ...]]:
        """Keep finished cells of an interrupted run of the same suite on the same environment.

        ``ok`` and ``n/a`` rows are kept and their cells skipped; ``error`` and ``timeout`` cells
        run again. Rows of another suite version or environment are moved aside, not mixed in.
        """
        path, done = self.results_path, set()
        self.journal = RoundJournal(
            path.with_suffix(".journal"), self.run_info["suite_hash"], self.run_info["env_fingerprint"]
        )
        if self.fresh:
            self.journal.remove()
        if path.is_file() and path.stat().st_size:
            rows = read_rows([path])
            mine = rows_of_run(rows, self.run_info["suite_hash"], self.run_info["env_fingerprint"])
            if self.fresh or len(mine) < len(rows) or not mine:
                aside = set_aside(path)
                log.info("previous results moved to %s", aside)
            else:
                done = {cell_key(r) for r in mine if r["status"] in ("ok", "n/a")}
                # one run, one identity: speedups and compare pair cells by run id
                self.run_info.update({k: mine[0]["run"][k] for k in ("run_id", "started") if k in mine[0]["run"]})
                log.info("resuming: %d finished cells kept from %s", len(done), path)
        self.writer = ResultsWriter(path)
        return done

    def _measure_peaks(self) -> dict[str, Any]:
        from harness.measure.peak import measure_peaks

        kernels = {}  # one GEMM per runtime, whichever of its backends measures it
        for entry in self.suite.backends:
            backend = self.backends.get(entry.name)
            if backend.runtime and backend.runtime not in kernels and backend.unavailable_reason() is None:
                kernels[backend.runtime] = backend.gemm_peak
        log.info("measuring the GEMM peak of %s", ", ".join(sorted(kernels)) or "no runtime")
        size = self.suite.timing.peak_gemm_size
        return measure_peaks(self.suite.threads, kernels, repeats=10, sizes=(size // 2, size))

    def _remeasure_peaks(self) -> None:
        """Measure again before the last round (no row is written before it) and keep each precision's
        best: a shared VM's speed of the moment varies, and a peak caught in a slow moment is no limit."""
        peaks = self.run_info["machine_peak"]  # every CellContext holds this very dict
        for precision, entry in self._measure_peaks().items():
            if precision not in peaks or entry["gflops"] > peaks[precision]["gflops"]:
                peaks[precision] = entry

    def _exported(self, variant: Variant, model: PreparedModel) -> Ready:
        return export_variant(
            variant,
            model,
            self.exporters.get(variant.exporter.name),
            self.backends.get(variant.backend.name),
            self.cache,
            self.pipeline.calibration_data,
            self.judging,
            on_build=lambda label: self.bar.set_postfix_str(f"exporting {label}"),
        )

    def _export(self, variant: Variant, model: PreparedModel) -> Ready | None:
        try:
            return self._exported(variant, model)
        except NotApplicable as verdict:
            self._unmeasured(variant, model, "n/a", str(verdict))
        except Exception as error:  # one failed export must not stop the other variants
            log.exception("export %s/%s failed", variant.model, variant.exporter.display_name)
            self._unmeasured(variant, model, "error", f"export failed: {type(error).__name__}: {error}")
        return None

    def _unmeasured(self, variant: Variant, model: PreparedModel, status: str, reason: str) -> None:
        base = {"model": variant.model, "exporter": variant.exporter.display_name, "params": model.params}
        for shape in variant.shapes:
            self.unmeasured.append(failed_row({**variant.base(shape), **base}, status, reason, self.run_info))

    def _run_rounds(self, ready: list[Ready]) -> None:
        rounds = self.suite.timing.rounds
        progress = {r.variant.cell(s): CellProgress() for r in ready for s in r.variant.shapes}
        self.scores: dict[str, dict[str, Any]] = {}
        self.score_errors: dict[str, dict[str, str]] = {}
        self.notes: dict[str, list[dict[str, Any]]] = {}
        replay = self.journal.load()
        if replay:
            log.info("resuming: %d variant rounds replayed from %s", len(replay), self.journal.path)
        last_started = False
        for round_index, item in schedule(ready, rounds, self.suite.timing.seed):
            if round_index == rounds - 1 > 0 and not last_started:
                last_started = True
                self._remeasure_peaks()
            self.bar.set_postfix_str(f"round {round_index + 1}/{rounds} {item.variant.name}")
            cells = [progress[item.variant.cell(s)] for s in item.variant.shapes]
            if not all(c.failure for c in cells):  # a variant that already failed is not retried
                outcome, load_avg = replay.get((item.variant.name, round_index)) or self._measure(
                    item, round_index, progress
                )
                self._record(item, round_index, outcome, progress, load_avg)
            for shape in item.variant.shapes:  # each cell counts once: a share per round
                if round_index == rounds - 1:
                    self._emit(self._safe_row(item, shape, progress[item.variant.cell(shape)]), 1 / rounds)
                else:
                    self.bar.update(1 / rounds)
        self.journal.remove()  # every round is in the rows now

    def _with_finished(self, ready: list[Ready], plan: Plan, models: dict[str, PreparedModel]) -> list[Ready]:
        """``ready`` and the variants whose timed cells a resumed run found all finished (their exports
        are cached); a variant planned in this run but not ready failed its export, which its rows say."""
        planned = {variant.name for variant in plan.variants}
        finished = []
        for variant in self._plan().variants:
            if variant.name not in planned:
                try:
                    finished.append(self._exported(variant, models[variant.model]))
                except Exception as error:  # it exported in the earlier run: say why it does not now
                    log.warning("serving scenarios skip %s: its export failed: %s", variant.name, error)
        return ready + finished

    def _run_scenarios(self, ready: list[Ready], texts: Any) -> None:
        from harness.serve.cells import ScenarioCells

        self.bar.set_postfix_str("serving scenarios")
        cells = ScenarioCells(
            self.suite,
            self.backends,
            self.results_path,
            self.run_info,
            tuple(texts),
            self.judging.labels,
            self.progress,
        )
        cells.run(ready, self.scores)  # each row is in the results file as it finishes

    def _measure(self, item: Ready, round_index: int, progress: dict) -> tuple[VariantOutcome, float]:
        load_avg = os.getloadavg()[0]
        started = time.perf_counter()
        outcome = self._execute(self._job(item, round_index, progress), item.variant.backend.name)
        phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in outcome.phases.items())
        log.debug("round %d %s: %.1f s (%s)", round_index + 1, item.variant.name, time.perf_counter() - started, phases)
        self.journal.append(item.variant.name, round_index, outcome, load_avg)
        return outcome, load_avg

    def _job(self, item: Ready, round_index: int, progress: dict[tuple[str, ...], CellProgress]) -> VariantJob:
        timing = self.suite.timing
        scoring = self._scoring(item) if round_index == 0 else []
        scored = {task.label for task in scoring}
        tasks = []
        for shape in round_order(item.variant.shapes, round_index, timing.seed + 1):
            if progress[item.variant.cell(shape)].failure:  # already an error row: not timed again
                continue
            inputs = self._timing_inputs(item, shape)
            count = progress[item.variant.cell(shape)].count
            batches = [b.arrays for b in inputs.batches[: count or len(inputs.batches)]]
            score_label = shape.label if shape.label in scored else None
            tasks.append(TimingTask(item.variant.cell(shape), batches, inputs.min_count, count, score_label))
        policy = PassPolicy(
            timing.seconds_per_cell, timing.warmup_passes, timing.min_passes, timing.max_passes, timing.seed
        )
        backend = item.variant.backend
        device, threads = item.variant.device, self.suite.threads
        return VariantJob(backend.name, item.artifact, device, threads, policy, tasks, scoring, backend.options)

    def _timing_inputs(self, item: Ready, shape: Shape) -> TimingInputs:
        return self.workloads.for_timing(item.model.tokenizer, shape)

    def _scoring(self, item: Ready) -> list[ScoreTask]:
        """The shapes this variant's accuracy is measured at; each one's first batches are its timed inputs."""
        shapes = [accuracy_shape(self.suite)] if item.batch_invariant else list(item.variant.shapes)
        tasks = []
        for shape in shapes:
            batches = self.workloads.for_scoring(item.model.tokenizer, shape)
            tasks.append(ScoreTask(shape.label, [b.arrays for b in batches], [b.indices for b in batches]))
        return tasks

    def _execute(self, job: VariantJob, backend: str) -> VariantOutcome:
        if self.suite.isolation.mode == "none":
            return execute_variant(job, self.clock)
        return run_isolated(job, self.suite.isolation.timeout_s, self.backends.get(backend).preload)

    def _record(self, item: Ready, round_index: int, outcome: VariantOutcome, progress: dict, load_avg: float) -> None:
        if round_index == 0:
            self.scores[item.variant.name] = dict(outcome.scores)
            self.score_errors[item.variant.name] = dict(outcome.score_errors)
        if outcome.notes:
            self.notes.setdefault(item.variant.name, []).append({"round": round_index + 1, **outcome.notes})
        for shape in item.variant.shapes:
            cell = progress[item.variant.cell(shape)]
            times = outcome.cells.get(item.variant.cell(shape))
            if outcome.status != "ok":
                cell.fail(outcome.status, outcome.reason or "failed", round_index)
            elif times is None or times.error:
                cell.fail("error", times.error if times else "not timed", round_index)
            else:
                cell.add(times.passes, times.count, load_avg, _cell_memory(outcome.memory, times))

    def _safe_row(self, item: Ready, shape: Shape, cell: CellProgress) -> CellRow:
        try:
            return self._row(item, shape, cell)
        except Exception as error:  # a bug in one row's statistics must not lose the run's other rows
            log.exception("building the row of %s %s failed", item.variant.name, shape.label)
            reason = f"building the row failed: {type(error).__name__}: {error}"
            return failed_row({**item.variant.base(shape), **item.base}, "error", reason, self.run_info)

    def _row(self, item: Ready, shape: Shape, cell: CellProgress) -> CellRow:
        base = {**item.variant.base(shape), **item.base}
        if cell.failure is not None:
            return failed_row(base, cell.failure[0], cell.failure[1], self.run_info, **cell.peak_memory())
        scores = self.scores.get(item.variant.name, {})
        label = accuracy_shape(self.suite).label if item.batch_invariant else shape.label
        logits = scores.get(label)
        where = f"{label} (batch-invariant: one scoring serves every shape)" if item.batch_invariant else label
        error = None if logits is not None else self.score_errors.get(item.variant.name, {}).get(label, "not scored")
        scored = Scored(logits, where, error)
        workload = self._timing_inputs(item, shape).workload(cell.count or 0)
        extra = {"iterations": cell.timed_calls, "load_avg_1m": cell.load_avg, **cell.peak_memory()}
        extra["backend_notes"] = self.notes.get(item.variant.name)
        matrix = round_matrix_ms(cell.passes)
        return ok_row(base, matrix, scored, workload, item.context, extra, self.run_info)

    def _emit(self, row: CellRow, progress: float = 1.0) -> None:
        self.writer.append(row)
        self.rows.append(row)
        self.bar.update(progress)


def set_aside(path: Path) -> Path:
    """Move a results file out of the way without overwriting an older one moved aside before."""
    aside = path.with_name(path.stem + ".previous.jsonl")
    number = 1
    while aside.exists():
        number += 1
        aside = path.with_name(f"{path.stem}.previous-{number}.jsonl")
    path.replace(aside)
    return aside


def _cell_memory(process: Mapping[str, float | None], times: CellTimes) -> dict[str, float | None]:
    """The process's fields, with the peak narrowed to the cell's own where the process measured it."""
    memory = dict(process)
    baseline = memory.get("baseline_rss_mb")
    if times.peak_rss_mb is not None and baseline is not None:
        memory.update(peak_rss_mb=times.peak_rss_mb, cell_rss_mb=times.peak_rss_mb - baseline)
    return memory
