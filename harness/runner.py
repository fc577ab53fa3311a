"""Runs every cell of a suite: model x exporter x backend x device x batch size x sequence length.

For each (model, exporter, backend, device) one job scores the variant on the whole eval split,
then one job per shape times it with the same inputs and the same policy. Each job runs in its own
process (see ``harness.isolation``). A cell that cannot run becomes an ``n/a`` row with its reason,
one that fails an ``error`` or ``timeout`` row; nothing is silently left out.
"""

from __future__ import annotations

import gc
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from harness.adapters import Artifact, Backend, Exporter
from harness.cache import ArtifactCache
from harness.cells import CellContext, artifact_size_mb, error_row, ok_row
from harness.data import TextSplit, load_split
from harness.environment import collect_environment, environment_fingerprint, package_versions
from harness.errors import HarnessError
from harness.inputs import encode, make_batches
from harness.isolation import CellJob, CellOutcome, execute_cell, run_isolated
from harness.pipeline import BuiltModel, ModelPipeline
from harness.registry import Registry
from harness.results import CellRow, ResultsWriter, cell_key, read_rows, rows_of_run
from harness.suite import ExporterEntry, ModelConfig, Suite
from harness.timing import Clock, TimingPolicy

log = logging.getLogger("harness")


@dataclass(frozen=True)
class PreparedModel:
    """A built model with everything its cells share."""

    config: ModelConfig
    path: Path
    content_key: str
    tokenizer: Any
    params: int
    reference_logits: np.ndarray
    lineage: dict[str, Any]


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
        self.done: set[tuple[str, ...]] = set()
        self.cache = ArtifactCache(Path(suite.output.cache_dir))
        self.clock = clock
        self.progress = progress
        timing = suite.timing
        self.policy = TimingPolicy(
            timing.warmup, timing.min_iterations, timing.min_seconds, timing.max_seconds, timing.repeats
        )
        self.run_info: dict[str, Any] = {
            "run_id": uuid.uuid4().hex[:12],
            "suite": suite.name,
            "suite_file": suite_file,
            "suite_hash": suite.content_hash(),
            "baseline": f"{suite.baseline_model}/{suite.baseline.exporter}/{suite.baseline.backend}",
            "accuracy_gate": suite.accuracy_gate,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.rows: list[CellRow] = []
        self._encoded: dict[tuple[int, int | str], list[list[int]]] = {}

    def run(self) -> list[CellRow]:
        suite = self.suite
        self._check_required_devices()
        env = collect_environment(suite.threads)
        self.run_info["env"] = env
        self.run_info["env_fingerprint"] = environment_fingerprint(env)
        self._resume()
        eval_split = load_split(suite.task, suite.task.split, suite.task.max_samples, self.cache.root / "datasets")
        log.info("eval set: %d sentences from %s", len(eval_split.texts), eval_split.origin)
        built = ModelPipeline(suite, self.cache, eval_split).build_all()
        models = {c.name: self._prepare_model(c, built[c.name], eval_split) for c in suite.models}
        self.run_info["eval_origin"] = eval_split.origin
        self.run_info["machine_peak"] = self._measure_peak()
        teacher = models[suite.baseline_model]
        context_base = {"labels": np.asarray(eval_split.labels), "teacher_logits": teacher.reference_logits}
        with tqdm(total=self._cell_count(), desc="cells", unit="cell", disable=not self.progress) as bar:
            self.bar = bar
            for model in models.values():
                for entry in suite.exporters:
                    self._run_exporter(model, entry, eval_split, context_base)
        return self.rows

    def _check_required_devices(self) -> None:
        for device in self.suite.required_devices:
            for name in self.suite.backends:
                reason = self.backends.get(name).unavailable_reason(device)
                if reason:
                    raise HarnessError(f"device '{device}' is required by the suite but {name} cannot use it: {reason}")

    def _resume(self) -> None:
        """Keep finished cells of an interrupted run of the same suite on the same environment.

        ``ok`` and ``n/a`` rows are kept and their cells skipped; ``error`` and ``timeout`` cells
        run again. Rows of another suite version or environment are moved aside, not mixed in.
        """
        path = self.results_path
        if path.is_file() and path.stat().st_size:
            rows = read_rows([path])
            mine = rows_of_run(rows, self.run_info["suite_hash"], self.run_info["env_fingerprint"])
            if self.fresh or len(mine) < len(rows) or not mine:
                path.replace(path.with_name(path.stem + ".previous.jsonl"))
                log.info("previous results moved to %s", path.with_name(path.stem + ".previous.jsonl"))
            else:
                self.done = {cell_key(r) for r in mine if r["status"] in ("ok", "n/a")}
                log.info("resuming: %d finished cells kept from %s", len(self.done), path)
        self.writer = ResultsWriter(path)

    def _cell_count(self) -> int:
        per_model = len(self.suite.exporters) * len(self.suite.backends) * len(self.suite.devices)
        return len(self.suite.models) * per_model * self._shape_count()

    def _measure_peak(self) -> dict[str, float | None]:
        from harness.compute import measure_gemm_peak

        return measure_gemm_peak(self.suite.threads)

    def _prepare_model(self, config: ModelConfig, built: BuiltModel, eval_split: TextSplit) -> PreparedModel:
        from transformers import AutoTokenizer

        from harness.compress.lineage import describe_model

        tokenizer = AutoTokenizer.from_pretrained(built.path)
        artifact = Artifact(built.path, "transformers")
        reference = self.backends.get("pytorch").load(artifact, "cpu", self.suite.threads)
        model_config = reference.model.config
        self._check_labels(config, model_config.num_labels, eval_split)
        logits = np.concatenate(
            [reference.logits(reference.run(reference.prepare(b))) for b in self._score_inputs(tokenizer, eval_split)]
        )
        lineage = {
            "parent": built.parent,
            "stage": built.stage,
            **describe_model(reference.model, seq_len=self.suite.max_length),
            "head_dim": model_config.hidden_size // model_config.num_attention_heads,
            "train_seconds": built.report.get("train_seconds", built.report.get("stage_seconds")),
            "train_samples": built.report.get("train_samples"),
        }
        params = sum(p.numel() for p in reference.model.parameters())
        reference.close()
        gc.collect()
        log.info("%s: %s (%.1fM params)", config.name, built.path, params / 1e6)
        return PreparedModel(config, built.path, built.key, tokenizer, params, logits, lineage)

    @staticmethod
    def _check_labels(config: ModelConfig, num_labels: int, split: TextSplit) -> None:
        bad = [label for label in split.labels if not 0 <= label < num_labels]
        if bad:
            raise HarnessError(
                f"model '{config.name}' has {num_labels} labels but the eval split has label {bad[0]} "
                f"({split.origin}); set models[].num_labels or check task.label_column"
            )

    def _run_exporter(
        self, model: PreparedModel, entry: ExporterEntry, eval_split: TextSplit, context_base: dict[str, Any]
    ) -> None:
        exporter: Exporter = self.exporters.get(entry.name)
        base = {
            "model": model.config.name,
            "exporter": entry.display_name,
            "params": model.params,
            "lineage": model.lineage,
        }
        compatible = [b for b in self.suite.backends if exporter.format in self.backends.get(b).formats]
        # A backend that cannot load this format has no cell here at all, not even an n/a one.
        self.bar.update((len(self.suite.backends) - len(compatible)) * self._shape_count() * len(self.suite.devices))
        if not compatible:
            reason = f"no backend in the suite loads format '{exporter.format}'"
            self._emit_all(base, "(none)", self.suite.devices, "n/a", reason, count=False)
            return
        reason, status = exporter.unavailable_reason(), "n/a"
        artifact = None
        if reason is None:
            try:
                artifact = self._export(model, exporter, entry)
            except Exception as error:  # one failed export must not stop the other variants
                log.exception("export %s/%s failed", model.config.name, entry.display_name)
                reason, status = f"export failed: {type(error).__name__}: {error}", "error"
        for backend_name in compatible:
            if artifact is None:
                self._emit_all(base, backend_name, self.suite.devices, status, reason)
                continue
            sized = {**base, "size_mb": artifact_size_mb(artifact.path)}
            context = CellContext(
                **context_base,
                reference_logits=model.reference_logits,
                accuracy_gate=self.suite.accuracy_gate,
                machine_peak=self.run_info["machine_peak"],
                lineage=model.lineage,
            )
            for device in self.suite.devices:
                self._run_backend(model, artifact, sized, self.backends.get(backend_name), device, eval_split, context)

    def _export(self, model: PreparedModel, exporter: Exporter, entry: ExporterEntry) -> Artifact:
        options = exporter.Options.model_validate(entry.options)
        # the pipeline already keyed the model by content; hashing its files again per exporter is waste
        key = self.cache.key(exporter.name, options.model_dump(), model.content_key, package_versions())
        label = f"{model.config.name}/{entry.display_name}"
        if self.cache.lookup("exports", key) is None:
            self.bar.set_postfix_str(f"exporting {label}")
            log.info("exporting %s", label)
        path = self.cache.get_or_build(
            "exports", key, lambda out: exporter.export(model.path, out, options), {"label": label}
        )
        return Artifact(path, exporter.format, {"key": key})

    def _run_backend(
        self,
        model: PreparedModel,
        artifact: Artifact,
        base: dict[str, Any],
        backend: Backend,
        device: str,
        eval_split: TextSplit,
        context: CellContext,
    ) -> None:
        base = {**base, "backend": backend.name, "device": device}
        reason = backend.unavailable_reason(device) or backend.cell_unavailable_reason(artifact.format, device)
        if reason:
            self._emit_all(base, backend.name, [device], "n/a", reason)
            return
        shapes = [s for s in self._shapes() if self._key(base, *s) not in self.done]
        self.bar.update(self._shape_count() - len(shapes))
        if not shapes:
            return
        self.bar.set_postfix_str(f"{base['model']}/{base['exporter']}/{backend.name}/{device}")
        job = CellJob(backend.name, artifact, device, self.suite.threads, self.policy, [])
        scored = self._execute(
            CellJob(**{**job.__dict__, "score_inputs": self._score_inputs(model.tokenizer, eval_split)})
        )
        for batch_size, seq_len in shapes:
            batches = self._timing_inputs(model.tokenizer, eval_split, batch_size, seq_len)
            outcome = self._execute(CellJob(**{**job.__dict__, "timing_inputs": batches}))
            if outcome.status == "ok":
                row = ok_row(base, batch_size, seq_len, outcome, scored, batches, context, self.run_info)
            else:
                row = error_row(base, batch_size, seq_len, outcome, self.run_info)
            self._emit(row)

    def _execute(self, job: CellJob) -> CellOutcome:
        if self.suite.isolation.mode == "none":
            return execute_cell(job, self.clock)
        return run_isolated(job, self.suite.isolation.timeout_s)

    def _token_ids(self, tokenizer: Any, split: TextSplit, seq_len: int | str) -> list[list[int]]:
        """Eval sentences tokenised once per (tokenizer, length rule), not once per cell."""
        key = (id(tokenizer), seq_len)
        if key not in self._encoded:
            self._encoded[key] = encode(tokenizer, split.texts, seq_len, self.suite.max_length)
        return self._encoded[key]

    def _score_inputs(self, tokenizer: Any, split: TextSplit) -> list[dict[str, np.ndarray]]:
        token_ids = self._token_ids(tokenizer, split, "dynamic")
        pad_id = tokenizer.pad_token_id or 0
        return [b.arrays for b in make_batches(token_ids, self.suite.accuracy_batch_size, "dynamic", pad_id)]

    def _timing_inputs(
        self, tokenizer: Any, split: TextSplit, batch_size: int, seq_len: int | str
    ) -> list[dict[str, np.ndarray]]:
        token_ids = self._token_ids(tokenizer, split, seq_len)
        limit = self.suite.timing.input_batches
        return [b.arrays for b in make_batches(token_ids, batch_size, seq_len, tokenizer.pad_token_id or 0, limit)]

    def _shapes(self) -> Iterator[tuple[int, int | str]]:
        for batch_size in self.suite.shapes.batch_sizes:
            for seq_len in self.suite.shapes.seq_lens:
                yield batch_size, seq_len

    def _shape_count(self) -> int:
        return len(self.suite.shapes.batch_sizes) * len(self.suite.shapes.seq_lens)

    def _emit_all(
        self, base: dict[str, Any], backend: str, devices: list[str], status: str, reason: str, count: bool = True
    ) -> None:
        for device in devices:
            for batch_size, seq_len in self._shapes():
                if self._key({**base, "backend": backend, "device": device}, batch_size, seq_len) in self.done:
                    self.bar.update(1 if count else 0)
                    continue
                fields = {**base, "backend": backend, "device": device, "batch_size": batch_size, "seq_len": seq_len}
                self._emit(CellRow(**fields, status=status, reason=reason, run=self.run_info), count)

    @staticmethod
    def _key(base: dict[str, Any], batch_size: int, seq_len: int | str) -> tuple[str, ...]:
        return cell_key({**base, "batch_size": batch_size, "seq_len": seq_len})

    def _emit(self, row: CellRow, count: bool = True) -> None:
        self.writer.append(row)
        self.rows.append(row)
        if count:
            self.bar.update(1)
