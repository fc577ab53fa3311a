"""Harness overhead: the timed loop against a bare loop around the same ONNX Runtime INT8 call.

Run with ``python -m pytest tests/benchmarks --benchmark-enable``. The default test run keeps
pytest-benchmark disabled, so this then only checks that both loops work. The figures to quote
are in each benchmark's ``extra_info``: per-call p50 of both loops, measured interleaved in one
process so machine noise hits both alike, and the harness's added microseconds per call.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from harness.adapters import Artifact
from harness.registry import backends, exporters
from harness.timing import TimingPolicy, time_calls

CALLS = 400
ROUNDS = 7


@pytest.fixture(scope="module")
def ort_int8_session(tiny_model_dir: Path, tmp_path_factory):  # noqa: ANN201
    out = tmp_path_factory.mktemp("ort-int8")
    exporter = exporters().get("ort-int8")
    exporter.export(tiny_model_dir, out, exporter.Options(optimize=True))
    session = backends().get("onnxruntime").load(Artifact(out, "onnx"), "cpu", 1)
    ids = np.array([[2, 10, 11, 12, 13, 14, 15, 16, 3]], dtype=np.int64)
    batch = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    yield session, [session.prepare(batch)]
    session.close()


def bare_samples(session, prepared) -> list[float]:  # noqa: ANN001
    samples = []
    for i in range(CALLS):
        inputs = prepared[i % len(prepared)]
        begin = time.perf_counter()
        session.run(inputs)
        samples.append(time.perf_counter() - begin)
    return samples


def harness_samples(session, prepared) -> list[float]:  # noqa: ANN001
    policy = TimingPolicy(warmup=0, min_iterations=CALLS, min_seconds=0.0, max_seconds=60.0)
    return time_calls(session.run, session.synchronize, prepared, policy).samples


def test_harness_loop_overhead(benchmark, ort_int8_session) -> None:
    session, prepared = ort_int8_session
    bare_samples(session, prepared)  # warm both paths before comparing
    bare, harness = [], []
    for _ in range(ROUNDS):  # interleaved, so drift in machine load affects both loops alike
        bare += bare_samples(session, prepared)
        harness += harness_samples(session, prepared)
    bare_p50, harness_p50 = float(np.median(bare)) * 1e6, float(np.median(harness)) * 1e6
    benchmark.extra_info.update(
        bare_p50_us=bare_p50,
        harness_p50_us=harness_p50,
        added_us_per_call=harness_p50 - bare_p50,
        added_fraction=harness_p50 / bare_p50 - 1,
    )
    result = benchmark.pedantic(harness_samples, args=(session, prepared), rounds=ROUNDS, iterations=1)
    assert len(result) == CALLS and len(bare) == len(harness) == CALLS * ROUNDS
    # a sanity bound, not the target: the target is read from extra_info in a benchmark run
    assert harness_p50 < 10 * bare_p50


def test_bare_loop(benchmark, ort_int8_session) -> None:
    session, prepared = ort_int8_session
    result = benchmark.pedantic(bare_samples, args=(session, prepared), rounds=ROUNDS, iterations=1)
    assert len(result) == CALLS
