"""Builds a suite's models in order: load or fine-tune a teacher, distil students, prune them.

Every trained stage is cached under a key hashed from its parent's content key, its options, the
train data and the library versions, and is published atomically by the artifact cache, so an
unchanged rerun trains nothing and a killed run leaves nothing half-written that a rerun trusts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.adapters import CalibrationData
from harness.cache import ArtifactCache, fingerprint_dir
from harness.compress.options import BF16_MARGIN, StageOptions
from harness.data.holdout import Holdout
from harness.data.splits import TextSplit, load_split, split_content_hash
from harness.environment import cpu_flags, cpu_info, package_versions
from harness.models.sources import resolve_model_source
from harness.suite import ModelConfig, Suite

log = logging.getLogger("harness")
STAGE_REPORT = "harness_stage.json"
LOGITS_FILE = "logits.npy"
PRECISION_FILE = "training-precision.json"


@dataclass(frozen=True)
class BuiltModel:
    name: str
    path: Path
    key: str
    parent: str | None = None
    stage: str | None = None
    report: dict[str, Any] = field(default_factory=dict)


class ModelPipeline:
    def __init__(self, suite: Suite, cache: ArtifactCache) -> None:
        self.suite = suite
        self.cache = cache
        self._train: TextSplit | None = None
        self._train_hash: str | None = None
        self._calibration: CalibrationData | None = None
        self._holdout: Holdout | None = None
        self._parts: dict[str, TextSplit] = {}  # the train split's train part and validation slice
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
            return self._stage(config, base_key, lambda options, out: self._finetune(config, base, options, out))
        parent = self.built[config.parent]
        return self._stage(config, parent.key, lambda options, out: self._compress(config, parent, options, out))

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

    @property
    def holdout(self) -> Holdout:
        """Whole train sentences set aside to judge trained models by (and their phrases, kept out)."""
        if self._holdout is None:
            from harness.data.holdout import carve_holdout

            task = self.suite.task
            self._holdout = carve_holdout(self.train.texts, task.validation_sentences, task.validation_seed)
            log.info(
                "train split: %d rows to train on, %d sentences to validate on (%d of their phrases set aside)",
                len(self._holdout.train),
                len(self._holdout.validation),
                len(self._holdout.removed),
            )
        return self._holdout

    def training(self) -> TextSplit:
        if self._parts.get("train") is None:
            self._parts["train"] = _rows(self.train, self.holdout.train, "train part")
        return self._parts["train"]

    def validation(self) -> TextSplit:
        if self._parts.get("validation") is None:
            self._parts["validation"] = _rows(self.train, self.holdout.validation, "validation slice")
        return self._parts["validation"]

    def _stage_key(self, config: ModelConfig, parent_key: str, options: StageOptions) -> str:
        versions = {k: v for k, v in package_versions().items() if k in ("torch", "transformers")}
        data = (self._train_identity(), self.suite.task.validation_sentences, self.suite.task.validation_seed)
        return self.cache.key(config.stage, parent_key, options.model_dump(), config.num_labels, data, versions)

    def _train_identity(self) -> str:
        """The train data by content, so an edited local file retrains instead of reusing a stale model."""
        if self._train_hash is None:
            self._train_hash = split_content_hash(self.train)
        return self._train_hash

    def _concrete(self, options: Any) -> Any:
        """The stage's options with ``bf16: auto`` decided for this machine, so the cache key and the
        lineage record the precision the model was actually trained in."""
        if getattr(options, "bf16", None) != "auto":
            return options
        return options.model_copy(update={"bf16": self.bf16_speedup(options.device) >= BF16_MARGIN})

    def bf16_speedup(self, device: str) -> float:
        """bf16 autocast's training speedup over fp32 here, measured once per machine and kept in
        the cache: a measurement that flipped on a noisy minute would retrain every stage."""
        from harness.compress.training import bf16_speedup, resolve_device

        kind = resolve_device(device).type
        machine = (kind, cpu_info().get("cpu"), sorted(cpu_flags()), package_versions().get("torch"))
        key = self.cache.key("precision", machine)

        def measure(out: Path) -> None:
            (out / PRECISION_FILE).write_text(json.dumps({"bf16_speedup": bf16_speedup(kind)}), encoding="utf-8")

        path = self.cache.get_or_build("machine", key, measure)
        return float(json.loads((path / PRECISION_FILE).read_text(encoding="utf-8"))["bf16_speedup"])

    def _stage(self, config: ModelConfig, parent_key: str, build: Any) -> BuiltModel:
        options = self._concrete(getattr(config, config.stage))
        key = self._stage_key(config, parent_key, options)
        cached = self.cache.lookup("models", key) is not None
        log.info("%s: %s stage %s", config.name, config.stage, "cached" if cached else "training")

        def build_and_record(out: Path) -> None:
            started = time.perf_counter()
            report = build(options, out) or {}
            report = {**report, "stage": config.stage, "stage_seconds": time.perf_counter() - started}
            if getattr(getattr(config, config.stage), "bf16", None) == "auto":
                report["training_precision_auto"] = f"bf16 autocast {self.bf16_speedup(options.device):.2f}x fp32 here"
            (out / STAGE_REPORT).write_text(json.dumps(report, default=str, indent=1), encoding="utf-8")

        path = self.cache.get_or_build("models", key, build_and_record, {"model": config.name})
        report = json.loads((path / STAGE_REPORT).read_text(encoding="utf-8"))
        return BuiltModel(config.name, path, key, config.parent, config.stage, report)

    def _validation_kwargs(self) -> dict[str, Any]:
        # models are judged on the train split's held-out slice; the eval split is for the report
        validation = self.validation()
        return {"validation_texts": validation.texts, "validation_labels": validation.labels}

    def _finetune(self, config: ModelConfig, base: Path, options: Any, out: Path) -> dict[str, Any]:
        from harness.compress.finetune import finetune

        part = self.training()
        return finetune(base, part.texts, part.labels, config.num_labels, options, out, **self._validation_kwargs())

    def _compress(
        self, config: ModelConfig, parent: BuiltModel, options: Any, out: Path, checkpoint: Any = None
    ) -> dict[str, Any]:
        if config.magnitude is not None:
            return _magnitude(parent.path, options.sparsity, out)
        if getattr(options, "search", None) is not None:
            return self._search(config, parent, options, out)
        teacher = self._root(parent)
        kwargs = {**self._validation_kwargs(), "checkpoint": checkpoint}
        if config.distill is not None:
            from harness.compress.distill import distill

            texts, labels, logits = self.transfer_set(parent, options)
            return distill(parent.path, texts, labels, options, out, logits, **kwargs)
        from harness.compress.prune import prune

        texts, labels, logits = self.transfer_set(teacher, options)
        return prune(parent.path, texts, labels, options, out, logits, teacher.path, **kwargs)

    def _search(self, config: ModelConfig, parent: BuiltModel, options: Any, out: Path) -> dict[str, Any]:
        from harness.models.search_stage import searched_stage

        if not self.validation().texts:
            raise ValueError(
                f"{config.name}: a search needs validation sentences held out of the train split, but "
                f"task.validation_sentences is {self.suite.task.validation_sentences} and the train split has "
                f"{len(self.train.texts)} rows (at most a tenth of them are held out)"
            )
        # the study is keyed without its stopping rules: more trials or time resume the same study
        stopping = {"trials": 1, "timeout_minutes": None}
        study = options.model_copy(update={"search": options.search.model_copy(update=stopping)})
        study_dir = self.cache.root / "studies" / self._stage_key(config, parent.key, study)
        return searched_stage(
            options,
            lambda trial, folder, checkpoint: self._compress(config, parent, trial, folder, checkpoint),
            self._validation_scorer(parent.path, options.max_length),
            study_dir,
            out,
        )

    def _validation_scorer(self, tokenizer_dir: Path, max_length: int) -> Any:
        from transformers import AutoTokenizer

        from harness.compress.batching import encode
        from harness.compress.training import accuracy, predict_logits

        validation = self.validation()
        encoded = encode(AutoTokenizer.from_pretrained(tokenizer_dir), validation.texts, max_length)
        return lambda model: accuracy(
            predict_logits(model, encoded, device=next(model.parameters()).device), validation.labels
        )

    def transfer_set(self, teacher: BuiltModel, options: Any) -> tuple[list[str], list[int], np.ndarray]:
        """What a student learns from: the train part with the teacher's logits, plus, with
        ``augment``, synthetic sentences the teacher labels (its argmax as their hard label)."""
        part = self.training()
        if options.augment is None or options.augment.copies == 0:
            # the rows the stage's own ``max_train_samples`` cap keeps, and only their logits: the stage
            # subsamples these again to the very same rows (a cap at or above the count keeps them all)
            from harness.compress.training import subsample

            part = _rows(part, subsample(len(part.texts), options.max_train_samples, options.seed), "capped")
            return part.texts, part.labels, self.teacher_logits(teacher, options, part.texts, "train part")
        logits = self.teacher_logits(teacher, options, part.texts, "train part")
        from harness.compress.augment import augment

        mask_token = load_tokenizer_mask(teacher.path)
        synthetic = augment(part.texts, options.augment, mask_token, options.seed)
        log.info("%s: %d synthetic sentences for the transfer set", teacher.name, len(synthetic))
        synthetic_logits = self.teacher_logits(teacher, options, synthetic, "augmented")
        labels = [*part.labels, *synthetic_logits.argmax(axis=1).tolist()]
        return [*part.texts, *synthetic], labels, np.concatenate([logits, synthetic_logits])

    def _root(self, model: BuiltModel) -> BuiltModel:
        """The lineage's first model: the teacher whose soft labels every descendant learns from."""
        while model.parent is not None:
            model = self.built[model.parent]
        return model

    def teacher_logits(self, teacher: BuiltModel, options: StageOptions, texts: list[str], what: str) -> np.ndarray:
        """Teacher logits over ``texts``, computed once and cached on disk by their content."""
        content = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:20]
        key = self.cache.key("logits", teacher.key, content, options.max_length, options.bf16)

        def compute(out: Path) -> None:
            from harness.compress.distill import compute_teacher_logits

            log.info("%s: teacher logits over %d sentences (%s)", teacher.name, len(texts), what)
            logits = compute_teacher_logits(
                teacher.path, texts, max_length=options.max_length, device=options.device, bf16=options.bf16
            )
            np.save(out / LOGITS_FILE, logits)

        return np.load(self.cache.get_or_build("logits", key, compute) / LOGITS_FILE)


def _rows(split: TextSplit, indices: np.ndarray, what: str) -> TextSplit:
    return TextSplit([split.texts[i] for i in indices], [split.labels[i] for i in indices], f"{split.origin} ({what})")


def load_tokenizer_mask(path: Path) -> str:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    return tokenizer.mask_token or tokenizer.unk_token or "[MASK]"


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
