"""Markdown report from result rows: a pure function of the rows, rendered with pandas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.environment import machine_label
from harness.errors import one_line
from harness.results.machines import machines_section
from harness.results.scenario_section import CAPTION_PREFIX as SERVING_CAPTION
from harness.results.scenario_section import scenario_section
from harness.results.search_section import CAPTION_PREFIX as SEARCH_CAPTION
from harness.results.search_section import search_section
from harness.results.summary import add_speedups, interval, rows_frame, summary_table
from harness.results.variants import variants_section

# the second line of every report: what ``report -o`` and ``run`` look for before writing over a file
MARKER = "<!-- harness report: written by `python -m harness`, safe to overwrite -->"
TITLE_LIMIT = 200

VARIANT = ["model", "exporter", "backend"]
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
    "speedup_ci": "speedup (95% CI)",
    "inputs": "inputs (tokens vs split)",
    "instability_pct": "round-to-round CV (%)",
    "throughput_per_s": "throughput (seq/s)",
    "gflops_per_s": "GFLOP/s",
    "peak_pct": "% of peak",
    "cell_rss_mb": "cell RSS (MB)",
    "peak_rss_mb": "process peak RSS (MB)",
}
ACCURACY_COLUMNS = {
    "hardware": "hardware",
    "model": "model",
    "exporter": "exporter",
    "backend": "backend",
    "params_m": "params (M)",
    "size_mb": "size (MB)",
    "accuracy_shape": "measured at",
    "accuracy_pct": "accuracy (%)",
    "macro_f1_pct": "macro-F1 (%)",
    "agreement_pct": "agreement (%)",
    "max_abs_logit_diff": "max abs logit diff",
    "mcnemar_p": "McNemar p vs teacher",
    "accuracy_gate": "gate vs source",
    "teacher_gate": "gate vs teacher",
}
LINEAGE_FIELDS = {
    "parent": "parent",
    "stage": "stage",
    "model_type": "architecture",
    "layers": "layers",
    "heads": "heads",
    "ffn": "FFN width (sum)",
    "params_total": "params",
    "params_non_embedding": "params w/o embeddings",
    "flops_per_token": "FLOPs/token",
    "sparsity": "sparsity",
    "train_seconds": "train time (s)",
    "training_precision": "train precision",
    "validation_accuracy": "train-slice accuracy (%)",
}
BUSY_MARGIN = 0.5
ENV_FIELDS = ("host", "cpu", "isa", "cores", "threads", "load_avg_1m", "gpu", "os", "python", "git_commit")


def report_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows as the report and its figures use them (speedups included), computed once for both."""
    return add_speedups(rows_frame(rows))


