"""Pure summary statistics over latency samples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILE_METHOD = "linear"  # numpy's default, Hyndman & Fan type 7


def percentile(samples: Sequence[float], q: float) -> float:
    values = np.asarray(samples, dtype=float)
    if values.size == 0:
        raise ValueError("no samples")
    return float(np.percentile(values, q, method=PERCENTILE_METHOD))


def summarize_latency(samples_ms: Sequence[float], batch_size: int) -> dict[str, float | int]:
    """p50/p95/p99, mean, sample standard deviation (n-1) and sequences per second."""
    values = np.asarray(samples_ms, dtype=float)
    if values.size == 0:
        raise ValueError("no samples")
    mean = float(values.mean())
    return {
        "p50_ms": percentile(values, 50),
        "p95_ms": percentile(values, 95),
        "p99_ms": percentile(values, 99),
        "mean_ms": mean,
        "std_ms": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "throughput_per_s": batch_size * 1000.0 / mean if mean > 0 else float("inf"),
        "iterations": int(values.size),
    }


def classification_scores(
    logits: np.ndarray, labels: Sequence[int], reference_logits: np.ndarray | None
) -> dict[str, float | None]:
    """Accuracy, label agreement with the reference model and max |logit difference|."""
    predictions = logits.argmax(axis=-1)
    scores: dict[str, float | None] = {
        "accuracy": float((predictions == np.asarray(labels)).mean()),
        "agreement": None,
        "max_abs_logit_diff": None,
    }
    if reference_logits is not None:
        scores["agreement"] = float((predictions == reference_logits.argmax(axis=-1)).mean())
        scores["max_abs_logit_diff"] = float(np.abs(logits - reference_logits).max())
    return scores
