"""Eval and train sentences, from the Hugging Face hub when reachable, else from local files.

This machine has no route to the hub, so the default suites name a local directory too, searched
for in ``$HARNESS_DATA_PATH`` and then in ``./data`` and ``../shared/data``.
"""

from __future__ import annotations

import csv
import hashlib
import os
import socket
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data.tables import class_id, scan_split_file, unmapped, warn_if_one_class
from harness.errors import DataNotFoundError, HarnessError, quote
from harness.suite import TaskConfig

DATA_PATH_VARIABLE = "HARNESS_DATA_PATH"
DEFAULT_DATA_DIRS = ("data", "../shared/data")
LOCAL_FORMATS = {".tsv": "csv", ".csv": "csv", ".jsonl": "json", ".json": "json"}
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@dataclass(frozen=True)
class TextSplit:
    texts: list[str]
    labels: list[int]
    origin: str


def split_content_hash(split: TextSplit) -> str:
    """Hash of a split's texts and labels in order: what a model trained on it actually saw."""
    digest = hashlib.sha256()
    for text, label in zip(split.texts, split.labels):
        digest.update(f"{label}\t{text}\n".encode())
    return digest.hexdigest()[:20]


def data_search_path() -> list[Path]:
    raw = os.environ.get(DATA_PATH_VARIABLE, "")
    return [Path(p) for p in raw.split(os.pathsep) if p] + [Path(d) for d in DEFAULT_DATA_DIRS]


def hub_reachable(timeout_s: float = 2.0) -> bool:
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in OFFLINE_VARIABLES):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def find_local_split(task: TaskConfig, split: str) -> Path | None:
    """The first ``<dir>/<local>/<split>.<ext>`` found; ``local`` may also be a direct path."""
    if task.local is None:
        return None
    candidates = [Path(task.local)] if Path(task.local).is_absolute() else []
    candidates += [Path(task.local)] + [base / task.local for base in data_search_path()]
    for folder in candidates:
        for suffix in LOCAL_FORMATS:
            path = folder / f"{split}{suffix}"
            if _is_file(path):
                return path
    return None


def _is_file(path: Path) -> bool:
    return refusable_name_safe(path.is_file)


def refusable_name_safe(test: Callable[[], bool]) -> bool:
    """A path test (``exists``, ``is_file``) that is False for names the OS refuses (too long, NUL
    bytes) instead of raising."""
    try:
        return test()
    except (OSError, ValueError):
        return False


def load_split(
    task: TaskConfig, split: str, max_samples: int | None = None, cache_dir: Path | None = None
) -> TextSplit:
    """Load one split as texts and integer labels, trying the hub first only when it is reachable.

    A local file is scanned row by row first, so a bad row is reported with its line number; any
    other failure of ``datasets`` (or pyarrow, pandas) below is still one line naming the file.
    """
    use_hub = task.dataset is not None and task.source != "local" and (task.source == "hub" or hub_reachable())
    if use_hub:
        origin = file = f"hub:{task.dataset}" + (f"/{task.dataset_config}" if task.dataset_config else "")
        dataset = _guarded(file, lambda: _load_hub(task, split, cache_dir))
    else:
        path = find_local_split(task, split) if task.source != "hub" else None
        if path is None:
            raise DataNotFoundError(_not_found_message(task, split))
        if not scan_split_file(path, task.text_column, task.label_column, task.label_map).labels:
            raise DataNotFoundError(f"{path}: the {split} split has a header but no rows")
        origin, file = f"local:{path}", str(path)  # messages start with the file itself
        dataset = _guarded(file, lambda: _load_local(path, cache_dir))
    for column in (task.text_column, task.label_column):
        if column not in dataset.column_names:
            raise DataNotFoundError(f"{origin}: no column '{column}' (columns: {', '.join(dataset.column_names)})")
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    if len(dataset) == 0:
        raise DataNotFoundError(f"{file}: the {split} split has no rows")
    texts = [str(t).strip() for t in dataset[task.text_column]]
    labels = _class_ids(file, task.label_column, dataset[task.label_column], task.label_map)
    warn_if_one_class(file, split, labels)
    return TextSplit(texts, labels, origin)


def _guarded(origin: str, load: Callable[[], Any]) -> Any:
    """``load()``, with any failure of the libraries below turned into one line naming ``origin``."""
    try:
        return load()
    except HarnessError:
        raise
    except Exception as error:  # datasets, pyarrow and pandas raise many unrelated types
        cause = _root_cause(error)
        lines = str(cause).strip().splitlines()
        detail = f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
        raise DataNotFoundError(f"{origin}: cannot be loaded ({detail})") from None


def _root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain: datasets wraps the parser error that says what is wrong."""
    for _ in range(20):  # chains can be cyclic
        inner = error.__cause__ or error.__context__
        if inner is None:
            break
        error = inner
    return error


def _class_ids(origin: str, column: str, values: list[Any], label_map: Mapping[str, int] | None) -> list[int]:
    labels = []
    for row, value in enumerate(values, start=1):
        label = class_id(value, label_map)
        if label is None:
            problem = f"label {quote(value)} in column '{column}' {unmapped(label_map)}"
            raise DataNotFoundError(f"{origin}: row {row}: {problem}")
        labels.append(label)
    return labels


def _load_hub(task: TaskConfig, split: str, cache_dir: Path | None):  # noqa: ANN202 (datasets type)
    import datasets

    return datasets.load_dataset(
        task.dataset, task.dataset_config, split=split, cache_dir=str(cache_dir) if cache_dir else None
    )


def _load_local(path: Path, cache_dir: Path | None):  # noqa: ANN202 (datasets type)
    import datasets

    builder = LOCAL_FORMATS[path.suffix]
    options = {}
    if builder == "csv":
        # SST-2's TSV has bare quotes inside sentences: quoting must be off or rows merge.
        options = {"delimiter": "\t" if path.suffix == ".tsv" else ",", "quoting": csv.QUOTE_NONE}
        # A sentence such as "N/A" or "null" is text, not a missing value. SST-2's train.tsv ends
        # each sentence with a stray CR: lines end at LF only, and texts are stripped below.
        options.update(keep_default_na=False, na_filter=False, lineterminator="\n")
    datasets.disable_progress_bars()
    # datasets keys its cache of a local file by path and modification time, so an edit that keeps
    # the mtime (cp -p, rsync -a, tar) would be served stale: key the cache by content instead
    content = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "harness-datasets"
    return datasets.load_dataset(
        builder,
        data_files={"data": str(path)},
        split="data",
        cache_dir=str(root / content),
        **options,
    )


def _not_found_message(task: TaskConfig, split: str) -> str:
    searched = ", ".join(str(p) for p in data_search_path())
    parts = []
    if task.dataset and task.source != "local":
        parts.append(f"the hub dataset '{task.dataset}' is unreachable (offline)")
    if task.local:
        parts.append(
            f"no '{task.local}/{split}.{{tsv,csv,jsonl}}' was found in {searched}; "
            f"put the files there or set {DATA_PATH_VARIABLE} to the folder that holds '{task.local}/'"
        )
    else:
        parts.append("the suite names no local copy (task.local)")
    return "no data for split '" + split + "': " + "; ".join(parts)
