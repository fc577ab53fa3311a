"""Builds a suite's models in order: load or fine-tune a teacher, distil students, prune them.

Every trained stage is cached under a key hashed from its parent's content key, its options, the
train data and the library versions, and is published atomically by the artifact cache, so an
unchanged rerun trains nothing and a killed run leaves nothing half-written that a rerun trusts.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.adapters import CalibrationData
from harness.cache import ArtifactCache, fingerprint_dir
from harness.compress.options import StageOptions
from harness.data.splits import TextSplit, load_split, split_content_hash
from harness.environment import package_versions
from harness.models.sources import resolve_model_source
from harness.suite import ModelConfig, Suite

log = logging.getLogger("harness")
STAGE_REPORT = "harness_stage.json"
LOGITS_FILE = "logits.npy"


@dataclass(frozen=True)
class BuiltModel:
    name: str
    path: Path
    key: str
    parent: str | None = None
    stage: str | None = None
    report: dict[str, Any] = field(default_factory=dict)


class ModelPipeline:
    def __init__(self, suite: Suite, cache: ArtifactCache, eval_split: TextSplit | None = None) -> None:
        self.suite = suite
        self.cache = cache
        self.eval_split = eval_split
        self._train: TextSplit | None = None
        self._train_hash: str | None = None
        self._calibration: CalibrationData | None = None
        self.built: dict[str, BuiltModel] = {}

    def build_all(self) -> dict[str, BuiltModel]:
        for config in self.suite.models:
            self.built[config.name] = self.build(config)
        return self.built

    def build(self, config: ModelConfig) -> BuiltModel:
        if config.source is not None:
            base = resolve_model_source(config.source, self.cache, config.num_labels)
            base_key = fingerprint_dir(base)
            if config.finetune is None:
                return BuiltModel(config.name, base, base_key)
            return self._stage(config, base_key, lambda out: self._finetune(config, base, out))
        parent = self.built[config.parent]
        return self._stage(config, parent.key, lambda out: self._compress(config, parent, out))

    @property
    def train(self) -> TextSplit:
        if self._train is None:
            task = self.suite.task
            self._train = load_split(task, task.train_split, None, self.cache.root / "datasets")
            log.info("train set: %d sentences from %s", len(self._train.texts), self._train.origin)
        return self._train

    def calibration_data(self) -> CalibrationData:
        """The train split for exporters that calibrate (never the eval split), loaded on first use."""
        if self._calibration is None:
            train = self.train
            self._calibration = CalibrationData(
                tuple(train.texts),
                tuple(train.labels),
                self._train_identity(),
                self.suite.max_length,
                self.suite.timing.seed,
            )
        return self._calibration

    def _stage_key(self, config: ModelConfig, parent_key: str) -> str:
        options = getattr(config, config.stage).model_dump()
        versions = {k: v for k, v in package_versions().items() if k in ("torch", "transformers")}
        return self.cache.key(config.stage, parent_key, options, config.num_labels, self._train_identity(), versions)

    def _train_identity(self) -> str:
        """The train data by content, so an edited local file retrains instead of reusing a stale model."""
        if self._train_hash is None:
            self._train_hash = split_content_hash(self.train)
        return self._train_hash

    def _stage(self, config: ModelConfig, parent_key: str, build: Any) -> BuiltModel:
        key = self._stage_key(config, parent_key)
        cached = self.cache.lookup("models", key) is not None
        log.info("%s: %s stage %s", config.name, config.stage, "cached" if cached else "training")

        def build_and_record(out: Path) -> None:
            started = time.perf_counter()
            report = build(out) or {}
            report = {**report, "stage": config.stage, "stage_seconds": time.perf_counter() - started}
            (out / STAGE_REPORT).write_text(json.dumps(report, default=str, indent=1), encoding="utf-8")

        path = self.cache.get_or_build("models", key, build_and_record, {"model": config.name})
        report = json.loads((path / STAGE_REPORT).read_text(encoding="utf-8"))
        return BuiltModel(config.name, path, key, config.parent, config.stage, report)

    def _eval_kwargs(self) -> dict[str, Any]:
        if self.eval_split is None:
            return {}
        return {"eval_texts": self.eval_split.texts, "eval_labels": self.eval_split.labels}

    def _finetune(self, config: ModelConfig, base: Path, out: Path) -> dict[str, Any]:
        from harness.compress.finetune import finetune

        train = self.train
        return finetune(base, train.texts, train.labels, config.num_labels, config.finetune, out, **self._eval_kwargs())

    def _compress(self, config: ModelConfig, parent: BuiltModel, out: Path) -> dict[str, Any]:
        if config.magnitude is not None:
            return _magnitude(parent.path, config.magnitude.sparsity, out)
        train = self.train
        teacher = self._root(parent)
        if config.distill is not None:
            from harness.compress.distill import distill

            # with a hidden-state loss the teacher runs alongside the student anyway
            needs_logits = not config.distill.hidden_loss_weight
            logits = self.teacher_logits(parent, config.distill) if needs_logits else None
            return distill(parent.path, train.texts, train.labels, config.distill, out, logits, **self._eval_kwargs())
        from harness.compress.prune import prune

        logits = self.teacher_logits(teacher, config.prune)
        return prune(parent.path, train.texts, train.labels, config.prune, out, logits, **self._eval_kwargs())

    def _root(self, model: BuiltModel) -> BuiltModel:
        """The lineage's first model: the teacher whose soft labels every descendant learns from."""
        while model.parent is not None:
            model = self.built[model.parent]
        return model

    def teacher_logits(self, teacher: BuiltModel, options: StageOptions) -> np.ndarray:
        """Teacher logits over the whole train split, computed once and cached on disk."""
        key = self.cache.key("logits", teacher.key, self._train_identity(), options.max_length, options.bf16)

        def compute(out: Path) -> None:
            from harness.compress.distill import compute_teacher_logits

            log.info("%s: teacher logits over %d train sentences", teacher.name, len(self.train.texts))
            logits = compute_teacher_logits(
                teacher.path, self.train.texts, max_length=options.max_length, device=options.device, bf16=options.bf16
            )
            np.save(out / LOGITS_FILE, logits)

        return np.load(self.cache.get_or_build("logits", key, compute) / LOGITS_FILE)


def _magnitude(parent: Path, sparsity: float, out: Path) -> dict[str, Any]:
    import warnings

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from harness.compress.prune import magnitude_prune
    from harness.compress.prune import sparsity as measured_sparsity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForSequenceClassification.from_pretrained(parent)
    magnitude_prune(model, sparsity)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(parent).save_pretrained(out)
    return {"sparsity": measured_sparsity(model)}
