"""A scenario cell's answer from a node, as data. The node sends its LoadGen logs as text; the driver
reads the performance figures and the accuracy run's answers from those logs itself, with the same
parsers a local run uses, and checks the few figures only the serving process knew (batch sizes,
the pilot, the server search's probes) field by field. Nothing a node sends is executed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from harness.fleet.codec import dict_field, number, optional, optional_number, parsed_answer, typed
from harness.fleet.nodes import FleetError
from harness.serve.execute import ScenarioOutcome
from harness.serve.logs import accuracy_predictions, detail_records, result_fields
from harness.serve.scenario import KEPT_LOGS

STATUSES = ("ok", "error", "timeout", "n/a")
LOG_FOLDERS = ("performance", "accuracy")
DETAIL, ACCURACY = "performance/mlperf_log_detail.txt", "accuracy/mlperf_log_accuracy.json"
# what a probe of the server's QPS search keeps (``scenario_rows._probe`` reads these)
PROBE_FLAGS = ("valid", "constraints_met", "early_stopping_met")
PROBE_NUMBERS = ("achieved_qps", "query_count")
# what only the serving process knows of a performance run (``run_loadgen``): the batcher's batches
BATCHES = ("mean_batch", "max_batch_served")
PERFORMANCE_FLAGS = ("valid", "constraints_met", "min_duration_met", "min_queries_met", "early_stopping_met")
PERFORMANCE_TEXTS = ("validity", "invalid_reason", "early_stopping", "loadgen_version")


def encode_scenario(outcome: ScenarioOutcome, logs: Mapping[str, str], environment: Mapping[str, Any]) -> str:
    """The outcome (less what the logs hold), the logs by relative path, and the node's environment."""
    performance = outcome.performance
    return json.dumps(
        {
            "status": outcome.status,
            "reason": outcome.reason,
            "batches": {k: performance.get(k) for k in BATCHES},
            "probes": [{k: v for k, v in probe.items() if k != "log"} for probe in outcome.probes],
            "pilot": dict(outcome.pilot),
            "qps": outcome.qps,
            "notes": dict(outcome.notes),
            "logs": dict(logs),
            "environment": dict(environment),
        },
        allow_nan=False,
        default=str,
    )


def decode_scenario(text: str | bytes, total: int) -> tuple[ScenarioOutcome, dict[str, str], dict[str, Any]]:
    """The outcome as the driver reads it, the logs to keep beside the results, and the environment;
    anything malformed is a ``FleetError`` naming the field. ``total``: the eval split's size."""
    raw, status = parsed_answer(text, STATUSES)
    logs = checked_logs(dict_field(raw, "logs"))
    environment = dict_field(raw, "environment")
    if status != "ok":
        return ScenarioOutcome(status, optional(raw.get("reason"), str, "reason")), logs, environment
    for needed in (DETAIL, ACCURACY):
        if needed not in logs:
            raise FleetError(f"a worker's answer lacks the LoadGen log {needed}")
    batches = dict_field(raw, "batches")
    if set(batches) - set(BATCHES):  # the logs' figures are read from the logs, never taken from the node
        raise FleetError(f"a worker's answer has batches {sorted(batches)}, not only {', '.join(BATCHES)}")
    batches = {k: optional_number(v, f"batches.{k}") for k, v in batches.items()}
    try:
        performance = checked_performance(result_fields(detail_records(logs[DETAIL])), "logs.detail")
        predictions = accuracy_predictions(logs[ACCURACY], total)
    except (KeyError, TypeError, ValueError, IndexError, ArithmeticError, RecursionError) as error:
        raise FleetError(f"a worker's LoadGen logs cannot be read: {type(error).__name__}: {error}") from None
    outcome = ScenarioOutcome(
        status="ok",
        performance={**performance, **batches},
        probes=[_probe(p, f"probes[{i}]") for i, p in enumerate(typed(raw.get("probes", []), list, "probes"))],
        predictions=predictions,
        pilot={k: number(v, f"pilot.{k}") for k, v in dict_field(raw, "pilot").items()},
        qps=optional_number(raw.get("qps"), "qps"),
        notes=plain(dict_field(raw, "notes"), "notes"),
    )
    return outcome, logs, environment


def checked_logs(logs: dict[str, Any]) -> dict[str, str]:
    """Log files by a relative path: one of LoadGen's kept logs in the performance or accuracy folder."""
    for name, content in logs.items():
        path = PurePosixPath(name)
        known = len(path.parts) == 2 and path.parts[0] in LOG_FOLDERS and path.name in KEPT_LOGS
        if not known or str(path) != name:  # one file, one name: no "./", "//" or trailing "/"
            raise FleetError(f"a worker's answer has a log at {name!r}, not one of LoadGen's logs in {LOG_FOLDERS}")
        typed(content, str, f"logs.{name}")
    return logs


def checked_performance(performance: dict[str, Any], where: str) -> dict[str, Any]:
    for key, value in performance.items():
        if key in PERFORMANCE_FLAGS:
            optional(value, bool, f"{where}.{key}")
        elif key in PERFORMANCE_TEXTS:
            optional(value, str, f"{where}.{key}")
        elif key == "latency_ms":
            for percentile, ms in typed(value, dict, f"{where}.latency_ms").items():
                number(ms, f"{where}.latency_ms.{percentile}")
        else:
            optional_number(value, f"{where}.{key}")
    return performance


def _probe(probe: Any, where: str) -> dict[str, Any]:
    entry = typed(probe, dict, where)
    checked: dict[str, Any] = {"target_qps": number(entry.get("target_qps"), f"{where}.target_qps")}
    checked.update({k: optional(entry.get(k), bool, f"{where}.{k}") for k in PROBE_FLAGS})
    checked.update({k: optional_number(entry.get(k), f"{where}.{k}") for k in PROBE_NUMBERS})
    latency = typed(entry.get("latency_ms", {}), dict, f"{where}.latency_ms")
    checked["latency_ms"] = {k: number(v, f"{where}.latency_ms.{k}") for k, v in latency.items()}
    return checked


def plain(value: Any, where: str, depth: int = 0) -> Any:
    """JSON scalars, lists and string-keyed objects, a few levels deep (a backend's notes)."""
    if depth > 6:
        raise FleetError(f"a worker's answer nests too deep at {where}")
    if isinstance(value, dict):
        return {typed(k, str, where): plain(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, float):
        return number(value, where)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise FleetError(f"a worker's answer has {where} of type {type(value).__name__}")
