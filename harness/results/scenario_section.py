"""The report's Serving scenarios section: per device, each variant's SingleStream latency, Offline
throughput and Server capacity under MLPerf LoadGen with the accuracy LoadGen's accuracy mode
scored, beside the timed cells of the same variant; and a PNG of p99 latency against offered QPS.

Pure over the rows (scenario rows and the run's cell rows), apart from drawing the figure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.environment import machine_label
from harness.errors import one_line
from harness.results.rounds import per_input
from harness.results.stats import PERCENTILE_METHOD
from harness.suite_scenarios import MLPERF_MIN_DURATION_S, MLPERF_MIN_OFFLINE_SAMPLES, MLPERF_MIN_QUERIES

CAPTION_PREFIX = "serving: "
NOTE = (
    "LoadGen issues the queries and times each from issue to completion; accuracy is scored by LoadGen's "
    "accuracy mode on the whole eval split under the same scenario and batching. Tokenisation is inside the "
    "latency where the scenario says `inside`. *timed*: the timed cell of the same variant in the same run "
    "(batch 1 p90 over the length-stratified inputs; throughput at the batcher's batch size, dynamic length). "
    "Each figure is one LoadGen run, without repeats or an interval (the server's is the best of its search's "
    "probes): differences of a few tens of percent between scenarios of one variant can be noise."
)
VARIANT = ("model", "exporter", "backend")


def _variant(row: Mapping[str, Any]) -> str:
    return "/".join(str(row.get(k)) for k in VARIANT)


def timed_p90(cell: Mapping[str, Any]) -> float | None:
    """p90 (ms) over a timed cell's inputs, each input's latency its median over rounds."""
    matrix = cell.get("input_ms")
    if not matrix:
        return None
    return float(np.percentile(per_input(np.asarray(matrix, dtype=float)), 90, method=PERCENTILE_METHOD))


def _run_id(row: Mapping[str, Any]) -> Any:
    return (row.get("run") or {}).get("run_id")


def machine(row: Mapping[str, Any]) -> str:
    """A fleet's machine by its selector name; a local run's by its CPU or GPU, as the cell rows name it."""
    name = row.get("hardware")
    return name if isinstance(name, str) and name else machine_label((row.get("run") or {}).get("env") or {})


def by_where(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows with each one's heading: its device, or where they come from several machines its
    machine and device, machines by name (the order in which they finished is no order)."""
    frame = pd.DataFrame(plain_rows(rows))
    if frame.empty:
        return frame
    records = frame.to_dict("records")
    if len({machine(r) for r in records}) == 1:
        frame["where"] = [str(r.get("device")) for r in records]
        return frame
    frame["where"] = [f"{machine(r)} · {r.get('device')}" for r in records]
    return frame.sort_values("where", kind="stable")


def plain_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The latest row of each scenario cell of each run, with pandas' NaN back to None."""
    latest: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        plain = {k: None if isinstance(v, float) and v != v else v for k, v in row.items()}
        cell = (str(plain.get(k)) for k in (*VARIANT, "device", "batch_size", "scenario"))
        key = (_run_id(plain), machine(plain), *cell)
        latest[key] = plain
    return list(latest.values())


def _timed_cells(cells: Sequence[Mapping[str, Any]]) -> dict[tuple, Mapping[str, Any]]:
    """The run's timed cells at dynamic length, by run, machine, variant, device and batch size: a
    scenario is compared with its own run's cells on its own machine."""
    return {
        (_run_id(c), machine(c), _variant(c), c.get("device"), c.get("batch_size")): c
        for c in cells
        if c.get("status") == "ok" and c.get("seq_len") == "dynamic"
    }


