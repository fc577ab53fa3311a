"""harness.results.rounds: latency statistics over a rounds x inputs matrix, checked by hand."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from harness.results.rounds import (
    as_matrix,
    input_variety,
    instability,
    min_inputs_for,
    p50_interval,
    paired_speedup,
    per_input,
    percentiles,
    round_p50s,
    shared_prefix,
    summarize,
)

# --- shape and per-input latency --------------------------------------------------------------


def test_as_matrix_needs_a_non_empty_two_dimensional_matrix() -> None:
    assert as_matrix([[1, 2], [3, 4]]).dtype == float
    for bad in ([], [1.0, 2.0], [[]]):
        with pytest.raises(ValueError):
            as_matrix(bad)


def test_per_input_is_the_median_over_rounds() -> None:
    matrix = np.array([[1.0, 5.0, 9.0], [3.0, 4.0, 9.0], [2.0, 100.0, 0.0]])
    # column medians: (1, 3, 2) -> 2; (5, 4, 100) -> 5; (9, 9, 0) -> 9: one disturbed round is outvoted
    assert per_input(matrix).tolist() == [2.0, 5.0, 9.0]


def test_round_p50s_are_the_median_of_each_round() -> None:
    assert round_p50s(np.array([[1.0, 2.0, 30.0], [4.0, 6.0, 8.0]])) == [2.0, 6.0]
    assert round_p50s(np.array([[1.0, 2.0, 3.0, 10.0]])) == [2.5]


# --- percentiles ------------------------------------------------------------------------------


def test_min_inputs_for() -> None:
    assert min_inputs_for(50) == 2
    assert min_inputs_for(95) == 20
    assert min_inputs_for(99) == 100
    assert min_inputs_for(90) == 10


def test_tail_percentiles_are_none_with_a_note_when_inputs_are_too_few() -> None:
    figures, notes = percentiles(np.arange(1.0, 20.0))  # 19 inputs
    assert figures["p50_ms"] == 10.0
    assert figures["p95_ms"] is None
    assert figures["p99_ms"] is None
    assert notes == [
        "p95 needs >= 20 distinct inputs, this cell has 19",
        "p99 needs >= 100 distinct inputs, this cell has 19",
    ]


def test_p95_appears_at_twenty_inputs() -> None:
    figures, notes = percentiles(np.arange(1.0, 21.0))  # 1..20
    assert figures["p50_ms"] == pytest.approx(10.5)
    # linear: position 0.95 * 19 = 18.05 between the 19th (19) and 20th (20) values
    assert figures["p95_ms"] == pytest.approx(19.05)
    assert figures["p99_ms"] is None
    assert notes == ["p99 needs >= 100 distinct inputs, this cell has 20"]


def test_every_percentile_at_a_hundred_inputs() -> None:
    figures, notes = percentiles(np.arange(1.0, 101.0))
    assert notes == []
    assert figures == pytest.approx({"p50_ms": 50.5, "p95_ms": 95.05, "p99_ms": 99.01})


def test_a_single_input_has_a_median_but_no_tail() -> None:
    figures, notes = percentiles(np.array([7.0]))
    assert figures == {"p50_ms": 7.0, "p95_ms": None, "p99_ms": None}
    assert len(notes) == 2


# --- noise versus variety ---------------------------------------------------------------------


def test_instability_is_the_median_cv_of_each_input_across_rounds() -> None:
    matrix = np.array([[1.0, 10.0, 100.0], [3.0, 12.0, 100.0]])
    # CV per input (sample std / mean) of two values a, b: |a - b| / sqrt(2) / ((a + b) / 2)
    cvs = [math.sqrt(2) / 2, math.sqrt(2) / 11, 0.0]  # 0.707, 0.129, 0
    assert instability(matrix) == pytest.approx(statistics.median(cvs))  # sqrt(2) / 11
    assert instability(matrix) == pytest.approx(0.12856, abs=1e-5)


def test_instability_of_one_round_or_a_repeatable_machine_is_zero() -> None:
    assert instability(np.array([[1.0, 50.0, 3.0]])) == 0.0
    assert instability(np.array([[1.0, 50.0, 3.0]] * 4)) == 0.0


def test_input_variety_is_the_cv_across_inputs_and_not_instability() -> None:
    matrix = np.array([[1.0, 10.0, 100.0], [1.0, 10.0, 100.0]])
    assert instability(matrix) == 0.0
    latency = per_input(matrix)
    assert input_variety(latency) == pytest.approx(statistics.stdev([1, 10, 100]) / 37.0)
    assert input_variety(np.array([5.0])) == 0.0
    assert input_variety(np.array([0.0, 0.0])) == 0.0


# --- p50 interval -----------------------------------------------------------------------------


def scaled_rounds(spread: float) -> np.ndarray:
    """20 inputs of nearly one latency; round r scales all of them by 1 + spread * noise[r]."""
    base = 10.0 + 0.01 * np.arange(20)
    noise = np.array([-1.0, 0.0, 1.0, 0.5, -0.5])
    return base[None, :] * (1 + spread * noise[:, None])


def test_p50_interval_contains_the_point_p50() -> None:
    matrix = scaled_rounds(0.1) * np.linspace(1.0, 3.0, 20)[None, :]
    point = float(np.percentile(per_input(matrix), 50))
    low, high = p50_interval(matrix)
    assert low <= point <= high
    assert low < high


def test_p50_interval_is_seeded() -> None:
    matrix = scaled_rounds(0.1)
    assert p50_interval(matrix, seed=3) == p50_interval(matrix, seed=3)
    assert p50_interval(matrix, seed=3) != p50_interval(matrix, seed=4)


def test_p50_interval_of_a_constant_matrix_is_a_point() -> None:
    assert p50_interval(np.full((4, 6), 2.5)) == (2.5, 2.5)
    assert p50_interval(np.array([[7.0]])) == (7.0, 7.0)


def test_p50_interval_widens_when_rounds_disagree_more() -> None:
    calm_low, calm_high = p50_interval(scaled_rounds(0.01))
    noisy_low, noisy_high = p50_interval(scaled_rounds(0.2))
    assert noisy_high - noisy_low > 5 * (calm_high - calm_low)


# --- paired speedup ---------------------------------------------------------------------------


def varied_inputs(rounds: int = 4) -> np.ndarray:
    """Latency that varies a lot across inputs (1, 4, 9, ..., 400) and not at all across rounds."""
    return np.tile(np.arange(1.0, 21.0) ** 2, (rounds, 1))


def test_paired_speedup_of_a_cell_twice_as_fast_everywhere() -> None:
    baseline = varied_inputs() * np.array([1.0, 1.1, 0.9, 1.3])[:, None]  # rounds differ too
    result = paired_speedup(baseline, baseline / 2, shared=20)
    assert result["speedup"] == pytest.approx(2.0, rel=1e-12)
    assert result["speedup_rounds"] == [2.0, 2.0, 2.0, 2.0]
    # every resample pairs the same rounds and the same inputs: each draw is exactly 2
    assert result["speedup_ci_low"] == pytest.approx(2.0, rel=1e-12)
    assert result["speedup_ci_high"] == pytest.approx(2.0, rel=1e-12)


def test_paired_speedup_is_the_geometric_mean_of_per_round_ratios() -> None:
    baseline = np.array([[2.0, 4.0, 6.0], [3.0, 3.0, 3.0]])  # round p50s 4, 3
    cell = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 9.0]])  # round p50s 1, 2
    result = paired_speedup(baseline, cell)
    assert result["speedup_rounds"] == [4.0, 1.5]
    assert result["speedup"] == pytest.approx(math.sqrt(4.0 * 1.5))  # 2.449, not the mean 2.75
    assert result["speedup_ci_low"] <= result["speedup_ci_high"]


def test_paired_speedup_pairs_only_the_rounds_both_cells_have() -> None:
    baseline = np.array([[4.0, 4.0], [6.0, 6.0], [100.0, 100.0]])
    cell = np.array([[1.0, 1.0], [2.0, 2.0]])
    result = paired_speedup(baseline, cell)
    assert result["speedup_rounds"] == [4.0, 3.0]
    assert result["speedup"] == pytest.approx(math.sqrt(12.0))


def test_paired_speedup_is_seeded() -> None:
    baseline = varied_inputs() * np.array([1.0, 1.1, 0.9, 1.3])[:, None]
    cell = varied_inputs()[:, ::-1] / 3
    assert paired_speedup(baseline, cell, seed=2) == paired_speedup(baseline, cell, seed=2)


def test_same_inputs_narrows_the_interval_when_the_ratio_is_constant_per_input() -> None:
    baseline = varied_inputs()
    cell = baseline / 2
    paired = paired_speedup(baseline, cell, shared=20)
    unpaired = paired_speedup(baseline, cell, shared=0)
    assert paired["speedup"] == unpaired["speedup"] == pytest.approx(2.0)
    paired_width = paired["speedup_ci_high"] - paired["speedup_ci_low"]
    unpaired_width = unpaired["speedup_ci_high"] - unpaired["speedup_ci_low"]
    assert paired_width == pytest.approx(0.0, abs=1e-12)
    # independent input draws for each side mix a short sentence's time with a long one's
    assert unpaired_width > 1.0
    assert unpaired["speedup_ci_low"] < 2.0 < unpaired["speedup_ci_high"]


def test_only_the_shared_leading_inputs_are_compared() -> None:
    baseline = varied_inputs()  # 20 inputs
    cell = varied_inputs()[:, :10] / 2  # the cell timed the first 10 of the same inputs
    result = paired_speedup(baseline, cell, shared=10)
    # over the shared 10 the cell is exactly twice as fast; all 20 of the baseline's would give ~5.3x
    assert result["speedup"] == pytest.approx(2.0) and result["speedup_inputs"] == 10
    assert result["speedup_ci_high"] - result["speedup_ci_low"] == pytest.approx(0.0, abs=1e-12)
    unpaired = paired_speedup(baseline, cell)
    assert unpaired["speedup"] > 4.0 and unpaired["speedup_inputs"] is None


def test_shared_prefix() -> None:
    assert shared_prefix([5, 9, 2, 7], [5, 9, 2]) == 3
    assert shared_prefix([5, 9, 2], [5, 8, 2]) == 1
    assert shared_prefix([1], [2]) == 0
    assert shared_prefix(None, [1]) == 0


# --- summarize --------------------------------------------------------------------------------


def test_summarize_fields_by_hand() -> None:
    matrix = np.array([[10.0, 20.0, 40.0], [12.0, 24.0, 48.0]])
    stats = summarize(matrix, batch_size=4)
    # per input: medians over rounds 11, 22, 44
    assert stats["p50_ms"] == 22.0
    assert stats["p95_ms"] is None and stats["p99_ms"] is None
    assert len(stats["percentile_notes"]) == 2
    assert stats["mean_ms"] == pytest.approx(77.0 / 3)
    assert stats["std_ms"] == pytest.approx(statistics.stdev([11, 22, 44]))
    assert stats["throughput_per_s"] == pytest.approx(4 * 1000.0 / (77.0 / 3))  # 155.8
    assert stats["round_p50s_ms"] == [20.0, 24.0]
    assert stats["p50_ci_low_ms"] <= 22.0 <= stats["p50_ci_high_ms"]
    assert stats["input_cv"] == pytest.approx(statistics.stdev([11, 22, 44]) / (77.0 / 3))
    # every input: 2 / sqrt(2) / 11 = sqrt(2) / 11 = 12.9% across rounds
    assert stats["instability_cv"] == pytest.approx(math.sqrt(2) / 11)


def test_summarize_warns_iff_instability_reaches_ten_percent() -> None:
    unstable = summarize(np.array([[10.0, 20.0, 40.0], [12.0, 24.0, 48.0]]), batch_size=1)  # 12.9%
    assert len(unstable["warnings"]) == 1
    assert unstable["warnings"][0].startswith("unstable")
    steady = summarize(np.array([[10.0, 20.0, 40.0], [11.0, 22.0, 44.0]]), batch_size=1)  # sqrt(2)/21 = 6.7%
    assert steady["instability_cv"] == pytest.approx(math.sqrt(2) / 21)
    assert steady["warnings"] == []
    # input variety, however large, is never a warning
    varied = summarize(varied_inputs(), batch_size=1)
    assert varied["input_cv"] > 0.5
    assert varied["warnings"] == []


def test_summarize_single_input() -> None:
    stats = summarize(np.array([[5.0], [5.0]]), batch_size=8)
    assert stats["std_ms"] == 0.0
    assert stats["mean_ms"] == 5.0
    assert stats["throughput_per_s"] == pytest.approx(1600.0)
    assert stats["p50_ms"] == 5.0 and stats["p95_ms"] is None  # one input: a median, no tail
    assert (stats["p50_ci_low_ms"], stats["p50_ci_high_ms"]) == (5.0, 5.0)
