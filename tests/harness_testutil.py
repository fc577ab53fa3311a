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


def run_cli(
    *args: Any, env: dict[str, str] | None = None, timeout: float = 240, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *map(str, args)],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# Names the harness looks up on its way (adapter packages, libraries it imports): a module under
# each, planted in the working directory, writes a marker if anything imports it.
PLANTED_NAMES = ("backends", "exporters", "harness_plugins", "yaml", "pydantic", "numpy", "pandas", "matplotlib")


def run_cli_guarded(*args: Any, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """``run_cli`` from a working directory planted with marker modules, for hostile inputs.

    Asserts that no planted module ran, and that a command which failed wrote nothing: the folders
    holding its path arguments (under the temp dir) are the same before and after.
    """
    import shutil
    import tempfile

    planted = Path(tempfile.mkdtemp(prefix="harness-cwd-"))
    markers = planted / "markers"
    markers.mkdir()
    for name in PLANTED_NAMES:
        (planted / f"{name}.py").write_text(f"open({str(markers / name)!r}, 'w').write('ran')\n", encoding="utf-8")
    roots = _watched_roots(args)
    before = {root: _tree(root) for root in roots}
    try:
        proc = run_cli(*args, env=env, timeout=timeout, cwd=planted)
        assert sorted(p.name for p in markers.iterdir()) == [], f"planted modules ran: {proc.stderr}"
        assert sorted(p.name for p in planted.iterdir()) == sorted(["markers", *(f"{n}.py" for n in PLANTED_NAMES)])
        if proc.returncode != 0:
            for root in roots:
                assert _tree(root) == before[root], f"a failed command wrote under {root}"
        return proc
    finally:
        shutil.rmtree(planted, ignore_errors=True)


def _watched_roots(args: tuple[Any, ...]) -> list[Path]:
    import tempfile

    temp = Path(tempfile.gettempdir()).resolve()
    roots = set()
    for arg in args:
        path = Path(str(arg))
        if path.is_absolute() and temp in path.resolve().parents:
            folder = path if path.is_dir() else path.parent
            while not folder.exists():
                folder = folder.parent
            roots.add(folder)
    return sorted(roots)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.is_dir() else set()
