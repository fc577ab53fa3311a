"""A capped distillation stage computes teacher logits only for the rows it trains on, and trains on
exactly the rows its cap picks (the teacher-logit pass over a whole train split costs a minute or more)."""

from __future__ import annotations

import logging
from pathlib import Path

from harness_testutil import TOY_ROWS, write_tsv

from harness.cache import ArtifactCache
from harness.models.pipeline import ModelPipeline
from harness.suite import parse_suite

TRAIN = [(f"{word} film number {i}", i % 2) for i, word in enumerate(["good", "bad"] * 6)]
STAGE = {"epochs": 1, "batch_size": 4, "max_length": 16, "bf16": False}


def _suite(data: Path, cache: Path):
    raw = {
        "name": "capped",
        "task": {"local": str(data), "source": "local", "validation_sentences": 0},
        "models": [
            {"name": "t", "source": "builtin:tiny-bert", "finetune": STAGE},
            {"name": "s", "parent": "t", "distill": {**STAGE, "layers": [0], "max_train_samples": 5, "seed": 3}},
            {"name": "u", "parent": "t", "distill": {**STAGE, "layers": [0]}},
        ],
        "exporters": ["eager-fp32"],
        "backends": ["pytorch"],
        "threads": 1,
        "output": {"cache_dir": str(cache)},
    }
    return parse_suite(raw, "x.yaml")


def test_a_capped_distill_labels_only_its_own_rows_and_an_uncapped_one_every_row(tmp_path: Path, caplog) -> None:
    from harness.compress.training import subsample

    data = tmp_path / "data" / "toy"
    write_tsv(data / "train.tsv", TRAIN)
    write_tsv(data / "validation.tsv", TOY_ROWS)
    suite = _suite(data, tmp_path / "cache")
    with caplog.at_level(logging.INFO, logger="harness"):
        built = ModelPipeline(suite, ArtifactCache(tmp_path / "cache")).build_all()
    passes = [r.getMessage() for r in caplog.records if "teacher logits over" in r.getMessage()]
    assert passes == [
        "t: teacher logits over 5 sentences (train part)",
        f"t: teacher logits over {len(TRAIN)} sentences (train part)",
    ]
    assert built["s"].report["train_samples"] == 5 and built["u"].report["train_samples"] == len(TRAIN)
    # the capped rows are the ones the cap alone would pick from the whole train split
    pipeline = ModelPipeline(suite, ArtifactCache(tmp_path / "cache"))
    part = pipeline.training()
    picked = [part.texts[i] for i in subsample(len(part.texts), 5, 3)]
    texts, _, logits = pipeline.transfer_set(built["t"], suite.models[1].distill)
    assert texts == picked and logits.shape == (5, 2)
