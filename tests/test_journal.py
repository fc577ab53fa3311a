"""The round journal: what each variant measured in each round survives an interrupted run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.measure.execute import CellTimes, VariantOutcome
from harness.run.journal import RoundJournal


def _outcome() -> VariantOutcome:
    cells = {
        ("m", "e", "b", "cpu", "1", "dynamic"): CellTimes(((0.5, 0.25), (0.75, 0.125)), 2, peak_rss_mb=123.5),
        ("m", "e", "b", "cpu", "8", "64"): CellTimes(error="RuntimeError: out of memory"),
    }
    scores = {"batch 1, dynamic": np.array([[0.1, -0.2], [1.5, 2.5]], dtype=np.float32)}
    errors = {"batch 8, seq 64": "RuntimeError: out of memory"}
    return VariantOutcome("ok", None, cells, scores, {"peak_rss_mb": 10.0, "cell_rss_mb": None}, {}, errors)


def test_round_trip_is_exact(tmp_path: Path) -> None:
    journal = RoundJournal(tmp_path / "r.journal", "suite-a", "env-a")
    journal.append("m/e/b/cpu", 0, _outcome(), 1.25)
    journal.append("m/e/b/cpu", 1, VariantOutcome("timeout", "no result within 8 s"), 0.5)
    found = RoundJournal(tmp_path / "r.journal", "suite-a", "env-a").load()
    assert set(found) == {("m/e/b/cpu", 0)}  # a failed round is not replayed: it runs again
    outcome, load_avg = found[("m/e/b/cpu", 0)]
    assert load_avg == 1.25
    assert outcome.cells == _outcome().cells
    assert outcome.memory == {"peak_rss_mb": 10.0, "cell_rss_mb": None}
    assert outcome.score_errors == {"batch 8, seq 64": "RuntimeError: out of memory"}
    np.testing.assert_array_equal(outcome.scores["batch 1, dynamic"], _outcome().scores["batch 1, dynamic"])
    assert outcome.scores["batch 1, dynamic"].dtype == np.float32


def test_other_suites_and_torn_lines_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "r.journal"
    RoundJournal(path, "suite-a", "env-a").append("v", 0, _outcome(), 1.0)
    RoundJournal(path, "suite-b", "env-a").append("v", 1, _outcome(), 1.0)
    RoundJournal(path, "suite-a", "env-b").append("v", 2, _outcome(), 1.0)
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"suite_hash": "suite-a", "env_fin')  # a writer killed mid-line
    assert set(RoundJournal(path, "suite-a", "env-a").load()) == {("v", 0)}
    # the next record does not land on the torn line: it is cut first
    RoundJournal(path, "suite-a", "env-a").append("v", 3, _outcome(), 1.0)
    assert set(RoundJournal(path, "suite-a", "env-a").load()) == {("v", 0), ("v", 3)}


def test_remove(tmp_path: Path) -> None:
    journal = RoundJournal(tmp_path / "r.journal", "s", "e")
    journal.remove()  # nothing there yet: fine
    journal.append("v", 0, _outcome(), 1.0)
    journal.remove()
    assert not journal.path.exists() and journal.load() == {}


def test_results_set_aside_never_overwrite_older_ones(tmp_path) -> None:
    from harness.run.runner import set_aside

    results = tmp_path / "suite.jsonl"
    moved, runs = [], ("first", "second", "third")
    for run in runs:
        results.write_text(f'{{"run": "{run}"}}\n', encoding="utf-8")
        moved.append(set_aside(results))
    assert [p.name for p in moved] == ["suite.previous.jsonl", "suite.previous-2.jsonl", "suite.previous-3.jsonl"]
    assert [p.read_text(encoding="utf-8") for p in moved] == [f'{{"run": "{r}"}}\n' for r in runs]
    assert not results.exists()
