"""Speedups against the baseline cell and the summary a user decides from: pure functions of rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.environment import machine_label
from harness.results.rounds import RESAMPLES, paired_speedup, shared_prefix
from harness.results.stats import PERCENTILE_METHOD

SHAPE = ["hardware", "device", "batch_size", "seq_len"]
# speedups pair cells of one run (same rounds, same machine), never across runs
PAIR = ["run_id", *SHAPE]
NUMERIC = (
    "params", "size_mb", "accuracy", "macro_f1", "agreement", "max_abs_logit_diff", "p50_ms", "p95_ms", "p99_ms",
    "mean_ms", "std_ms", "throughput_per_s", "iterations", "peak_rss_mb", "cell_rss_mb", "p50_ci_low_ms",
    "p50_ci_high_ms", "instability_cv", "input_cv", "mcnemar_p", "gflops_per_s", "peak_fraction",
    "inputs_distinct", "input_mean_tokens", "split_mean_tokens", "teacher_accuracy", "source_accuracy",
)  # fmt: skip
SPEEDUP_FIELDS = ("speedup", "speedup_ci_low", "speedup_ci_high")
PAIRING = ("input_ms", "input_starts", "inputs_key")  # what pairs a cell's inputs with its baseline's
# a bootstrap interval costs about 2 ms a cell plus 17 ns a resampled timing: about 10 s at most
INTERVAL_CELLS = 2000
INTERVAL_ENTRIES = 5 * 10**8


def rows_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame([dict(r) for r in rows])
    runs = frame["run"] if "run" in frame else pd.Series([{}] * len(frame))
    frame["run"] = [r if isinstance(r, dict) else {} for r in runs]
    # a fleet run names each machine by its hardware selector; merged local runs by their CPU or GPU
    named = frame["hardware"] if "hardware" in frame else pd.Series([None] * len(frame))
    labels = [machine_label(r.get("env") or {}) for r in frame["run"]]
    frame["hardware"] = [name if isinstance(name, str) and name else label for name, label in zip(named, labels)]
    frame["baseline"] = [r.get("baseline") for r in frame["run"]]
    frame["run_id"] = [r.get("run_id") for r in frame["run"]]
    frame["seq_len"] = frame["seq_len"].astype(str)
    for column in NUMERIC:
        frame[column] = pd.to_numeric(frame.get(column), errors="coerce")
    for column in ("input_ms", "accuracy_shape", "teacher_gate", "accuracy_gate", "inputs_key", "warnings", "reason"):
        if column not in frame:
            frame[column] = None
    return frame


def add_speedups(frame: pd.DataFrame) -> pd.DataFrame:
    """speedup = baseline p50 / cell p50, paired round by round within one run, with a 95% interval.

    Rows without per-round data (older files) get the plain ratio of p50s and no interval. The
    bootstrap costs milliseconds a cell, so a report of thousands of cells gets intervals for the
    summary's cells first and then for as many more as ``INTERVAL_CELLS`` and ``INTERVAL_ENTRIES``
    allow; the rest show the point estimate. ``frame.attrs["speedup_intervals"]`` says how many.
    """
    frame = frame.copy()
    values = np.full((len(frame), 3), np.nan)
    p50 = frame["p50_ms"].to_numpy(dtype=float)
    base_of = _baseline_positions(frame)
    usable = (frame["status"] == "ok").to_numpy() & (p50 > 0) & (base_of >= 0)
    columns = [frame[name].to_numpy() if name in frame else [None] * len(frame) for name in PAIRING]
    pairs = {}
    for i in np.flatnonzero(usable):
        pair = _paired_inputs(*(column[base_of[i]] for column in columns), *(column[i] for column in columns))
        if pair is None:
            values[i, 0] = p50[base_of[i]] / p50[i]
        else:
            pairs[int(i)] = pair
    _point_estimates(pairs, values)
    computed = _intervals(_by_priority(frame, pairs), pairs, values)
    values[~np.isfinite(values)] = np.nan  # a ratio of extreme latencies overflows: no speedup, not infinity
    for index, name in enumerate(SPEEDUP_FIELDS):
        frame[name] = values[:, index]
    frame.attrs["speedup_intervals"] = (computed, len(pairs))
    return frame


def _baseline_positions(frame: pd.DataFrame) -> np.ndarray:
    """Each row's position of the same run's baseline cell at its device and shape, -1 where none."""
    cell_id = frame["model"] + "/" + frame["exporter"] + "/" + frame["backend"]
    is_base = ((cell_id == frame["baseline"]) & (frame["status"] == "ok")).to_numpy()
    keys = list(zip(*(frame[c] for c in PAIR)))
    lookup = {keys[i]: i for i in np.flatnonzero(is_base)}  # the last row of a cell wins, as in a resumed file
    return np.array([lookup.get(key, -1) for key in keys], dtype=int)


def _paired_inputs(
    base_ms: Any, base_starts: Any, base_key: Any, cell_ms: Any, cell_starts: Any, cell_key: Any
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The baseline's and the cell's rounds x inputs matrices cut to what they share, or ``None``
    when either has no per-round data (or a round without time) and only the p50s can be compared."""
    if not isinstance(cell_ms, list) or not isinstance(base_ms, list):
        return None
    try:
        base, cell = np.asarray(base_ms, dtype=float), np.asarray(cell_ms, dtype=float)
    except (TypeError, ValueError):  # ragged or not numbers: rows read without checks (a resumed run's own)
        return None
    if base.ndim != 2 or cell.ndim != 2 or not base.size or not cell.size or (base <= 0).any() or (cell <= 0).any():
        return None
    shared = shared_prefix(cell_starts, base_starts)
    if not shared and cell_key is not None and cell_key == base_key:
        shared = cell.shape[1]  # rows written before input_starts: the same inputs or none
    shared = min(shared, base.shape[1], cell.shape[1])
    rounds = min(base.shape[0], cell.shape[0])
    base, cell = base[:rounds], cell[:rounds]
    if shared:
        base, cell = base[:, :shared], cell[:, :shared]
    return base, cell, shared


