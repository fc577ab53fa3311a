"""Turn a cell's measurements from every round into its result row: latency, accuracy, compute."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.cache import dir_size_mb
from harness.measure.flops import flops_by_precision
from harness.measure.peak import peak_fraction
from harness.results import rounds
from harness.results.rows import CellRow
from harness.results.stats import PERCENTILE_METHOD, accuracy_gate, classification_scores, macro_f1, mcnemar_exact

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".bin", ".onnx", ".onnx_data")


@dataclass(frozen=True)
class CellContext:
    """What every cell of one variant is judged against."""

    labels: np.ndarray
    teacher_logits: np.ndarray
    reference_logits: np.ndarray
    accuracy_gate: float
    peaks: Mapping[str, Mapping[str, Any]]
    lineage: Mapping[str, Any]
    precision: str
    int8_attention: bool = False  # the attention products run in INT8 too (static INT8 graphs)


@dataclass(frozen=True)
class Workload:
    """The timed inputs of one cell: their shapes, sentences and real token counts."""

    shapes: Sequence[tuple[int, int]]
    mean_tokens: float
    split_mean_tokens: float
    key: str
    starts: list[int]


@dataclass(frozen=True)
class Scored:
    """A variant's logits over the whole eval split, and the shape they were computed at."""

    logits: np.ndarray | None
    shape: str
    error: str | None = None


def timer_resolution_ms() -> float:
    return time.get_clock_info("perf_counter").resolution * 1000.0


def artifact_size_mb(path: Path) -> float:
    """Size of the weight files only, so tokenizers and configs do not blur small models."""
    files = [p for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES]
    return sum(p.stat().st_size for p in files) / 2**20 if files else dir_size_mb(path)


def accuracy_fields(scored: Scored, context: CellContext) -> dict[str, Any]:
    """Accuracy and macro-F1 at ``scored.shape``, agreement with the source model, and gates against
    the source model and the teacher (the suite's baseline model).

    McNemar and the gates compare correct against incorrect per example, whatever the number of
    classes: a variant that errs on the same sentences with another wrong class changes neither."""
    if scored.logits is None:
        return {"score_error": scored.error, "accuracy_gate": "n/a", "teacher_gate": "n/a"}
    fields = classification_scores(scored.logits, context.labels, context.reference_logits)
    source_accuracy = float((context.reference_logits.argmax(-1) == context.labels).mean())
    teacher_correct = context.teacher_logits.argmax(-1) == context.labels
    variant_correct = scored.logits.argmax(-1) == context.labels
    teacher_accuracy = float(teacher_correct.mean())
    return {
        **fields,
        "macro_f1": macro_f1(scored.logits.argmax(-1), context.labels),
        "accuracy_shape": scored.shape,
        "source_accuracy": source_accuracy,
        "teacher_accuracy": teacher_accuracy,
        "mcnemar_p": mcnemar_exact(teacher_correct, variant_correct),
        "accuracy_gate": accuracy_gate(fields["accuracy"], source_accuracy, context.accuracy_gate),
        "teacher_gate": accuracy_gate(fields["accuracy"], teacher_accuracy, context.accuracy_gate),
    }


def compute_fields(mean_ms: float, workload: Workload, context: CellContext) -> dict[str, Any]:
    flops = flops_by_precision(context.lineage, workload.shapes, context.precision, context.int8_attention)
    seconds = mean_ms / 1000.0
    fraction = peak_fraction(flops, seconds, context.peaks)
    sources = [context.peaks[p]["source"] for p in flops if p in context.peaks]
    return {
        "gflops_per_s": sum(flops.values()) / seconds / 1e9 if seconds > 0 else None,
        "peak_fraction": fraction,
        "peak_source": ", ".join(sources) or None,
    }


def ok_row(
    base: Mapping[str, Any],
    matrix_ms: np.ndarray,
    scored: Scored,
    workload: Workload,
    context: CellContext,
    extra: Mapping[str, Any],
    run_info: dict[str, Any],
) -> CellRow:
    """``matrix_ms[r, i]``: median latency of input ``i`` in round ``r``; ``extra``: timed calls,
    per-round load averages and memory."""
    latency = rounds.summarize(matrix_ms, int(base["batch_size"]))
    compute = compute_fields(latency["mean_ms"], workload, context)
    warnings = list(latency.pop("warnings"))
    if compute["peak_fraction"] is not None and compute["peak_fraction"] > 1:
        warnings.append(f"{compute['peak_fraction']:.0%} of the measured peak: the FLOP count or the peak is wrong")
    return CellRow(
        **base,
        status="ok",
        **latency,
        **accuracy_fields(scored, context),
        **compute,
        **extra,
        precision=context.precision,
        inputs_distinct=int(matrix_ms.shape[1]),
        inputs_key=workload.key,
        input_starts=workload.starts,
        input_mean_tokens=workload.mean_tokens,
        split_mean_tokens=workload.split_mean_tokens,
        rounds=int(matrix_ms.shape[0]),
        input_ms=matrix_ms.tolist(),
        warnings=warnings,
        timer_resolution_ms=timer_resolution_ms(),
        percentile_method=PERCENTILE_METHOD,
        eval_samples=len(context.labels),
        run=run_info,
    )


def round_matrix_ms(passes_by_round: Sequence[Sequence[Sequence[float]]]) -> np.ndarray:
    """Rounds x inputs: each input's median over the passes of each round, in milliseconds."""
    return np.asarray([np.median(np.asarray(passes, dtype=float), axis=0) for passes in passes_by_round]) * 1000.0


def failed_row(
    base: Mapping[str, Any], status: str, reason: str | None, run_info: dict[str, Any], **extra: Any
) -> CellRow:
    return CellRow(**base, status=status, reason=reason, run=run_info, **extra)
