"""One scenario on one loaded session: LoadGen's performance run (or the server QPS search), then
its accuracy run on the whole eval split under the same scenario and batching.

LoadGen needs an idea of the system's speed before it starts (the single-stream latency it
expects, the offline rate that sizes its one query); a short pilot outside any LoadGen run
supplies it and bounds the server search. Its clock configures LoadGen and is reported as such,
never as a result.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.serve.logs import read_predictions, read_result
from harness.serve.sut import ServingSystem

LOADGEN_SCENARIOS = {"single-stream": "SingleStream", "server": "Server", "offline": "Offline"}
KEPT_LOGS = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json")
PILOT_SENTENCES = 16
PILOT_BATCHES = 6
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Pilot:
    single_s: float  # median seconds of one sentence served alone
    batch_per_s: float  # sentences per second served in full batches


@dataclass(frozen=True)
class ScenarioResult:
    performance: dict[str, Any]
    probes: list[dict[str, Any]]
    predictions: np.ndarray
    accuracy_run: dict[str, Any]
    pilot: dict[str, float]
    qps: float | None  # the rate the reported server run was offered (None: other scenarios)


def measure_pilot(system: ServingSystem, total: int, max_batch: int, seed: int = 0) -> Pilot:
    rng = np.random.default_rng(seed)
    singles = []
    for index in rng.choice(total, size=min(PILOT_SENTENCES, total), replace=False):
        started = time.perf_counter()
        system.answer([int(index)])
        singles.append(time.perf_counter() - started)
    batches = [rng.choice(total, size=min(max_batch, total), replace=False) for _ in range(PILOT_BATCHES)]
    system.answer(batches[0].tolist())  # this batch size's first call is not typical
    started = time.perf_counter()
    for batch in batches[1:]:
        system.answer(batch.tolist())
    per_s = sum(len(b) for b in batches[1:]) / max(time.perf_counter() - started, 1e-9)
    return Pilot(float(np.median(singles[1:] or singles)), per_s)


def loadgen_settings(scenario: Any, mode: str, pilot: Pilot, qps: float | None = None) -> Any:
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, LOADGEN_SCENARIOS[scenario.type])
    settings.mode = getattr(lg.TestMode, mode)
    settings.min_duration_ms = int(scenario.min_duration_s * 1000)
    settings.min_query_count = scenario.min_queries
    if scenario.type == "single-stream":
        settings.single_stream_expected_latency_ns = max(1, int(pilot.single_s * 1e9))
        settings.single_stream_target_latency_percentile = scenario.percentile / 100
    elif scenario.type == "server":
        settings.server_target_qps = float(qps if qps is not None else scenario.target_qps)
        settings.server_target_latency_ns = int(scenario.latency_bound_ms * 1e6)
        settings.server_target_latency_percentile = 0.99
    else:
        # LoadGen sizes its one offline query from this rate and the minimum duration: set high, the
        # run is longer, never shorter than the minimum
        settings.offline_expected_qps = pilot.batch_per_s * 1.2
    return settings


def run_loadgen(system: ServingSystem, total: int, settings: Any, log_dir: Path) -> dict[str, Any]:
    """One LoadGen test into ``log_dir`` (summary, detail and accuracy logs; no trace)."""
    import mlperf_loadgen as lg

    log_dir.mkdir(parents=True, exist_ok=True)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(log_dir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    sut = lg.ConstructSUT(system.issue_queries, system.flush_queries)
    qsl = lg.ConstructQSL(total, total, system.encoder.load, system.encoder.unload)
    system.batch_sizes.clear()
    system.start()
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
    finally:
        system.stop()
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    if system.error is not None:
        raise system.error
    for name in [p.name for p in log_dir.iterdir()]:
        if name not in KEPT_LOGS:
            (log_dir / name).unlink()
    sizes = system.batch_sizes or [0]
    return {**read_result(log_dir), "mean_batch": sum(sizes) / len(sizes), "max_batch_served": max(sizes)}


def search_qps(
    probe: Callable[[float], dict[str, Any]],
    ceiling: float,
    tolerance: float,
    max_probes: int,
    floor: float = 0.0,
) -> tuple[float | None, list[dict[str, Any]]]:
    """The highest offered QPS whose run is valid, by bisection: first at ``ceiling`` (doubled while
    valid), then halving the bracket until it is within ``tolerance`` of its top or the probes run out.

    The starting rate is always tried. Below it the search gives up early where lower rates cannot help:
    a rate under ``floor`` is not tried (its run would take too long), and when halving the rate
    lowered the p99 by less than a fifth the bound is out of reach of the system even unloaded.
    Returns that QPS (None when no probe was valid) and every probe's result with its ``target_qps``."""
    low, high, probes = 0.0, None, []
    qps = ceiling if ceiling > 0 else max(floor, 1.0)
    while len(probes) < max_probes and (not probes or low > 0 or qps >= floor):
        result = {**probe(qps), "target_qps": qps}
        probes.append(result)
        if result["valid"]:
            low = qps
        else:
            high = qps
        if high is None:
            qps = low * 2
        elif high - low <= tolerance * high or (low == 0 and _latency_plateau(probes)):
            break
        else:
            qps = (low + high) / 2
    return (low or None), probes