def render_report(
    rows: Sequence[Mapping[str, Any]] | pd.DataFrame,
    title: str = "Benchmark report",
    figures: Mapping[str, str] | None = None,
    scenarios: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The whole report, from rows or their ``report_frame``; ``figures`` maps a caption to an image path
    relative to the report; ``scenarios``: the run's scenario rows, if any."""
    heading = f"# {one_line(title, TITLE_LIMIT)}\n{MARKER}"
    if len(rows) == 0:
        return f"{heading}\n\nNo results.\n"
    frame = rows if isinstance(rows, pd.DataFrame) else report_frame(rows)
    several_machines = frame["hardware"].nunique() > 1
    parts = [heading, "## Summary\n\n" + summary_table(frame) + "\n\n" + SUMMARY_NOTE, _runs(frame)]
    parts.append(_lineage(frame))
    for caption, path in (figures or {}).items():
        if not caption.startswith((SEARCH_CAPTION, SERVING_CAPTION)):
            parts.append(f"![{caption}]({path})")
    parts.append(search_section(frame, figures or {}))
    for device, group in frame.groupby("device", sort=False):
        parts.append(f"## {one_line(str(device), TITLE_LIMIT)}")
        ok = group[group["status"] == "ok"]
        if not ok.empty:
            parts.append("### Accuracy\n\n" + _accuracy_table(ok, several_machines))
            parts.append("### Latency\n\n" + _speed_table(ok, several_machines))
        others = group[group["status"] != "ok"]
        if not others.empty:
            parts.append("### Not run\n\n" + _reason_table(others))
    parts.append(machines_section(frame))
    parts.append(scenario_section(scenarios, frame.to_dict("records"), figures or {}))
    parts.append(_warnings(frame))
    parts.append(variants_section(frame))
    parts.append(_environment(frame))
    parts.append(_notes(frame))
    return "\n\n".join(p for p in parts if p) + "\n"


SUMMARY_NOTE = (
    "Per device and shape, the fastest variant whose accuracy at that shape keeps the gate fraction of the "
    "teacher's; speedup against the baseline cell, paired round by round, with a 95% interval over rounds and "
    "inputs."
)


def _runs(frame: pd.DataFrame) -> str:
    runs = {run.get("run_id"): run for run in frame["run"]}
    lines = ["## Runs", "", "| suite | suite hash | run | started | baseline | eval set |", "|---|---|---|---|---|---|"]
    for run in runs.values():
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
    table["validation_accuracy"] = pd.to_numeric(table["validation_accuracy"], errors="coerce") * 100
    table["accuracy (%)"] = table["model"].map(accuracy)
    table[["parent", "stage"]] = table[["parent", "stage"]].fillna("—")
    return "## Models\n\n" + table.rename(columns=LINEAGE_FIELDS).to_markdown(
        index=False, floatfmt=".4g", missingval="—"
    )


def _accuracy_table(ok: pd.DataFrame, with_hardware: bool) -> str:
    variants = ok.drop_duplicates(subset=["hardware", *VARIANT, "accuracy_shape"])
    table = variants.assign(
        params_m=variants["params"] / 1e6,
        accuracy_pct=variants["accuracy"] * 100,
        macro_f1_pct=variants["macro_f1"] * 100,
        agreement_pct=variants["agreement"] * 100,
    ).sort_values(["model", "accuracy_pct"], ascending=[True, False], kind="stable")
    return _markdown(table, ACCURACY_COLUMNS, with_hardware)


def _speed_table(ok: pd.DataFrame, with_hardware: bool) -> str:
    table = ok.assign(
        p50_ci=[interval(lo, hi) for lo, hi in zip(ok["p50_ci_low_ms"], ok["p50_ci_high_ms"])],
        speedup_ci=[_speedup(*v) for v in zip(ok["speedup"], ok["speedup_ci_low"], ok["speedup_ci_high"])],
        inputs=[_inputs(*v) for v in zip(ok["inputs_distinct"], ok["input_mean_tokens"], ok["split_mean_tokens"])],
        instability_pct=ok["instability_cv"] * 100,
        peak_pct=ok["peak_fraction"] * 100,
    ).sort_values(["batch_size", "seq_len", "hardware", "p50_ms"], kind="stable")
    return _markdown(table, SPEED_COLUMNS, with_hardware)


def _markdown(table: pd.DataFrame, columns: Mapping[str, str], with_hardware: bool) -> str:
    """A pipe table, numbers in ``.4g``, missing values as a dash. Formatted column by column: tabulate
    takes seconds per ten thousand rows, and these tables have a row per cell."""
    names = [c for c in columns if c in table and (with_hardware or c != "hardware")]
    cells = [_cells(table[name]) for name in names]
    numeric = [pd.api.types.is_numeric_dtype(table[name]) for name in names]
    headers = [columns[name] for name in names]
    widths = [max(len(h), *(len(c) for c in column), 3) for h, column in zip(headers, cells)]
    align = [(str.rjust if right else str.ljust) for right in numeric]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"]
    lines.append(
        "|"
        + "|".join(("-" * (w + 1) + ":") if right else (":" + "-" * (w + 1)) for w, right in zip(widths, numeric))
        + "|"
    )
    for row in zip(*cells):
        lines.append("| " + " | ".join(pad(c, w) for c, w, pad in zip(row, widths, align)) + " |")
    return "\n".join(lines)


def _cells(column: pd.Series) -> list[str]:
    if pd.api.types.is_float_dtype(column):
        return ["—" if value != value else format(value, ".4g") for value in column.tolist()]  # NaN != NaN
    shown: dict[Any, str] = {}  # text columns repeat a few names many times
    cells = []
    for value in column.tolist():
        try:
            text = shown[value]
        except KeyError:
            text = shown[value] = _cell(value)
        except TypeError:  # unhashable
            text = _cell(value)
        cells.append(text)
    return cells


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "—"
    text = format(value, ".4g") if isinstance(value, float) else str(value)
    return one_line(text, 200).replace("|", "\\|")  # a pipe in a name would split the cell


def _speedup(value: float, low: float, high: float) -> str | None:
    if pd.isna(value):
        return None
    return f"{value:.2f}x" + ("" if pd.isna(low) else f" ({interval(low, high, '.2f')})")


def _inputs(count: float, mean: float, split: float) -> str | None:
    if pd.isna(count):
        return None
    return f"{count:.0f} ({mean:.1f} vs {split:.1f})" if not pd.isna(mean) else f"{count:.0f}"


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
    # only the rows with something to say become dicts: a report can have 100,000 rows
    loads = frame["load_avg_1m"] if "load_avg_1m" in frame else [None] * len(frame)
    flagged = [
        isinstance(listed, list) and bool(listed) or _busy_load(load, run)
        for listed, load, run in zip(frame["warnings"], loads, frame["run"])
    ]
    lines = []
    for row in frame[flagged].to_dict("records"):
        found = [*(row["warnings"] if isinstance(row["warnings"], list) else []), *_busy(row)]
        if found:
            lines.append(f"- {row['model']}/{row['exporter']}/{row['backend']} {row['device']} "
                         f"batch {row['batch_size']} seq {row['seq_len']}: {'; '.join(found)}")  # fmt: skip
    return "\n".join(["## Measurement warnings", "", *lines]) if lines else ""


def _busy_load(loads: Any, run: Mapping[str, Any]) -> bool:
    """The cells themselves keep the 1-minute load average near the suite's thread count; more than
    half a thread above it means something else was running beside them."""
    threads = (run.get("env") or {}).get("threads") or 0
    return isinstance(loads, list) and bool(loads) and bool(threads) and max(loads) > threads + BUSY_MARGIN


def _busy(row: Mapping[str, Any]) -> list[str]:
    loads, env = row.get("load_avg_1m"), row["run"].get("env") or {}
    if not _busy_load(loads, row["run"]):
        return []
    return [f"machine busy: 1-minute load average up to {max(loads):.2f} with {env.get('threads')} benchmark "
            f"threads on {env.get('cores')} cores"]  # fmt: skip


def _environment(frame: pd.DataFrame) -> str:
    envs: dict[str, dict[str, Any]] = {}
    peaks: dict[str, Any] = {}
    for run in {run.get("run_id"): run for run in frame["run"]}.values():
        label = machine_label(run.get("env") or {})
        envs.setdefault(label, run.get("env") or {})
        peaks.setdefault(label, run.get("machine_peak") or {})
    lines = ["## Environment"]
    for label, env in envs.items():
        lines.append(f"### {label}\n")
        lines.append("| field | value |\n|---|---|")
        for name in ENV_FIELDS:
            value = env.get(name)
            lines.append(f"| {name} | {', '.join(map(str, value)) if isinstance(value, list) else value} |")
        for precision, peak in peaks[label].items():
            if isinstance(peak, dict) and isinstance(peak.get("gflops"), int | float) and peak["gflops"]:
                lines.append(f"| {precision} peak (GFLOP/s) | {peak['gflops']:.1f} ({peak.get('source')}) |")
        for package, version in sorted((env.get("versions") or {}).items()):
            lines.append(f"| {package} | {version or 'not installed'} |")
        lines.append("")
    return "\n".join(lines)


def _notes(frame: pd.DataFrame) -> str:
    methods = sorted({m for m in frame.get("percentile_method", pd.Series(dtype=str)).dropna()})
    gates = sorted({r.get("accuracy_gate") for r in frame["run"] if r.get("accuracy_gate")})
    notes = [
        "## Notes",
        "",
        "- Latency is one call of the backend on prepared inputs, device-synchronised. The run is planned up "
        "front and executed in interleaved rounds: each round loads every variant in a fresh process, in a seeded "
        "shuffled order (mirrored every other round), and gives each cell the same time share in whole passes "
        "over its inputs, after warming up every distinct input shape.",
        "- Inputs: at batch 1 with real lengths, a length-stratified sample of the eval split (the inputs column "
        "gives their mean real tokens beside the split's); at larger batches, random batches of the split, as "
        "many as the time share allows (at least the suite's minimum); fixed lengths time the same sentences.",
        "- Each input's latency is its median over rounds; percentiles (numpy "
        f"`{', '.join(methods) or 'linear'}`) are over inputs, each input weighing the same; a tail percentile "
        "needs at least 1/(1-q) distinct inputs, else it is left out. The p50 interval is a seeded 95% bootstrap "
        "that resamples rounds and inputs, never consecutive iterations.",
        "- speedup = baseline p50 / cell p50, computed per round (same round, same run) and combined as a "
        "geometric mean; its interval resamples rounds (paired) and inputs. Between runs use `harness compare`, "
        "which normalizes each cell by the same round's baseline cell.",
        "- Accuracy is measured on the whole eval split at each cell's own shape (the 'measured at' column); "
        "variants whose predictions cannot depend on batch composition (FP32) are scored once. Macro-F1 is the "
        "unweighted mean of the per-class F1 over the classes in the labels or the predictions (a class never "
        "predicted counts 0), so a model that neglects a small class shows there. McNemar p is the "
        "exact test of per-example correctness against the teacher's; gates pass when accuracy >= "
        f"{', '.join(str(g) for g in gates) or '0.99'} x the source model's (gate vs source) and the teacher's "
        "(gate vs teacher) accuracy.",
        "- GFLOP/s counts encoder matrix work on the padded batch. % of peak = the time the machine's measured "
        "GEMM peaks need for that work (INT8 layers at the INT8 peak, FP32 ones at the FP32 peak) over the "
        "measured time; the peaks are the best large GEMM of each runtime the suite uses, measured before any "
        "training or cell and again before the last round (the best of both is kept). GPU cells get no fraction: "
        "the peaks are the CPU's.",
        "- cell RSS is the resident memory the cell's process reached while timing that cell (the model loaded), "
        "above the process's own baseline after importing its runtime; process peak RSS includes the runtime's "
        "libraries.",
    ]
    envs = [run.get("env") or {} for run in {run.get("run_id"): run for run in frame["run"]}.values()]
    busy = [env for env in envs if (env.get("load_avg_1m") or 0) > (env.get("cores") or 1)]
    if busy:
        notes.append(
            "- **Warning:** the machine was busy when a run started (1-minute load average "
            f"{busy[0]['load_avg_1m']} on {busy[0].get('cores')} cores); other processes "
            "compete for the cores and multi-threaded timings can be far slower than on an idle machine."
        )
    computed, paired = frame.attrs.get("speedup_intervals", (0, 0))
    if computed < paired:
        notes.append(
            f"- Speedup intervals were bootstrapped for {computed} of the {paired} cells with per-round data "
            "(the summary's cells first): at a few milliseconds each, more would make this report too slow. "
            "The others show the point estimate."
        )
    return "\n".join(notes)
