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


def coefficient_of_variation(samples: Sequence[float]) -> float:
    """Sample standard deviation over mean (0 for fewer than two samples)."""
    values = np.asarray(samples, dtype=float)
    if values.size < 2 or values.mean() == 0:
        return 0.0
    return float(values.std(ddof=1) / values.mean())


def bootstrap_ci(
    samples: Sequence[float], statistic: str = "median", confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median or mean (seeded, so reports are reproducible)."""
    from scipy import stats

    values = np.asarray(samples, dtype=float)
    if values.size < 2 or np.all(values == values[0]):
        return float(values[0]), float(values[0])
    function = {"median": np.median, "mean": np.mean}[statistic]
    result = stats.bootstrap(
        (values,),
        function,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
        vectorized=True,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def repeat_spread(repeats: Sequence[Sequence[float]]) -> dict[str, float | list[float]]:
    """Each repeat's median and their relative spread, (max - min) / median of the medians."""
    medians = [float(np.median(r)) for r in repeats if len(r)]
    centre = float(np.median(medians)) if medians else 0.0
    spread = (max(medians) - min(medians)) / centre if centre > 0 else 0.0
    return {"repeat_p50s_ms": medians, "repeat_spread": spread}


def stability_warnings(
    samples_ms: Sequence[float],
    timer_resolution_ms: float,
    cv_threshold: float = 0.10,
    min_p99_samples: int = 100,
) -> list[str]:
    """Reasons not to trust a cell's figures as much as its neighbours'."""
    values = np.asarray(samples_ms, dtype=float)
    warnings = []
    cv = coefficient_of_variation(values)
    if cv >= cv_threshold:
        warnings.append(f"unstable: CV {cv:.0%} >= {cv_threshold:.0%}")
    if values.size < min_p99_samples:
        warnings.append(f"p99 from only {values.size} samples (< {min_p99_samples})")
    if values.size and timer_resolution_ms > 0.01 * float(np.median(values)):
        warnings.append(f"timer resolution {timer_resolution_ms:.3g} ms is coarse against p50")
    return warnings


def mcnemar_exact(first_correct: Sequence[bool], second_correct: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value: a binomial test on the discordant pairs."""
    from scipy import stats

    first = np.asarray(first_correct, dtype=bool)
    second = np.asarray(second_correct, dtype=bool)
    if first.shape != second.shape:
        raise ValueError("predictions of different lengths")
    only_first = int((first & ~second).sum())
    only_second = int((~first & second).sum())
    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(only_first, discordant, 0.5).pvalue)


def accuracy_gate(accuracy: float | None, source_accuracy: float | None, fraction: float) -> str:
    """``pass`` when a variant keeps at least ``fraction`` of its source model's accuracy."""
    if accuracy is None or source_accuracy is None:
        return "n/a"
    return "pass" if accuracy >= fraction * source_accuracy else "fail"


def mann_whitney_p(old: Sequence[float], new: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value that two latency samples come from one distribution."""
    from scipy import stats

    if len(old) < 2 or len(new) < 2:
        return 1.0
    return float(stats.mannwhitneyu(old, new, alternative="two-sided").pvalue)
