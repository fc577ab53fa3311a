"""Cheap checks of what a suite points at, run before any expensive stage.

Model directories, packages, local data files, their columns and label ranges are all checked by
reading a few small files, so a typo costs a second instead of a half-hour run. Each problem is a
``SuiteError`` naming the suite file and the key path.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from harness.data.splits import LOCAL_FORMATS, data_search_path, find_local_split
from harness.errors import ModelNotFoundError, SuiteError
from harness.models.sources import BUILTINS, check_model_dir, package_files_dir
from harness.suite import Suite


def preflight(suite: Suite, file: str, hub_reachable: bool = False) -> None:
    for index, model in enumerate(suite.models):
        if model.source is not None:
            _check_source(model.source, file, f"models[{index}].source")
    _check_task(suite, file, hub_reachable)


def _check_source(source: str, file: str, key: str) -> None:
    if source.startswith("builtin:"):
        name = source.removeprefix("builtin:")
        if name not in BUILTINS:
            raise SuiteError(file, key, f"unknown builtin model '{name}' (known: {', '.join(BUILTINS)})")
        return
    if source.startswith("package:"):
        module = source.removeprefix("package:")
        if package_files_dir(module) is None:
            raise SuiteError(file, key, f"python package '{module}' is not installed (pip install it)")
        return
    path = Path(source).expanduser()
    looks_local = source.startswith((".", "/", "~")) or source.count("/") != 1
    if not path.exists():
        if looks_local:
            raise SuiteError(file, key, f"no such model directory: {path}")
        return  # a hub id; resolved (or explained) when the run starts
    try:
        check_model_dir(path, source)
    except ModelNotFoundError as error:
        raise SuiteError(file, key, str(error)) from None


def _check_task(suite: Suite, file: str, hub_reachable: bool) -> None:
    task = suite.task
    if task.source == "hub" or (task.source == "auto" and task.dataset and hub_reachable):
        return  # the hub copy is checked by datasets itself
    path = find_local_split(task, task.split)
    if path is None:
        searched = ", ".join(str(p) for p in data_search_path())
        where = f"'{task.local}/{task.split}.{{{','.join(s[1:] for s in LOCAL_FORMATS)}}}'"
        raise SuiteError(file, "task.local", f"no {where} in {searched} (set HARNESS_DATA_PATH, or fix the path)")
    columns, labels = _read_columns(path, task.label_column)
    for key in ("text_column", "label_column"):
        name = getattr(task, key)
        if name not in columns:
            raise SuiteError(file, f"task.{key}", f"{path} has no column '{name}' (columns: {', '.join(columns)})")
    for index, model in enumerate(suite.models):
        num_labels = _model_num_labels(model.source) or model.num_labels
        bad = sorted({label for label in labels if not 0 <= label < num_labels})
        if bad:
            raise SuiteError(
                file,
                f"models[{index}].num_labels",
                f"the eval labels include {bad[0]} but model '{model.name}' has {num_labels} labels "
                f"(0..{num_labels - 1})",
            )


def _read_columns(path: Path, label_column: str) -> tuple[list[str], list[int]]:
    """Column names and integer labels of a local split, read without pandas or datasets."""
    if path.suffix in (".jsonl", ".json"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        columns = list(rows[0]) if rows else []
        values = [row.get(label_column) for row in rows]
    else:
        # split on LF only, as the loader does: SST-2's train.tsv has stray CRs inside lines
        delimiter = "\t" if path.suffix == ".tsv" else ","
        lines = [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
        reader = csv.DictReader(lines, delimiter=delimiter, quoting=csv.QUOTE_NONE)
        columns = list(reader.fieldnames or [])
        values = [(row.get(label_column) or "").strip() for row in reader]
    labels = []
    for value in values:
        try:
            labels.append(int(value))
        except (TypeError, ValueError):
            labels.append(-1)  # a non-integer label is out of every range
    return columns, labels


def _model_num_labels(source: str | None) -> int | None:
    if source is None or not (Path(source).expanduser() / "config.json").is_file():
        return None
    config = json.loads((Path(source).expanduser() / "config.json").read_text(encoding="utf-8"))
    if "id2label" in config:
        return len(config["id2label"])
    return config.get("num_labels")
