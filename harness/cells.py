"""Turn a cell's raw outcome into its result row: latency statistics, accuracy, compute."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.cache import dir_size_mb
from harness.compute import mean_batch_flops
from harness.isolation import CellOutcome
from harness.results import CellRow
from harness.stats import (
    PERCENTILE_METHOD,
    accuracy_gate,
    bootstrap_ci,
    classification_scores,
    coefficient_of_variation,
    mcnemar_exact,
    repeat_spread,
    stability_warnings,
    summarize_latency,
)

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".bin", ".onnx", ".onnx_data")


@dataclass(frozen=True)
class CellContext:
    """What every cell of one variant is judged against."""

    labels: np.ndarray
    teacher_logits: np.ndarray
    reference_logits: np.ndarray
    accuracy_gate: float
    machine_peak: Mapping[str, float | None]
    lineage: Mapping[str, Any]


def timer_resolution_ms() -> float:
    return time.get_clock_info("perf_counter").resolution * 1000.0


def artifact_size_mb(path: Path) -> float:
    """Size of the weight files only, so tokenizers and configs do not blur small models."""
    files = [p for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES]
    return sum(p.stat().st_size for p in files) / 2**20 if files else dir_size_mb(path)


def accuracy_fields(scored: CellOutcome, context: CellContext) -> dict[str, Any]:
    if scored.status != "ok" or scored.logits is None:
        return {"score_error": scored.reason, "accuracy_gate": "n/a"}
    fields = classification_scores(scored.logits, context.labels, context.reference_logits)
    source_accuracy = float((context.reference_logits.argmax(-1) == context.labels).mean())
    teacher_correct = context.teacher_logits.argmax(-1) == context.labels
    variant_correct = scored.logits.argmax(-1) == context.labels
    return {
        **fields,
        "mcnemar_p": mcnemar_exact(teacher_correct, variant_correct),
        "accuracy_gate": accuracy_gate(fields["accuracy"], source_accuracy, context.accuracy_gate),
    }


def compute_fields(
    exporter: str, mean_ms: float, batches: Sequence[Mapping[str, np.ndarray]], context: CellContext
) -> dict[str, Any]:
    flops = mean_batch_flops(context.lineage, batches)
    gflops = flops / (mean_ms / 1000.0) / 1e9 if mean_ms > 0 else None
    int8_peak = context.machine_peak.get("int8_gflops")
    peak = int8_peak if "int8" in exporter and int8_peak else context.machine_peak.get("fp32_gflops")
    return {
        "gflops_per_s": gflops,
        "peak_fraction": gflops / peak if gflops and peak else None,
        "mean_tokens": float(np.mean([b["attention_mask"].sum() / b["attention_mask"].shape[0] for b in batches])),
    }


def ok_row(
    base: dict[str, Any],
    batch_size: int,
    seq_len: int | str,
    outcome: CellOutcome,
    scored: CellOutcome,
    batches: Sequence[Mapping[str, np.ndarray]],
    context: CellContext,
    run_info: dict[str, Any],
) -> CellRow:
    samples_ms = [s * 1000.0 for repeat in outcome.repeats for s in repeat]
    latency = summarize_latency(samples_ms, batch_size)
    p50_low, p50_high = bootstrap_ci(samples_ms, "median")
    mean_low, mean_high = bootstrap_ci(samples_ms, "mean")
    resolution = timer_resolution_ms()
    repeats_ms = [[s * 1000.0 for s in repeat] for repeat in outcome.repeats]
    return CellRow(
        **base,
        batch_size=batch_size,
        seq_len=seq_len,
        status="ok",
        **latency,
        **accuracy_fields(scored, context),
        **compute_fields(base["exporter"], latency["mean_ms"], batches, context),
        **outcome.memory,
        samples_ms=samples_ms,
        p50_ci_low_ms=p50_low,
        p50_ci_high_ms=p50_high,
        mean_ci_low_ms=mean_low,
        mean_ci_high_ms=mean_high,
        cv=coefficient_of_variation(samples_ms),
        **repeat_spread(repeats_ms),
        warnings=stability_warnings(samples_ms, resolution),
        timer_resolution_ms=resolution,
        hit_time_cap=outcome.hit_time_cap,
        percentile_method=PERCENTILE_METHOD,
        eval_samples=len(context.labels),
        run=run_info,
    )


def error_row(
    base: dict[str, Any], batch_size: int, seq_len: int | str, outcome: CellOutcome, run_info: dict[str, Any]
) -> CellRow:
    return CellRow(
        **base,
        batch_size=batch_size,
        seq_len=seq_len,
        status=outcome.status,
        reason=outcome.reason,
        peak_rss_mb=outcome.memory.get("peak_rss_mb"),
        run=run_info,
    )
