"""harness.results.stats against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.results.rounds import as_matrix, summarize
from harness.results.stats import classification_scores

SAMPLES = [10.0, 1.0, 3.0, 2.0, 4.0]  # one round, five inputs; sorted: 1 2 3 4 10


def test_percentiles_are_over_inputs_and_need_enough_of_them() -> None:
    stats = summarize(np.array([SAMPLES]), batch_size=4)
    assert stats["p50_ms"] == 3.0
    assert stats["p95_ms"] is None and stats["p99_ms"] is None  # 5 inputs support neither tail
    assert stats["percentile_notes"] == [
        "p95 needs >= 20 distinct inputs, this cell has 5",
        "p99 needs >= 100 distinct inputs, this cell has 5",
    ]
    assert stats["mean_ms"] == 4.0
    # deviations -3 -2 -1 0 6: squares sum to 50, sample variance 50 / 4
    assert stats["std_ms"] == pytest.approx(math.sqrt(12.5), rel=1e-12)
    assert stats["throughput_per_s"] == 1000.0  # 4 sequences per 4 ms


def test_tail_percentiles_linear_over_100_inputs() -> None:
    stats = summarize(np.array([np.arange(1.0, 101.0)]), batch_size=1)
    # rank (n-1)q: 99 * 0.95 = 94.05 -> 95.05; 99 * 0.99 = 98.01 -> 99.01
    assert stats["p95_ms"] == pytest.approx(95.05, rel=1e-12)
    assert stats["p99_ms"] == pytest.approx(99.01, rel=1e-12)
    assert stats["percentile_notes"] == []


def test_each_input_is_its_median_over_rounds() -> None:
    # input 0: rounds 1, 9, 2 -> 2; input 1: 4, 4, 40 -> 4 (one disturbed round does not move it)
    stats = summarize(np.array([[1.0, 4.0], [9.0, 4.0], [2.0, 40.0]]), batch_size=1)
    assert stats["mean_ms"] == 3.0
    assert stats["p50_ms"] == 3.0
    assert stats["round_p50s_ms"] == [2.5, 6.5, 21.0]


def test_empty_matrix_rejected() -> None:
    with pytest.raises(ValueError):
        as_matrix([])


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


def test_holm_adjust_by_hand() -> None:
    from harness.results.stats import holm_adjust

    # sorted 0.01, 0.02, 0.04 (3 tested): x3 = 0.03, x2 = 0.04, x1 = 0.04 (kept monotone)
    assert holm_adjust([0.04, None, 0.01, 0.02]) == [
        pytest.approx(0.04),
        None,
        pytest.approx(0.03),
        pytest.approx(0.04),
    ]
    assert holm_adjust([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm_adjust([]) == []


def test_shift_p() -> None:
    from harness.results.stats import shift_p

    assert shift_p([0.26, 0.26, 0.26]) == 0.0  # every cell moved by exactly the same factor
    assert shift_p([0.0, 0.0]) == 1.0
    assert shift_p([0.1]) is None
    # mean 0.1, sample sd sqrt(0.04 / 3) = 0.1155 over 4 values: t = 0.1 / (0.1155 / 2) = sqrt(3), df 3
    assert shift_p([0.0, 0.2, 0.0, 0.2]) == pytest.approx(0.1817, abs=1e-3)
