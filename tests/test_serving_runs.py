"""Serving scenarios under the real LoadGen, on the tiny random BERT with short durations: every
scenario gives a valid result, a slower backend finds a lower server capacity, accuracy mode
answers as the timed path does, and a run killed between scenario cells resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from harness_testutil import REPO, TOY_ROWS, cli_env, read_jsonl, run_cli, write_tsv

from harness.adapters import Artifact
from harness.registry import backends
from harness.serve.scenario import run_scenario
from harness.serve.sut import Encoder, ServingSystem
from harness.suite_scenarios import OfflineScenario, ServerScenario, SingleStreamScenario

pytest.importorskip("mlperf_loadgen", reason="LoadGen (mlcommons-loadgen) is not installed")

TEXTS = [text for text, _ in TOY_ROWS] * 4  # 48 sentences


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    session = backends().get("pytorch").load(Artifact(tiny_model_dir, "transformers"), "cpu", 1)
    yield session, AutoTokenizer.from_pretrained(tiny_model_dir)
    session.close()


class SlowSession:
    """A real session whose every call takes ``delay_s`` longer: a slower backend."""

    def __init__(self, session: Any, delay_s: float) -> None:
        self.session, self.delay_s = session, delay_s

    def prepare(self, batch: Any) -> Any:
        return self.session.prepare(batch)

    def run(self, prepared: Any) -> Any:
        time.sleep(self.delay_s)
        return self.session.run(prepared)

    def synchronize(self) -> None:
        self.session.synchronize()

    def logits(self, output: Any) -> np.ndarray:
        return self.session.logits(output)


class FailingSession(SlowSession):
    """A real session that fails on its ``fail_at``-th call."""

    def __init__(self, session: Any, fail_at: int) -> None:
        super().__init__(session, 0.0)
        self.calls, self.fail_at = 0, fail_at

    def run(self, prepared: Any) -> Any:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("the backend failed mid-run")
        return self.session.run(prepared)


def test_a_backend_failing_mid_run_ends_the_loadgen_run_with_its_error(served, tmp_path: Path) -> None:
    session, tokenizer = served
    scenario = SingleStreamScenario(type="single-stream", min_duration_s=0.3, min_queries=100)
    failing = FailingSession(session, fail_at=40)  # after the pilot's calls, inside LoadGen's run
    system = _system(failing, tokenizer, scenario)
    with pytest.raises(RuntimeError, match="the backend failed mid-run"):
        run_scenario(system, scenario, len(TEXTS), tmp_path)  # LoadGen got every answer: no hang
    # the run went on to its end, every later query answered as failed without calling the backend
    assert failing.calls == 40 and (tmp_path / "performance" / "mlperf_log_detail.txt").is_file()


def _system(session: Any, tokenizer: Any, scenario: Any, inside: bool = True) -> ServingSystem:
    encoder = Encoder(tokenizer, TEXTS, 64, inside=inside)
    encoder.load(range(len(TEXTS)))
    wait = getattr(scenario, "max_wait_ms", 0.0) / 1000 if scenario.type == "server" else 0.0
    return ServingSystem(session, encoder, getattr(scenario, "max_batch", 1), wait)


def _batch_one_predictions(system: ServingSystem) -> tuple[np.ndarray, np.ndarray]:
    """The timed path at batch 1, dynamic length: each sentence alone, and its logit margin."""
    logits = []
    for index in range(len(TEXTS)):
        session = system.session
        logits.append(session.logits(session.run(session.prepare(system.encoder.batch([index]))))[0])
    logits = np.asarray(logits)
    ordered = np.sort(logits, axis=1)
    return logits.argmax(axis=1), ordered[:, -1] - ordered[:, -2]


SCENARIOS = [
    SingleStreamScenario(type="single-stream", min_duration_s=0.3, min_queries=100),
    OfflineScenario(type="offline", max_batch=8, min_duration_s=0.3),
    ServerScenario(type="server", target_qps=200.0, latency_bound_ms=100.0, min_duration_s=0.3, min_queries=600),
    SingleStreamScenario(type="single-stream", tokenize="outside", min_duration_s=0.3, min_queries=100),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.display_name)
def test_each_scenario_gives_a_valid_result_and_answers_as_the_timed_path(
    served, scenario: Any, tmp_path: Path
) -> None:
    session, tokenizer = served
    system = _system(session, tokenizer, scenario, inside=scenario.tokenize == "inside")
    result = run_scenario(system, scenario, len(TEXTS), tmp_path)
    performance = result.performance
    assert performance["valid"], performance
    assert performance["achieved_qps"] > 0 and performance["latency_ms"]["p90"] > 0
    assert sorted(p.name for p in (tmp_path / "performance").iterdir()) == [
        "mlperf_log_accuracy.json",
        "mlperf_log_detail.txt",
        "mlperf_log_summary.txt",
    ]
    # accuracy mode logged one answer for every eval sentence, under the scenario's own batching
    assert (result.predictions >= 0).all()
    expected, margin = _batch_one_predictions(system)
    if scenario.type == "single-stream":  # the very computation of the timed batch-1 path
        np.testing.assert_array_equal(result.predictions, expected)
    else:  # padded into other batches: a class may differ only where two logits all but tie
        differs = result.predictions != expected
        assert (margin[differs] < 1e-4).all(), margin[differs]
    if scenario.type == "server":
        assert performance["constraints_met"] and result.qps == 200.0
    if scenario.type == "offline":
        assert performance["offline_samples"] >= 1 and 1 < performance["mean_batch"] <= 8


def test_a_slower_backend_finds_a_lower_server_capacity(served, tmp_path: Path) -> None:
    session, tokenizer = served
    # a loose bound keeps the valid rates near capacity, where 500 queries (early stopping's need) are quick
    scenario = ServerScenario(
        type="server",
        search=True,
        latency_bound_ms=250.0,
        max_batch=1,
        min_duration_s=0.2,
        min_queries=500,
        search_tolerance=0.25,
        max_probes=4,
    )
    found = {}
    for name, delay in (("fast", 0.0), ("slow", 0.004)):
        system = _system(SlowSession(session, delay), tokenizer, scenario)
        result = run_scenario(system, scenario, len(TEXTS), tmp_path / name)
        assert any(p["valid"] for p in result.probes), result.probes
        found[name] = result.qps
        assert result.performance["valid"] and result.performance["latency_ms"]["p99"] <= 250.0
    # one sentence at a time, 4 ms each, cannot be served faster than 250 per second
    assert found["slow"] <= 250 < found["fast"]


def _suite_file(work: Path, cache: Path) -> Path:
    raw = {
        "name": "serve",
        "task": {"local": "toy", "split": "validation"},
        "models": [{"name": "tiny", "source": "builtin:tiny-bert"}],
        "exporters": ["eager-fp32"],
        "backends": ["pytorch"],
        "shapes": {"batch_sizes": [1], "seq_lens": ["dynamic"]},
        "accuracy_batch_size": 1,  # the timed path's predictions at batch 1: single-stream's own computation
        "threads": 1,
        "timing": {"rounds": 1, "seconds_per_cell": 0.02, "single_inputs": 12, "peak_gemm_size": 128},
        "scenarios": [
            {"type": "single-stream", "min_duration_s": 0.3, "min_queries": 64},
            {"type": "offline", "max_batch": 4, "min_duration_s": 1.0},
        ],
        "output": {"dir": str(work / "out"), "cache_dir": str(cache)},
    }
    path = work / "serve.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _scenario_rows(path: Path) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(path) if r.get("scenario")] if path.is_file() else []


def test_a_run_killed_between_scenario_cells_resumes(tmp_path: Path, cache_dir: Path) -> None:
    data = tmp_path / "data"
    write_tsv(data / "toy" / "validation.tsv", TOY_ROWS)
    suite, results = _suite_file(tmp_path, cache_dir), tmp_path / "out" / "serve.jsonl"
    env = cli_env(HARNESS_DATA_PATH=str(data))
    command = [sys.executable, "-m", "harness", "run", str(suite), "--no-progress"]
    first = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while not _scenario_rows(results) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the run and its cell processes, mid-way through the scenarios
    first.wait()
    before = _scenario_rows(results)
    assert len(before) == 1, "the first scenario cell should have finished before the kill"

    rerun = run_cli("run", suite, "--no-progress", env=env, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming: 1 finished scenario cells kept" in rerun.stderr
    rows = _scenario_rows(results)
    assert [r["scenario"] for r in rows] == ["single-stream-inside", "offline-inside"]
    assert rows[0] == before[0]  # kept as written, not run again
    assert all(r["status"] == "ok" and r["valid"] for r in rows), rows
    assert rows[0]["run"]["run_id"] == rows[1]["run"]["run_id"]
    # accuracy mode's answers, one sentence at a time, are the timed path's at batch 1
    timed = next(r for r in read_jsonl(results) if not r.get("scenario"))
    assert rows[0]["timed_agreement"] == 1.0 and rows[0]["timed_shape"] == "batch 1, dynamic"
    assert rows[0]["accuracy"] == timed["accuracy"] and rows[0]["answered"] == len(TOY_ROWS)
    report = (tmp_path / "out" / "serve.md").read_text(encoding="utf-8")
    assert "## Serving scenarios (MLPerf LoadGen)" in report and "single-stream-inside" in report
    logs = tmp_path / "out" / "serve-loadgen"
    assert (logs / "tiny.eager-fp32.pytorch.cpu.offline-inside" / "accuracy" / "mlperf_log_accuracy.json").is_file()
