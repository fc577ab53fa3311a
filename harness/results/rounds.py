"""Latency statistics over what actually varies: inputs and rounds.

A cell's timings form a matrix ``M[r, i]``: the median latency of distinct input ``i`` in round
``r``. Consecutive calls are autocorrelated and say little about a random request, so nothing
here treats them as independent: each input's latency is its median over rounds, percentiles are
taken over inputs (each input weighs the same), and intervals resample rounds and inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.results.stats import PERCENTILE_METHOD

RESAMPLES = 2000
CONFIDENCE = 0.95
INSTABILITY_CV = 0.10


def as_matrix(rounds_by_input: Sequence[Sequence[float]]) -> np.ndarray:
    matrix = np.asarray(rounds_by_input, dtype=float)
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValueError("expected a non-empty rounds x inputs matrix")
    return matrix


def per_input(matrix: np.ndarray) -> np.ndarray:
    """Each input's latency: its median over rounds (robust to one disturbed round)."""
    return np.median(matrix, axis=0)


def min_inputs_for(q: float) -> int:
    """Distinct inputs needed before the q-th percentile is more than the maximum: 1 / (1 - q)."""
    return int(np.ceil(1.0 / (1.0 - q / 100.0) - 1e-9))


def percentiles(latency: np.ndarray) -> tuple[dict[str, float | None], list[str]]:
    """p50/p95/p99 over inputs; a tail percentile the sample cannot support is None, with why."""
    figures: dict[str, float | None] = {}
    notes = []
    for q in (50, 95, 99):
        needed = min_inputs_for(q)
        if q == 50 or latency.size >= needed:  # the median of any sample exists
            figures[f"p{q}_ms"] = float(np.percentile(latency, q, method=PERCENTILE_METHOD))
        else:
            figures[f"p{q}_ms"] = None
            notes.append(f"p{q} needs >= {needed} distinct inputs, this cell has {latency.size}")
    return figures, notes


def round_p50s(matrix: np.ndarray) -> list[float]:
    return [float(np.percentile(row, 50, method=PERCENTILE_METHOD)) for row in matrix]


def instability(matrix: np.ndarray) -> float:
    """Median over inputs of the CV of the same input across rounds: noise, not input variety."""
    if matrix.shape[0] < 2:
        return 0.0
    means = matrix.mean(axis=0)
    cvs = np.divide(matrix.std(axis=0, ddof=1), means, out=np.zeros_like(means), where=means > 0)
    return float(np.median(cvs))


def input_variety(latency: np.ndarray) -> float:
    """CV of latency across inputs: expected for ``dynamic`` lengths, never a warning."""
    if latency.size < 2 or latency.mean() == 0:
        return 0.0
    return float(latency.std(ddof=1) / latency.mean())


def _resampled_p50(matrix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """p50 of per-input latency for ``RESAMPLES`` draws of rounds and inputs, with replacement."""
    rounds, inputs = matrix.shape
    picked_rounds = rng.integers(0, rounds, (RESAMPLES, rounds))[:, :, None]
    picked_inputs = rng.integers(0, inputs, (RESAMPLES, inputs))[:, None, :]
    return np.percentile(np.median(matrix[picked_rounds, picked_inputs], axis=1), 50, axis=1)


def _interval(values: np.ndarray) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def p50_interval(matrix: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Seeded percentile-bootstrap 95% interval of p50, resampling rounds and inputs."""
    if matrix.size == 1 or np.all(matrix == matrix.flat[0]):
        value = float(matrix.flat[0])
        return value, value
    return _interval(_resampled_p50(matrix, np.random.default_rng(seed)))


def paired_speedup(baseline: np.ndarray, cell: np.ndarray, seed: int = 0, shared: int = 0) -> dict[str, Any]:
    """Baseline p50 over cell p50, paired round by round (same round, same machine state).

    ``shared``: how many leading inputs both cells timed on the same sentences. Then only those are
    compared, and resampled together; with none shared, each side's inputs are resampled on their
    own. The estimate is the geometric mean of the per-round ratios, and the interval bootstraps that
    same estimate, resampling the rounds (paired) and the inputs.
    """
    rounds = min(baseline.shape[0], cell.shape[0])
    baseline, cell = baseline[:rounds], cell[:rounds]
    if shared:
        baseline, cell = baseline[:, :shared], cell[:, :shared]
    per_round = [b / c for b, c in zip(round_p50s(baseline), round_p50s(cell))]
    rng = np.random.default_rng(seed)
    picked_rounds = rng.integers(0, rounds, (RESAMPLES, rounds))[:, :, None]
    common = rng.integers(0, cell.shape[1], (RESAMPLES, 1, cell.shape[1]))
    log_p50s = []
    for side in (baseline, cell):
        inputs = common if shared else rng.integers(0, side.shape[1], (RESAMPLES, 1, side.shape[1]))
        log_p50s.append(np.log(np.percentile(side[picked_rounds, inputs], 50, axis=2)))  # draws x rounds
    low, high = _interval(np.exp(np.mean(log_p50s[0] - log_p50s[1], axis=1)))
    return {
        "speedup": float(np.exp(np.mean(np.log(per_round)))),
        "speedup_ci_low": low,
        "speedup_ci_high": high,
        "speedup_rounds": per_round,
        "speedup_inputs": int(cell.shape[1]) if shared else None,
    }


def shared_prefix(first: Sequence[Any] | None, second: Sequence[Any] | None) -> int:
    """How many leading entries two input lists have in common (0 when either is unknown)."""
    if not first or not second:
        return 0
    count = 0
    for a, b in zip(first, second):
        if a != b:
            break
        count += 1
    return count


def summarize(matrix: np.ndarray, batch_size: int, seed: int = 0) -> dict[str, Any]:
    """Every latency field of a row, from its rounds x inputs matrix (milliseconds)."""
    latency = per_input(matrix)
    figures, notes = percentiles(latency)
    mean = float(latency.mean())
    low, high = p50_interval(matrix, seed)
    unstable = instability(matrix)
    warnings = [f"unstable: the same input varies {unstable:.0%} across rounds (>= {INSTABILITY_CV:.0%})"]
    return {
        **figures,
        "mean_ms": mean,
        "std_ms": float(latency.std(ddof=1)) if latency.size > 1 else 0.0,
        "throughput_per_s": batch_size * 1000.0 / mean if mean > 0 else None,
        "p50_ci_low_ms": low,
        "p50_ci_high_ms": high,
        "round_p50s_ms": round_p50s(matrix),
        "instability_cv": unstable,
        "input_cv": input_variety(latency),
        "percentile_notes": notes,
        "warnings": warnings if unstable >= INSTABILITY_CV else [],
    }
