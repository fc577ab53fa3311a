"""Runs every cell of a suite: model x exporter x backend x device x batch size x sequence length.

Each (model, exporter, backend, device) is loaded once, scored on the whole eval split, then timed
on every shape with the same inputs and the same policy. A cell that cannot run becomes an ``n/a``
row with its reason, and one that fails an ``error`` row; nothing is silently left out.
"""

from __future__ import annotations

import gc
import logging
import resource
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
from harness.cache import ArtifactCache, dir_size_mb, fingerprint_dir
from harness.data import TextSplit, load_split
from harness.environment import collect_environment
from harness.errors import HarnessError
from harness.inputs import encode, make_batches
from harness.pipeline import BuiltModel, ModelPipeline
from harness.registry import Registry
from harness.results import CellRow, ResultsWriter
from harness.stats import PERCENTILE_METHOD, classification_scores, summarize_latency
from harness.suite import ExporterEntry, ModelConfig, Suite
from harness.timing import Clock, TimingPolicy, time_calls

log = logging.getLogger("harness")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".bin", ".onnx", ".onnx_data")


@dataclass(frozen=True)
class PreparedModel:
    """A resolved model with everything its cells share."""

    config: ModelConfig
    source: Path
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
    ) -> None:
        self.suite = suite
        self.exporters = exporters
        self.backends = backends
        self.writer = ResultsWriter(results_path)
        self.cache = ArtifactCache(Path(suite.output.cache_dir))
        self.clock = clock
        self.progress = progress
        self.policy = TimingPolicy(
            suite.timing.warmup,
            suite.timing.min_iterations,
            suite.timing.min_seconds,
            suite.timing.max_seconds,
            suite.timing.repeats,
        )
        self.run_info = {
            "run_id": uuid.uuid4().hex[:12],
            "suite": suite.name,
            "suite_file": suite_file,
            "suite_hash": suite.content_hash(),
            "baseline": f"{suite.baseline_model}/{suite.baseline.exporter}/{suite.baseline.backend}",
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.rows: list[CellRow] = []

    def run(self) -> list[CellRow]:
        suite = self.suite
        eval_split = load_split(suite.task, suite.task.split, suite.task.max_samples, self.cache.root / "datasets")
        log.info("eval set: %d sentences from %s", len(eval_split.texts), eval_split.origin)
        self._prepare_devices()
        self.run_info["env"] = collect_environment(suite.threads)
        self.run_info["eval_origin"] = eval_split.origin
        built = ModelPipeline(suite, self.cache, eval_split).build_all()
        with tqdm(total=self._cell_count(), desc="cells", unit="cell", disable=not self.progress) as bar:
            self.bar = bar
            for model_config in suite.models:
                model = self._prepare_model(model_config, built[model_config.name], eval_split)
                for entry in suite.exporters:
                    self._run_exporter(model, entry, eval_split)
                del model
                gc.collect()
        return self.rows

    def _cell_count(self) -> int:
        shapes = len(self.suite.shapes.batch_sizes) * len(self.suite.shapes.seq_lens)
        per_exporter = len(self.suite.backends) * len(self.suite.devices) * shapes
        return len(self.suite.models) * len(self.suite.exporters) * per_exporter

    def _prepare_devices(self) -> None:
        if "cuda" in self.suite.devices:
            import torch  # noqa: F401  (so the environment can name the GPU)

    def _prepare_model(self, config: ModelConfig, built: BuiltModel, eval_split: TextSplit) -> PreparedModel:
        from transformers import AutoTokenizer

        from harness.compress.lineage import describe_model

        tokenizer = AutoTokenizer.from_pretrained(built.path)
        reference = self.backends.get("pytorch").load(Artifact(built.path, "transformers"), "cpu", self.suite.threads)
        params = sum(p.numel() for p in reference.model.parameters())
        self._check_labels(config, reference.model.config.num_labels, eval_split)
        logits = self._score(reference, tokenizer, eval_split.texts)
        lineage = {
            "parent": built.parent,
            "stage": built.stage,
            **describe_model(reference.model, seq_len=self.suite.max_length),
            "train_seconds": built.report.get("train_seconds", built.report.get("stage_seconds")),
            "train_samples": built.report.get("train_samples"),
        }
        reference.close()
        log.info("%s: %s (%.1fM params)", config.name, built.path, params / 1e6)
        return PreparedModel(config, built.path, tokenizer, params, logits, lineage)

    @staticmethod
    def _check_labels(config: ModelConfig, num_labels: int, split: TextSplit) -> None:
        bad = [label for label in split.labels if not 0 <= label < num_labels]
        if bad:
            raise HarnessError(
                f"model '{config.name}' has {num_labels} labels but the eval split has label {bad[0]} "
                f"({split.origin}); set models[].num_labels or check task.label_column"
            )

    def _run_exporter(self, model: PreparedModel, entry: ExporterEntry, eval_split: TextSplit) -> None:
        exporter: Exporter = self.exporters.get(entry.name)
        base = {
            "model": model.config.name,
            "exporter": entry.display_name,
            "params": model.params,
            "lineage": model.lineage,
        }
        compatible = [b for b in self.suite.backends if exporter.format in self.backends.get(b).formats]
        skipped = [b for b in self.suite.backends if b not in compatible]
        # A backend that cannot load this format has no cell here at all, not even an n/a one.
        self.bar.update(len(skipped) * self._shape_count() * len(self.suite.devices))
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
            base = {**base, "size_mb": _weights_size_mb(artifact.path)}
            for device in self.suite.devices:
                self._run_backend(model, artifact, base, self.backends.get(backend_name), device, eval_split)

    def _export(self, model: PreparedModel, exporter: Exporter, entry: ExporterEntry) -> Artifact:
        options = exporter.Options.model_validate(entry.options)
        key = self.cache.key(exporter.name, options.model_dump(), fingerprint_dir(model.source), _versions())
        label = f"{model.config.name}/{entry.display_name}"
        if self.cache.lookup("exports", key) is None:
            self.bar.set_postfix_str(f"exporting {label}")
            log.info("exporting %s", label)
        path = self.cache.get_or_build(
            "exports", key, lambda out: exporter.export(model.source, out, options), {"label": label}
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
    ) -> None:
        base = {**base, "backend": backend.name, "device": device}
        reason = backend.unavailable_reason(device) or backend.cell_unavailable_reason(artifact.format, device)
        if reason:
            self._emit_all(base, backend.name, [device], "n/a", reason)
            return
        self.bar.set_postfix_str(f"{base['model']}/{base['exporter']}/{backend.name}/{device}")
        session = None
        shapes = list(self._shapes())
        done = 0
        try:
            session = backend.load(artifact, device, self.suite.threads)
            logits = self._score(session, model.tokenizer, eval_split.texts)
            scores = classification_scores(logits, eval_split.labels, model.reference_logits)
            base = {**base, **scores, "eval_samples": len(eval_split.labels)}
            for batch_size, seq_len in shapes:
                self._emit(self._time_cell(session, model, base, batch_size, seq_len, eval_split))
                done += 1
        except Exception as error:  # a failing cell must not stop the suite
            log.exception("cell %s failed", base)
            reason = f"{type(error).__name__}: {error}"
            for batch_size, seq_len in shapes[done:]:
                self._emit(self._row(base, batch_size, seq_len, "error", reason))
        finally:
            if session is not None:
                session.close()
            gc.collect()

    def _time_cell(
        self, session: Any, model: PreparedModel, base: dict[str, Any], batch_size: int, seq_len: Any, split: TextSplit
    ) -> CellRow:
        token_ids = encode(model.tokenizer, split.texts, seq_len, self.suite.max_length)
        pad_id = model.tokenizer.pad_token_id or 0
        batches = make_batches(token_ids, batch_size, seq_len, pad_id, limit=self.suite.timing.input_batches)
        prepared = [session.prepare(b.arrays) for b in batches]
        timed = time_calls(session.run, session.synchronize, prepared, self.policy, self.clock)
        samples_ms = [s * 1000.0 for s in timed.samples]
        stats = summarize_latency(samples_ms, batch_size)
        mean_tokens = float(np.mean([b.real_tokens / len(b.indices) for b in batches]))
        return self._row(
            base,
            batch_size,
            seq_len,
            "ok",
            None,
            **stats,
            mean_tokens=mean_tokens,
            hit_time_cap=timed.hit_time_cap,
            percentile_method=PERCENTILE_METHOD,
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )

    def _score(self, session: Any, tokenizer: Any, texts: list[str]) -> np.ndarray:
        token_ids = encode(tokenizer, texts, "dynamic", self.suite.max_length)
        batches = make_batches(token_ids, self.suite.accuracy_batch_size, "dynamic", tokenizer.pad_token_id or 0)
        outputs = [session.logits(session.run(session.prepare(b.arrays))) for b in batches]
        return np.concatenate(outputs, axis=0)

    def _shapes(self) -> Iterator[tuple[int, Any]]:
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
                row = self._row({**base, "backend": backend, "device": device}, batch_size, seq_len, status, reason)
                self._emit(row, count)

    def _row(
        self, base: dict[str, Any], batch_size: int, seq_len: Any, status: str, reason: str | None, **more: Any
    ) -> CellRow:
        fields = {**base, **more, "batch_size": batch_size, "seq_len": seq_len, "status": status, "reason": reason}
        return CellRow(**fields, run=self.run_info)

    def _emit(self, row: CellRow, count: bool = True) -> None:
        self.writer.append(row)
        self.rows.append(row)
        if count:
            self.bar.update(1)


def _weights_size_mb(path: Path) -> float:
    files = [p for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES]
    return sum(p.stat().st_size for p in files) / 2**20 if files else dir_size_mb(path)


def _versions() -> dict[str, str | None]:
    from harness.environment import package_versions

    return package_versions()
