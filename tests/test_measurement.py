"""Pure measurement helpers against hand-computed values: spread, intervals, McNemar, gate,
Pareto frontier, FLOP counts and run comparison."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.compare import compare_rows
from harness.compute import encoder_flops
from harness.figures import pareto_front
from harness.stats import (
    accuracy_gate,
    bootstrap_ci,
    coefficient_of_variation,
    mcnemar_exact,
    repeat_spread,
    stability_warnings,
)


def test_coefficient_of_variation() -> None:
    # mean 4, sample variance ((1-4)^2 + (4-4)^2 + (7-4)^2) / 2 = 9, std 3
    assert coefficient_of_variation([1, 4, 7]) == pytest.approx(0.75)
    assert coefficient_of_variation([5]) == 0.0


def test_repeat_spread() -> None:
    spread = repeat_spread([[1, 2, 3], [2, 4, 6], [3, 3, 3]])
    assert spread["repeat_p50s_ms"] == [2.0, 4.0, 3.0]
    assert spread["repeat_spread"] == pytest.approx((4 - 2) / 3)


def test_stability_warnings() -> None:
    steady = [10.0] * 100
    assert stability_warnings(steady, timer_resolution_ms=1e-6) == []
    noisy = [10.0, 14.0] * 60  # CV = 2/12 * sqrt(120/119) = 16.7%
    assert stability_warnings(noisy, 1e-6) == ["unstable: CV 17% >= 10%"]
    few = stability_warnings([10.0] * 20, 1e-6)
    assert few == ["p99 from only 20 samples (< 100)"]
    coarse = stability_warnings([0.05] * 100, timer_resolution_ms=0.001)
    assert coarse == ["timer resolution 0.001 ms is coarse against p50"]


def test_bootstrap_interval() -> None:
    assert bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0)
    samples = np.random.default_rng(1).normal(10, 1, 400)
    low, high = bootstrap_ci(samples)
    assert low < np.median(samples) < high
    assert high - low < 0.5  # the median of 400 N(10, 1) samples is known to about +-0.15
    assert bootstrap_ci(samples) == (low, high)  # seeded: reports are reproducible


def test_mcnemar_exact() -> None:
    teacher = [True, True, True, True, False, True]
    # three examples only the teacher gets right, none only the variant: p = 2 * 0.5^3 = 0.25
    variant = [False, False, False, True, False, True]
    assert mcnemar_exact(teacher, variant) == pytest.approx(0.25)
    assert mcnemar_exact(teacher, teacher) == 1.0
    # 1 vs 1 discordant: p = 1
    assert mcnemar_exact([True, False], [False, True]) == pytest.approx(1.0)


def test_accuracy_gate() -> None:
    assert accuracy_gate(0.891, 0.9, 0.99) == "pass"  # 0.891 = 0.99 * 0.9 exactly
    assert accuracy_gate(0.8909, 0.9, 0.99) == "fail"
    assert accuracy_gate(None, 0.9, 0.99) == "n/a"


def test_pareto_front() -> None:
    latency = [5.0, 1.0, 2.0, 3.0, 1.0]
    accuracy = [0.95, 0.80, 0.90, 0.85, 0.70]
    # fastest first: 1.0 ms at 0.80 beats 1.0 ms at 0.70; 2.0 ms improves to 0.90; 3.0 ms does not; 5.0 ms does
    assert pareto_front(latency, accuracy) == [1, 2, 0]


def test_encoder_flops_by_hand() -> None:
    lineage = {"hidden": 4, "head_dim": 2, "heads_per_layer": [2, 1], "ffn_per_layer": [8, 6]}
    # layer 1: a=4: 4*4*4 + 2*3*4 + 2*4*8 = 64 + 24 + 64 = 152 MACs per token
    # layer 2: a=2: 4*4*2 + 2*3*2 + 2*4*6 = 32 + 12 + 48 = 92 MACs per token
    assert encoder_flops(lineage, width=3, batch_size=2) == 2 * (152 + 92) * 3 * 2


def _row(p50: float, samples: list[float] | None, **key) -> dict:
    cell = {"model": "m", "exporter": "e", "backend": "b", "device": "cpu", "batch_size": 1, "seq_len": "dynamic"}
    return {**cell, **key, "status": "ok", "p50_ms": p50, "samples_ms": samples}


def test_compare_verdicts() -> None:
    rng = np.random.default_rng(0)
    base = list(rng.normal(10, 0.1, 50))
    old = [_row(10.0, base, batch_size=1), _row(10.0, base, batch_size=2), _row(10.0, base, batch_size=3)]
    new = [
        _row(13.0, [x * 1.3 for x in base], batch_size=1),  # 30% slower: regressed
        _row(10.5, [x * 1.05 for x in base], batch_size=2),  # 5%: inside the threshold
        _row(7.0, [x * 0.7 for x in base], batch_size=3),  # faster: improved
    ]
    table = compare_rows(old, new, threshold=0.10)
    assert list(table["verdict"]) == ["regressed", "same", "improved"]
    assert list(table["ratio"]) == pytest.approx([1.3, 1.05, 0.7])
    assert all(p < 1e-10 for p in table["p_value"])


def test_compare_needs_significance() -> None:
    old = [_row(10.0, [9.0, 11.0, 10.0])]
    new = [_row(12.0, [8.0, 16.0, 12.0])]  # ratio 1.2 but overlapping samples: not significant
    table = compare_rows(old, new)
    assert table["verdict"].tolist() == ["same"]
    assert math.isclose(table["ratio"][0], 1.2)
