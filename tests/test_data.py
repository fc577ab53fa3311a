"""harness.data.splits: local TSV loading, the search path and the not-found message."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness_testutil import REPO, SST2_DIR, SST2_PRESENT, TOY_ROWS, write_tsv

from harness.data.splits import find_local_split, load_split
from harness.errors import DataNotFoundError, HarnessError
from harness.suite import TaskConfig


def test_load_split_keeps_bare_quotes(toy_data_root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_DATA_PATH", str(toy_data_root))
    task = TaskConfig(local="toy", source="local")
    split = load_split(task, "validation", None, tmp_path / "ds-cache")
    assert split.texts == [t for t, _ in TOY_ROWS]
    assert split.texts[0] == 'he said "hi there .'
    assert split.texts[3] == 'the "best" movie of the year , not'
    assert split.labels == [label for _, label in TOY_ROWS]
    assert split.origin == f"local:{toy_data_root / 'toy' / 'validation.tsv'}"


def test_max_samples_takes_the_first_rows(toy_data_root: Path, tmp_path: Path) -> None:
    task = TaskConfig(local=str(toy_data_root / "toy"), source="local")  # an absolute directory works too
    split = load_split(task, "validation", 3, tmp_path / "ds-cache")
    assert split.texts == [t for t, _ in TOY_ROWS[:3]]
    assert split.labels == [1, 1, 0]


def test_missing_data_names_the_variable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_DATA_PATH", str(tmp_path))
    task = TaskConfig(local="no-such-dataset", source="local")
    assert find_local_split(task, "validation") is None
    with pytest.raises(DataNotFoundError) as raised:
        load_split(task, "validation")
    message = str(raised.value)
    assert "HARNESS_DATA_PATH" in message
    assert "no-such-dataset/validation" in message
    assert str(tmp_path) in message
    assert raised.value.exit_code == 2


def test_missing_column_is_reported(tmp_path: Path) -> None:
    write_tsv(tmp_path / "d" / "validation.tsv", [("fine", 1)])
    task = TaskConfig(local=str(tmp_path / "d"), source="local", text_column="text")
    with pytest.raises(HarnessError, match="validation.tsv: no column 'text'"):  # found by the scan, before datasets
        load_split(task, "validation", None, tmp_path / "ds-cache")


def test_sentences_that_look_like_missing_values_survive(tmp_path: Path) -> None:
    rows = [("N/A", 1), ("null", 0), ("nan", 1), ("a real sentence", 0)]
    write_tsv(tmp_path / "d" / "validation.tsv", rows)
    split = load_split(TaskConfig(local=str(tmp_path / "d"), source="local"), "validation", None, tmp_path / "c")
    assert split.texts == ["N/A", "null", "nan", "a real sentence"]


@pytest.mark.integration
@pytest.mark.skipif(not SST2_PRESENT, reason=f"SST-2 files are absent ({SST2_DIR}/validation.tsv)")
def test_sst2_validation_counts(tmp_path: Path) -> None:
    split = load_split(TaskConfig(local=str(SST2_DIR), source="local"), "validation", None, tmp_path / "c")
    assert len(split.texts) == 872
    assert sum(split.labels) == 444
    assert set(split.labels) == {0, 1}
    assert all(isinstance(t, str) and t for t in split.texts)


@pytest.mark.integration
@pytest.mark.skipif(not SST2_PRESENT, reason=f"SST-2 files are absent ({SST2_DIR}/validation.tsv)")
def test_sst2_found_through_default_search_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HARNESS_DATA_PATH", raising=False)
    monkeypatch.chdir(REPO)  # ../shared/data from the repository root
    assert find_local_split(TaskConfig(local="sst2", source="local"), "validation") is not None
