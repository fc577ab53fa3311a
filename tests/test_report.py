"""Report rendering from hand-made rows (pure), and ``python -m harness report`` from files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from harness_testutil import run_cli

from harness.results.report import MARKER, add_speedups, render_report, rows_frame

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
        # 3 rounds x 3 inputs, all at p50: paired speedups are then exact ratios with a point interval
        "input_ms": [[p50] * 3] * 3 if p50 else None,
        "inputs_key": "same-sentences",
        "accuracy_shape": f"batch {batch}, dynamic",
        "teacher_gate": "pass" if p50 else "n/a",
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


def test_speedup_without_rounds_is_the_ratio_of_p50s(rows) -> None:
    for r in rows:
        r["input_ms"] = None  # a results file written before rounds existed
    frame = add_speedups(rows_frame(rows))
    got = {(r.hardware, r.exporter, r.device, r.batch_size): r.speedup for r in frame.itertuples()}
    assert got[("CPU-A (2 threads)", "onnx-fp32", "cpu", 8)] == 2.5
    assert frame["speedup_ci_low"].isna().all()


def test_speedup_is_paired_per_round() -> None:
    run = run_info("ra", "CPU-A")
    base, cell = row(run, "eager-fp32", "pytorch", "cpu", 1, 4.0), row(run, "onnx-fp32", "onnxruntime", "cpu", 1, 1.0)
    # the machine halves its speed in round 2 for both cells: per-round ratios stay 4 and 4.5
    base["input_ms"] = [[4.0, 4.0, 4.0], [8.0, 8.0, 8.0], [4.0, 4.0, 4.0]]
    cell["input_ms"] = [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [1.0, 1.0, 1.0]]
    cell["input_ms"][2] = [4.0 / 4.5] * 3
    frame = add_speedups(rows_frame([base, cell]))
    speedup = frame.loc[frame["exporter"] == "onnx-fp32", "speedup"].item()
    assert speedup == pytest.approx((4.0 * 4.0 * 4.5) ** (1 / 3))  # geometric mean of per-round ratios
    low, high = frame.loc[frame["exporter"] == "onnx-fp32", ["speedup_ci_low", "speedup_ci_high"]].iloc[0]
    assert 4.0 - 1e-9 <= low <= speedup <= high <= 4.5 + 1e-9  # draws mix whole rounds: 4 to 4.5


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
    assert headings == [
        "## Summary",
        "## Runs",
        "## cpu",
        "## cuda",
        "## Across machines",
        "## Environment",
        "## Notes",
    ]
    across = {
        (c["exporter"], c["batch"]): c["CPU-B (2 threads) / CPU-A (2 threads)"]
        for c in table_after(text, "## Across machines")
    }
    assert across == {
        ("eager-fp32", "1"): "2",
        ("onnx-fp32", "1"): "2",
        ("eager-fp32", "8"): "—",
        ("onnx-fp32", "8"): "1.25",
    }
    cells = table_after(text, "### Latency")  # the cpu section's; both machines share it
    speedups = {(c["hardware"], c["exporter"], c["batch"]): c["speedup (95% CI)"] for c in cells}
    assert speedups == {
        ("CPU-A (2 threads)", "eager-fp32", "1"): "1.00x (1.00–1.00)",
        ("CPU-A (2 threads)", "onnx-fp32", "1"): "4.00x (4.00–4.00)",
        ("CPU-A (2 threads)", "eager-fp32", "8"): "1.00x (1.00–1.00)",
        ("CPU-A (2 threads)", "onnx-fp32", "8"): "2.50x (2.50–2.50)",
        ("CPU-B (2 threads)", "eager-fp32", "1"): "1.00x (1.00–1.00)",
        ("CPU-B (2 threads)", "onnx-fp32", "1"): "4.00x (4.00–4.00)",
        ("CPU-B (2 threads)", "onnx-fp32", "8"): "—",
    }
    summary = table_after(text, "## Summary")
    assert text.index("## Summary") < text.index("## cpu")  # the summary opens the report
    best = {
        (c["hardware"], c["batch"]): (c["fastest variant passing the gate"], c["speedup (95% CI)"]) for c in summary
    }
    assert best == {
        ("CPU-A (2 threads)", "1"): ("m / onnx-fp32 / onnxruntime", "4.00x (4.00–4.00)"),
        ("CPU-A (2 threads)", "8"): ("m / onnx-fp32 / onnxruntime", "2.50x (2.50–2.50)"),
        ("CPU-B (2 threads)", "1"): ("m / onnx-fp32 / onnxruntime", "4.00x (4.00–4.00)"),
        ("CPU-B (2 threads)", "8"): ("m / onnx-fp32 / onnxruntime", "—"),
    }
    accuracy = table_after(text, "### Accuracy")
    measured = {(c["hardware"], c["exporter"], c["measured at"]) for c in accuracy}
    assert measured == {
        (h, e, f"batch {b}, dynamic")
        for h in ("CPU-A (2 threads)", "CPU-B (2 threads)")
        for e in ("eager-fp32", "onnx-fp32")
        for b in (1, 8)
        if (h, e, b) != ("CPU-B (2 threads)", "eager-fp32", 8)
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
    assert render_report([], "T") == f"# T\n{MARKER}\n\nNo results.\n"


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
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {missing}: no such results file"]
    assert not (tmp_path / "o.md").exists()


def test_busy_machine_is_flagged_beyond_the_cells_own_threads() -> None:
    run = run_info("ra", "CPU-A")  # 2 benchmark threads
    quiet = row(run, "eager-fp32", "pytorch", "cpu", 1, 4.0)
    busy = row(run, "onnx-fp32", "onnxruntime", "cpu", 1, 1.0)
    quiet["load_avg_1m"] = [2.0, 2.1, 2.45]  # the cells' own two threads, give or take
    busy["load_avg_1m"] = [2.1, 3.4, 2.2]  # a third runnable thread for a while
    text = render_report([quiet, busy])
    flagged = [line for line in text.splitlines() if "machine busy" in line]
    assert flagged == [
        "- m/onnx-fp32/onnxruntime cpu batch 1 seq dynamic: machine busy: 1-minute load average up to 3.40 "
        "with 2 benchmark threads on 8 cores"
    ]
