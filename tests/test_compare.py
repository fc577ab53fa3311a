"""`harness compare`: drift-normalized ratios, a Welch test across rounds, refusals and exit codes.

All rows are built by hand: one baseline cell (teacher/eager-fp32/pytorch) and two student cells, three
interleaved rounds each.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from harness.cli import main
from harness.results.compare import compare_rows, normalized_ratio, round_ratios, verdict
from harness.results.stats import welch_log_p

BASE = ("teacher", "eager-fp32", "pytorch")
FAST = ("student", "onnx-fp32", "onnxruntime")
INT8 = ("student", "ort-int8", "onnxruntime")
OLD_ROUNDS = {BASE: [10.0, 10.2, 9.9], FAST: [5.0, 5.1, 4.95], INT8: [2.0, 2.06, 1.98]}
NOISE = [1.01, 0.99, 1.0]  # a little round-to-round noise for the new runs


def _run(run_id: str, **changes: str) -> dict:
    env = {"git_commit": changes.pop("git_commit", "c0ffee"), "cpu": "Test CPU"}
    run = {"suite_hash": "s1", "env_fingerprint": "a1b2", "env": env, "run_id": run_id}
    return {**run, "baseline": "/".join(BASE), **changes}


def _row(cell: tuple[str, str, str], rounds: list[float] | None, run: dict, **fields) -> dict:
    model, exporter, backend = cell
    row = {"model": model, "exporter": exporter, "backend": backend, "device": "cpu", "batch_size": 1}
    row |= {"seq_len": "dynamic", "status": "ok", "p50_ms": float(np.median(rounds)) if rounds else 1.0}
    row |= {"round_p50s_ms": rounds, "run": run}
    return row | fields


def _old_rows(**changes: str) -> list[dict]:
    run = _run("old", **changes)
    return [_row(cell, rounds, run) for cell, rounds in OLD_ROUNDS.items()]


def _new_rows(factors: dict, drift: float = 1.0, **changes: str) -> list[dict]:
    """Every round scaled by ``drift`` (the whole machine) and a cell's factor, non-baseline cells with noise."""
    run = _run("new", **changes)
    rows = []
    for cell, rounds in OLD_ROUNDS.items():
        noise = [1.0] * 3 if cell == BASE else NOISE
        rows.append(_row(cell, [r * drift * factors.get(cell, 1.0) * n for r, n in zip(rounds, noise)], run))
    return rows


def _by_cell(table) -> dict:
    return {tuple(line[:3]): line for line in table.itertuples(index=False)}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _cli(tmp_path: Path, old: list[dict], new: list[dict], *options: str) -> int:
    return main(
        ["compare", str(_write(tmp_path / "old.jsonl", old)), str(_write(tmp_path / "new.jsonl", new)), *options]
    )


# pure per-cell math


def test_round_ratios_and_normalized_ratio_by_hand() -> None:
    assert round_ratios([5.0, 5.1, 4.95], [10.0, 10.2, 9.9]) == pytest.approx([0.5, 0.5, 0.5])
    assert round_ratios([7.2, 7.5, 6.1], [12.0, 12.5, 12.2]) == pytest.approx([0.6, 0.6, 0.5])
    assert round_ratios(None, [1.0]) is None
    assert round_ratios([1.0, 2.0], [1.0]) is None  # rounds that do not line up
    # medians 0.5 and 0.6: 0.6 / 0.5
    assert normalized_ratio([0.5, 0.5, 0.5], [0.6, 0.6, 0.5]) == pytest.approx(1.2)


def test_welch_log_p_by_hand() -> None:
    # logs 0, 1, 2 (mean 1, variance 1) against 3, 4, 5 (mean 4, variance 1):
    # t = (1 - 4) / sqrt(1/3 + 1/3) = -3.674; Welch df = (2/3)^2 / (2 * (1/3)^2 / 2) = 4
    p_value = welch_log_p(np.exp([0, 1, 2]), np.exp([3, 4, 5]))
    assert p_value == pytest.approx(2 * stats.t.sf(3 / math.sqrt(2 / 3), 4))
    assert p_value == pytest.approx(0.0213, abs=5e-4)


def test_welch_log_p_not_tested() -> None:
    assert welch_log_p([1.0, 1.1], [2.0, 2.1, 2.2]) is None  # fewer than 3 rounds
    assert welch_log_p([1.0, 1.1, 0.0], [2.0, 2.1, 2.2]) is None  # a non-positive value
    assert welch_log_p([2.0] * 3, [3.0] * 3) is None  # no spread at all: undefined, not 0