def _latency_plateau(probes: list[dict[str, Any]]) -> bool:
    """The last two probes failed, and halving the rate took less than a fifth off the p99."""
    if len(probes) < 2 or probes[-1]["valid"] or probes[-2]["valid"]:
        return False
    now, before = (p.get("latency_ms", {}).get("p99") for p in probes[-2:][::-1])
    return now is not None and before is not None and now > 0.8 * before


def run_scenario(system: ServingSystem, scenario: Any, total: int, log_dir: Path) -> ScenarioResult:
    max_batch = getattr(scenario, "max_batch", 1)
    pilot = measure_pilot(system, total, max_batch)
    performance_dir, qps, probes = log_dir / "performance", None, []
    if scenario.type == "server" and scenario.search:
        qps, probes = _search(system, scenario, total, pilot, log_dir)
        # the reported run: the highest valid one, else the lowest rate tried (its logs say why it failed)
        qps = qps if qps is not None else min(p["target_qps"] for p in probes)
        performance = next(p for p in probes if p["target_qps"] == qps)
        shutil.rmtree(performance_dir, ignore_errors=True)
        (log_dir / performance["log"]).rename(performance_dir)
        for leftover in log_dir.glob("probe-*"):
            shutil.rmtree(leftover)
        probes = [{k: v for k, v in p.items() if k != "log"} for p in probes]
        performance = next(p for p in probes if p["target_qps"] == qps)
    else:
        qps = scenario.target_qps if scenario.type == "server" else None
        performance, pilot = _long_enough(system, scenario, total, pilot, qps, performance_dir)
    accuracy_dir = log_dir / "accuracy"
    accuracy_run = run_loadgen(system, total, loadgen_settings(scenario, "AccuracyOnly", pilot, qps), accuracy_dir)
    predictions = read_predictions(accuracy_dir, total)
    return ScenarioResult(performance, probes, predictions, accuracy_run, asdict(pilot), qps)


def _long_enough(
    system: ServingSystem, scenario: Any, total: int, pilot: Pilot, qps: float | None, log_dir: Path
) -> tuple[dict[str, Any], Pilot]:
    """A performance run, again with LoadGen's expectations corrected by the run itself where it ended
    before the minimum duration (LoadGen sizes single-stream and offline runs from them): the
    pilot's few calls can underrate a system that warms up."""
    for _ in range(MAX_ATTEMPTS):
        result = run_loadgen(system, total, loadgen_settings(scenario, "PerformanceOnly", pilot, qps), log_dir)
        if result.get("min_duration_met") is not False or scenario.type == "server":
            break
        achieved, mean_ms = result.get("achieved_qps") or 0.0, result.get("mean_ms") or 0.0
        pilot = Pilot(
            single_s=min(pilot.single_s, mean_ms / 1000 / 1.5) if mean_ms > 0 else pilot.single_s / 2,
            batch_per_s=max(pilot.batch_per_s, achieved * 1.5) if achieved > 0 else pilot.batch_per_s * 2,
        )
    return result, pilot


def _search(
    system: ServingSystem, scenario: Any, total: int, pilot: Pilot, log_dir: Path
) -> tuple[float | None, list[dict[str, Any]]]:
    count = 0

    def probe(qps: float) -> dict[str, Any]:
        nonlocal count
        count += 1
        name = f"probe-{count}"
        settings = loadgen_settings(scenario, "PerformanceOnly", pilot, qps)
        return {**run_loadgen(system, total, settings, log_dir / name), "log": name}

    # a server cannot sustain more than the batcher's full-batch rate: start the search there
    ceiling = float(f"{scenario.target_qps or pilot.batch_per_s:.3g}")
    floor = scenario.min_queries / scenario.max_probe_s
    return search_qps(probe, ceiling, scenario.search_tolerance, scenario.max_probes, floor)