def summary_rows(scenarios: Sequence[Mapping[str, Any]], cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per run, device, variant and tokenisation: the three scenarios' figures and accuracies
    (a second scenario of the same type gets a row of its own)."""
    timed = _timed_cells(cells)
    table: dict[tuple, dict[str, Any]] = {}
    for row in plain_rows(scenarios):
        kind = row["scenario_type"]
        key = (_run_id(row), machine(row), row.get("device"), _variant(row), row.get("tokenize"))
        while kind in table.get(key, {}):
            key = (*key, row.get("scenario"))
        entry = table.setdefault(key, {"device": key[2], "variant": key[3], "tokenize": key[4], "accuracy": {}})
        timed_key = (*key[:2], key[3], key[2])  # run, machine, variant, device
        if row.get("status") != "ok":
            entry[kind] = f"{row.get('status')}"
            continue
        entry[kind] = row.get("result")
        entry["accuracy"][kind] = row.get("accuracy")
        if kind == "single-stream":
            cell = timed.get((*timed_key, 1))
            entry["timed_p90"] = timed_p90(cell) if cell else None
        elif kind == "offline":
            cell = timed.get((*timed_key, row.get("batch_size")))
            entry["timed_throughput"] = cell.get("throughput_per_s") if cell else None
            entry["offline_batch"] = row.get("batch_size")
        elif kind == "server":
            entry["bound_ms"] = (row.get("settings") or {}).get("latency_bound_ms")
    return list(table.values())


def _number(value: Any, digits: int = 1) -> str:
    if isinstance(value, str):
        return value
    return "—" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:,.{digits}f}"


def _accuracy(accuracy: Mapping[str, Any]) -> str:
    shown = [f"{accuracy[k] * 100:.2f}" for k in ("single-stream", "offline", "server") if accuracy.get(k) is not None]
    return " / ".join(shown) or "—"


def _summary_table(entries: list[dict[str, Any]]) -> str:
    lines = [
        "| variant | tokenise | SingleStream p90 ms (timed) | Offline samples/s (timed) | Server max QPS (bound) "
        "| accuracy % (SS / Off / Srv) |",
        "|---|---|---|---|---|---|",
    ]
    for e in entries:
        single = f"{_number(e.get('single-stream'), 2)} ({_number(e.get('timed_p90'), 2)})"
        offline = (
            f"{_number(e.get('offline'))} ({_number(e.get('timed_throughput'))} at b{e.get('offline_batch', '?')})"
        )
        bound = e.get("bound_ms")
        server = f"{_number(e.get('server'))}" + (f" (p99 ≤ {bound:g} ms)" if bound else "")
        lines.append(
            f"| {one_line(e['variant'], 120)} | {e['tokenize']} | {single} | {offline} | {server} "
            f"| {_accuracy(e['accuracy'])} |"
        )
    return "\n".join(lines)


def _details_table(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "| variant | scenario | result | valid | achieved/s | p50 ms | p90 ms | p99 ms | mean batch | queries "
        "(samples) | accuracy % | agrees with timed | early stopping |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        latency = r.get("latency_ms") or {}
        accuracy = r.get("accuracy")
        agreement = r.get("timed_agreement")
        early = early_stopping(r.get("validity") or {})
        lines.append(
            "| "
            + " | ".join(
                [
                    one_line(_variant(r), 120),
                    one_line(str(r.get("scenario")), 60),
                    f"{_number(r.get('result'), 2)} {r.get('result_unit') or ''}".strip()
                    if r.get("status") == "ok"
                    else f"{r.get('status')}: {one_line(str(r.get('reason')), 200)}",
                    {True: "yes", False: "**no**"}.get(r.get("valid"), "—"),
                    _number(r.get("achieved_qps")),
                    *(_number(latency.get(p), 2) for p in ("p50", "p90", "p99")),
                    _number(r.get("mean_batch"), 2),
                    _number(
                        r.get("offline_samples") if r.get("scenario_type") == "offline" else r.get("query_count"), 0
                    ),
                    _number(accuracy * 100 if accuracy is not None else None, 2),
                    f"{agreement * 100:.1f}% ({r.get('timed_shape')})" if agreement is not None else "—",
                    early,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def early_stopping(validity: Mapping[str, Any]) -> str:
    """LoadGen's early-stopping verdict in a few words (its full text stays in the row)."""
    met = validity.get("early_stopping_met")
    if met is None:
        return "—"
    if met:
        estimate = validity.get("early_stopping_ms")
        return "met" + (f", estimate {estimate:.2f} ms" if estimate else "")
    needed = re.search(r"at least (\d+) more queries", validity.get("early_stopping") or "")
    return "**not met**" + (f": {int(needed.group(1)):,} more queries needed" if needed else "")


def _shortfalls(rows: Sequence[Mapping[str, Any]]) -> str:
    """Per scenario type, how the runs compare with MLPerf's own minimums."""
    lines = []
    for kind in ("single-stream", "server", "offline"):
        mine = [r for r in rows if r.get("scenario_type") == kind and r.get("below_mlperf")]
        if not mine:
            continue
        shortest = min((r.get("settings") or {}).get("min_duration_s", 0) for r in mine)
        counts = [r["offline_samples"] if kind == "offline" else r.get("query_count") for r in mine]
        counts = [int(c) for c in counts if c is not None and c == c]  # NaN: a row without the count
        unit, need = (
            ("samples", MLPERF_MIN_OFFLINE_SAMPLES) if kind == "offline" else ("queries", MLPERF_MIN_QUERIES[kind])
        )
        spread = f"{min(counts):,}–{max(counts):,} {unit}" if counts else f"? {unit}"
        lines.append(
            f"- {kind}: runs of at least {shortest:g} s with {spread}; MLPerf asks {MLPERF_MIN_DURATION_S:g} s "
            f"and {need:,} {unit}"
        )
    if not lines:
        return ""
    return "Shorter than MLPerf's own minimums, so these are indicative figures, not MLPerf results:\n\n" + "\n".join(
        lines
    )


def scenario_section(
    scenarios: Sequence[Mapping[str, Any]], cells: Sequence[Mapping[str, Any]], figures: Mapping[str, str]
) -> str:
    if not scenarios:
        return ""
    parts = ["## Serving scenarios (MLPerf LoadGen)", NOTE]
    for device, group in by_where(scenarios).groupby("where", sort=False):
        rows = plain_rows(group.to_dict("records"))
        parts.append(f"### {one_line(str(device), 60)}")
        parts.append(_summary_table(summary_rows(rows, cells)))
        parts.append(_details_table(rows))
        parts.append(_shortfalls(rows))
        caption = CAPTION_PREFIX + one_line(str(device), 60)
        if caption in figures:
            parts.append(f"![{caption}: p99 latency against offered QPS]({figures[caption]})")
    return "\n\n".join(p for p in parts if p)


def latency_curves(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[float, float, bool]]]:
    """Per variant and server scenario: (offered QPS, p99 ms, valid) of every run, by offered QPS."""
    curves: dict[str, list[tuple[float, float, bool]]] = {}
    for r in rows:
        if r.get("scenario_type") != "server" or r.get("status") != "ok":
            continue
        probes = r.get("probes") or [
            {"target_qps": r.get("offered_qps"), "p99_ms": (r.get("latency_ms") or {}).get("p99"), "valid": r["valid"]}
        ]
        points = [(p["target_qps"], p["p99_ms"], bool(p["valid"])) for p in probes if p.get("p99_ms") is not None]
        if points:
            curves[f"{_variant(r)} ({r.get('scenario')})"] = sorted(points)
    return curves