@pytest.mark.parametrize(
    ("ratio", "p_value", "expected"),
    [
        (1.2, 0.01, "regressed"),
        (1.2, 0.2, "same"),
        (1.2, None, "not tested"),
        (1.05, None, "same"),  # inside the threshold: nothing to test
        (1.05, 0.001, "same"),
        (0.85, 0.01, "improved"),  # 0.85 < 1 / 1.1 = 0.909
        (0.95, 0.01, "same"),
    ],
)
def test_verdict(ratio: float, p_value: float | None, expected: str) -> None:
    assert verdict(ratio, p_value, threshold=0.10, alpha=0.05) == expected


# whole comparisons


def test_hand_computed_normalized_ratio() -> None:
    old = _old_rows()
    run = _run("new")
    new = [_row(BASE, [12.0, 12.5, 12.2], run), _row(FAST, [7.2, 7.5, 6.1], run, p50_ms=7.2)]
    line = _by_cell(compare_rows(old, new))[FAST]
    assert line.normalized_ratio == pytest.approx(1.2)  # median [0.6, 0.6, 0.5] / median [0.5, 0.5, 0.5]
    assert line.absolute_ratio == pytest.approx(7.2 / 5.0)
    assert line.decided_by == "normalized"


def test_unchanged_rerun_with_round_noise_is_not_flagged(tmp_path: Path, capsys) -> None:
    old, new = _old_rows(), _new_rows({}, drift=1.03)  # the machine 3% slower: inside the threshold
    assert set(compare_rows(old, new)["verdict"]) == {"same"}
    assert _cli(tmp_path, old, new) == 0
    assert "0 regressed" in capsys.readouterr().out


def test_machine_12_percent_slower_is_within_the_drift_allowance(tmp_path: Path, capsys) -> None:
    old, new = _old_rows(), _new_rows({}, drift=1.12)
    lines = _by_cell(compare_rows(old, new))
    assert lines[BASE].absolute_ratio == pytest.approx(1.12) and lines[BASE].verdict == "same"
    assert _cli(tmp_path, old, new) == 0
    # without the allowance the baseline's own 12% would count
    assert compare_rows(old, new, drift_allowance=0.0).set_index("backend").loc["pytorch", "verdict"] == "regressed"


def test_whole_machine_25_percent_slower_shows_only_at_the_baseline(tmp_path: Path, capsys) -> None:
    old, new = _old_rows(), _new_rows({}, drift=1.25)
    lines = _by_cell(compare_rows(old, new))
    for cell in (FAST, INT8):
        assert lines[cell].absolute_ratio == pytest.approx(1.25, rel=0.02)
        assert lines[cell].normalized_ratio == pytest.approx(1.0, rel=0.02)
        assert lines[cell].decided_by == "normalized"
        assert lines[cell].verdict == "same"  # relative to the baseline, nothing changed
    # everything slower at once (the machine, or the baseline variant) is the baseline cell's verdict
    assert lines[BASE].decided_by == "absolute"
    assert lines[BASE].absolute_ratio == pytest.approx(1.25)
    assert lines[BASE].p_value < 0.05 and lines[BASE].verdict == "regressed"
    assert _cli(tmp_path, old, new) == 1
    out = capsys.readouterr().out
    assert "1 regressed" in out and "the whole machine" in out
    # by absolute p50s alone every cell is a regression
    assert _cli(tmp_path, old, new, "--normalize", "none") == 1
    assert "3 cells compared: 3 regressed" in capsys.readouterr().out


@pytest.mark.parametrize("drift", [1.0, 0.8])
def test_one_backend_30_percent_slower_is_regressed(drift: float) -> None:
    # with the machine 20% faster the absolute ratio is only 1.04: normalization still sees the 30%
    lines = _by_cell(compare_rows(_old_rows(), _new_rows({FAST: 1.3}, drift=drift)))
    fast = lines[FAST]
    assert fast.normalized_ratio == pytest.approx(1.3)
    assert fast.absolute_ratio == pytest.approx(1.3 * drift, rel=0.02)  # p50s with round noise
    assert fast.decided_by == "normalized"
    assert fast.p_value < 0.05
    assert fast.verdict == "regressed"
    assert lines[INT8].verdict == "same"


def test_regression_exits_1_with_the_table_and_summary(tmp_path: Path, capsys) -> None:
    assert _cli(tmp_path, _old_rows(), _new_rows({FAST: 1.3})) == 1
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    for column in ("model", "batch", "seq len", "old p50 (ms)", "absolute ratio", "normalized ratio", "decided by"):
        assert column in header
    assert "| regressed" in out
    summary = out.strip().splitlines()[-1]
    assert summary == (
        "3 cells compared: 1 regressed, 0 improved, 0 not tested "
        "(threshold 10%, alpha 0.05, normalized to the baseline cell)"
    )


