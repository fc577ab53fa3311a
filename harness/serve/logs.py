"""Reading LoadGen's logs: the result fields of ``mlperf_log_detail.txt`` and the responses of
``mlperf_log_accuracy.json``. Pure functions over text, so they are tested on hand-written logs.

The detail log is one ``:::MLLOG {json}`` record per line; a result is the ``value`` of a record
whose ``key`` starts ``result_`` or ``early_stopping``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

PREFIX = ":::MLLOG "
_PERCENTILE_KEY = re.compile(r"^result_(\d+\.\d+)_percentile_latency_ns$")
NS_PER_MS = 1e6


def detail_records(text: str) -> dict[str, Any]:
    """Every ``key -> value`` of a detail log (the last record wins); lines that are not records are skipped."""
    records: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.startswith(PREFIX):
            continue
        try:
            record = json.loads(line[len(PREFIX) :])
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("key"), str):
            records[record["key"]] = record.get("value")
    return records


def result_fields(records: Mapping[str, Any]) -> dict[str, Any]:
    """The figures a scenario row keeps, in milliseconds and per second, from ``detail_records``."""
    percentiles = {}
    for key, value in records.items():
        match = _PERCENTILE_KEY.match(key)
        if match and isinstance(value, int | float):
            percentiles[f"p{float(match.group(1)):g}"] = value / NS_PER_MS
    mean = records.get("result_mean_latency_ns")
    early_ns = records.get("early_stopping_latency_ss") or records.get("early_stopping_latency_ms")
    return {
        "valid": records.get("result_validity") == "VALID",
        "validity": records.get("result_validity"),
        "invalid_reason": records.get("result_invalid_reason") or None,
        "constraints_met": records.get("result_perf_constraints_met"),
        "min_duration_met": records.get("result_min_duration_met"),
        "min_queries_met": records.get("result_min_queries_met"),
        "early_stopping_met": records.get("early_stopping_met"),
        "early_stopping": _one_line(records.get("early_stopping_result")),
        "early_stopping_ms": early_ns / NS_PER_MS if isinstance(early_ns, int | float) and early_ns > 0 else None,
        "query_count": records.get("result_query_count"),
        "overlatency_queries": records.get("result_overlatency_query_count"),
        "achieved_qps": _achieved(records),
        "scheduled_qps": records.get("result_scheduled_samples_per_sec"),
        "mean_ms": mean / NS_PER_MS if isinstance(mean, int | float) else None,
        "latency_ms": percentiles,
        "samples": records.get("generated_query_count") if records.get("effective_scenario") != "Offline" else None,
        "offline_samples": _offline_samples(records),
        "loadgen_version": records.get("loadgen_version"),
    }


def _achieved(records: Mapping[str, Any]) -> float | None:
    """Samples per second completed: each scenario names it differently."""
    for key in (
        "result_completed_samples_per_sec",  # server
        "result_samples_per_second",  # offline
        "result_qps_with_loadgen_overhead",  # single-stream
    ):
        if isinstance(records.get(key), int | float):
            return float(records[key])
    return None


def _offline_samples(records: Mapping[str, Any]) -> int | None:
    if records.get("effective_scenario") != "Offline":
        return None
    count = records.get("generated_samples_per_query")
    return int(count) if isinstance(count, int | float) else None


def _one_line(value: Any) -> str | None:
    return " ".join(str(value).split()) if value else None


def read_result(log_dir: Path) -> dict[str, Any]:
    return result_fields(detail_records((Path(log_dir) / "mlperf_log_detail.txt").read_text(encoding="utf-8")))


def accuracy_predictions(text: str, total: int) -> np.ndarray:
    """The class LoadGen logged for each sample (an int32 per response), -1 where none was logged.

    A sample logged twice (LoadGen may issue one more than once) must have the same answer both times.
    """
    predictions = np.full(total, -1, dtype=np.int64)
    for entry in json.loads(text or "[]"):
        index = int(entry["qsl_idx"])
        if not 0 <= index < total:  # a negative index would silently answer a sample from the end
            raise ValueError(f"sample index {index} is outside the {total} samples")
        value = int(np.frombuffer(bytes.fromhex(entry["data"]), dtype="<i4")[0])
        if predictions[index] not in (-1, value):
            raise ValueError(f"sample {index} was answered {predictions[index]} and then {value}")
        predictions[index] = value
    return predictions


def read_predictions(log_dir: Path, total: int) -> np.ndarray:
    return accuracy_predictions((Path(log_dir) / "mlperf_log_accuracy.json").read_text(encoding="utf-8"), total)
