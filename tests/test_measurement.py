"""Pure measurement helpers against hand-computed values: McNemar, gate, Pareto frontier, FLOP counts."""

from __future__ import annotations

import pytest

from harness.measure.flops import encoder_flops, flops_by_precision
from harness.results.figures import pareto_front
from harness.results.stats import accuracy_gate, mcnemar_exact


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


def test_flops_split_by_precision() -> None:
    lineage = {"hidden": 4, "head_dim": 2, "heads_per_layer": [2, 1], "ffn_per_layer": [8, 6]}
    # linear MACs per token: (64 + 64) + (32 + 48) = 208; attention: 24 + 12 = 36 (width 3)
    # shapes (batch 2, width 3) and (batch 1, width 3): mean tokens per call (6 + 3) / 2 = 4.5
    split = flops_by_precision(lineage, [(2, 3), (1, 3)], "int8")
    assert split == {"int8": 2 * 208 * 4.5, "fp32": 2 * 36 * 4.5}
    assert flops_by_precision(lineage, [(2, 3), (1, 3)], "fp32") == {"fp32": 2 * (208 + 36) * 4.5}
    assert sum(split.values()) == pytest.approx((encoder_flops(lineage, 3, 2) + encoder_flops(lineage, 3, 1)) / 2)