def scenario_figures(scenarios: Sequence[Mapping[str, Any]], out_dir: Path, stem: str) -> dict[str, str]:
    """One PNG per device: p99 latency against offered QPS per variant, the bound marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = {}
    frame = by_where(scenarios)
    if frame.empty:
        return figures
    for index, (device, group) in enumerate(frame.groupby("where", sort=False)):
        rows = plain_rows(group.to_dict("records"))
        curves = latency_curves(rows)
        if not curves:
            continue
        figure, axes = plt.subplots(figsize=(8, 5))
        for label, points in curves.items():
            qps, p99, valid = zip(*points)
            line = axes.plot(qps, p99, marker="o", label=one_line(label, 70))[0]
            invalid = [(q, p) for q, p, v in points if not v]
            if invalid:
                axes.scatter(*zip(*invalid), marker="x", color=line.get_color(), s=60)
        bounds = {(r.get("settings") or {}).get("latency_bound_ms") for r in rows if r.get("scenario_type") == "server"}
        for bound in sorted(b for b in bounds if b):
            axes.axhline(bound, color="grey", linestyle="--", label=f"bound {bound:g} ms")
        axes.set_yscale("log")
        axes.set_xlabel("offered QPS (Poisson arrivals)")
        axes.set_ylabel("p99 latency (ms, log scale)")
        axes.set_title(f"{one_line(str(device), 40)}: server scenario, p99 against offered load (x: invalid run)")
        axes.legend(fontsize="small")
        name = f"{stem}-serving-{index}.png"
        figure.tight_layout()
        figure.savefig(out_dir / name, dpi=110)
        plt.close(figure)
        figures[CAPTION_PREFIX + one_line(str(device), 60)] = name
    return figures
