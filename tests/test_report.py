"""Report rendering from hand-made rows (pure), and ``python -m harness report`` from files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from harness_testutil import run_cli

from harness.report import add_speedups, render_report, rows_frame

BASELINE = "m/eager-fp32/pytorch"


def run_info(run_id: str, cpu: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "suite": "s",
        "suite_hash": f"hash-{run_id}",
        "baseline": BASELINE,
        "started": "2025-01-01T00:00:00+00:00",
        "eval_origin": "local:toy",
        "env": {
            "host": "h",
            "cpu": cpu,
            "isa": ["avx2"],
            "cores": 8,
            "threads": 2,
            "gpu": None,
            "versions": {"torch": "9.9"},
        },
    }


def row(
    run: dict,
    exporter: str,
    backend: str,
    device: str,
    batch: int,
    p50: float | None,
    status: str = "ok",
    reason: str | None = None,
) -> dict[str, Any]:
    return {
        "model": "m",
        "exporter": exporter,
        "backend": backend,
        "device": device,
        "batch_size": batch,
        "seq_len": "dynamic",
        "status": status,
        "reason": reason,
        "accuracy": 0.5 if p50 else None,
        "agreement": 1.0 if p50 else None,
        "max_abs_logit_diff": 0.0 if p50 else None,
        "params": 1000000,
        "size_mb": 1.5,
        "p50_ms": p50,
        "p95_ms": p50,
        "p99_ms": p50,
        "mean_ms": p50,
        "std_ms": 0.0 if p50 else None,
        "throughput_per_s": batch * 1000 / p50 if p50 else None,
        "iterations": 10 if p50 else None,
        "peak_rss_mb": 100.0 if p50 else None,
        "percentile_method": "linear",
        "run": run,
    }


@pytest.fixture
def rows() -> list[dict[str, Any]]:
    a, b = run_info("ra", "CPU-A"), run_info("rb", "CPU-B")
    return [
        row(a, "eager-fp32", "pytorch", "cpu", 1, 4.0),
        row(a, "onnx-fp32", "onnxruntime", "cpu", 1, 1.0),
        row(a, "eager-fp32", "pytorch", "cpu", 8, 10.0),
        row(a, "onnx-fp32", "onnxruntime", "cpu", 8, 4.0),
        row(a, "eager-fp32", "pytorch", "cuda", 1, None, "n/a", "no CUDA device (test build)"),
        row(a, "eager-fp32", "pytorch", "cuda", 8, None, "n/a", "no CUDA device (test build)"),
        row(b, "eager-fp32", "pytorch", "cpu", 1, 8.0),
        row(b, "onnx-fp32", "onnxruntime", "cpu", 1, 2.0),
        row(b, "onnx-fp32", "onnxruntime", "cpu", 8, 5.0),  # no baseline at batch 8 on B
    ]


def table_after(markdown: str, heading: str) -> list[dict[str, str]]:
    """The first markdown table after ``heading``, as dicts keyed by header."""
    lines = markdown.splitlines()
    start = lines.index(heading)
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip("|").split("|")])
    header, body = table[0], table[2:]
    return [dict(zip(header, cells)) for cells in body]


def test_speedup_is_baseline_p50_over_p50(rows) -> None:
    frame = add_speedups(rows_frame(rows))
    got = {(r.hardware, r.exporter, r.device, r.batch_size): r.speedup for r in frame.itertuples()}
    assert got[("CPU-A (2 threads)", "eager-fp32", "cpu", 1)] == 1.0
    assert got[("CPU-A (2 threads)", "onnx-fp32", "cpu", 1)] == 4.0
    assert got[("CPU-A (2 threads)", "eager-fp32", "cpu", 8)] == 1.0
    assert got[("CPU-A (2 threads)", "onnx-fp32", "cpu", 8)] == 2.5
    assert got[("CPU-B (2 threads)", "onnx-fp32", "cpu", 1)] == 4.0  # B's own baseline, not A's
    assert math.isnan(got[("CPU-B (2 threads)", "onnx-fp32", "cpu", 8)])  # no matching baseline
    assert math.isnan(got[("CPU-A (2 threads)", "eager-fp32", "cuda", 1)])


def test_rendered_report(rows) -> None:
    text = render_report(rows, "My title")
    assert text.startswith("# My title\n")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## cpu", "## cuda", "## Environment", "## Notes"]
    cells = table_after(text, "### Latency")  # the cpu section's; both machines share it
    speedups = {(c["hardware"], c["exporter"], c["batch"]): c["speedup"] for c in cells}
    assert speedups == {
        ("CPU-A (2 threads)", "eager-fp32", "1"): "1",
        ("CPU-A (2 threads)", "onnx-fp32", "1"): "4",
        ("CPU-A (2 threads)", "eager-fp32", "8"): "1",
        ("CPU-A (2 threads)", "onnx-fp32", "8"): "2.5",
        ("CPU-B (2 threads)", "eager-fp32", "1"): "1",
        ("CPU-B (2 threads)", "onnx-fp32", "1"): "4",
        ("CPU-B (2 threads)", "onnx-fp32", "8"): "—",
    }
    accuracy = table_after(text, "### Accuracy")
    assert {(c["hardware"], c["exporter"]) for c in accuracy} == {
        (h, e) for h in ("CPU-A (2 threads)", "CPU-B (2 threads)") for e in ("eager-fp32", "onnx-fp32")
    }

    not_run = table_after(text, "### Not run")
    assert not_run == [
        {
            "hardware": "CPU-A (2 threads)",
            "model": "m",
            "exporter": "eager-fp32",
            "backend": "pytorch",
            "status": "n/a",
            "reason": "no CUDA device (test build)",
            "cells": "2",
        }
    ]
    assert "Cells: 2 n/a, 7 ok." in text
    assert "### CPU-A (2 threads)" in text and "### CPU-B (2 threads)" in text
    env = table_after(text, "### CPU-A (2 threads)")
    assert {"field": "torch", "value": "9.9"} in env
    assert {"field": "isa", "value": "avx2"} in env
    assert "`hash-ra`" in text and "`hash-rb`" in text


def test_empty_rows() -> None:
    assert render_report([], "T") == "# T\n\nNo results.\n"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_report_cli_from_files(rows, tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [r for r in rows if r["run"]["run_id"] == "ra"])
    b = write_jsonl(tmp_path / "b.jsonl", [r for r in rows if r["run"]["run_id"] == "rb"])
    out = tmp_path / "deep" / "out.md"
    proc = run_cli("report", a, b, "-o", out, "--title", "Merged")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"9 rows -> {out}\n"
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Merged\n")
    assert "## cpu\n" in text and "| CPU-A (2 threads) |" in text and "| CPU-B (2 threads) |" in text
    assert "### Not run" in text


def test_report_cli_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    proc = run_cli("report", missing, "-o", tmp_path / "o.md")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: {missing}: no such results file"]
    assert not (tmp_path / "o.md").exists()
