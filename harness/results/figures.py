"""PNG figures for a report: accuracy against latency with the Pareto frontier, and speedups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness.results.summary import add_speedups, rows_frame


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


def write_figures(rows: Sequence[Mapping[str, Any]], out_dir: Path, stem: str) -> dict[str, str]:
    """Write the PNGs next to the report; returns caption -> path relative to ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    frame = add_speedups(rows_frame(rows))
    ok = frame[(frame["status"] == "ok") & frame["accuracy"].notna()]
    if ok.empty:
        return {}
    batch_size, seq_len = reference_shape(ok)
    shown = ok[(ok["batch_size"] == batch_size) & (ok["seq_len"] == seq_len)]
    figures = {}
    for device, group in shown.groupby("device", sort=False):
        name = f"{stem}-{device}-pareto.png"
        _pareto_plot(group, out_dir / name, f"{device}: accuracy vs p50 latency (batch {batch_size}, seq {seq_len})")
        figures[f"{device}: accuracy against p50 latency, Pareto frontier marked"] = name
        name = f"{stem}-{device}-speedup.png"
        speedup_title = f"{device}: speedup over the baseline (batch {batch_size}, seq {seq_len})"
        if _speedup_plot(group, out_dir / name, speedup_title):
            figures[f"{device}: speedup over the baseline cell"] = name
    return figures


def _pareto_plot(group: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    group = group.reset_index(drop=True)
    latency, accuracy = group["p50_ms"].tolist(), (group["accuracy"] * 100).tolist()
    front = pareto_front(latency, accuracy)
    figure, axes = plt.subplots(figsize=(9, 5.5))
    for model, part in group.groupby("model", sort=False):
        axes.scatter(part["p50_ms"], part["accuracy"] * 100, label=model, s=36)
    axes.plot([latency[i] for i in front], [accuracy[i] for i in front], "k--", lw=1, label="Pareto frontier")
    for i in front:
        row = group.iloc[i]
        axes.annotate(f"{row['model']}/{row['exporter']}/{row['backend']}", (latency[i], accuracy[i]),
                      fontsize=7, xytext=(4, 3), textcoords="offset points")  # fmt: skip
    axes.set_xscale("log")
    axes.set_xlabel("p50 latency (ms, log scale)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _speedup_plot(group: pd.DataFrame, path: Path, title: str) -> bool:
    import matplotlib.pyplot as plt

    group = group.dropna(subset=["speedup"]).sort_values("speedup")
    if group.empty:
        return False
    labels = [f"{r.model}/{r.exporter}/{r.backend}" for r in group.itertuples()]
    figure, axes = plt.subplots(figsize=(9, 0.3 * len(group) + 1.5))
    # the 95% interval over rounds and inputs, where the rows carry per-round data
    low = (group["speedup"] - group["speedup_ci_low"]).clip(lower=0).fillna(0)
    high = (group["speedup_ci_high"] - group["speedup"]).clip(lower=0).fillna(0)
    bars = axes.barh(labels, group["speedup"], xerr=[low, high], color="tab:blue", error_kw={"lw": 0.8})
    axes.bar_label(bars, labels=[f"{s:.1f}x" for s in group["speedup"]], fontsize=7, padding=2)
    axes.axvline(1.0, color="k", lw=0.8)
    axes.set_xlabel("speedup over the baseline (paired per round; bars: 95% interval)")
    axes.set_title(title, fontsize=10)
    axes.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
