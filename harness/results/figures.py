"""PNG figures for a report: accuracy against latency with the Pareto frontier, and speedups."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import one_line
from harness.results.search_section import history_figures
from harness.results.summary import add_speedups, rows_frame

# a bar per variant stays readable up to a few dozen; beyond, the fastest are shown and the title says so
MAX_BARS = 30
MAX_LABELS = 30  # frontier points annotated with their variant
MAX_LEGEND_MODELS = 10  # more models share one colour
MAX_DEVICES = 8  # figures for the first devices only: a file naming thousands must not write thousands of PNGs
LABEL_LIMIT = 60


def pareto_front(latency: Sequence[float], accuracy: Sequence[float]) -> list[int]:
    """Indices of points no other point beats on both lower latency and higher accuracy, fastest first."""
    order = sorted(range(len(latency)), key=lambda i: (latency[i], -accuracy[i]))
    front, best = [], float("-inf")
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return front


def reference_shape(frame: pd.DataFrame) -> tuple[int, str]:
    """The shape the figures show: batch 1 with dynamic length when present, else the first one."""
    shapes = frame[["batch_size", "seq_len"]].drop_duplicates().sort_values(["batch_size", "seq_len"])
    preferred = shapes[(shapes["batch_size"] == 1) & (shapes["seq_len"] == "dynamic")]
    chosen = preferred.iloc[0] if not preferred.empty else shapes.iloc[0]
    return int(chosen["batch_size"]), str(chosen["seq_len"])


def write_figures(rows: Sequence[Mapping[str, Any]] | pd.DataFrame, out_dir: Path, stem: str) -> dict[str, str]:
    """Write the PNGs into ``out_dir``, from rows or their ``report_frame``; returns caption -> file name.

    File names come from the device names in the rows, made safe: a device named ``../x`` must not
    write outside ``out_dir``.
    """
    import matplotlib

    matplotlib.use("Agg")
    frame = rows if isinstance(rows, pd.DataFrame) else add_speedups(rows_frame(rows))
    ok = frame[(frame["status"] == "ok") & frame["accuracy"].notna() & (frame["p50_ms"] > 0)]
    if ok.empty:
        return {}
    batch_size, seq_len = reference_shape(ok)
    shown = ok[(ok["batch_size"] == batch_size) & (ok["seq_len"] == seq_len)]
    several = shown["hardware"].nunique() > 1
    figures, names = {}, set()
    devices = list(shown.groupby("device", sort=False))
    for device, group in devices[:MAX_DEVICES]:
        safe = _file_part(device, names)
        where = f"{_drawn(device)}: {{}} (batch {batch_size}, seq {_drawn(seq_len)})"
        labels = _labels(group, several)
        name = f"{stem}-{safe}-pareto.png"
        _pareto_plot(group, labels, out_dir / name, where.format("accuracy vs p50 latency"))
        figures[f"{one_line(device, LABEL_LIMIT)}: accuracy against p50 latency, Pareto frontier marked"] = name
        name = f"{stem}-{safe}-speedup.png"
        caption = _speedup_plot(group, labels, out_dir / name, where.format("speedup over the baseline"))
        if caption is not None:
            figures[f"{one_line(device, LABEL_LIMIT)}: speedup over the baseline cell{caption}"] = name
    return {**figures, **history_figures(frame, out_dir, stem)}


def _drawn(text: str) -> str:
    """``text`` for a figure: one line, cut, and a ``$`` drawn as itself, not opening a formula."""
    return one_line(text, LABEL_LIMIT).replace("$", r"\$")


def _file_part(device: str, taken: set[str]) -> str:
    """``device`` as a file-name part: letters, digits, ``-`` and ``_`` only, unique among ``taken``."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", device)[:40].strip("_") or "device"
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}-{number}"
    taken.add(name)
    return name


def _labels(group: pd.DataFrame, with_hardware: bool) -> pd.Series:
    text = group["model"] + "/" + group["exporter"] + "/" + group["backend"]
    if with_hardware:
        text = text + " @ " + group["hardware"]
    return text.map(_drawn)


def _pareto_plot(group: pd.DataFrame, labels: pd.Series, path: Path, title: str) -> None:
    """Every variant as a point (points cost no height), the frontier joined and labelled."""
    import matplotlib.pyplot as plt

    latency, accuracy = group["p50_ms"].tolist(), (group["accuracy"] * 100).tolist()
    front = pareto_front(latency, accuracy)
    figure, axes = plt.subplots(figsize=(9, 5.5))
    models = group["model"].unique()
    if len(models) <= MAX_LEGEND_MODELS:
        for model, part in group.groupby("model", sort=False):
            axes.scatter(part["p50_ms"], part["accuracy"] * 100, label=_drawn(model), s=36)
    else:
        axes.scatter(latency, accuracy, label=f"{len(group)} variants of {len(models)} models", s=12, alpha=0.6)
    axes.plot([latency[i] for i in front], [accuracy[i] for i in front], "k--", lw=1, label="Pareto frontier")
    for i in front[:MAX_LABELS]:
        axes.annotate(labels.iloc[i], (latency[i], accuracy[i]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    if len(front) > MAX_LABELS:
        title += f"; {MAX_LABELS} of {len(front)} frontier points labelled"
    axes.set_xscale("log")
    axes.set_xlabel("p50 latency (ms, log scale)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _speedup_plot(group: pd.DataFrame, labels: pd.Series, path: Path, title: str) -> str | None:
    """A bar per variant, fastest at the top; beyond ``MAX_BARS`` the fastest and the baseline only.

    Returns the caption's suffix (what was left out), ``None`` when no variant has a speedup.
    """
    import matplotlib.pyplot as plt

    group = group.assign(label=labels).dropna(subset=["speedup"]).sort_values("speedup", kind="stable")
    if group.empty:
        return None
    total, suffix = len(group), ""
    if total > MAX_BARS:
        is_base = group["model"] + "/" + group["exporter"] + "/" + group["backend"] == group["baseline"]
        keep = group.index.isin(group.index[-MAX_BARS:]) | is_base.to_numpy()
        group = group[keep]
        suffix = f" ({MAX_BARS} fastest of {total} variants shown, and the baseline)"
        title += f"\n{MAX_BARS} fastest of {total} variants shown, and the baseline"
    figure, axes = plt.subplots(figsize=(9, 0.3 * len(group) + 1.5))
    # the 95% interval over rounds and inputs, where the rows carry per-round data
    low = (group["speedup"] - group["speedup_ci_low"]).clip(lower=0).fillna(0)
    high = (group["speedup_ci_high"] - group["speedup"]).clip(lower=0).fillna(0)
    positions = range(len(group))  # positions, not labels: two machines may show the same variant
    bars = axes.barh(positions, group["speedup"], xerr=[low, high], color="tab:blue", error_kw={"lw": 0.8})
    axes.set_yticks(positions, group["label"])
    axes.bar_label(bars, labels=[f"{s:.1f}x" for s in group["speedup"]], fontsize=7, padding=2)
    axes.axvline(1.0, color="k", lw=0.8)
    axes.set_xlabel("speedup over the baseline (paired per round; bars: 95% interval)")
    axes.set_title(title, fontsize=10)
    axes.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return suffix
