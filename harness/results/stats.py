"""Pure summary statistics over latency samples."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

PERCENTILE_METHOD = "linear"  # numpy's default, Hyndman & Fan type 7


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


def macro_f1(predictions: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """The unweighted mean of per-class F1 over the classes in ``labels`` or ``predictions``, as
    scikit-learn's ``f1_score(average="macro")`` computes it: a class never predicted scores 0.

    Written out rather than imported: scikit-learn is no dependency of the harness, and this runs
    in every cell's process. F1 = 2TP / (2TP + FP + FN), and 2TP + FP + FN = support + predicted.
    """
    predicted = np.asarray(predictions, dtype=np.int64)
    truth = np.asarray(labels, dtype=np.int64)
    if predicted.shape != truth.shape or truth.ndim != 1 or truth.size == 0:
        raise ValueError(f"need equally long, non-empty predictions and labels (got {predicted.shape}, {truth.shape})")
    if min(truth.min(), predicted.min()) < 0:
        raise ValueError("class ids must be >= 0")
    size = int(max(truth.max(), predicted.max())) + 1
    hits = np.bincount(truth[predicted == truth], minlength=size)
    both = np.bincount(truth, minlength=size) + np.bincount(predicted, minlength=size)
    present = both > 0
    return float(np.mean(2 * hits[present] / both[present]))


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


def welch_log_p(old: Sequence[float], new: Sequence[float], min_n: int = 3) -> float | None:
    """Two-sided Welch t-test p-value on the logs of two sets of per-round values.

    ``None`` (not tested, never 0) when either side has fewer than ``min_n`` values, a value is not
    positive, or the test is undefined (both sides without any spread).
    """
    from scipy import stats

    if len(old) < min_n or len(new) < min_n or min(*old, *new) <= 0:
        return None
    old_logs, new_logs = np.log(np.asarray(old, dtype=float)), np.log(np.asarray(new, dtype=float))
    if np.ptp(old_logs) == 0 and np.ptp(new_logs) == 0:
        return None
    with warnings.catch_warnings():  # near-identical values only warn about precision
        warnings.simplefilter("ignore", RuntimeWarning)
        p_value = float(stats.ttest_ind(old_logs, new_logs, equal_var=False).pvalue)
    return None if np.isnan(p_value) else p_value


def holm_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (``None`` stays ``None``): comparing many cells at once,
    about alpha x cells of them would otherwise look significant by chance alone."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(tested):
        running = max(running, min(1.0, p * (len(tested) - rank)))
        adjusted[index] = running
    return adjusted


def shift_p(log_ratios: Sequence[float]) -> float | None:
    """Two-sided one-sample t-test that the mean of ``log_ratios`` is zero (None with fewer than 2)."""
    from scipy import stats

    values = np.asarray(log_ratios, dtype=float)
    if values.size < 2:
        return None
    if np.ptp(values) == 0:
        return 0.0 if values[0] != 0 else 1.0  # every cell moved by exactly the same factor
    return float(stats.ttest_1samp(values, 0.0).pvalue)
