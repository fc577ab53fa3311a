"""Compare two runs cell by cell: absolute and drift-normalized p50 ratios, a Welch test across rounds, a verdict.

A shared machine's speed drifts between runs, so by default a cell is judged relative to its run's baseline
cell in the same round: rel_r = cell round p50 / baseline round p50; normalized ratio = median(rel new) /
median(rel old). Baseline cells and cells without a baseline in both runs are judged by new p50 / old p50:
a change of everything at once (the whole machine, or the baseline itself) shows there, and only there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import InputError
from harness.results.stats import holm_adjust, shift_p, welch_log_p

Row = Mapping[str, Any]
CELL = ["model", "exporter", "backend", "device", "batch_size", "seq_len"]
RESULT = ["old_p50_ms", "new_p50_ms", "absolute_ratio", "normalized_ratio", "decided_by", "p_value", "verdict"]
COLUMNS = [*CELL, *RESULT]
HEADERS = ["model", "exporter", "backend", "device", "batch", "seq len", "old p50 (ms)", "new p50 (ms)"]
HEADERS += ["absolute ratio", "normalized ratio", "decided by", "p (Holm)", "verdict"]
FORMATS = {"old_p50_ms": ".4g", "new_p50_ms": ".4g", "absolute_ratio": ".3f", "normalized_ratio": ".3f"}
NORMALIZE = ("baseline", "none")
# between back-to-back runs of an unchanged suite the whole machine moved p50s by 10% and more
DRIFT_ALLOWANCE = 0.20
BASELINE_NOTE = (
    "a baseline cell changed beyond the drift allowance: the whole machine or the baseline variant itself "
    "changed speed between the runs, and the cells normalized to it read relative to that change"
)
MIX = (("env_fingerprint", "environments"), ("suite_hash", "suites"), ("git_commit", "code versions"))


def check_options(
    threshold: float, alpha: float, normalize: str = "baseline", drift_allowance: float = DRIFT_ALLOWANCE
) -> None:
    """Raise ``InputError`` (exit 2) for a threshold that is not a positive finite number, an alpha
    outside (0, 1), a drift allowance that is negative or not finite, or an unknown normalization."""
    if not (math.isfinite(threshold) and threshold > 0):
        raise InputError(f"--threshold must be a positive finite number (got {threshold})")
    if not 0 < alpha < 1:
        raise InputError(f"--alpha must be between 0 and 1 (got {alpha})")
    if not (math.isfinite(drift_allowance) and drift_allowance >= 0):
        raise InputError(f"--drift-allowance must be a finite number >= 0 (got {drift_allowance})")
    if normalize not in NORMALIZE:
        raise InputError(f"--normalize must be one of {', '.join(NORMALIZE)} (got {normalize})")


def check_comparable(old: Sequence[Row], new: Sequence[Row], across_machines: bool = False) -> None:
    """Refuse (``InputError``) runs from different environments, suites or code versions."""
    if across_machines:
        return
    labels, details = [], []
    for field, label in MIX:
        before, after = _run_values(old, field), _run_values(new, field)
        if before != after:
            labels.append(label)
            details.append(f"{field} {before} vs {after}")
    if labels:
        purpose = "compare hardware" if "environments" in labels else "compare them anyway"
        raise InputError(
            f"OLD and NEW come from different {' and '.join(labels)} ({', '.join(details)}); "
            f"pass --across-machines to {purpose}"
        )


def round_ratios(cell_rounds: Sequence[float] | None, baseline_rounds: Sequence[float] | None) -> list[float] | None:
    """rel_r = cell round p50 / baseline round p50 for each round; ``None`` without matching round data."""
    if not cell_rounds or not baseline_rounds or len(cell_rounds) != len(baseline_rounds):
        return None
    return [c / b for c, b in zip(cell_rounds, baseline_rounds)]


def normalized_ratio(old_rel: Sequence[float], new_rel: Sequence[float]) -> float:
    """median(rel new) / median(rel old)."""
    return float(np.median(new_rel) / np.median(old_rel))


def verdict(ratio: float, p_value: float | None, threshold: float, alpha: float) -> str:
    """``regressed``/``improved`` beyond the threshold and significant; ``not tested`` beyond it but untestable."""
    if not (ratio > 1 + threshold or ratio < 1 / (1 + threshold)):
        return "same"
    if p_value is None:
        return "not tested"
    return "same" if p_value >= alpha else "regressed" if ratio > 1 else "improved"


def compare_rows(
    old: Sequence[Row],
    new: Sequence[Row],
    threshold: float = 0.10,
    alpha: float = 0.05,
    normalize: str = "baseline",
    drift_allowance: float = DRIFT_ALLOWANCE,
) -> pd.DataFrame:
    """One line per cell that ran (status ok) in both runs, with the columns of ``COLUMNS``.

    A baseline cell that others are normalized to can only be judged by its absolute ratio, which
    also carries the whole machine's drift between the runs: it counts as changed only beyond
    ``drift_allowance`` (a uniform 30% slowdown is caught, a machine 10% slower than last time is not).
    """
    check_options(threshold, alpha, normalize, drift_allowance)
    old_cells, new_cells = _ok_cells(old), _ok_cells(new)
    old_index, new_index = _run_index(old_cells), _run_index(new_cells)
    keys = sorted(old_cells.keys() & new_cells.keys(), key=str)
    bases = {key: _baselines(old_cells[key], new_cells[key], old_index, new_index, normalize) for key in keys}
    yardsticks = {_key(pair[0]) for pair in bases.values() if pair[0] and pair[1]}
    lines, limits = [], []
    for key in keys:
        limits.append(max(threshold, drift_allowance) if key in yardsticks else threshold)
        line = compare_cell(old_cells[key], new_cells[key], *bases[key], limits[-1], alpha)
        lines.append({**dict(zip(CELL, key)), **line})
    # many cells at once: the verdicts use family-wise (Holm) adjusted p-values
    for line, limit, p_value in zip(lines, limits, holm_adjust([line["p_value"] for line in lines])):
        ratio = line["normalized_ratio"] if line["decided_by"] == "normalized" else line["absolute_ratio"]
        line.update(p_value=p_value, verdict=verdict(ratio, p_value, limit, alpha))
    table = pd.DataFrame(lines, columns=COLUMNS)
    for column in ("normalized_ratio", "p_value"):  # None stays None (not NaN): not normalized, not tested
        table[column] = pd.Series([line[column] for line in lines], index=table.index, dtype=object)
    return table


def compare_cell(
    before: Row,
    after: Row,
    old_base: Row | None,
    new_base: Row | None,
    threshold: float = 0.10,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """One cell's ratios, p-value and verdict; the normalized ratio decides when both baseline rows are given."""
    absolute = after["p50_ms"] / before["p50_ms"]
    if old_base and new_base:
        ratio, (old_values, new_values) = _normalized(before, after, old_base, new_base)
    else:
        ratio, old_values, new_values = absolute, _rounds(before), _rounds(after)
    p_value = welch_log_p(old_values, new_values) if old_values and new_values else None
    return {
        "old_p50_ms": before["p50_ms"],
        "new_p50_ms": after["p50_ms"],
        "absolute_ratio": absolute,
        "normalized_ratio": ratio if old_base and new_base else None,
        "decided_by": "normalized" if old_base and new_base else "absolute",
        "p_value": p_value,
        "verdict": verdict(ratio, p_value, threshold, alpha),
    }


