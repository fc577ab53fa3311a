"""The suite's ``scenarios:`` block: MLPerf LoadGen serving scenarios run on every planned variant.

Plain typed data like the rest of the suite (no LoadGen import here). Each entry is one scenario
cell per variant: ``single-stream`` (one query at a time; a latency percentile), ``server``
(Poisson arrivals at a target QPS, or a search for the highest QPS whose p99 meets the bound) and
``offline`` (every sample at once; throughput). Durations and query counts default to small values
that suit a 2-core machine; the report says where they fall short of MLPerf's own.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from harness.suite_entries import Strict
from harness.suite_rules import SafeName, duplicates, fail

# the latency percentiles LoadGen reports (mlperf_log_detail.txt's result_*_percentile_latency_ns)
LOADGEN_PERCENTILES = (50.0, 90.0, 95.0, 97.0, 99.0, 99.9)
# MLPerf Inference's own minimums (datacenter and edge rules): what a short run is compared with
MLPERF_MIN_DURATION_S = 600.0
MLPERF_MIN_QUERIES = {"single-stream": 1024, "server": 270_336, "offline": 1}
MLPERF_MIN_OFFLINE_SAMPLES = 24_576

Seconds = Annotated[float, Field(gt=0, le=3600)]
Queries = Annotated[int, Field(ge=1, le=10_000_000)]
MaxBatch = Annotated[int, Field(ge=1, le=4096)]


class ScenarioBase(Strict):
    label: SafeName | None = None
    # "inside": each query is tokenised after LoadGen issues it, so its latency includes that, as a
    # real service's does; "outside": the sentences are tokenised when LoadGen loads them
    tokenize: Literal["inside", "outside"] = "inside"
    min_duration_s: Seconds = 5.0
    min_queries: Queries = 256

    @property
    def display_name(self) -> str:
        return self.label or f"{self.type}-{self.tokenize}"  # type: ignore[attr-defined]


class SingleStreamScenario(ScenarioBase):
    type: Literal["single-stream"]
    percentile: float = 90.0  # the reported latency percentile; MLPerf's is p90

    @field_validator("percentile")
    @classmethod
    def _reported_by_loadgen(cls, value: float) -> float:
        if value not in LOADGEN_PERCENTILES:
            raise ValueError(f"must be one LoadGen reports: {', '.join(f'{p:g}' for p in LOADGEN_PERCENTILES)}")
        return value


class ServerScenario(ScenarioBase):
    type: Literal["server"]
    target_qps: Annotated[float, Field(gt=0, le=1_000_000)] | None = None
    latency_bound_ms: Annotated[float, Field(gt=0, le=60_000)] = 20.0
    # find the highest QPS whose run LoadGen judges valid (p99 under the bound, early stopping met)
    search: bool = False
    # the search stops when the bracket around the highest valid QPS is this narrow (relative)
    search_tolerance: Annotated[float, Field(gt=0, lt=1)] = 0.05
    max_probes: Annotated[int, Field(ge=1, le=50)] = 8
    # the longest a probe may take: rates below min_queries / max_probe_s are not tried
    max_probe_s: Seconds = 120.0
    # LoadGen's early stopping needs about 460 queries at p99 even when none is late
    min_queries: Queries = 1024
    max_batch: MaxBatch = 8
    max_wait_ms: Annotated[float, Field(ge=0, le=10_000)] = 2.0

    @model_validator(mode="after")
    def _a_rate(self) -> ServerScenario:
        if self.target_qps is None and not self.search:
            raise ValueError("give 'target_qps', or 'search: true' to find the highest valid QPS")
        return self


class OfflineScenario(ScenarioBase):
    type: Literal["offline"]
    max_batch: MaxBatch = 32
    min_queries: Queries = 1  # an offline run is one query of many samples


Scenario = Annotated[SingleStreamScenario | ServerScenario | OfflineScenario, Field(discriminator="type")]


def distinct_scenarios(scenarios: list[Any]) -> list[Any]:
    names = [s.display_name for s in scenarios]
    fail(
        "scenarios",
        [((i, "label"), f"{text}; give one a distinct label", value) for i, text, value in duplicates(names)],
    )
    return scenarios


def worst_case_s(scenario: Any) -> float:
    """The longest a scenario cell may take beyond loading: its runs (a search's probes each up to
    ``max_probe_s``; other runs repeated at most three times when they ended short), and an accuracy
    run as long again as one of them."""
    if scenario.type == "server" and scenario.search:
        return (scenario.max_probes + 1) * max(scenario.max_probe_s, 2 * scenario.min_duration_s)
    return 4 * 2 * scenario.min_duration_s


def below_mlperf(scenario: Any, queries: int | None, samples: int | None = None) -> list[str]:
    """Where a run used less than MLPerf's own minimums (its figure is then indicative, not MLPerf's)."""
    short = []
    if scenario.min_duration_s < MLPERF_MIN_DURATION_S:
        short.append(f"ran at least {scenario.min_duration_s:g} s, MLPerf asks {MLPERF_MIN_DURATION_S:g} s")
    need = MLPERF_MIN_QUERIES[scenario.type]
    if queries is not None and queries < need:
        short.append(f"{queries} queries, MLPerf asks {need:,}")
    if scenario.type == "offline" and samples is not None and samples < MLPERF_MIN_OFFLINE_SAMPLES:
        short.append(f"{samples} samples, MLPerf asks {MLPERF_MIN_OFFLINE_SAMPLES:,}")
    return short
