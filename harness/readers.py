"""Readers for files the harness is handed (JSON, text lines, safetensors headers) that never crash.

Checkpoints come from strangers and data files from hurried exports, so every problem (an unreadable
file, bad encoding, bad JSON, the wrong shape, an absurd size) becomes one ``FileFormatError`` shaped
``FILE: where: what``, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import InputError, quote

MAX_JSON_BYTES = 16 * 2**20  # a model config or shard index is kilobytes; refuse /dev/zero-sized input
MAX_LINE_BYTES = 16 * 2**20
_HEADER_PREFIX = "Error while deserializing header: "


class FileFormatError(InputError):
    """A file the harness reads is missing, unreadable or malformed."""

    def __init__(self, path: Path | str, where: str, what: str) -> None:
        self.path = str(path)
        self.where = where
        self.what = what
        super().__init__(f"{path}: {where}: {what}" if where else f"{path}: {what}")


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    names = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def read_bytes(path: Path, limit: int) -> bytes:
    """A regular file's bytes, refusing anything over ``limit`` before reading it."""
    try:
        if not path.is_file():
            raise FileFormatError(path, "", "not a regular file" if path.exists() else "no such file")
        size = path.stat().st_size
        if size > limit:
            raise FileFormatError(path, "", f"{size} bytes, more than the {limit} this file may have")
        return path.read_bytes()
    except OSError as error:
        raise FileFormatError(path, "", f"cannot be read: {error.strerror or error}") from None


def decode_utf8(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        byte = data[error.start : error.start + 1]
        raise FileFormatError(path, f"line {line}", _not_utf8(byte, error.start)) from None


def _not_utf8(byte: bytes, offset: int) -> str:
    return f"not UTF-8 text (byte {quote(byte)} at byte offset {offset} of the file)"


def read_json(path: Path, limit: int = MAX_JSON_BYTES) -> Any:
    """A JSON file's value; bad encoding, syntax or nesting is one line naming the place."""
    text = decode_utf8(path, read_bytes(path, limit))
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise FileFormatError(path, where, f"not valid JSON ({error.msg})") from None
    except RecursionError:
        raise FileFormatError(path, "", "JSON nested too deeply") from None


def read_json_object(path: Path, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    value = read_json(path, limit)
    if not isinstance(value, dict):
        raise FileFormatError(path, "top level", f"expected a JSON object, got {json_type(value)}")
    return value


def iter_lines(path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a UTF-8 text file, streamed; lines end at LF only (CRs are kept)."""
    offset = 0
    try:
        with path.open("rb") as stream:
            for number in range(1, 2**62):
                raw = stream.readline(max_line_bytes + 1)
                if not raw:
                    return
                if len(raw) > max_line_bytes:
                    raise FileFormatError(path, f"line {number}", f"longer than {max_line_bytes} bytes")
                yield number, _decode_line(path, raw, number, offset)
                offset += len(raw)
    except OSError as error:
        raise FileFormatError(path, "", f"cannot be read: {error.strerror or error}") from None


def _decode_line(path: Path, raw: bytes, number: int, offset: int) -> str:
    try:
        text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as error:
        byte = raw[error.start : error.start + 1]
        raise FileFormatError(path, f"line {number}", _not_utf8(byte, offset + error.start)) from None
    return text.removesuffix("\n")


def check_safetensors_header(path: Path) -> None:
    """Refuse a ``.safetensors`` file whose header is truncated, garbage or absurdly long.

    ``safe_open`` reads the 8-byte length and the JSON header with bounds (the length is checked
    against the file size before anything is allocated) and maps, but does not read, the tensors.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy"):
            pass
    except SafetensorError as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        what = f"not a valid safetensors file: {detail.removeprefix(_HEADER_PREFIX)}"
        raise FileFormatError(path, "header", what) from None
    except OSError as error:
        raise FileFormatError(path, "", f"cannot be read: {error.strerror or error}") from None
