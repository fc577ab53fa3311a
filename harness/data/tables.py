"""A cheap, exact scan of a local split file (TSV, CSV, JSON lines) before anything loads it.

The scan reads the file as the loader will (lines end at LF only, no quoting, lines of spaces
skipped) and fails on the first bad row with its line number: text that is not UTF-8, a truncated
or non-object JSON line, a row without its text or label, a label that is not an integer. A file
with one class only is worth a warning, logged once per file.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import quote
from harness.readers import FileFormatError, iter_lines, json_type, read_json

log = logging.getLogger("harness")
LabelMap = Mapping[str, int] | None
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)
_warned: set[tuple[str, str]] = set()
MAX_JSON_ARRAY_BYTES = 2**28  # a whole-array .json file is parsed at once: 256 MiB, a few GB in memory


class MissingColumnError(FileFormatError):
    """The file has no column of the name the suite gives (``column``)."""

    def __init__(self, path: Path, column: str, columns: list[str]) -> None:
        self.column = column
        listed = ", ".join(quote(c) for c in columns[:20]) or "none"
        super().__init__(path, "", f"no column {quote(column)} (columns: {listed})")


@dataclass(frozen=True)
class SplitScan:
    path: Path
    columns: list[str]
    labels: list[int]  # in file order, one per row


def scan_split_file(path: Path, text_column: str, label_column: str, label_map: LabelMap = None) -> SplitScan:
    """Check every row of a local split file; the first problem raises ``FileFormatError``."""
    if path.suffix == ".tsv" or path.suffix == ".csv":
        rows = _delimited_rows(path)
    else:
        array = path.suffix == ".json" and _starts_with(path, b"[")
        rows = _json_array_rows(path) if array else _json_line_rows(path)
    columns: list[str] = []
    labels: list[int] = []
    for where, row in rows:
        if where is None:  # the header (or the first JSON row's keys)
            columns = list(row)
            for column in (text_column, label_column):
                if column not in columns:
                    raise MissingColumnError(path, column, columns)
            continue
        _check_text(path, where, row, text_column)
        labels.append(_label(path, where, row, label_column, label_map))
    return SplitScan(path, columns, labels)


def as_integer(value: object) -> int | None:
    """``value`` as a class label: an integer, an integral float or an integer's digits; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    return None


def warn_if_one_class(name: str, split: str, labels: list[int]) -> None:
    """Log (once per file and split) that a split holds a single class: accuracy then means little."""
    if len(set(labels)) != 1 or (name, split) in _warned:
        return
    _warned.add((name, split))
    log.warning(
        "warning: %s: the %s split has one class only (label %d in all %d rows): accuracy cannot tell a model "
        "from a constant guess",
        name,
        split,
        labels[0],
        len(labels),
    )


def _delimited_rows(path: Path) -> Iterator[tuple[str | None, dict[str, str]]]:
    delimiter = "\t" if path.suffix == ".tsv" else ","
    header: list[str] | None = None
    for number, line in iter_lines(path):
        if not line.strip(" "):
            continue  # the loader (pandas) skips lines of spaces only
        fields = line.split(delimiter)
        if header is None:
            header = fields
            yield None, dict.fromkeys(header, "")
            continue
        if len(fields) > len(header):
            what = f"{len(fields)} fields, but the header has {len(header)} (a stray {quote(delimiter)}?)"
            raise FileFormatError(path, f"line {number}", what)
        yield f"line {number}", dict(zip(header, fields))
    if header is None:
        raise FileFormatError(path, "", "the file is empty: no header line and no rows")


def _json_line_rows(path: Path) -> Iterator[tuple[str | None, dict[str, Any]]]:
    first = True
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            what = f"not valid JSON ({error.msg} at column {error.colno}; a truncated line?)"
            raise FileFormatError(path, f"line {number}", what) from None
        except RecursionError:
            raise FileFormatError(path, f"line {number}", "JSON nested too deeply") from None
        if first:
            first = False
            yield None, _object(path, f"line {number}", row)
        yield f"line {number}", _object(path, f"line {number}", row)
    if first:
        raise FileFormatError(path, "", "the file is empty: no rows")


def _json_array_rows(path: Path) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """A ``.json`` file holding one array of row objects, which the loader accepts too."""
    rows = read_json(path, MAX_JSON_ARRAY_BYTES)
    if not isinstance(rows, list):
        raise FileFormatError(path, "top level", f"expected rows (JSON lines or an array), got {json_type(rows)}")
    for index, row in enumerate(rows):
        if index == 0:
            yield None, _object(path, "item 0", row)
        yield f"item {index}", _object(path, f"item {index}", row)
    if not rows:
        raise FileFormatError(path, "", "the file is empty: no rows")


def _object(path: Path, where: str, row: object) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise FileFormatError(path, where, f"a row must be a JSON object, got {json_type(row)}")
    return row


def _starts_with(path: Path, prefix: bytes) -> bool:
    """Whether the file's first non-blank byte is ``prefix`` (read from the first 4 KiB only)."""
    try:
        with path.open("rb") as stream:
            return stream.read(4096).lstrip().removeprefix(b"\xef\xbb\xbf").lstrip().startswith(prefix)
    except OSError:
        return False  # the line reader reports it


def _check_text(path: Path, where: str, row: dict[str, Any], column: str) -> None:
    text = row.get(column)
    if text is None:
        raise FileFormatError(path, where, f"no value for the text column {quote(column)}")
    if not isinstance(text, str):
        raise FileFormatError(path, where, f"the text {quote(column)} must be a string, got {json_type(text)}")


def _label(path: Path, where: str, row: dict[str, Any], column: str, label_map: LabelMap) -> int:
    value = row.get(column)
    if value is None:
        raise FileFormatError(path, where, f"no value for the label column {quote(column)}")
    label = class_id(value, label_map)
    if label is not None:
        return label
    raise FileFormatError(path, where, f"label {quote(value)} in column {quote(column)} {unmapped(label_map)}")


def class_id(value: object, label_map: LabelMap) -> int | None:
    """A label as a class id: an integer, or a string the suite's ``task.label_map`` names."""
    if label_map and isinstance(value, str) and value in label_map:
        return label_map[value]
    return as_integer(value)


def unmapped(label_map: LabelMap) -> str:
    if not label_map:
        return "is not an integer (declare string labels in task.label_map)"
    return f"is neither an integer nor in task.label_map ({quote(sorted(label_map), limit=60)})"
