"""Serving scenarios, the pure parts: LoadGen log parsing, the QPS search, the suite's scenarios
block and ``only`` rules, the scenario rows and the report section, on hand-made values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.errors import SuiteError, SuiteErrors
from harness.registry import backends, exporters
from harness.results.scenario_rows import accuracy_fields, headline
from harness.results.scenario_section import early_stopping, latency_curves, summary_rows, timed_p90
from harness.run.plan import plan_cells
from harness.serve.logs import accuracy_predictions, detail_records, result_fields
from harness.serve.scenario import search_qps
from harness.suite import parse_suite
from harness.suite_scenarios import below_mlperf


def _record(key: str, value: object) -> str:
    return ":::MLLOG " + json.dumps({"key": key, "value": value, "time_ms": 1.0, "namespace": "mlperf::logging"})


SERVER_LOG = "\n".join(
    [
        _record("effective_scenario", "Server"),
        "a line LoadGen did not write",
        ":::MLLOG {not json",
        _record("result_validity", "INVALID"),
        _record("result_validity", "VALID"),  # the last record of a key wins
        _record("result_perf_constraints_met", True),
        _record("early_stopping_met", True),
        _record("early_stopping_result", " * Run successful.\n"),
        _record("result_query_count", 1024),
        _record("result_completed_samples_per_sec", 99.5),
        _record("result_mean_latency_ns", 4_500_000),
        _record("result_90.00_percentile_latency_ns", 7_000_000),
        _record("result_99.00_percentile_latency_ns", 12_250_000),
        _record("result_99.90_percentile_latency_ns", 19_000_000),
        _record("loadgen_version", "6.0.17 @ abc"),
    ]
)


def test_a_detail_log_gives_the_row_fields_in_ms() -> None:
    fields = result_fields(detail_records(SERVER_LOG))
    assert fields["valid"] is True and fields["constraints_met"] is True
    assert fields["early_stopping"] == "* Run successful."
    assert fields["query_count"] == 1024 and fields["achieved_qps"] == 99.5
    assert fields["mean_ms"] == 4.5
    assert fields["latency_ms"] == {"p90": 7.0, "p99": 12.25, "p99.9": 19.0}
    assert fields["offline_samples"] is None and fields["loadgen_version"] == "6.0.17 @ abc"


def test_each_scenario_names_its_throughput_differently() -> None:
    offline = [_record("effective_scenario", "Offline"), _record("result_samples_per_second", 812.0)]
    offline.append(_record("generated_samples_per_query", 4096))
    fields = result_fields(detail_records("\n".join(offline)))
    assert fields["achieved_qps"] == 812.0 and fields["offline_samples"] == 4096 and fields["valid"] is False
    single = result_fields(detail_records(_record("result_qps_with_loadgen_overhead", 123.0)))
    assert single["achieved_qps"] == 123.0


def test_accuracy_log_answers_are_int32_per_sample() -> None:
    text = json.dumps(
        [
            {"seq_id": 0, "qsl_idx": 2, "data": "01000000"},
            {"seq_id": 1, "qsl_idx": 0, "data": "00000000"},
            {"seq_id": 2, "qsl_idx": 2, "data": "01000000"},  # issued twice, answered the same
            {"seq_id": 3, "qsl_idx": 3, "data": "02000000"},
        ]
    )
    assert accuracy_predictions(text, 5).tolist() == [0, -1, 1, 2, -1]
    clash = json.dumps([{"qsl_idx": 1, "data": "01000000"}, {"qsl_idx": 1, "data": "00000000"}])
    with pytest.raises(ValueError, match="sample 1 was answered 1 and then 0"):
        accuracy_predictions(clash, 2)


def _capacity(limit: float, tried: list[float]):
    def probe(qps: float) -> dict:
        tried.append(qps)
        return {"valid": qps <= limit}

    return probe


def test_the_search_brackets_the_highest_valid_rate() -> None:
    tried: list[float] = []
    best, probes = search_qps(_capacity(137.0, tried), ceiling=400.0, tolerance=0.05, max_probes=20)
    # 400 no, 200 no, 100 yes, then halving [100, 200] until it is within 5% of its top
    assert tried[:4] == [400.0, 200.0, 100.0, 150.0]
    assert best is not None and best <= 137.0
    high = min(q for q in tried if q > 137.0)
    assert high - best <= 0.05 * high
    assert [p["target_qps"] for p in probes] == tried and [p["valid"] for p in probes] == [q <= 137 for q in tried]


def test_the_search_doubles_a_ceiling_that_was_valid() -> None:
    tried: list[float] = []
    best, _ = search_qps(_capacity(350.0, tried), ceiling=100.0, tolerance=0.1, max_probes=20)
    assert tried[:4] == [100.0, 200.0, 400.0, 300.0]
    assert 0.9 * 350 <= best <= 350


def test_the_search_reports_none_when_nothing_was_valid_and_stops_at_max_probes() -> None:
    tried: list[float] = []
    best, probes = search_qps(_capacity(0.001, tried), ceiling=64.0, tolerance=0.01, max_probes=4)
    assert best is None and tried == [64.0, 32.0, 16.0, 8.0] and len(probes) == 4


SUITE = {
    "name": "serve",
    "task": {"local": "sst2"},
    "models": [{"name": "m", "source": "builtin:tiny-bert"}],
    "exporters": ["eager-fp32", "onnx-fp32"],
    "backends": ["pytorch", "onnxruntime"],
}


def _suite(**changes: object):
    return parse_suite({**SUITE, **changes}, "serve.yaml", exporters(), backends())


def test_scenarios_are_typed_and_named() -> None:
    suite = _suite(
        scenarios=[
            {"type": "single-stream"},
            {"type": "server", "search": True, "tokenize": "outside"},
            {"type": "offline", "max_batch": 16, "label": "bulk"},
        ]
    )
    names = [s.display_name for s in suite.scenarios]
    assert names == ["single-stream-inside", "server-outside", "bulk"]
    single, server, offline = suite.scenarios
    assert single.percentile == 90.0 and server.latency_bound_ms == 20.0 and server.min_queries == 1024
    assert offline.max_batch == 16 and offline.min_queries == 1


@pytest.mark.parametrize(
    ("scenarios", "where", "what"),
    [
        ([{"type": "server"}], "scenarios[0]: ", "give 'target_qps', or 'search: true'"),
        ([{"type": "single-stream", "percentile": 93}], "scenarios[0].percentile: ", "LoadGen reports"),
        ([{"type": "offline"}, {"type": "offline"}], "scenarios[1].label: ", "appears twice"),
        ([{"type": "multi-stream"}], "scenarios[0]", "'single-stream', 'server', 'offline'"),
        ([{"type": "server", "target_qps": 10, "max_wait_ms": -1}], "scenarios[0].max_wait_ms: ", "at least 0"),
    ],
)
def test_a_bad_scenario_names_its_key(scenarios: list, where: str, what: str) -> None:
    with pytest.raises((SuiteError, SuiteErrors)) as caught:
        _suite(scenarios=scenarios)
    text = str(caught.value)
    assert f"serve.yaml: {where}" in text and what in text


def test_only_rules_keep_just_the_variants_they_name() -> None:
    suite = _suite(only=[{"exporter": "eager-fp32", "backend": "pytorch"}, {"exporter": "onnx-fp32"}])
    plan = plan_cells(suite, exporters(), backends())
    assert sorted(v.name for v in plan.variants) == ["m/eager-fp32/pytorch/cpu", "m/onnx-fp32/onnxruntime/cpu"]
    with pytest.raises(SuiteError, match=r"only\[0\]\.model: unknown model 'nope'"):
        _suite(only=[{"model": "nope"}])
    with pytest.raises(SuiteError, match="baseline"):
        _suite(only=[{"exporter": "onnx-fp32"}])  # the baseline (eager-fp32 on pytorch) would not run


def test_a_suite_without_the_new_keys_keeps_its_hash() -> None:
    assert _suite().content_hash() == _suite(only=[], scenarios=[]).content_hash()


def test_short_runs_are_named_against_mlperf_minimums() -> None:
    server = _suite(scenarios=[{"type": "server", "target_qps": 5, "min_duration_s": 600}]).scenarios[0]
    assert below_mlperf(server, 300_000) == []
    assert below_mlperf(server, 1024) == ["1024 queries, MLPerf asks 270,336"]
    offline = _suite(scenarios=[{"type": "offline"}]).scenarios[0]
    assert below_mlperf(offline, 1, 4096) == ["ran at least 5 s, MLPerf asks 600 s", "4096 samples, MLPerf asks 24,576"]


def test_accuracy_under_load_needs_every_answer() -> None:
    labels = np.array([1, 0, 1, 1])
    assert accuracy_fields(np.array([1, -1, 1, 0]), labels, None) == {"answered": 3, "eval_samples": 4}
    fields = accuracy_fields(np.array([1, 0, 0, 1]), labels, timed=np.array([1, 0, 0, 0]))
    assert fields["accuracy"] == 0.75 and fields["timed_agreement"] == 0.75
    # F1 of class 0: p 1/2, r 1 -> 2/3; class 1: p 1, r 2/3 -> 4/5; macro (2/3 + 4/5) / 2
    assert fields["macro_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_the_headline_is_each_scenarios_own_figure() -> None:
    single, server, offline = _suite(
        scenarios=[{"type": "single-stream", "percentile": 99}, {"type": "server", "search": True}, {"type": "offline"}]
    ).scenarios
    performance = {"latency_ms": {"p90": 2.0, "p99": 3.5}, "achieved_qps": 640.0, "valid": False}
    assert headline(single, performance, None) == 3.5
    assert headline(offline, performance, None) == 640.0
    assert headline(server, performance, 80.0) is None  # the run at 80 QPS was not valid: no capacity
    assert headline(server, {**performance, "valid": True}, 80.0) == 80.0


def test_timed_p90_is_over_each_inputs_median_across_rounds() -> None:
    # inputs' medians over 3 rounds: 1..10; p90 (linear) of 1..10 = 1 + 0.9 * 9 = 9.1
    matrix = [[x, x + 5, x - 0.5] for x in range(1, 11)]
    rounds_by_inputs = np.array(matrix).T.tolist()
    assert timed_p90({"input_ms": rounds_by_inputs}) == pytest.approx(9.1)
    assert timed_p90({}) is None


def test_the_summary_pairs_each_scenario_with_its_timed_cells() -> None:
    variant = {"model": "m", "exporter": "e", "backend": "b", "device": "cpu", "tokenize": "inside"}
    scenarios = [
        {**variant, "status": "ok", "scenario_type": "single-stream", "result": 2.2, "accuracy": 0.9, "batch_size": 1},
        {**variant, "status": "ok", "scenario_type": "offline", "result": 700.0, "accuracy": 0.91, "batch_size": 32},
        {**variant, "status": "error", "scenario_type": "server", "batch_size": 8},
    ]
    cells = [
        {**variant, "status": "ok", "seq_len": "dynamic", "batch_size": 1, "input_ms": [[1.0, 2.0, 3.0]]},
        {**variant, "status": "ok", "seq_len": "dynamic", "batch_size": 32, "throughput_per_s": 650.0},
        {**variant, "status": "ok", "seq_len": 64, "batch_size": 32, "throughput_per_s": 1.0},  # not this shape
    ]
    (entry,) = summary_rows(scenarios, cells)
    assert entry["single-stream"] == 2.2 and entry["timed_p90"] == pytest.approx(2.8)
    assert entry["offline"] == 700.0 and entry["timed_throughput"] == 650.0 and entry["offline_batch"] == 32
    assert entry["server"] == "error" and entry["accuracy"] == {"single-stream": 0.9, "offline": 0.91}


def test_latency_curves_come_from_every_probe_or_the_one_run() -> None:
    common = {"model": "m", "exporter": "e", "backend": "b", "status": "ok", "scenario_type": "server"}
    searched = {
        **common,
        "scenario": "s",
        "probes": [
            {"target_qps": 200.0, "p99_ms": 80.0, "valid": False},
            {"target_qps": 100.0, "p99_ms": 9.0, "valid": True},
        ],
    }
    fixed = {**common, "scenario": "f", "offered_qps": 50.0, "latency_ms": {"p99": 4.0}, "valid": True}
    assert latency_curves([searched, fixed]) == {
        "m/e/b (s)": [(100.0, 9.0, True), (200.0, 80.0, False)],
        "m/e/b (f)": [(50.0, 4.0, True)],
    }


def test_early_stopping_in_a_few_words() -> None:
    assert early_stopping({}) == "—"
    assert early_stopping({"early_stopping_met": True, "early_stopping_ms": 4.5521}) == "met, estimate 4.55 ms"
    text = "* Run unsuccessful. * Processed 512 queries. * Would need to run at least 941 more queries, with"
    verdict = early_stopping({"early_stopping_met": False, "early_stopping": text})
    assert verdict == "**not met**: 941 more queries needed"


def test_the_search_does_not_try_rates_below_its_floor() -> None:
    tried: list[float] = []
    best, probes = search_qps(_capacity(0.001, tried), ceiling=64.0, tolerance=0.01, max_probes=8, floor=10.0)
    assert best is None and tried == [64.0, 32.0, 16.0]  # 8 QPS would take longer than a probe may


def test_the_search_stops_when_a_lower_rate_no_longer_lowers_the_p99() -> None:
    p99_at = {128.0: 900.0, 64.0: 60.0, 32.0: 50.0, 16.0: 49.0}  # an unloaded p99 above a 20 ms bound
    tried: list[float] = []

    def probe(qps: float) -> dict:
        tried.append(qps)
        return {"valid": False, "latency_ms": {"p99": p99_at[qps]}}

    best, _ = search_qps(probe, ceiling=128.0, tolerance=0.05, max_probes=8)
    assert best is None and tried == [128.0, 64.0, 32.0]  # 60 -> 50 ms is less than a fifth off


def test_the_search_always_tries_its_starting_rate() -> None:
    tried: list[float] = []
    best, probes = search_qps(_capacity(100.0, tried), ceiling=5.0, tolerance=0.05, max_probes=8, floor=8.5)
    assert tried == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 120.0, 100.0] and best == 100.0  # below the floor, yet tried
    tried.clear()
    best, _ = search_qps(_capacity(0.001, tried), ceiling=0.0, tolerance=0.05, max_probes=8, floor=8.5)
    assert best is None and tried == [8.5]


def test_the_section_shows_missing_figures_as_dashes_and_pairs_rows_within_their_run() -> None:
    from harness.results.scenario_section import scenario_section

    variant = {"model": "m", "exporter": "e", "backend": "b", "device": "cpu", "tokenize": "inside"}
    mine, other = {"run_id": "r1"}, {"run_id": "r2"}
    scenarios = [
        {**variant, "run": mine, "status": "ok", "scenario": "ss", "scenario_type": "single-stream",
         "result": 2.0, "result_unit": "ms", "accuracy": 0.5, "batch_size": 1, "latency_ms": {"p90": 2.0}},
        {**variant, "run": mine, "status": "error", "reason": "boom", "scenario": "srv", "scenario_type": "server",
         "batch_size": 8},
    ]  # fmt: skip
    cells = [
        {**variant, "run": other, "status": "ok", "seq_len": "dynamic", "batch_size": 1, "input_ms": [[9.0]]},
        {**variant, "run": mine, "status": "ok", "seq_len": "dynamic", "batch_size": 1, "input_ms": [[1.0]]},
    ]
    text = scenario_section(scenarios, cells, {})
    assert "nan" not in text.lower()
    assert "| m/e/b | inside | 2.00 (1.00) |" in text  # its own run's timed p90, not the other run's 9 ms
    assert "error: boom" in text
