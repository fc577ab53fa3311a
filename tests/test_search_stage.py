"""A `distill` stage with a `search:` block, through the real pipeline: trials judged on the train
split's validation slice, the study kept in the cache, resumed when more trials are asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness_testutil import TOY_ROWS, write_tsv

from harness.cache import ArtifactCache
from harness.models.pipeline import ModelPipeline
from harness.suite import parse_suite

# 60 distinct sentences: a tenth of them (6) become the validation slice
TRAIN = [
    (f"{word} film number {i} {tail}", label)
    for i in range(30)
    for word, tail, label in (("a warm", "charms", 1), ("a dull", "drags", 0))
]
SEARCH = {"trials": 2, "seed": 3, "pruner": None, "space": {"temperature": {"low": 1.0, "high": 4.0}}}


def _suite(tmp_path: Path, search: dict):
    data = tmp_path / "data"
    write_tsv(data / "train.tsv", TRAIN)
    write_tsv(data / "validation.tsv", TOY_ROWS)
    distill = {"layers": [0], "epochs": 0.5, "batch_size": 8, "max_length": 16, "bf16": False, "search": search}
    raw = {
        "name": "searched",
        "task": {"local": str(data), "source": "local", "validation_sentences": 6},
        "models": [
            {"name": "teacher", "source": "builtin:tiny-bert"},
            {"name": "student", "parent": "teacher", "distill": distill},
        ],
        "exporters": ["eager-fp32"],
        "backends": ["pytorch"],
        "threads": 1,
        "output": {"cache_dir": str(tmp_path / "cache")},
    }
    return parse_suite(raw, "searched.yaml")


def _build(suite):
    return ModelPipeline(suite, ArtifactCache(Path(suite.output.cache_dir))).build_all()["student"]


def test_search_builds_the_best_trial_and_resumes_with_more_trials(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    first = _build(_suite(tmp_path, SEARCH))
    study = first.report["search"]
    assert [t["state"] for t in study["trials"]] == ["COMPLETE", "COMPLETE"] and study["resumed_trials"] == 0
    values = {t["number"]: t["value"] for t in study["trials"]}
    assert study["best_value"] == max(values.values())
    # the published model is the best trial's: its own validation score is the study's best
    assert first.report["validation_accuracy"] == study["best_value"]
    assert first.report["validation_samples"] == 6
    assert 1.0 <= study["best_params"]["temperature"] <= 4.0
    assert json.loads((first.path / "search.json").read_text())["best_params"] == study["best_params"]
    AutoModelForSequenceClassification.from_pretrained(first.path)

    more = _build(_suite(tmp_path, {**SEARCH, "trials": 3}))
    resumed = more.report["search"]
    assert more.key != first.key and resumed["resumed_trials"] == 2 and len(resumed["trials"]) == 3
    before = {t["number"]: t["params"] for t in study["trials"]}
    assert {t["number"]: t["params"] for t in resumed["trials"] if t["number"] in before} == before


def test_a_search_needs_a_validation_slice(tmp_path: Path) -> None:
    suite = _suite(tmp_path, SEARCH)
    suite = suite.model_copy(update={"task": suite.task.model_copy(update={"validation_sentences": 0})})
    with pytest.raises(ValueError, match="validation_sentences"):
        _build(suite)
