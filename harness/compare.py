"""Compare two runs cell by cell: p50 ratio, a significance test, and a regression verdict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from harness.stats import mann_whitney_p

CELL = ["model", "exporter", "backend", "device", "batch_size", "seq_len"]


def compare_rows(
    old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], threshold: float = 0.10, alpha: float = 0.05
) -> pd.DataFrame:
    """One line per cell present in both runs.

    A cell ``regressed`` when its p50 grew by more than ``threshold`` and the Mann-Whitney U test
    on the raw samples says the change is significant at ``alpha``; ``improved`` is the mirror
    image; anything else is ``same``. Without raw samples the test cannot run and only the ratio
    decides.
    """
    old_cells, new_cells = _ok_cells(old), _ok_cells(new)
    lines = []
    for key in sorted(old_cells.keys() & new_cells.keys(), key=str):
        before, after = old_cells[key], new_cells[key]
        ratio = after["p50_ms"] / before["p50_ms"]
        samples = before.get("samples_ms"), after.get("samples_ms")
        p_value = mann_whitney_p(samples[0], samples[1]) if all(samples) else 0.0
        significant = p_value < alpha
        verdict = "same"
        if ratio > 1 + threshold and significant:
            verdict = "regressed"
        elif ratio < 1 / (1 + threshold) and significant:
            verdict = "improved"
        lines.append(
            {
                **dict(zip(CELL, key)),
                "old_p50_ms": before["p50_ms"],
                "new_p50_ms": after["p50_ms"],
                "ratio": ratio,
                "p_value": p_value,
                "verdict": verdict,
            }  # fmt: skip
        )
    return pd.DataFrame(lines, columns=[*CELL, "old_p50_ms", "new_p50_ms", "ratio", "p_value", "verdict"])


def unmatched(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """Cells that ran (status ok) in only one of the two runs."""
    old_cells, new_cells = _ok_cells(old), _ok_cells(new)
    name = "/".join
    only_old = [name(str(k) for k in key) for key in old_cells.keys() - new_cells.keys()]
    only_new = [name(str(k) for k in key) for key in new_cells.keys() - old_cells.keys()]
    return sorted(only_old), sorted(only_new)


def _ok_cells(rows: Sequence[Mapping[str, Any]]) -> dict[tuple, Mapping[str, Any]]:
    cells = {}
    for row in rows:
        if row.get("status") == "ok" and row.get("p50_ms"):
            cells[tuple(str(row[c]) for c in CELL)] = row
    return cells