def test_missing_rounds_are_not_tested() -> None:
    old = [{**row, "round_p50s_ms": None} for row in _old_rows()]
    new = [{**row, "round_p50s_ms": None} for row in _new_rows({FAST: 1.3})]
    new[1]["p50_ms"] = 6.5
    lines = _by_cell(compare_rows(old, new))
    fast = lines[FAST]
    assert fast.p_value is None
    assert fast.verdict == "not tested"
    assert fast.decided_by == "normalized"  # from the p50s: (6.5 / 10) / (5 / 10)
    assert fast.normalized_ratio == pytest.approx(1.3)
    assert lines[INT8].p_value is None and lines[INT8].verdict == "same"  # inside the threshold


def test_fewer_than_3_rounds_are_not_tested() -> None:
    old = [{**row, "round_p50s_ms": row["round_p50s_ms"][:2]} for row in _old_rows()]
    line = _by_cell(compare_rows(old, _new_rows({FAST: 1.3})))[FAST]
    assert line.p_value is None and line.verdict == "not tested"


def test_no_baseline_cell_is_decided_by_the_absolute_ratio() -> None:
    new = _new_rows({FAST: 1.3})
    new[0] = {**new[0], "status": "error"}  # the baseline failed in the new run
    line = _by_cell(compare_rows(_old_rows(), new))[FAST]
    assert line.decided_by == "absolute"
    assert line.normalized_ratio is None
    assert line.verdict == "regressed"


@pytest.mark.parametrize(
    ("field", "shown"),
    [
        ("env_fingerprint", "different environments (env_fingerprint a1b2 vs c3d4)"),
        ("suite_hash", "different suites (suite_hash a1b2 vs c3d4)"),
        ("git_commit", "different code versions (git_commit a1b2 vs c3d4)"),
    ],
)
def test_mixed_runs_are_refused_unless_across_machines(tmp_path: Path, capsys, field: str, shown: str) -> None:
    old, new = _old_rows(**{field: "a1b2"}), _new_rows({}, **{field: "c3d4"})
    assert _cli(tmp_path, old, new) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith("error: OLD and NEW come from ") and shown in error
    assert "pass --across-machines" in error
    assert _cli(tmp_path, old, new, "--across-machines") == 0
    assert "normalized to the baseline cell" in capsys.readouterr().out


@pytest.mark.parametrize("options", [["--threshold", "0"], ["--threshold", "-0.1"], ["--alpha", "0"], ["--alpha", "1"]])
def test_bad_options_exit_2(tmp_path: Path, capsys, options: list[str]) -> None:
    assert _cli(tmp_path, _old_rows(), _new_rows({}), *options) == 2
    assert capsys.readouterr().err.startswith("error: --")


def test_bad_input_exits_2(tmp_path: Path, capsys) -> None:
    present = str(_write(tmp_path / "old.jsonl", _old_rows()))
    assert main(["compare", present, str(tmp_path / "missing.jsonl")]) == 2
    assert "no such results file" in capsys.readouterr().err
    other = [{**row, "batch_size": 8} for row in _new_rows({})]
    assert _cli(tmp_path, _old_rows(), other) == 2
    assert "no cell in common" in capsys.readouterr().err


def test_cells_in_one_run_only_are_listed(tmp_path: Path, capsys) -> None:
    assert _cli(tmp_path, _old_rows(), _new_rows({})[:2]) == 0
    out = capsys.readouterr().out
    assert "only in old: student/ort-int8/onnxruntime/cpu/1/dynamic" in out
    assert "2 cells compared" in out


def test_noise_in_many_cells_is_not_a_regression_after_holm() -> None:
    from harness.results.stats import welch_log_p

    # 40 unchanged cells whose rounds only carry noise: by chance some move > 10% with p < 0.05
    rng = np.random.default_rng(3)
    old, new, chance = [], [], 0
    for index in range(40):
        cell = ("student", f"e{index}", "onnxruntime")
        before, after = list(5.0 * rng.lognormal(0, 0.08, 3)), list(5.0 * rng.lognormal(0, 0.08, 3))
        old.append(_row(cell, before, _run("old")))
        new.append(_row(cell, after, _run("new")))
        p_value = welch_log_p(before, after)
        chance += p_value is not None and p_value < 0.05 and np.median(after) > 1.1 * np.median(before)
    assert chance >= 1  # unadjusted, noise alone would be called a regression
    table = compare_rows(old, new, normalize="none")
    assert (table["verdict"] != "regressed").all()  # adjusted for 40 comparisons


def test_every_latency_times_1_3_is_a_whole_run_regression(tmp_path: Path, capsys) -> None:
    old = _old_rows()
    scaled = [{**r, "p50_ms": r["p50_ms"] * 1.3, "round_p50s_ms": [x * 1.3 for x in r["round_p50s_ms"]],
               "run": {**r["run"], "run_id": "copy"}} for r in old]  # fmt: skip
    assert _cli(tmp_path, old, scaled) == 1
    out = capsys.readouterr().out
    assert "whole run: every cell x1.300 on geometric mean (t-test p 0): regressed" in out
