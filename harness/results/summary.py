"""Speedups against the baseline cell and the summary a user decides from: pure functions of rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.environment import machine_label
from harness.results.rounds import paired_speedup, shared_prefix

SHAPE = ["hardware", "device", "batch_size", "seq_len"]
# speedups pair cells of one run (same rounds, same machine), never across runs
PAIR = ["run_id", *SHAPE]
NUMERIC = (
    "params", "size_mb", "accuracy", "agreement", "max_abs_logit_diff", "p50_ms", "p95_ms", "p99_ms",
    "mean_ms", "std_ms", "throughput_per_s", "iterations", "peak_rss_mb", "cell_rss_mb", "p50_ci_low_ms",
    "p50_ci_high_ms", "instability_cv", "input_cv", "mcnemar_p", "gflops_per_s", "peak_fraction",
    "inputs_distinct", "input_mean_tokens", "split_mean_tokens", "teacher_accuracy", "source_accuracy",
)  # fmt: skip
SPEEDUP_FIELDS = ("speedup", "speedup_ci_low", "speedup_ci_high")


def rows_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame([dict(r) for r in rows])
    runs = frame["run"] if "run" in frame else pd.Series([{}] * len(frame))
    frame["run"] = [r if isinstance(r, dict) else {} for r in runs]
    frame["hardware"] = [machine_label(r.get("env", {})) for r in frame["run"]]
    frame["baseline"] = [r.get("baseline") for r in frame["run"]]
    frame["run_id"] = [r.get("run_id") for r in frame["run"]]
    frame["seq_len"] = frame["seq_len"].astype(str)
    for column in NUMERIC:
        frame[column] = pd.to_numeric(frame.get(column), errors="coerce")
    for column in ("input_ms", "accuracy_shape", "teacher_gate", "accuracy_gate", "inputs_key", "warnings"):
        if column not in frame:
            frame[column] = None
    return frame


def add_speedups(frame: pd.DataFrame) -> pd.DataFrame:
    """speedup = baseline p50 / cell p50, paired round by round within one run, with a 95% interval.

    Rows without per-round data (older files) get the plain ratio of p50s and no interval.
    """
    frame = frame.copy()
    cell_id = frame["model"] + "/" + frame["exporter"] + "/" + frame["backend"]
    is_base = (cell_id == frame["baseline"]) & (frame["status"] == "ok")
    base_rows = frame[is_base].to_dict("records")
    baselines = {tuple(row[c] for c in PAIR): row for row in base_rows}
    values = [_speedup(row, baselines.get(tuple(row[c] for c in PAIR))) for row in frame.to_dict("records")]
    for index, name in enumerate(SPEEDUP_FIELDS):
        frame[name] = [v[index] for v in values]
    return frame


def _speedup(row: Mapping[str, Any], base: Mapping[str, Any] | None) -> tuple[float, float, float]:
    nan = float("nan")
    if base is None or row.get("status") != "ok" or not row.get("p50_ms"):
        return nan, nan, nan
    cell_ms, base_ms = row.get("input_ms"), base.get("input_ms")
    if not isinstance(cell_ms, list) or not isinstance(base_ms, list):
        return base["p50_ms"] / row["p50_ms"], nan, nan
    shared = shared_prefix(row.get("input_starts"), base.get("input_starts"))
    if not shared and row.get("inputs_key") is not None and row.get("inputs_key") == base.get("inputs_key"):
        shared = len(cell_ms[0])  # rows written before input_starts: the same inputs or none
    result = paired_speedup(np.asarray(base_ms), np.asarray(cell_ms), shared=shared)
    return result["speedup"], result["speedup_ci_low"], result["speedup_ci_high"]


def interval(low: float, high: float, digits: str = ".4g") -> str:
    return "—" if pd.isna(low) or pd.isna(high) else f"{low:{digits}}–{high:{digits}}"


def best_variants(frame: pd.DataFrame) -> pd.DataFrame:
    """Per hardware, device and shape: the fastest cell that passes the accuracy gate against the teacher."""
    ok = frame[(frame["status"] == "ok") & (frame["teacher_gate"] == "pass")]
    if ok.empty:
        return ok
    fastest = ok.sort_values("p50_ms", kind="stable").groupby(SHAPE, sort=False).head(1)
    return fastest.sort_values(SHAPE, kind="stable")


def summary_table(frame: pd.DataFrame) -> str:
    best = best_variants(frame)
    if best.empty:
        return "No cell passed the accuracy gate against the teacher."
    several = frame["hardware"].nunique() > 1
    lines = []
    header = ["device", "batch", "seq len", "fastest variant passing the gate", "p50 (ms)", "speedup (95% CI)",
              "size (MB)", "accuracy (%)", "accuracy measured at"]  # fmt: skip
    if several:
        header.insert(0, "hardware")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in best.to_dict("records"):
        speedup = "—" if pd.isna(row["speedup"]) else f"{row['speedup']:.2f}x"
        if not pd.isna(row["speedup_ci_low"]):
            speedup += f" ({interval(row['speedup_ci_low'], row['speedup_ci_high'], '.2f')})"
        variant = f"{row['model']} / {row['exporter']} / {row['backend']}"
        accuracy = _num(row["accuracy"] * 100, ".2f")
        cells = [row["device"], str(row["batch_size"]), row["seq_len"], variant, f"{row['p50_ms']:.4g}", speedup,
                 _num(row.get("size_mb"), ".3g"), accuracy, str(row["accuracy_shape"])]  # fmt: skip
        if several:
            cells.insert(0, row["hardware"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _num(value: Any, digits: str) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:{digits}}"
