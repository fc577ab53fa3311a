"""A search's trials for the report: a markdown table and the optimization-history figure.

Pure functions over the trial rows of ``StudyResult.trials`` (number, state, params, value,
duration_s, intermediate_values), so they render a stored study without optuna.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import one_line

BEST_MARK = "★"
CELL_LIMIT = 60


def best_number(trials: Sequence[dict[str, Any]]) -> int | None:
    """The best complete trial's number (highest value; the earliest of equals, as optuna picks)."""
    complete = [t for t in trials if t.get("state") == "COMPLETE" and t.get("value") is not None]
    if not complete:
        return None
    return min(complete, key=lambda t: (-t["value"], t["number"]))["number"]


def trials_table(trials: Sequence[dict[str, Any]]) -> str:
    """A markdown table of the trials by number, the best one marked with ``BEST_MARK``."""
    from tabulate import tabulate

    rows = sorted(trials, key=lambda t: t["number"])
    best = best_number(rows)
    names = list(dict.fromkeys(name for t in rows for name in t.get("params", {})))
    headers = ["trial", "best", "state", "validation accuracy (%)", "checkpoints", "time (s)", *names]
    body = [
        [
            t["number"],
            BEST_MARK if t["number"] == best else "",
            t.get("state", ""),
            _number(t.get("value"), 100, 2),
            t.get("intermediate_values", ""),
            _number(t.get("duration_s"), 1, 1),
            *(_cell(t.get("params", {}).get(name, "")) for name in names),
        ]
        for t in rows
    ]
    return tabulate(body, headers=[_cell(h) for h in headers], tablefmt="pipe", disable_numparse=True)


def _number(value: float | None, scale: float, digits: int) -> str:
    return "" if value is None else f"{value * scale:.{digits}f}"


def _cell(value: Any) -> str:
    """A value as one table cell: one line, cut short, and a ``|`` that cannot end the cell."""
    if isinstance(value, float):
        # a sampled 5.8374035085665135 reads as 5.837; 2.0 stays 2.0, not the integer 2
        text = f"{value:.1f}" if value.is_integer() and abs(value) < 1e6 else f"{value:.4g}"
    else:
        text = value if isinstance(value, str) else json.dumps(value)
    return one_line(text, CELL_LIMIT).replace("|", "\\|")


def running_best(trials: Sequence[dict[str, Any]]) -> list[tuple[int, float]]:
    """``(number, best value so far)`` at each complete trial, by trial number."""
    points, best = [], float("-inf")
    for t in sorted(trials, key=lambda t: t["number"]):
        if t.get("state") == "COMPLETE" and t.get("value") is not None:
            best = max(best, t["value"])
            points.append((t["number"], best))
    return points


def history_png(trials: Sequence[dict[str, Any]], path: Path, title: str = "search: optimization history") -> Path:
    """The validation accuracy of each complete trial, pruned ones at their last checkpoint, and the
    running best as a step line; written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(figsize=(9, 5.5))
    for state, style in (("COMPLETE", {"marker": "o", "s": 36}), ("PRUNED", {"marker": "x", "s": 30, "c": "grey"})):
        shown = [t for t in trials if t.get("state") == state and t.get("value") is not None]
        if shown:
            values = [t["value"] * 100 for t in shown]
            label = "trial" if state == "COMPLETE" else "pruned trial (last checkpoint)"
            axes.scatter([t["number"] for t in shown], values, label=label, **style)
    best = running_best(trials)
    if best:
        # carried on to the last trial, so a best found early still shows as a line
        best.append((max(t["number"] for t in trials), best[-1][1]))
        axes.step([n for n, _ in best], [v * 100 for _, v in best], "k--", where="post", lw=1, label="best so far")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("trial")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title(one_line(title, 100).replace("$", r"\$"), fontsize=10)
    axes.grid(True, alpha=0.3)
    if best or trials:
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