def _point_estimates(pairs: Mapping[int, tuple[np.ndarray, np.ndarray, int]], values: np.ndarray) -> None:
    """The geometric mean of per-round p50 ratios, as ``paired_speedup`` computes it, for many cells at
    once: one numpy call per matrix shape instead of several per cell."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, (base, cell, _) in pairs.items():
        by_shape.setdefault((*base.shape, cell.shape[1]), []).append(i)
    for positions in by_shape.values():
        base = np.stack([pairs[i][0] for i in positions])
        cell = np.stack([pairs[i][1] for i in positions])
        base_p50 = np.percentile(base, 50, axis=2, method=PERCENTILE_METHOD)
        per_round = base_p50 / np.percentile(cell, 50, axis=2, method=PERCENTILE_METHOD)
        values[positions, 0] = np.exp(np.mean(np.log(per_round), axis=1))


def _by_priority(frame: pd.DataFrame, pairs: Mapping[int, Any]) -> list[int]:
    """The summary's cells first, then the others in row order."""
    first = [int(i) for i in frame.index.get_indexer(best_variants(frame).index) if i in pairs]
    chosen = set(first)
    return first + [i for i in pairs if i not in chosen]


def _intervals(
    order: Sequence[int], pairs: Mapping[int, tuple[np.ndarray, np.ndarray, int]], values: np.ndarray
) -> int:
    """Bootstrap intervals for the cells in ``order`` while the budget lasts; returns how many got one."""
    computed, entries = 0, 0
    for i in order:
        base, cell, shared = pairs[i]
        cost = RESAMPLES * (base.size + cell.size)
        if computed >= INTERVAL_CELLS or entries + cost > INTERVAL_ENTRIES:
            continue
        result = paired_speedup(base, cell, shared=shared)
        values[i] = [result[name] for name in SPEEDUP_FIELDS]
        computed, entries = computed + 1, entries + cost
    return computed


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
