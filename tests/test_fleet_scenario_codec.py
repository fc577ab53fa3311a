"""A node's scenario answer is data: the driver reads the figures and the answers from the LoadGen
logs the node sent, with the parsers a local run uses, and refuses anything out of shape."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.fleet.nodes import FleetError
from harness.fleet.scenario_codec import ACCURACY, DETAIL, decode_scenario, encode_scenario
from harness.serve.execute import ScenarioOutcome

TOTAL = 4


def _record(key: str, value: object) -> str:
    return ":::MLLOG " + json.dumps({"key": key, "value": value, "time_ms": 1.0, "namespace": "mlperf::logging"})


DETAIL_LOG = "\n".join(
    [
        _record("effective_scenario", "Server"),
        _record("result_validity", "VALID"),
        _record("result_perf_constraints_met", True),
        _record("result_query_count", 1024),
        _record("result_completed_samples_per_sec", 99.5),
        _record("result_mean_latency_ns", 4_500_000),
        _record("result_99.00_percentile_latency_ns", 12_250_000),
        _record("loadgen_version", "6.0.17 @ abc"),
    ]
)
ANSWERS = [{"seq_id": i, "qsl_idx": i, "data": f"0{label}000000"} for i, label in enumerate([1, 0, 1, 1])]
LOGS = {DETAIL: DETAIL_LOG, ACCURACY: json.dumps(ANSWERS), "performance/mlperf_log_summary.txt": "VALID"}
PROBE = {"target_qps": 120.0, "valid": True, "achieved_qps": 99.5, "query_count": 1024, "latency_ms": {"p99": 12.25}}


def _outcome(**changes) -> ScenarioOutcome:
    fields = {
        "performance": {"valid": False, "mean_batch": 2.5, "max_batch_served": 4, "achieved_qps": 1e9},
        "probes": [{**PROBE, "log": "probe-1"}],
        "predictions": np.array([0, 0, 0, 0]),
        "pilot": {"single_s": 0.004, "batch_per_s": 250.0},
        "qps": 120.0,
        "notes": {"threads": 1, "providers": ["CPUExecutionProvider"]},
    }
    return ScenarioOutcome(**{**fields, **changes})


def test_figures_and_answers_come_from_the_logs_not_the_nodes_say_so() -> None:
    outcome, logs, environment = decode_scenario(encode_scenario(_outcome(), LOGS, {"hostname": "a"}), TOTAL)
    assert outcome.status == "ok" and environment == {"hostname": "a"} and logs == LOGS
    performance = outcome.performance
    assert performance["valid"] is True and performance["achieved_qps"] == 99.5  # the log's, not the claimed
    assert performance["latency_ms"] == {"p99": 12.25} and performance["query_count"] == 1024
    assert performance["mean_batch"] == 2.5 and performance["max_batch_served"] == 4
    np.testing.assert_array_equal(outcome.predictions, [1, 0, 1, 1])  # from the accuracy log
    assert outcome.probes == [{**PROBE, "constraints_met": None, "early_stopping_met": None}]
    assert outcome.qps == 120.0 and outcome.pilot == {"single_s": 0.004, "batch_per_s": 250.0}
    assert outcome.notes == {"threads": 1, "providers": ["CPUExecutionProvider"]}


def test_a_failed_cell_needs_no_logs() -> None:
    outcome, logs, _ = decode_scenario(encode_scenario(ScenarioOutcome("timeout", "over 60 s"), {}, {}), TOTAL)
    assert (outcome.status, outcome.reason, logs) == ("timeout", "over 60 s", {})


@pytest.mark.parametrize(
    ("logs", "message"),
    [
        ({**LOGS, "../../.bashrc": "x"}, "not one of LoadGen's logs"),
        ({**LOGS, "performance/run.sh": "x"}, "not one of LoadGen's logs"),
        ({**LOGS, "/etc/mlperf_log_detail.txt": "x"}, "not one of LoadGen's logs"),
        ({k: v for k, v in LOGS.items() if k != ACCURACY}, "lacks the LoadGen log accuracy"),
        ({**LOGS, ACCURACY: json.dumps([{"qsl_idx": 9, "data": "01000000"}])}, "index 9 is outside the 4"),
        ({**LOGS, DETAIL: _record("result_query_count", "many")}, r"non-number at logs\.detail\.query_count"),
        ({**LOGS, DETAIL: DETAIL_LOG.replace("1024", "NaN")}, "non-number"),
        ({**LOGS, ACCURACY: json.dumps([{"qsl_idx": -4, "data": "01000000"}])}, "outside the 4 samples"),
        ({**LOGS, ACCURACY: '[{"qsl_idx": 1e400, "data": "01000000"}]'}, "cannot be read: OverflowError"),
        ({**LOGS, "./performance/mlperf_log_summary.txt": "x"}, "not one of LoadGen's logs"),
        ({**LOGS, "accuracy//mlperf_log_detail.txt": "x"}, "not one of LoadGen's logs"),
    ],
)
def test_logs_out_of_shape_are_refused(logs: dict, message: str) -> None:
    with pytest.raises(FleetError, match=message):
        decode_scenario(encode_scenario(_outcome(), logs, {}), TOTAL)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a.update(status="done"), "status 'done'"),
        (lambda a: a["probes"][0].update(target_qps="fast"), r"probes\[0\]\.target_qps"),
        (lambda a: a["probes"][0].update(valid="yes"), r"probes\[0\]\.valid of type str"),
        (lambda a: a["pilot"].update(single_s=None), r"pilot\.single_s"),
        (lambda a: a["batches"].update(mean_batch=[1]), r"batches\.mean_batch"),
        (lambda a: a["notes"].update(deep={"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}), "nests too deep"),
        (lambda a: a.update(qps=True), "non-number at qps"),
        (lambda a: a["batches"].update(valid=True, achieved_qps=1e9), "not only mean_batch, max_batch_served"),
    ],
)
def test_an_answer_out_of_shape_names_its_field(edit, message: str) -> None:
    answer = json.loads(encode_scenario(_outcome(), LOGS, {}))
    edit(answer)
    with pytest.raises(FleetError, match=message):
        decode_scenario(json.dumps(answer), TOTAL)


def test_an_answer_nested_past_the_parser_is_refused_not_a_crash() -> None:
    with pytest.raises(FleetError, match="not valid JSON: RecursionError"):
        decode_scenario("[" * 100_000 + "]" * 100_000, TOTAL)
