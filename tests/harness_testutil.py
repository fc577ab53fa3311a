"""Helpers shared by the harness core tests (imported by name; pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SST2_DIR = REPO.parent / "shared" / "data" / "sst2"
SST2_PRESENT = (SST2_DIR / "validation.tsv").is_file()


# Toy eval sentences (text, label); includes bare quotes, which only survive with quoting disabled.
TOY_ROWS = [
    ('he said "hi there .', 1),
    ("a warm , funny film .", 1),
    ("dull and far too long .", 0),
    ('the "best" movie of the year , not', 0),
    ("i loved every minute", 1),
    ("a mess from start to finish", 0),
    ("charming performances throughout", 1),
    ("it never finds its footing", 0),
    ("sharp , witty writing", 1),
    ("boring", 0),
    ("an instant classic", 1),
    ("nothing works here", 0),
]


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["sentence\tlabel"] + [f"{text}\t{label}" for text, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for a harness subprocess: offline, no inherited plugin/data path unless given."""
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_PLUGIN_PATH", "HARNESS_DATA_PATH")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *map(str, args)],
        cwd=REPO,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