def run_drift(table: pd.DataFrame) -> tuple[float, float | None]:
    """The whole run's change: geometric mean of every cell's absolute ratio, and a one-sample t-test
    of the log ratios against zero (a uniform slowdown moves every cell; noise does not)."""
    if table.empty:
        return 1.0, None
    logs = np.log(table["absolute_ratio"].astype(float).to_numpy())
    return float(np.exp(logs.mean())), shift_p(logs)


def regressed(table: pd.DataFrame, alpha: float = 0.05, drift_allowance: float = DRIFT_ALLOWANCE) -> bool:
    """A cell regressed, or the whole run slowed beyond the drift allowance: exit 1."""
    drift, drift_p = run_drift(table)
    whole = verdict(drift, drift_p, drift_allowance, alpha) == "regressed"
    return whole or bool((table["verdict"] == "regressed").any())


def unmatched(old: Sequence[Row], new: Sequence[Row]) -> tuple[list[str], list[str]]:
    """Cells that ran (status ok) in only one of the two runs."""
    old_cells, new_cells = _ok_cells(old), _ok_cells(new)
    only_old = ["/".join(key) for key in old_cells.keys() - new_cells.keys()]
    only_new = ["/".join(key) for key in new_cells.keys() - old_cells.keys()]
    return sorted(only_old), sorted(only_new)


