"""String labels: mapped to class ids by ``task.label_map``, and refused (one line naming the row
and the fix) without one."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness_testutil import TOY_ROWS
from harness_testutil import run_cli_guarded as run_cli
from test_hostile_files import _suite

from harness.data.splits import load_split
from harness.errors import HarnessError
from harness.suite import TaskConfig, load_suite

NAMES = {0: "negative", 1: "positive"}


def _worded_data(tmp_path: Path, rows: list[tuple[str, str]]) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    lines = ["sentence\tlabel"] + [f"{text}\t{label}" for text, label in rows]
    (folder / "validation.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_mapped_string_labels_load_as_class_ids(tmp_path: Path) -> None:
    data = _worded_data(tmp_path, [(text, NAMES[label]) for text, label in TOY_ROWS])
    task = TaskConfig(local=str(data), source="local", label_map={"negative": 0, "positive": 1})
    split = load_split(task, "validation")
    assert split.labels == [label for _, label in TOY_ROWS]
    suite = _suite(tmp_path, data, task={"label_map": {"negative": 0, "positive": 1}})
    proc = run_cli("validate", suite)
    assert proc.returncode == 0, proc.stderr
    assert load_suite(suite).task.label_map == {"negative": 0, "positive": 1}


def test_string_labels_without_a_map_name_the_row_and_the_fix(tmp_path: Path) -> None:
    data = _worded_data(tmp_path, [("fine", "positive"), ("bad", "negative")])
    with pytest.raises(HarnessError, match=r"line 2: label 'positive' .*declare string labels in task\.label_map"):
        load_split(TaskConfig(local=str(data), source="local"), "validation")
    proc = run_cli("validate", _suite(tmp_path, data))
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert "label 'positive' in column 'label' is not an integer (declare string labels in task.label_map)" in line


def test_a_label_missing_from_the_map_is_named(tmp_path: Path) -> None:
    data = _worded_data(tmp_path, [("fine", "positive"), ("meh", "neutral"), ("bad", "negative")])
    proc = run_cli("validate", _suite(tmp_path, data, task={"label_map": {"negative": 0, "positive": 1}}))
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert "label 'neutral'" in line and "nor in task.label_map (['negative', 'positive'])" in line, line


@pytest.mark.parametrize(
    ("label_map", "problem"),
    [({}, "at least 1"), ({"positive": -1}, "must be at least 0 (got -1)"), ({"positive": True}, "integer")],
)
def test_a_malformed_map_is_a_schema_error(tmp_path: Path, label_map: dict, problem: str) -> None:
    data = _worded_data(tmp_path, [("fine", "positive")])
    proc = run_cli("validate", _suite(tmp_path, data, task={"label_map": label_map}))
    assert proc.returncode == 2
    assert "task.label_map" in proc.stderr and problem in proc.stderr, proc.stderr
