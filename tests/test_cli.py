"""The smoke suite end to end through ``python -m harness run``."""

from __future__ import annotations

import torch
from harness_testutil import read_jsonl


def test_smoke_run_writes_results_and_report(smoke_run) -> None:
    proc = smoke_run.proc
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = smoke_run.out_dir / "smoke.jsonl"
    report = smoke_run.out_dir / "smoke.md"
    assert results.is_file() and report.is_file()
    ok = sum(r["status"] == "ok" for r in smoke_run.rows) if torch.cuda.is_available() else 20
    assert proc.stdout == f"40 cells ({ok} ok, 0 failed) -> {results}\nreport -> {report}\n"
    assert len(read_jsonl(results)) == 40
    text = report.read_text(encoding="utf-8")
    assert text.startswith("# smoke: benchmark report\n")
    assert "\n## cpu\n" in text and "### Accuracy" in text and "### Latency" in text
    assert "## Models" in text and "## Environment" in text
    assert "![cpu: accuracy against p50 latency, Pareto frontier marked](smoke-cpu-pareto.png)" in text
    assert (smoke_run.out_dir / "smoke-cpu-pareto.png").stat().st_size > 10_000
    if not torch.cuda.is_available():
        assert "### Not run" in text and "no CUDA device" in text
    assert "Traceback" not in proc.stderr


def test_smoke_run_used_the_tmp_cache(smoke_run, cache_dir) -> None:
    assert (cache_dir / "exports").is_dir()
    assert len([p for p in (cache_dir / "exports").iterdir() if not p.name.startswith(".")]) >= 4
    assert (cache_dir / "models").is_dir()
