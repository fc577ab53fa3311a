"""harness.stats against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.stats import classification_scores, percentile, summarize_latency

SAMPLES = [10.0, 1.0, 3.0, 2.0, 4.0]  # sorted: 1 2 3 4 10


def test_percentiles_linear() -> None:
    assert percentile(SAMPLES, 50) == 3.0
    assert percentile(SAMPLES, 0) == 1.0
    assert percentile(SAMPLES, 100) == 10.0
    # rank (n-1)q = 3.8 -> 4 + 0.8 * (10 - 4)
    assert percentile(SAMPLES, 95) == pytest.approx(8.8, rel=1e-12)
    assert percentile(SAMPLES, 99) == pytest.approx(9.76, rel=1e-12)
    assert percentile(SAMPLES, 25) == 2.0


def test_summarize_latency() -> None:
    stats = summarize_latency(SAMPLES, batch_size=4)
    assert stats["p50_ms"] == 3.0
    assert stats["p95_ms"] == pytest.approx(8.8, rel=1e-12)
    assert stats["p99_ms"] == pytest.approx(9.76, rel=1e-12)
    assert stats["mean_ms"] == 4.0
    # deviations -3 -2 -1 0 6: squares sum to 50, sample variance 50 / 4
    assert stats["std_ms"] == pytest.approx(math.sqrt(12.5), rel=1e-12)
    assert stats["throughput_per_s"] == 1000.0  # 4 sequences per 4 ms
    assert stats["iterations"] == 5
    assert set(stats) == {"p50_ms", "p95_ms", "p99_ms", "mean_ms", "std_ms", "throughput_per_s", "iterations"}


def test_single_sample_has_zero_std() -> None:
    stats = summarize_latency([2.5], batch_size=1)
    assert stats["std_ms"] == 0.0
    assert stats["p99_ms"] == 2.5
    assert stats["throughput_per_s"] == 400.0


def test_empty_samples_rejected() -> None:
    with pytest.raises(ValueError):
        summarize_latency([], 1)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_classification_scores() -> None:
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.5, 0.4]])  # predictions 0 1 0 0
    labels = [0, 1, 1, 0]  # 3 of 4 right
    reference = np.array([[2.0, 1.0], [0.0, 3.0], [3.0, 0.0], [0.5, 0.9]])  # predictions 0 1 0 1
    scores = classification_scores(logits, labels, reference)
    assert scores == {"accuracy": 0.75, "agreement": 0.75, "max_abs_logit_diff": 2.0}


def test_classification_scores_without_reference() -> None:
    logits = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert classification_scores(logits, [1, 1], None) == {
        "accuracy": 0.5,
        "agreement": None,
        "max_abs_logit_diff": None,
    }


def test_identical_logits_agree_fully() -> None:
    logits = np.array([[0.1, 0.2, 0.7], [0.9, 0.05, 0.05]], dtype=np.float32)
    scores = classification_scores(logits, [2, 1], logits.copy())
    assert scores == {"accuracy": 0.5, "agreement": 1.0, "max_abs_logit_diff": 0.0}
