"""A worker's answer as data: JSON text that the driver parses and checks field by field, so nothing a
worker sends is executed or trusted as an object. Logits come back as nested lists of numbers."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from harness.fleet.nodes import FleetError
from harness.measure.execute import CellTimes, VariantOutcome
from harness.run.journal import times_record

# an outcome holds every timed call of a variant's cells and its logits over the eval split: a few MB
MAX_ANSWER_BYTES = 256 * 2**20
STATUSES = ("ok", "error", "timeout")


def encode_outcome(outcome: VariantOutcome, environment: Mapping[str, Any]) -> str:
    """The outcome and the environment of the machine that produced it, as JSON text."""
    return json.dumps(
        {
            "status": outcome.status,
            "reason": outcome.reason,
            "cells": [[list(cell), times_record(times)] for cell, times in outcome.cells.items()],
            "scores": {label: np.asarray(logits, dtype=float).tolist() for label, logits in outcome.scores.items()},
            "memory": dict(outcome.memory),
            "phases": dict(outcome.phases),
            "score_errors": dict(outcome.score_errors),
            "notes": dict(outcome.notes),
            "environment": dict(environment),
        },
        allow_nan=False,
        default=str,
    )


def decode_outcome(text: str | bytes) -> tuple[VariantOutcome, dict[str, Any]]:
    """Parse and check a worker's answer; anything malformed is a ``FleetError`` naming the field."""
    if len(text) > MAX_ANSWER_BYTES:
        raise FleetError(f"a worker answered {len(text) / 2**20:.0f} MB, over the {MAX_ANSWER_BYTES // 2**20} MB limit")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except ValueError as error:
        raise FleetError(f"a worker's answer is not valid JSON: {error}") from None
    raw = _typed(data, dict, "answer")
    status = _typed(raw.get("status"), str, "status")
    if status not in STATUSES:
        raise FleetError(f"a worker's answer has status {status!r}, not one of {', '.join(STATUSES)}")
    outcome = VariantOutcome(
        status=status,
        reason=_optional(raw.get("reason"), str, "reason"),
        cells=dict(_cell(entry, index) for index, entry in enumerate(_typed(raw.get("cells", []), list, "cells"))),
        scores={_typed(label, str, "scores"): _logits(value, label) for label, value in _field(raw, "scores").items()},
        memory={k: _optional_number(v, f"memory.{k}") for k, v in _field(raw, "memory").items()},
        phases={k: _number(v, f"phases.{k}") for k, v in _field(raw, "phases").items()},
        score_errors={k: _typed(v, str, f"score_errors.{k}") for k, v in _field(raw, "score_errors").items()},
        notes=_field(raw, "notes"),
    )
    return outcome, _field(raw, "environment")


def decode_probe(text: str | bytes, kinds: int) -> dict[str, Any]:
    """Parse and check a node's probe answer: its environment, its GEMM peaks (positive GFLOP/s per
    precision) and one verdict (a reason, or null) for each of the ``kinds`` of cell it was asked about."""
    try:
        raw = _typed(json.loads(text, parse_constant=_no_constant), dict, "probe")
    except ValueError as error:
        raise FleetError(f"a node's probe answer is not valid JSON: {error}") from None
    peaks = {}
    for precision, peak in _field(raw, "peaks").items():
        where = f"peaks.{precision}"
        entry = _typed(peak, dict, where)
        gflops = _number(entry.get("gflops"), f"{where}.gflops")
        if gflops <= 0:
            raise FleetError(f"a worker's answer has a peak of {gflops} GFLOP/s at {where}")
        runtimes = _typed(entry.get("by_runtime", {}), dict, f"{where}.by_runtime")
        peaks[precision] = {
            "gflops": gflops,
            "source": _typed(entry.get("source"), str, f"{where}.source"),
            "by_runtime": {k: _number(v, f"{where}.by_runtime.{k}") for k, v in runtimes.items()},
            "method": _typed(entry.get("method"), str, f"{where}.method"),
        }
    verdicts = _typed(raw.get("availability"), list, "availability")
    if len(verdicts) != kinds:
        raise FleetError(f"a worker's answer judges {len(verdicts)} kinds of cell, not the {kinds} it was asked")
    availability = [_optional(v, str, f"availability[{i}]") for i, v in enumerate(verdicts)]
    return {"environment": _field(raw, "environment"), "peaks": peaks, "availability": availability}


def _field(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return _typed(raw.get(name, {}), dict, name)


def _cell(entry: Any, index: int) -> tuple[tuple[str, ...], CellTimes]:
    where = f"cells[{index}]"
    pair = _typed(entry, list, where)
    if len(pair) != 2:
        raise FleetError(f"a worker's answer has {where} of length {len(pair)}, not a [cell, times] pair")
    cell = tuple(_typed(part, str, f"{where}[0]") for part in _typed(pair[0], list, f"{where}[0]"))
    times = _typed(pair[1], dict, f"{where}[1]")
    passes = tuple(
        tuple(_number(value, f"{where}.passes") for value in _typed(one, list, f"{where}.passes"))
        for one in _typed(times.get("passes", []), list, f"{where}.passes")
    )
    count = _typed(times.get("count", 0), int, f"{where}.count")
    error = _optional(times.get("error"), str, f"{where}.error")
    return cell, CellTimes(passes, count, error, _optional_number(times.get("peak"), f"{where}.peak"))


def _logits(value: Any, label: str) -> np.ndarray:
    where = f"scores.{label}"
    rows = [[_number(v, where) for v in _typed(row, list, where)] for row in _typed(value, list, where)]
    if len({len(row) for row in rows}) > 1:
        raise FleetError(f"a worker's answer has ragged logits at {where}")
    return np.asarray(rows, dtype=float).reshape(len(rows), -1)


def _typed(value: Any, kind: type, where: str) -> Any:
    # bool is an int in Python; a count or a field given as true/false is still wrong
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FleetError(f"a worker's answer has {where} of type {type(value).__name__}, not {kind.__name__}")
    return value


def _optional(value: Any, kind: type, where: str) -> Any:
    return None if value is None else _typed(value, kind, where)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FleetError(f"a worker's answer has a non-number at {where}: {value!r}")
    return float(value)


def _optional_number(value: Any, where: str) -> float | None:
    return None if value is None else _number(value, where)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")
