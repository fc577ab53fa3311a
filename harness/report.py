"""Markdown report from result rows: a pure function of the rows, rendered with pandas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from harness.environment import machine_label

KEY = ["hardware", "device", "batch_size", "seq_len"]
VARIANT = ["model", "exporter", "backend"]
NUMERIC_COLUMNS = (
    "params", "size_mb", "accuracy", "agreement", "max_abs_logit_diff", "p50_ms", "p95_ms", "p99_ms",
    "mean_ms", "std_ms", "throughput_per_s", "iterations", "peak_rss_mb", "p50_ci_low_ms", "p50_ci_high_ms",
    "cv", "mcnemar_p", "gflops_per_s", "peak_fraction",
)  # fmt: skip
SPEED_COLUMNS = {
    "hardware": "hardware",
    "model": "model",
    "exporter": "exporter",
    "backend": "backend",
    "batch_size": "batch",
    "seq_len": "seq len",
    "p50_ms": "p50 (ms)",
    "p50_ci": "p50 95% CI",
    "p95_ms": "p95 (ms)",
    "p99_ms": "p99 (ms)",
    "cv_pct": "CV (%)",
    "throughput_per_s": "throughput (seq/s)",
    "speedup": "speedup",
    "gflops_per_s": "GFLOP/s",
    "peak_pct": "% of peak",
    "peak_rss_mb": "peak RSS (MB)",
}
ACCURACY_COLUMNS = {
    "hardware": "hardware",
    "model": "model",
    "exporter": "exporter",
    "backend": "backend",
    "params_m": "params (M)",
    "size_mb": "size (MB)",
    "accuracy_pct": "accuracy (%)",
    "agreement_pct": "agreement (%)",
    "max_abs_logit_diff": "max abs logit diff",
    "mcnemar_p": "McNemar p vs teacher",
    "accuracy_gate": "gate",
}
LINEAGE_FIELDS = {
    "parent": "parent",
    "stage": "stage",
    "layers": "layers",
    "heads": "heads",
    "ffn": "FFN width (sum)",
    "params_total": "params",
    "params_non_embedding": "params w/o embeddings",
    "flops_per_token": "FLOPs/token",
    "sparsity": "sparsity",
    "train_seconds": "train time (s)",
}
ENV_FIELDS = ("host", "cpu", "isa", "cores", "threads", "load_avg_1m", "gpu", "os", "python", "git_commit")


def rows_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame([dict(r) for r in rows])
    runs = frame["run"] if "run" in frame else pd.Series([{}] * len(frame))
    frame["run"] = [r if isinstance(r, dict) else {} for r in runs]
    frame["hardware"] = [machine_label(r.get("env", {})) for r in frame["run"]]
    frame["baseline"] = [r.get("baseline") for r in frame["run"]]
    frame["seq_len"] = frame["seq_len"].astype(str)
    for column in NUMERIC_COLUMNS:
        frame[column] = pd.to_numeric(frame.get(column), errors="coerce")
    return frame


def add_speedups(frame: pd.DataFrame) -> pd.DataFrame:
    """speedup = baseline p50 / cell p50, matching hardware, device, batch size and sequence length."""
    frame = frame.copy()
    cell_id = frame["model"] + "/" + frame["exporter"] + "/" + frame["backend"]
    baselines = frame[(cell_id == frame["baseline"]) & (frame["status"] == "ok")]
    reference = baselines.set_index(KEY)["p50_ms"]
    reference = reference[~reference.index.duplicated(keep="last")]
    keys = pd.MultiIndex.from_frame(frame[KEY])
    frame["speedup"] = reference.reindex(keys).to_numpy() / frame["p50_ms"].to_numpy()
    return frame


def render_report(
    rows: Sequence[Mapping[str, Any]], title: str = "Benchmark report", figures: Mapping[str, str] | None = None
) -> str:
    """The whole report; ``figures`` maps a caption to an image path relative to the report."""
    if not rows:
        return f"# {title}\n\nNo results.\n"
    frame = add_speedups(rows_frame(rows))
    several_machines = frame["hardware"].nunique() > 1
    parts = [f"# {title}", _summary(frame), _lineage(frame)]
    for caption, path in (figures or {}).items():
        parts.append(f"![{caption}]({path})")
    for device, group in frame.groupby("device", sort=False):
        parts.append(f"## {device}")
        ok = group[group["status"] == "ok"]
        if not ok.empty:
            parts.append("### Accuracy\n\n" + _accuracy_table(ok, several_machines))
            parts.append("### Latency\n\n" + _speed_table(ok, several_machines))
        others = group[group["status"] != "ok"]
        if not others.empty:
            parts.append("### Not run\n\n" + _reason_table(others))
    parts.append(_warnings(frame))
    parts.append(_environment(frame))
    parts.append(_notes(frame))
    return "\n\n".join(p for p in parts if p) + "\n"


def _summary(frame: pd.DataFrame) -> str:
    runs = pd.DataFrame(list(frame["run"])).drop_duplicates(subset=["run_id"])
    lines = ["| suite | suite hash | run | started | baseline | eval set |", "|---|---|---|---|---|---|"]
    for run in runs.to_dict("records"):
        lines.append(
            f"| {run.get('suite')} | `{run.get('suite_hash')}` | `{run.get('run_id')}` | {run.get('started')} "
            f"| {run.get('baseline')} | {run.get('eval_origin', '')} |"
        )
    counts = frame["status"].value_counts().to_dict()
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return "\n".join(lines) + f"\n\nCells: {tally}."


def _lineage(frame: pd.DataFrame) -> str:
    if "lineage" not in frame:
        return ""
    models = frame.dropna(subset=["lineage"]).drop_duplicates(subset=["model"])
    if models.empty:
        return ""
    table = pd.DataFrame(
        [{"model": m, **{k: lin.get(k) for k in LINEAGE_FIELDS}} for m, lin in zip(models["model"], models["lineage"])]
    )
    reference = frame[(frame["exporter"] == "eager-fp32") & (frame["device"] == "cpu") & (frame["status"] == "ok")]
    accuracy = reference.drop_duplicates(subset=["model"]).set_index("model")["accuracy"] * 100
    table["accuracy (%)"] = table["model"].map(accuracy)
    table[["parent", "stage"]] = table[["parent", "stage"]].fillna("—")
    return "## Models\n\n" + table.rename(columns=LINEAGE_FIELDS).to_markdown(
        index=False, floatfmt=".4g", missingval="—"
    )


def _accuracy_table(ok: pd.DataFrame, with_hardware: bool) -> str:
    variants = ok.drop_duplicates(subset=["hardware", *VARIANT])
    table = variants.assign(
        params_m=variants["params"] / 1e6,
        accuracy_pct=variants["accuracy"] * 100,
        agreement_pct=variants["agreement"] * 100,
    ).sort_values(["model", "accuracy_pct"], ascending=[True, False], kind="stable")
    return _markdown(table, ACCURACY_COLUMNS, with_hardware)


def _speed_table(ok: pd.DataFrame, with_hardware: bool) -> str:
    table = ok.assign(
        p50_ci=[_interval(lo, hi) for lo, hi in zip(ok["p50_ci_low_ms"], ok["p50_ci_high_ms"])],
        cv_pct=ok["cv"] * 100,
        peak_pct=ok["peak_fraction"] * 100,
    ).sort_values(["batch_size", "seq_len", "hardware", "p50_ms"], kind="stable")
    return _markdown(table, SPEED_COLUMNS, with_hardware)


def _markdown(table: pd.DataFrame, columns: Mapping[str, str], with_hardware: bool) -> str:
    names = [c for c in columns if c in table and (with_hardware or c != "hardware")]
    shown = table[names].astype(object).where(table[names].notna(), None)  # tabulate marks only None
    return shown.rename(columns=columns).to_markdown(index=False, floatfmt=".4g", missingval="—")


def _interval(low: float, high: float) -> str:
    return "—" if pd.isna(low) or pd.isna(high) else f"{low:.4g}–{high:.4g}"


def _reason_table(others: pd.DataFrame) -> str:
    grouped = (
        others.groupby(["hardware", *VARIANT, "status", "reason"], sort=False, dropna=False)
        .agg(cells=("batch_size", "size"))
        .reset_index()
    )
    return grouped.to_markdown(index=False)


def _warnings(frame: pd.DataFrame) -> str:
    if "warnings" not in frame:
        return ""
    flagged = frame[frame["warnings"].map(lambda w: isinstance(w, list) and len(w) > 0)]
    if flagged.empty:
        return ""
    lines = ["## Measurement warnings", ""]
    for row in flagged.itertuples():
        lines.append(f"- {row.model}/{row.exporter}/{row.backend} {row.device} batch {row.batch_size} "
                     f"seq {row.seq_len}: {'; '.join(row.warnings)}")  # fmt: skip
    return "\n".join(lines)


def _environment(frame: pd.DataFrame) -> str:
    envs: dict[str, dict[str, Any]] = {}
    peaks: dict[str, Any] = {}
    for run in frame["run"]:
        label = machine_label(run.get("env", {}))
        envs.setdefault(label, run.get("env", {}))
        peaks.setdefault(label, run.get("machine_peak") or {})
    lines = ["## Environment"]
    for label, env in envs.items():
        lines.append(f"### {label}\n")
        lines.append("| field | value |\n|---|---|")
        for name in ENV_FIELDS:
            value = env.get(name)
            lines.append(f"| {name} | {', '.join(value) if isinstance(value, list) else value} |")
        for name, value in peaks[label].items():
            lines.append(f"| GEMM peak {name} | {value:.1f} |" if value else f"| GEMM peak {name} | — |")
        for package, version in sorted(env.get("versions", {}).items()):
            lines.append(f"| {package} | {version or 'not installed'} |")
        lines.append("")
    return "\n".join(lines)


def _notes(frame: pd.DataFrame) -> str:
    methods = sorted({m for m in frame.get("percentile_method", pd.Series(dtype=str)).dropna()})
    gates = sorted({r.get("accuracy_gate") for r in frame["run"] if r.get("accuracy_gate")})
    notes = [
        "## Notes",
        "",
        "- Latency is one call of the backend on prepared inputs, device-synchronised, each cell in its own "
        f"process; percentiles use the `{', '.join(methods) or 'linear'}` method over all timed iterations, "
        "and the p50 interval is a seeded 95% percentile bootstrap.",
        "- The 95% intervals describe sampling noise within this run. Between runs, CPU frequency, cache and "
        "memory placement and other tenants move p50s by more than that (on the reference 2-core VM, 1-7% for "
        "INT8 cells and up to about 30% for FP32 cells between back-to-back runs), so judge a change between "
        "runs with `harness compare` and its threshold, not by overlapping intervals.",
        "- speedup = baseline p50 / cell p50 at the same hardware, device, batch size and sequence length.",
        "- agreement and max abs logit diff compare each variant with its source model in eager FP32 on CPU over "
        "the whole eval split. McNemar p is the exact test of the variant's per-example correctness against the "
        f"teacher's; gate = pass when accuracy >= {', '.join(str(g) for g in gates) or '0.99'} x the source "
        "model's accuracy.",
        "- GFLOP/s counts encoder matrix work on the padded batch; % of peak compares it with the run's own "
        "large-GEMM measurement (INT8 peak for INT8 variants where measured).",
        "- seq len `dynamic` pads each batch to its longest real sentence.",
    ]
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
