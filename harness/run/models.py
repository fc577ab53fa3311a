"""A built model with everything its cells share: tokenizer, reference logits, lineage."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.adapters import Artifact
from harness.cache import ArtifactCache
from harness.data.splits import TextSplit, split_content_hash
from harness.data.workload import in_eval_order
from harness.environment import package_versions
from harness.errors import HarnessError
from harness.models.pipeline import BuiltModel
from harness.registry import Registry
from harness.run.plan import Shape
from harness.run.workloads import Workloads
from harness.suite import ModelConfig, Suite

log = logging.getLogger("harness")
REFERENCE_FILE = "logits.npy"


@dataclass(frozen=True)
class PreparedModel:
    config: ModelConfig
    path: Path
    content_key: str
    tokenizer: Any
    params: int
    reference_logits: np.ndarray
    lineage: dict[str, Any]


def prepare_model(
    suite: Suite,
    config: ModelConfig,
    built: BuiltModel,
    split: TextSplit,
    backends: Registry,
    workloads: Workloads,
    cache: ArtifactCache,
) -> PreparedModel:
    """Load the model once in eager FP32 for its lineage and the reference logits every variant is
    compared with (cached by model, eval data and shape, so a rerun does not score it again)."""
    from harness.compress.lineage import describe_model

    tokenizer = load_tokenizer(built.path)
    reference = backends.get("pytorch").load(Artifact(built.path, "transformers"), "cpu", suite.threads)
    model_config = reference.model.config
    check_labels(config, model_config.num_labels, split)
    shape = accuracy_shape(suite)
    key = cache.key(
        "reference", built.key, split_content_hash(split), shape.label, suite.max_length, package_versions()
    )

    def score(out: Path) -> None:
        batches = workloads.for_scoring(tokenizer, shape)
        logits = [reference.logits(reference.run(reference.prepare(b.arrays))) for b in batches]
        logits = in_eval_order([b.indices for b in batches], logits)
        np.save(out / REFERENCE_FILE, logits)

    logits = np.load(cache.get_or_build("reference", key, score) / REFERENCE_FILE)
    lineage = {
        "parent": built.parent,
        "stage": built.stage,
        **describe_model(reference.model, seq_len=suite.max_length),
        "train_seconds": built.report.get("train_seconds", built.report.get("stage_seconds")),
        "train_samples": built.report.get("train_samples"),
        "training_precision": built.report.get("training_precision"),
        # scored on sentences held out of the train split, the basis for choosing a recipe
        "validation_accuracy": built.report.get("validation_accuracy"),
        "search": _study(built.report.get("search")),
    }
    params = sum(p.numel() for p in reference.model.parameters())
    reference.close()
    gc.collect()
    log.info("%s: %s (%.1fM params)", config.name, built.path, params / 1e6)
    return PreparedModel(config, built.path, built.key, tokenizer, params, logits, lineage)


def _study(search: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the report shows of a search: its trials and choice (not the storage path)."""
    if not search:
        return None
    return {k: search.get(k) for k in ("best_params", "best_value", "trials", "resumed_trials")}


def accuracy_shape(suite: Suite) -> Shape:
    """Where batch-invariant variants (and the reference) are scored."""
    return Shape(suite.accuracy_batch_size, "dynamic")


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def check_labels(config: ModelConfig, num_labels: int, split: TextSplit) -> None:
    bad = [label for label in split.labels if not 0 <= label < num_labels]
    if bad:
        raise HarnessError(
            f"model '{config.name}' has {num_labels} labels but the eval split has label {bad[0]} "
            f"({split.origin}); set models[].num_labels or check task.label_column"
        )
