"""Scenario rows: one immutable record per variant and LoadGen scenario, written to the run's
results file beside its cell rows (readers tell them apart by ``scenario``), and built here as a
pure function of what the scenario process sent back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from harness.results.rows import _finite, cell_key
from harness.results.stats import macro_f1
from harness.suite_scenarios import below_mlperf

RESULT_UNITS = {"single-stream": "ms", "server": "QPS", "offline": "samples/s"}


@dataclass(frozen=True)
class ScenarioRow:
    model: str
    exporter: str
    backend: str
    device: str
    batch_size: int  # the batcher's largest batch (1 for single-stream)
    seq_len: str  # always "dynamic": each batch is padded to its longest sentence
    scenario: str  # the scenario's display name: what marks this row as a scenario row
    scenario_type: str
    status: str
    reason: str | None = None
    tokenize: str | None = None  # "inside" or "outside" the measured latency
    settings: dict[str, Any] | None = None
    # the headline: single-stream's latency percentile (ms), offline's samples/s, server's max valid
    # QPS (search) or the offered QPS of a fixed-rate run that was valid (None if it was not)
    result: float | None = None
    result_unit: str | None = None
    valid: bool | None = None
    validity: dict[str, Any] | None = None
    offered_qps: float | None = None
    achieved_qps: float | None = None
    query_count: int | None = None
    offline_samples: int | None = None
    mean_ms: float | None = None
    latency_ms: dict[str, float] | None = None
    mean_batch: float | None = None
    probes: list[dict[str, Any]] | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    answered: int | None = None  # eval samples the accuracy run logged an answer for
    eval_samples: int | None = None
    # share of the accuracy run's answers equal to the timed path's at its scored shape
    timed_agreement: float | None = None
    timed_shape: str | None = None
    below_mlperf: list[str] | None = None
    pilot: dict[str, float] | None = None
    log_dir: str | None = None
    loadgen_version: str | None = None
    params: int | None = None
    size_mb: float | None = None
    versions: dict[str, str] | None = None
    adapter_options: dict[str, Any] | None = None
    backend_notes: dict[str, Any] | None = None
    # the machine that served the cell, by the suite's hardware selector name (a fleet run only)
    hardware: str | None = None
    run: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(_finite(asdict(self)), sort_keys=False)


def scenario_key(row: Any) -> tuple[str, ...]:
    """What identifies a scenario cell across runs (a row dict or a ``ScenarioRow``)."""
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    return (*cell_key(row), str(get("scenario")))


def scenario_settings(scenario: Any) -> dict[str, Any]:
    return scenario.model_dump(exclude={"label", "type", "tokenize"})


def headline(scenario: Any, performance: Mapping[str, Any], qps: float | None) -> float | None:
    if scenario.type == "single-stream":
        return performance.get("latency_ms", {}).get(f"p{scenario.percentile:g}")
    if scenario.type == "offline":
        return performance.get("achieved_qps")
    return qps if performance.get("valid") else None


def accuracy_fields(predictions: np.ndarray | None, labels: np.ndarray, timed: np.ndarray | None) -> dict[str, Any]:
    """Accuracy of the answers LoadGen logged in accuracy mode (every eval sample, each once)."""
    if predictions is None:
        return {}
    answered = predictions >= 0
    fields: dict[str, Any] = {"answered": int(answered.sum()), "eval_samples": len(labels)}
    if answered.all():
        fields["accuracy"] = float(np.mean(predictions == labels))
        fields["macro_f1"] = macro_f1(predictions, labels)
        if timed is not None:
            fields["timed_agreement"] = float(np.mean(predictions == timed))
    return fields


def scenario_row(
    base: Mapping[str, Any],
    scenario: Any,
    outcome: Any,
    labels: np.ndarray,
    timed: tuple[np.ndarray, str] | None,
    run_info: dict[str, Any],
) -> ScenarioRow:
    """``base``: model, exporter, backend, device, params, versions, options and the log folder;
    ``outcome``: a ``ScenarioOutcome``; ``timed``: the timed path's predictions and their shape."""
    common = {
        **base,
        "batch_size": getattr(scenario, "max_batch", 1),
        "seq_len": "dynamic",
        "scenario": scenario.display_name,
        "scenario_type": scenario.type,
        "tokenize": scenario.tokenize,
        "settings": scenario_settings(scenario),
        "result_unit": RESULT_UNITS[scenario.type],
        "run": run_info,
    }
    if outcome.status != "ok":
        return ScenarioRow(**common, status=outcome.status, reason=outcome.reason)
    perf = outcome.performance
    validity_keys = ("validity", "invalid_reason", "constraints_met", "min_duration_met", "min_queries_met")
    validity = {k: perf.get(k) for k in (*validity_keys, "early_stopping_met", "early_stopping", "early_stopping_ms")}
    return ScenarioRow(
        **common,
        status="ok",
        result=headline(scenario, perf, outcome.qps),
        valid=perf.get("valid"),
        validity=validity,
        offered_qps=outcome.qps,
        achieved_qps=perf.get("achieved_qps"),
        query_count=perf.get("query_count"),
        offline_samples=perf.get("offline_samples"),
        mean_ms=perf.get("mean_ms"),
        latency_ms=perf.get("latency_ms"),
        mean_batch=perf.get("mean_batch"),
        probes=[_probe(p) for p in outcome.probes] or None,
        **accuracy_fields(outcome.predictions, labels, timed[0] if timed else None),
        timed_shape=timed[1] if timed else None,
        below_mlperf=below_mlperf(scenario, perf.get("query_count"), perf.get("offline_samples")),
        pilot=dict(outcome.pilot),
        loadgen_version=perf.get("loadgen_version"),
        backend_notes=dict(outcome.notes) or None,
    )


def _probe(probe: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("target_qps", "valid", "achieved_qps", "query_count", "constraints_met", "early_stopping_met")
    return {**{k: probe.get(k) for k in keys}, "p99_ms": probe.get("latency_ms", {}).get("p99")}
