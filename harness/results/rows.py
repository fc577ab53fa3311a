"""Result rows: one immutable record per cell, appended to a JSON Lines file as it finishes."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

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
    accuracy: float | None = None
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

    def append(self, row: CellRow) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(row.to_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def read_rows(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """All rows of several results files; a torn final line (from a killed writer) is skipped."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                if number == len(lines):
                    continue
                raise HarnessError(f"{path}:{number}: not a JSON row ({error.msg})") from None
            row.setdefault("run", {})
            row["source_file"] = str(path)
            rows.append(row)
    return rows


def cell_key(row: Any) -> tuple[str, ...]:
    """What identifies a cell across runs (a row dict or a ``CellRow``)."""
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    return tuple(str(get(name)) for name in ("model", "exporter", "backend", "device", "batch_size", "seq_len"))


def rows_of_run(rows: list[dict[str, Any]], suite_hash: str, env_fingerprint: str) -> list[dict[str, Any]]:
    """The latest row of each cell for one suite on one environment, in first-seen cell order."""
    latest: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in rows:
        run = row.get("run", {})
        if run.get("suite_hash") == suite_hash and run.get("env_fingerprint") == env_fingerprint:
            latest[cell_key(row)] = row
    return list(latest.values())
