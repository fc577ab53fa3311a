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
    raw, status = parsed_answer(text, STATUSES)
    outcome = VariantOutcome(
        status=status,
        reason=optional(raw.get("reason"), str, "reason"),
        cells=dict(_cell(entry, index) for index, entry in enumerate(typed(raw.get("cells", []), list, "cells"))),
        scores={typed(k, str, "scores"): _logits(v, k) for k, v in dict_field(raw, "scores").items()},
        memory={k: optional_number(v, f"memory.{k}") for k, v in dict_field(raw, "memory").items()},
        phases={k: number(v, f"phases.{k}") for k, v in dict_field(raw, "phases").items()},
        score_errors={k: typed(v, str, f"score_errors.{k}") for k, v in dict_field(raw, "score_errors").items()},
        notes=dict_field(raw, "notes"),
    )
    return outcome, dict_field(raw, "environment")


def decode_probe(text: str | bytes, kinds: int) -> dict[str, Any]:
    """Parse and check a node's probe answer: its environment, its GEMM peaks (positive GFLOP/s per
    precision) and one verdict (a reason, or null) for each of the ``kinds`` of cell it was asked about."""
    check_size(text)
    try:
        raw = typed(json.loads(text, parse_constant=no_constant), dict, "probe")
    except (ValueError, RecursionError) as error:
        raise FleetError(f"a node's probe answer is not valid JSON: {type(error).__name__}: {error}") from None
    peaks = {}
    for precision, peak in dict_field(raw, "peaks").items():
        where = f"peaks.{precision}"
        entry = typed(peak, dict, where)
        gflops = number(entry.get("gflops"), f"{where}.gflops")
        if gflops <= 0:
            raise FleetError(f"a worker's answer has a peak of {gflops} GFLOP/s at {where}")
        runtimes = typed(entry.get("by_runtime", {}), dict, f"{where}.by_runtime")
        peaks[precision] = {
            "gflops": gflops,
            "source": typed(entry.get("source"), str, f"{where}.source"),
            "by_runtime": {k: number(v, f"{where}.by_runtime.{k}") for k, v in runtimes.items()},
            "method": typed(entry.get("method"), str, f"{where}.method"),
        }
    verdicts = typed(raw.get("availability"), list, "availability")
    if len(verdicts) != kinds:
        raise FleetError(f"a worker's answer judges {len(verdicts)} kinds of cell, not the {kinds} it was asked")
    availability = [optional(v, str, f"availability[{i}]") for i, v in enumerate(verdicts)]
    return {"environment": dict_field(raw, "environment"), "peaks": peaks, "availability": availability}


def parsed_answer(text: str | bytes, statuses: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """A worker's answer as a JSON object, and its status, one of ``statuses``."""
    check_size(text)
    try:
        raw = typed(json.loads(text, parse_constant=no_constant), dict, "answer")
    except (ValueError, RecursionError) as error:
        raise FleetError(f"a worker's answer is not valid JSON: {type(error).__name__}: {error}") from None
    status = typed(raw.get("status"), str, "status")
    if status not in statuses:
        raise FleetError(f"a worker's answer has status {status!r}, not one of {', '.join(statuses)}")
    return raw, status


def check_size(text: str | bytes) -> None:
    if len(text) > MAX_ANSWER_BYTES:
        raise FleetError(f"a worker answered {len(text) / 2**20:.0f} MB, over the {MAX_ANSWER_BYTES // 2**20} MB limit")


def dict_field(raw: dict[str, Any], name: str) -> dict[str, Any]:
    return typed(raw.get(name, {}), dict, name)


def _cell(entry: Any, index: int) -> tuple[tuple[str, ...], CellTimes]:
    where = f"cells[{index}]"
    pair = typed(entry, list, where)
    if len(pair) != 2:
        raise FleetError(f"a worker's answer has {where} of length {len(pair)}, not a [cell, times] pair")
    cell = tuple(typed(part, str, f"{where}[0]") for part in typed(pair[0], list, f"{where}[0]"))
    times = typed(pair[1], dict, f"{where}[1]")
    passes = tuple(
        tuple(number(value, f"{where}.passes") for value in typed(one, list, f"{where}.passes"))
        for one in typed(times.get("passes", []), list, f"{where}.passes")
    )
    count = typed(times.get("count", 0), int, f"{where}.count")
    error = optional(times.get("error"), str, f"{where}.error")
    return cell, CellTimes(passes, count, error, optional_number(times.get("peak"), f"{where}.peak"))


def _logits(value: Any, label: str) -> np.ndarray:
    where = f"scores.{label}"
    rows = [[number(v, where) for v in typed(row, list, where)] for row in typed(value, list, where)]
    if len({len(row) for row in rows}) > 1:
        raise FleetError(f"a worker's answer has ragged logits at {where}")
    return np.asarray(rows, dtype=float).reshape(len(rows), -1)


def typed(value: Any, kind: type, where: str) -> Any:
    # bool is an int in Python; a count or a field given as true/false is still wrong
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FleetError(f"a worker's answer has {where} of type {type(value).__name__}, not {kind.__name__}")
    return value


def optional(value: Any, kind: type, where: str) -> Any:
    return None if value is None else typed(value, kind, where)


def number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FleetError(f"a worker's answer has a non-number at {where}: {value!r}")
    return float(value)


def optional_number(value: Any, where: str) -> float | None:
    return None if value is None else number(value, where)


def no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")