def render_comparison(
    table: pd.DataFrame,
    only_old: Sequence[str],
    only_new: Sequence[str],
    threshold: float,
    alpha: float,
    normalize: str,
    drift_allowance: float = DRIFT_ALLOWANCE,
) -> str:
    """The markdown table, the cells found in one run only, the whole run's change and a summary line."""
    shown = table.astype(object)
    for column, spec in FORMATS.items():
        shown[column] = [format(x, spec) if x is not None and not pd.isna(x) else "" for x in table[column]]
    shown["p_value"] = [f"{p:.3g}" if p is not None and not pd.isna(p) else "not tested" for p in table["p_value"]]
    lines = [shown.to_markdown(index=False, headers=HEADERS, disable_numparse=True)]
    lines += [
        f"only in {label}: {', '.join(cells)}" for label, cells in (("old", only_old), ("new", only_new)) if cells
    ]
    absolute = table[table["decided_by"] == "absolute"]
    if (absolute["verdict"] != "same").any() and (table["decided_by"] == "normalized").any():
        lines.append(f"note: {BASELINE_NOTE}")
    drift, drift_p = run_drift(table)
    shown_p = "not tested" if drift_p is None else f"{drift_p:.3g}"
    lines.append(
        f"whole run: every cell x{drift:.3f} on geometric mean (t-test p {shown_p}): "
        f"{verdict(drift, drift_p, drift_allowance, alpha)} (drift allowance {drift_allowance:.0%})"
    )
    counts = table["verdict"].value_counts()
    mode = "normalized to the baseline cell" if normalize == "baseline" else "absolute ratios only"
    lines.append(
        f"{len(table)} cells compared: {counts.get('regressed', 0)} regressed, {counts.get('improved', 0)} improved, "
        f"{counts.get('not tested', 0)} not tested (threshold {threshold:.0%}, alpha {alpha:g}, {mode})"
    )
    return "\n".join(lines)


def _normalized(before: Row, after: Row, old_base: Row, new_base: Row) -> tuple[float, tuple]:
    """The normalized ratio and the per-round relative values behind it (from the p50s, untested, without rounds)."""
    old_rel = round_ratios(_rounds(before), _rounds(old_base))
    new_rel = round_ratios(_rounds(after), _rounds(new_base))
    if old_rel and new_rel:
        return normalized_ratio(old_rel, new_rel), (old_rel, new_rel)
    return (after["p50_ms"] / new_base["p50_ms"]) / (before["p50_ms"] / old_base["p50_ms"]), (None, None)


def _baselines(before: Row, after: Row, old_index: Mapping, new_index: Mapping, normalize: str) -> tuple:
    """The baseline rows to normalize a cell to, ``(None, None)`` when it is not normalized."""
    if normalize == "none" or _run(before).get("baseline") != _run(after).get("baseline"):
        return None, None
    return _baseline(before, old_index), _baseline(after, new_index)


def _ok_cells(rows: Sequence[Row]) -> dict[tuple[str, ...], Row]:
    """The latest ok row of each cell."""
    return {_key(row): row for row in rows if row.get("status") == "ok" and row.get("p50_ms")}


def _run_index(cells: Mapping[tuple[str, ...], Row]) -> dict[tuple[Any, ...], Row]:
    """Rows by (run id, model/exporter/backend, device, batch size, seq len), to find a run's baseline cell."""
    return {(_run(row).get("run_id"), "/".join(key[:3]), *key[3:]): row for key, row in cells.items()}


def _baseline(row: Row, index: Mapping[tuple[Any, ...], Row]) -> Row | None:
    """The same run's baseline cell at the row's device and shape; ``None`` for the baseline cell itself."""
    run, key = _run(row), _key(row)
    if not run.get("baseline") or run["baseline"] == "/".join(key[:3]):
        return None
    return index.get((run.get("run_id"), run["baseline"], *key[3:]))


def _rounds(row: Row) -> list[float] | None:
    """The cell's per-round p50s, ``None`` when absent or not all positive numbers."""
    values = row.get("round_p50s_ms")
    if not values or any(not isinstance(v, (int, float)) or v <= 0 for v in values):
        return None
    return [float(v) for v in values]


def _key(row: Row) -> tuple[str, ...]:
    return tuple(str(row[c]) for c in CELL)


def _run(row: Row) -> Mapping[str, Any]:
    return row.get("run") or {}


def _run_values(rows: Sequence[Row], field: str) -> str:
    """The distinct values of a run field among the ok rows, e.g. ``a1b2`` (``unknown`` when absent)."""
    runs = [_run(row) for row in rows if row.get("status") == "ok"]
    runs = [run.get("env") or {} for run in runs] if field == "git_commit" else runs
    values = {str(run.get(field) or "unknown") for run in runs}
    return ",".join(sorted(values))
