"""Shared fixtures for the harness core tests.

Expensive things are built once per session: the tiny model directory, one artifact cache that every
run shares (so the tiny model and its ONNX export are made once) and one end-to-end smoke run via the
CLI whose rows many tests read.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness_testutil import REPO, SST2_PRESENT, TOY_ROWS, cli_env, read_jsonl, run_cli, write_tsv


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One artifact cache for every run in the session (never the repo's .harness-cache)."""
    return tmp_path_factory.mktemp("harness-cache")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from harness.models.tiny import create_tiny_bert

    return create_tiny_bert(tmp_path_factory.mktemp("tiny-model") / "tiny")


@pytest.fixture(scope="session")
def toy_data_root(tmp_path_factory) -> Path:
    """A data root holding ``toy/validation.tsv`` (12 sentences, 6 positive)."""
    root = tmp_path_factory.mktemp("toy-data")
    write_tsv(root / "toy" / "validation.tsv", TOY_ROWS)
    return root


@dataclass
class SmokeRun:
    proc: subprocess.CompletedProcess
    suite_file: Path
    out_dir: Path
    rows: list[dict[str, Any]]
    synthetic_data: bool


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, cache_dir) -> SmokeRun:
    """suites/smoke.yaml end to end through the CLI, with output.cache_dir moved into tmp.

    Uses the real SST-2 files when present; otherwise (so the rest of the suite still runs) a
    synthetic ``sst2`` folder found through HARNESS_DATA_PATH.
    """
    work = tmp_path_factory.mktemp("smoke")
    raw = yaml.safe_load((REPO / "suites" / "smoke.yaml").read_text(encoding="utf-8"))
    raw["output"]["cache_dir"] = str(cache_dir)
    suite_file = work / "smoke.yaml"
    suite_file.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    extra = {}
    if not SST2_PRESENT:
        data_root = work / "data"
        write_tsv(data_root / "sst2" / "validation.tsv", TOY_ROWS * 4)
        extra["HARNESS_DATA_PATH"] = str(data_root)
    out_dir = work / "out"
    proc = run_cli("run", suite_file, "--out", out_dir, "--no-progress", env=cli_env(**extra), timeout=300)
    results = out_dir / "smoke.jsonl"
    rows = read_jsonl(results) if results.is_file() else []
    return SmokeRun(proc, suite_file, out_dir, rows, not SST2_PRESENT)
