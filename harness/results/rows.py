"""Result rows: one immutable record per cell, appended to a JSON Lines file as it finishes."""

from __future__ import annotations

import json
import logging
import math
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import InputError, one_line, quote

log = logging.getLogger(__name__)
# a results file is about 1 KB a cell (a few KB with per-input timings): far below these
MAX_RESULTS_BYTES = 2 * 2**30
MAX_LINE_BYTES = 64 * 2**20
JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
REQUIRED = (
    *((name, (str,), "a name") for name in ("model", "exporter", "backend", "device")),
    ("batch_size", (int,), "an integer"),
    ("seq_len", (int, str), "an integer or a name"),
    ("status", (str,), "a name"),
)

CELL_FIELDS = (
    "model",
    "exporter",
    "backend",
    "device",
    "batch_size",
    "seq_len",
    "status",
    "reason",
    "accuracy",
    "macro_f1",
    "agreement",
    "max_abs_logit_diff",
    "params",
    "size_mb",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "throughput_per_s",
    "iterations",
    "peak_rss_mb",
)


@dataclass(frozen=True)
class CellRow:
    """One cell: model x exporter x backend x device x batch size x sequence length."""

    model: str
    exporter: str
    backend: str
    device: str
    batch_size: int
    seq_len: int | str
    status: str
    reason: str | None = None
    # the machine that measured the cell, by the suite's hardware selector name (a fleet run only)
    hardware: str | None = None
    accuracy: float | None = None
    # the unweighted mean of per-class F1: what accuracy hides when the classes are unbalanced
    macro_f1: float | None = None
    agreement: float | None = None
    max_abs_logit_diff: float | None = None
    params: int | None = None
    size_mb: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    throughput_per_s: float | None = None
    iterations: int | None = None
    peak_rss_mb: float | None = None
    precision: str | None = None
    eval_samples: int | None = None
    percentile_method: str | None = None
    lineage: dict[str, Any] | None = None
    # the workload: which inputs were timed, and how they compare with the whole split
    inputs_distinct: int | None = None
    inputs_key: str | None = None
    # the first eval-sentence index of each timed input, in order: cells sharing a prefix timed the same inputs
    input_starts: list[int] | None = None
    input_mean_tokens: float | None = None
    split_mean_tokens: float | None = None
    # rounds x inputs: each distinct input's median latency (ms) in each round
    rounds: int | None = None
    input_ms: list[list[float]] | None = None
    round_p50s_ms: list[float] | None = None
    p50_ci_low_ms: float | None = None
    p50_ci_high_ms: float | None = None
    instability_cv: float | None = None
    input_cv: float | None = None
    percentile_notes: list[str] | None = None
    warnings: list[str] | None = None
    timer_resolution_ms: float | None = None
    load_avg_1m: list[float] | None = None
    # accuracy, and the shape it was measured at
    accuracy_shape: str | None = None
    source_accuracy: float | None = None
    teacher_accuracy: float | None = None
    mcnemar_p: float | None = None
    accuracy_gate: str | None = None
    teacher_gate: str | None = None
    score_error: str | None = None
    gflops_per_s: float | None = None
    peak_fraction: float | None = None
    peak_source: str | None = None
    baseline_rss_mb: float | None = None
    cell_rss_mb: float | None = None
    cuda_peak_allocated_mb: float | None = None
    cuda_peak_reserved_mb: float | None = None
    gpu_process_mb: float | None = None
    # what produced the cell beyond the run record: the adapters' packages and options, and what
    # the backend's session said of each round (compile seconds, precision read back, ...)
    versions: dict[str, str] | None = None
    adapter_options: dict[str, Any] | None = None
    backend_notes: list[dict[str, Any]] | None = None
    run: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(_finite(asdict(self)), sort_keys=False)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity; write them as null so every reader can parse the row."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class ResultsWriter:
    """Appends one complete line per row and flushes it to disk before returning."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_torn_tail()

    def _drop_torn_tail(self) -> None:
        """A writer killed mid-line leaves a partial last line; cut it so the next row starts clean."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            with self.path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def append(self, row: CellRow | Any) -> None:
        """``row``: a ``CellRow`` or a ``ScenarioRow`` (anything with ``to_json``)."""
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(row.to_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def read_rows(paths: Iterable[Path], scenarios: bool = False) -> list[dict[str, Any]]:
    """The well-formed cell rows (or, with ``scenarios``, the scenario rows) of several results files
    (a resumed run reads its own file this way).

    Each row is tagged with ``source_file`` and ``source_line``. A results file comes from another
    machine or a killed writer, so a bad line never stops the reader: it is skipped, and each file
    with skipped lines gets one warning that counts them and names the first. A file that is not a
    readable regular file of at most ``MAX_RESULTS_BYTES`` is an ``InputError``.
    """
    return [
        row
        for path in paths
        for row in read_results_file(Path(path), check_values=False, required=False, scenarios=scenarios)
    ]


def load_results(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """``read_rows`` for ``report`` and ``compare``: rows whose numbers cannot be right (see
    ``harness.results.checks``) are skipped too, and a file without a usable row is an ``InputError``."""
    return [row for path in paths for row in read_results_file(Path(path))]


def read_results_file(
    path: Path, check_values: bool = True, required: bool = True, scenarios: bool = False
) -> list[dict[str, Any]]:
    """Cell rows, or with ``scenarios`` the scenario rows (those naming a ``scenario``), of one file."""
    from harness.results.checks import row_problem

    _check_file(path)
    rows: list[dict[str, Any]] = []
    skipped, total, first, torn = 0, 0, "", ""
    for number, raw, complete in _raw_lines(path):
        if raw is not None and not raw.strip():
            continue
        problem, row = _parse_line(raw, number)
        if row is not None and not problem and bool(row.get("scenario")) != scenarios:
            continue  # the other kind of row
        if row is not None and not problem and check_values and not scenarios:
            problem = row_problem(row)
        if problem and row is None and not complete:
            torn = f"line {number}: {problem}, and the file ends there"  # a killed writer's last line: expected
            continue
        total += 1
        if problem:
            skipped += 1
            first = first or f"line {number}: {problem}"
            continue
        row["source_file"], row["source_line"] = str(path), number
        rows.append(row)
    if not rows and required:
        raise InputError(f"{one_line(str(path))}: no result rows ({first or torn or 'the file is empty'})")
    if skipped and not scenarios:  # said once, by the cell reading that every scenario reading comes with
        log.warning(one_line(f"warning: {path}: skipped {skipped} of {total} lines (first: {first})"))
    return rows


def _check_file(path: Path) -> None:
    """Refuse, before reading a byte, what is missing, not a regular file (a FIFO, /dev/zero) or too big."""
    name = one_line(str(path))
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError(f"{name}: no such results file") from None
    except OSError as error:
        raise InputError(f"{name}: cannot be read: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{name}: not a regular file")
    if info.st_size > MAX_RESULTS_BYTES:
        raise InputError(f"{name}: {info.st_size} bytes, more than the {MAX_RESULTS_BYTES} a results file may have")


def _raw_lines(path: Path) -> Iterator[tuple[int, bytes | None, bool]]:
    """``(line number, bytes or None when too long, ended by a newline)``, streamed."""
    try:
        with path.open("rb") as stream:
            number = 0
            while raw := stream.readline(MAX_LINE_BYTES + 1):
                number += 1
                if len(raw) <= MAX_LINE_BYTES or raw.endswith(b"\n"):
                    yield number, raw, raw.endswith(b"\n")
                    continue
                while raw and not raw.endswith(b"\n"):  # skip the rest of an oversized line
                    raw = stream.readline(MAX_LINE_BYTES)
                yield number, None, raw.endswith(b"\n")
    except OSError as error:
        raise InputError(f"{one_line(str(path))}: cannot be read: {error.strerror or error}") from None


def _parse_line(raw: bytes | None, number: int) -> tuple[str, dict[str, Any] | None]:
    """``(problem, row)``: an empty problem and the row when the line is a well-formed result row."""
    if raw is None:
        return f"longer than {MAX_LINE_BYTES} bytes", None
    try:
        text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as error:
        return f"not UTF-8 text (byte {quote(raw[error.start : error.start + 1])} at column {error.start + 1})", None
    try:
        row = json.loads(text)
    except RecursionError:
        return "JSON nested too deeply", None
    except ValueError as error:  # JSONDecodeError, or an integer of thousands of digits
        where = f"column {error.colno}: " if isinstance(error, json.JSONDecodeError) else ""
        return f"not valid JSON ({where}{getattr(error, 'msg', str(error))})", None
    if not isinstance(row, dict):
        return f"not a JSON object ({JSON_TYPES.get(type(row), 'null')})", None
    return _field_problem(row), row


def _field_problem(row: dict[str, Any]) -> str:
    """What makes ``row`` unusable as a cell: a required field missing or of the wrong type."""
    for name, kinds, expected in REQUIRED:
        value = row.get(name)
        if type(value) not in kinds or value == "":  # exact types: a boolean is not an integer
            missing = name not in row
            return f"field {name!r} is " + ("missing" if missing else f"{quote(value)}, expected {expected}")
    if row.setdefault("run", {}) is None:
        row["run"] = {}
    if type(row["run"]) is not dict:
        return f"field 'run' is {quote(row['run'])}, expected an object"
    return ""


def cell_key(row: Any) -> tuple[str, ...]:
    """What identifies a cell across runs (a row dict or a ``CellRow``)."""
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name, None)
    key = tuple(str(get(name)) for name in ("model", "exporter", "backend", "device", "batch_size", "seq_len"))
    # the same cell on two machines is two cells; a local run's rows keep the key they always had
    return (*key, str(get("hardware"))) if get("hardware") else key


def rows_of_run(
    rows: list[dict[str, Any]],
    suite_hash: str,
    env_fingerprint: str,
    key: Callable[[Any], tuple[str, ...]] = cell_key,
) -> list[dict[str, Any]]:
    """The latest row of each cell (by ``key``) for one suite on one environment, in first-seen order."""
    latest: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in rows:
        run = row.get("run", {})
        if run.get("suite_hash") == suite_hash and run.get("env_fingerprint") == env_fingerprint:
            latest[key(row)] = row
    return list(latest.values())
