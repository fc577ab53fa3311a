"""Markdown report from result rows: a pure function of the rows, rendered with pandas."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from harness.environment import machine_label

KEY = ["machine", "device", "batch_size", "seq_len"]
TABLE_COLUMNS = {
    "model": "model",
    "exporter": "exporter",
    "backend": "backend",
    "batch_size": "batch",
    "seq_len": "seq len",
    "params_m": "params (M)",
    "size_mb": "size (MB)",
    "accuracy_pct": "accuracy (%)",
    "agreement_pct": "agreement (%)",
    "max_abs_logit_diff": "max abs logit diff",
    "p50_ms": "p50 (ms)",
    "p95_ms": "p95 (ms)",
    "p99_ms": "p99 (ms)",
    "throughput_per_s": "throughput (seq/s)",
    "peak_rss_mb": "peak RSS (MB)",
    "speedup": "speedup",
}
NUMERIC_COLUMNS = (
    "params",
    "size_mb",
    "accuracy",
    "agreement",
    "max_abs_logit_diff",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "throughput_per_s",
    "iterations",
    "peak_rss_mb",
)
ENV_FIELDS = ("host", "cpu", "isa", "cores", "threads", "load_avg_1m", "gpu", "os", "python", "git_commit")


def rows_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    runs = frame["run"] if "run" in frame else pd.Series([{}] * len(frame))
    frame["machine"] = [machine_label(r.get("env", {})) for r in runs]
    frame["baseline"] = [r.get("baseline") for r in runs]
    frame["seq_len"] = frame["seq_len"].astype(str)
    for column in NUMERIC_COLUMNS:
        frame[column] = pd.to_numeric(frame.get(column), errors="coerce")
    return frame


def add_speedups(frame: pd.DataFrame) -> pd.DataFrame:
    """speedup = baseline p50 / cell p50, matching machine, device, batch size and sequence length."""
    frame = frame.copy()
    cell_id = frame["model"] + "/" + frame["exporter"] + "/" + frame["backend"]
    baselines = frame[(cell_id == frame["baseline"]) & (frame["status"] == "ok")]
    reference = baselines.set_index(KEY)["p50_ms"]
    reference = reference[~reference.index.duplicated(keep="last")]
    keys = pd.MultiIndex.from_frame(frame[KEY])
    frame["speedup"] = reference.reindex(keys).to_numpy() / frame["p50_ms"].to_numpy()
    return frame


def render_report(rows: Sequence[dict[str, Any]], title: str = "Benchmark report") -> str:
    if not rows:
        return f"# {title}\n\nNo results.\n"
    frame = add_speedups(rows_frame(rows))
    parts = [f"# {title}", _summary(frame)]
    for (machine, device), group in frame.groupby(["machine", "device"], sort=False):
        parts.append(f"## {device} on {machine}")
        ok = group[group["status"] == "ok"]
        if not ok.empty:
            parts.append(_cell_table(ok))
        others = group[group["status"] != "ok"]
        if not others.empty:
            parts.append("### Not run\n\n" + _reason_table(others))
    parts.append(_environment(frame))
    parts.append(_notes(frame))
    return "\n\n".join(p for p in parts if p) + "\n"


def _summary(frame: pd.DataFrame) -> str:
    runs = pd.DataFrame([r for r in frame["run"]]).drop_duplicates(subset=["run_id"])
    lines = ["| suite | suite hash | run | started | baseline | eval set |", "|---|---|---|---|---|---|"]
    for run in runs.to_dict("records"):
        lines.append(
            f"| {run.get('suite')} | `{run.get('suite_hash')}` | `{run.get('run_id')}` | {run.get('started')} "
            f"| {run.get('baseline')} | {run.get('eval_origin', '')} |"
        )
    counts = frame["status"].value_counts().to_dict()
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return "\n".join(lines) + f"\n\nCells: {tally}."


def _cell_table(ok: pd.DataFrame) -> str:
    table = ok.assign(
        params_m=ok["params"] / 1e6,
        accuracy_pct=ok["accuracy"] * 100,
        agreement_pct=ok["agreement"] * 100,
    )
    table = table.sort_values(["batch_size", "seq_len", "model", "p50_ms"], kind="stable")
    table = table[[c for c in TABLE_COLUMNS if c in table]].rename(columns=TABLE_COLUMNS)
    return table.to_markdown(index=False, floatfmt=".4g", missingval="—")


def _reason_table(others: pd.DataFrame) -> str:
    grouped = (
        others.groupby(["model", "exporter", "backend", "status", "reason"], sort=False, dropna=False)
        .agg(cells=("batch_size", "size"))
        .reset_index()
    )
    return grouped.to_markdown(index=False)


def _environment(frame: pd.DataFrame) -> str:
    envs = {}
    for run in frame["run"]:
        env = run.get("env", {})
        envs.setdefault(machine_label(env), env)
    lines = ["## Environment"]
    for label, env in envs.items():
        lines.append(f"### {label}\n")
        lines.append("| field | value |\n|---|---|")
        for name in ENV_FIELDS:
            value = env.get(name)
            lines.append(f"| {name} | {', '.join(value) if isinstance(value, list) else value} |")
        for package, version in sorted(env.get("versions", {}).items()):
            lines.append(f"| {package} | {version or 'not installed'} |")
        lines.append("")
    return "\n".join(lines)


def _notes(frame: pd.DataFrame) -> str:
    methods = sorted({m for m in frame.get("percentile_method", pd.Series(dtype=str)).dropna()})
    notes = ["## Notes", ""]
    notes.append(
        "- Latency is one call of the backend on prepared inputs (device-synchronised); "
        f"percentiles use the `{', '.join(methods) or 'linear'}` method over all timed iterations."
    )
    notes.append("- speedup = baseline p50 / cell p50 at the same device, batch size and sequence length.")
    notes.append(
        "- agreement and max abs logit diff compare each variant with its source model in eager FP32 on CPU, "
        "over the whole eval split; accuracy uses the same split."
    )
    notes.append("- seq len `dynamic` pads each batch to its longest real sentence.")
    busy = [r for r in frame["run"] if r.get("env", {}).get("load_avg_1m", 0) > 0.5 * (r["env"].get("cores") or 1)]
    if busy:
        notes.append(
            "- **Warning:** the machine was busy when a run started (1-minute load average "
            f"{busy[0]['env']['load_avg_1m']} on {busy[0]['env'].get('cores')} cores); other processes "
            "compete for the cores and multi-threaded timings can be far slower than on an idle machine."
        )
    if frame.get("hit_time_cap", pd.Series(dtype=bool)).fillna(False).astype(bool).any():
        notes.append("- Some cells hit timing.max_seconds before timing.min_iterations: they have few samples.")
    return "\n".join(notes)
