"""The runner: parity, n/a rows, row fields (from the shared smoke run) and an in-process Runner
with an injected clock, a failing exporter and an exporter no backend can load."""

from __future__ import annotations

import importlib.metadata
import math
import re
import textwrap
from itertools import product
from pathlib import Path

import pytest
import torch
from harness_testutil import read_jsonl

from harness.registry import Registry, backends, exporters
from harness.results.rows import CELL_FIELDS
from harness.suite import load_suite, parse_suite

TINY_PARAMS = 39234  # hand-counted: embeddings 21024 + 2 layers x 8544 + pooler 1056 + classifier 66
CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def smoke(smoke_run):
    assert smoke_run.proc.returncode == 0, smoke_run.proc.stderr[-3000:]
    return smoke_run


def ok_rows(smoke, exporter: str) -> list[dict]:
    rows = [r for r in smoke.rows if r["exporter"] == exporter and r["device"] == "cpu"]
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows), rows
    return rows


def test_parity_eager_fp32_is_exact(smoke) -> None:
    for r in ok_rows(smoke, "eager-fp32"):
        assert r["agreement"] == 1.0
        assert r["max_abs_logit_diff"] == 0.0


def test_parity_onnx_fp32(smoke) -> None:
    for r in ok_rows(smoke, "onnx-fp32"):
        assert r["agreement"] == 1.0
        assert r["max_abs_logit_diff"] < 1e-4


@pytest.mark.parametrize("exporter", ["ort-int8", "ort-int8-fused", "torch-dynamic-int8"])
def test_parity_int8_records_a_finite_difference(smoke, exporter: str) -> None:
    for r in ok_rows(smoke, exporter):
        assert math.isfinite(r["max_abs_logit_diff"])
        assert 0.0 < r["max_abs_logit_diff"] < 1.0  # quantised weights change the logits, a little
        assert 0.0 <= r["agreement"] <= 1.0


def test_every_combination_has_exactly_one_row(smoke) -> None:
    suite = load_suite(smoke.suite_file, exporters(), backends())
    registry = backends()
    expected = set()
    for model, entry in product(suite.models, suite.exporters):
        fmt = exporters().get(entry.name).format
        for backend in suite.backends:
            if fmt in registry.get(backend.name).formats:
                for device, batch, seq in product(suite.devices, suite.shapes.batch_sizes, suite.shapes.seq_lens):
                    expected.add((model.name, entry.display_name, backend.display_name, device, batch, seq))
    keys = [(r["model"], r["exporter"], r["backend"], r["device"], r["batch_size"], r["seq_len"]) for r in smoke.rows]
    assert len(keys) == len(set(keys))  # no duplicates
    assert set(keys) == expected  # no gaps
    assert len(keys) == 40  # 5 exporters x 1 compatible backend x 2 devices x 4 shapes


def test_statuses_and_na_reasons(smoke) -> None:
    statuses = {r["status"] for r in smoke.rows}
    assert statuses <= {"ok", "n/a"}, [r["reason"] for r in smoke.rows if r["status"] not in ("ok", "n/a")]
    for r in smoke.rows:
        if r["device"] == "cpu":
            assert r["status"] == "ok" and r["reason"] is None
        elif not CUDA:
            assert r["status"] == "n/a"
            assert "CUDA" in r["reason"]
            assert r["p50_ms"] is None and r["accuracy"] is None
    int8_cuda = [r for r in smoke.rows if r["exporter"] == "torch-dynamic-int8" and r["device"] == "cuda"]
    assert len(int8_cuda) == 4
    for r in int8_cuda:
        assert r["status"] == "n/a" and r["reason"]  # no CUDA here, or CPU-only INT8 kernels on a GPU box
        if CUDA:
            assert r["reason"] == "PyTorch dynamic INT8 kernels exist only for CPU"
    if not CUDA:
        assert sum(r["status"] == "ok" for r in smoke.rows) == 20


def test_rows_have_every_field(smoke) -> None:
    required = [
        "model",
        "exporter",
        "backend",
        "device",
        "batch_size",
        "seq_len",
        "status",
        "reason",
        "accuracy",
        "agreement",
        "max_abs_logit_diff",
        "params",
        "size_mb",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "mean_ms",
        "std_ms",
        "throughput_per_s",
        "iterations",
        "peak_rss_mb",
    ]
    assert set(required) <= set(CELL_FIELDS)
    for r in smoke.rows:
        assert set(required) <= set(r), set(required) - set(r)
        assert r["params"] == TINY_PARAMS
        assert r["model"] == "tiny"
        assert r["seq_len"] in ("dynamic", 64) and r["batch_size"] in (1, 8)
    for r in (r for r in smoke.rows if r["status"] == "ok"):
        assert r["p99_ms"] is None  # at most 24 distinct inputs: too few for a p99
        if r["inputs_distinct"] >= 20:
            assert 0 < r["p50_ms"] <= r["p95_ms"]
        else:
            assert r["p95_ms"] is None and any("p95" in note for note in r["percentile_notes"])
        assert r["mean_ms"] > 0 and r["std_ms"] >= 0
        assert r["throughput_per_s"] == pytest.approx(r["batch_size"] * 1000.0 / r["mean_ms"], rel=1e-9)
        # every round times whole passes over the same inputs
        assert r["rounds"] == 2 and len(r["input_ms"]) == 2 and len(r["round_p50s_ms"]) == 2
        assert all(len(one) == r["inputs_distinct"] for one in r["input_ms"])
        assert r["iterations"] % r["inputs_distinct"] == 0 and r["iterations"] >= 2 * r["inputs_distinct"]
        assert r["size_mb"] > 0 and r["peak_rss_mb"] > 0
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["eval_samples"] == 48
        assert r["percentile_method"] == "linear"


def test_run_metadata(smoke) -> None:
    suite = load_suite(smoke.suite_file)
    runs = {r["run"]["run_id"] for r in smoke.rows}
    assert len(runs) == 1
    run = smoke.rows[0]["run"]
    assert re.fullmatch(r"[0-9a-f]{12}", run["run_id"])
    assert run["suite_hash"] == suite.content_hash()
    assert run["suite"] == "smoke"
    assert run["baseline"] == "tiny/eager-fp32/pytorch"
    env = run["env"]
    assert isinstance(env["cpu"], str) and env["cpu"]
    assert isinstance(env["isa"], list)
    assert env["threads"] == suite.threads == 1
    assert env["versions"]["torch"] == importlib.metadata.version("torch")
    assert env["versions"]["onnxruntime"] == importlib.metadata.version("onnxruntime")
    if not smoke.synthetic_data:
        assert run["eval_origin"].endswith("sst2/validation.tsv")


# --- an in-process Runner with an injected clock -------------------------------------------------

BOOM = textwrap.dedent(
    """
    from harness.adapters import Exporter

    class Boom(Exporter):
        name = "boom"
        format = "transformers"

        def export(self, source, out_dir, options):
            (out_dir / "partial.bin").write_bytes(b"x")
            raise RuntimeError("exporter exploded")

    EXPORTER = Boom()
    """
)
ORPHAN = textwrap.dedent(
    """
    from harness.adapters import Exporter

    class Orphan(Exporter):
        name = "orphan"
        format = "nothing-loads-this"

        def export(self, source, out_dir, options):
            (out_dir / "model.bin").write_bytes(b"x")

    EXPORTER = Orphan()
    """
)
STEP = 2.0**-10  # seconds per clock read; a power of two keeps every sample exact


class CountingClock:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return (self.calls - 1) * STEP


@pytest.fixture(scope="module")
def inprocess(tmp_path_factory, toy_data_root: Path, cache_dir: Path):
    from harness.run.runner import Runner

    root = tmp_path_factory.mktemp("runner")
    (root / "exporters").mkdir()
    (root / "exporters" / "boom.py").write_text(BOOM, encoding="utf-8")
    (root / "exporters" / "orphan.py").write_text(ORPHAN, encoding="utf-8")
    exporter_registry = Registry("exporter", "EXPORTER", "exporters", [root / "exporters"])
    backend_registry = backends()
    raw = {
        "name": "inproc",
        "task": {"local": str(toy_data_root / "toy"), "source": "local"},
        "models": [{"name": "tiny", "source": "builtin:tiny-bert"}],
        "exporters": ["eager-fp32", "boom", "orphan"],
        "backends": ["pytorch"],
        "devices": ["cpu", "cuda"],
        "shapes": {"batch_sizes": [2], "seq_lens": [16]},
        "threads": 1,
        # 6 batches of 2; a pilot of 1-step calls affords all 6; 10 steps of budget need 2 passes of 6
        "timing": {"rounds": 2, "seconds_per_cell": 10 * STEP, "min_batches": 2, "peak_gemm_size": 64},
        "output": {"cache_dir": str(cache_dir)},
        # the injected clock only exists in this process
        "isolation": {"mode": "none"},
    }
    suite = parse_suite(raw, "inproc.yaml", exporter_registry, backend_registry)
    clock = CountingClock()
    results = root / "out" / "inproc.jsonl"
    runner = Runner(suite, exporter_registry, backend_registry, results, "inproc.yaml", clock=clock, progress=False)
    rows = runner.run()
    return runner, rows, results, clock, cache_dir


def test_inprocess_rows_are_written_and_returned(inprocess) -> None:
    runner, rows, results, _, _ = inprocess
    written = read_jsonl(results)
    found = sorted((r["exporter"], r["backend"], r["device"], r["status"]) for r in written)
    assert found == sorted([
        ("eager-fp32", "pytorch", "cpu", "ok"),
        ("eager-fp32", "pytorch", "cuda", "ok" if CUDA else "n/a"),
        ("boom", "pytorch", "cpu", "error"),
        ("boom", "pytorch", "cuda", "error" if CUDA else "n/a"),
        ("orphan", "(none)", "cpu", "n/a"),
        ("orphan", "(none)", "cuda", "n/a"),
    ])  # fmt: skip
    # measured cells are written as their last round finishes, cells that could not run after them
    assert [r["status"] for r in written][0] == "ok" and written[-1]["status"] != "ok"
    assert [r.status for r in rows] == [r["status"] for r in written]
    assert all(r["run"]["run_id"] == runner.run_info["run_id"] for r in written)


def test_inprocess_fake_clock_gives_exact_latency(inprocess) -> None:
    _, rows, _, clock, _ = inprocess
    cell = next(r for r in rows if r.status == "ok" and r.device == "cpu")
    assert cell.inputs_distinct == 6  # every full batch of 2 from the 12 toy sentences
    assert cell.iterations == 2 * 2 * 6  # 2 rounds x 2 passes x 6 inputs
    assert cell.input_ms == [[STEP * 1000.0] * 6] * 2
    assert cell.p50_ms == cell.mean_ms == STEP * 1000.0
    assert cell.p95_ms is None and cell.p99_ms is None  # 6 inputs support neither
    assert cell.p50_ci_low_ms == cell.p50_ci_high_ms == STEP * 1000.0
    assert cell.std_ms == 0.0 and cell.instability_cv == 0.0
    assert cell.throughput_per_s == 2 * 1000.0 / (STEP * 1000.0)  # 2048 sequences per second
    assert cell.agreement == 1.0 and cell.max_abs_logit_diff == 0.0
    assert cell.eval_samples == 12
    assert cell.input_mean_tokens > 2  # [CLS] + characters + [SEP]
    assert cell.split_mean_tokens == pytest.approx(cell.input_mean_tokens)  # all 12 sentences are timed
    timed_cells = 2 if CUDA else 1
    # round 1: a pilot of 3 inputs (two reads each) then 12 calls; round 2: the same 6 inputs, 12 calls
    assert clock.calls == timed_cells * (3 * 2 + 12 * 2 + 12 * 2)


def test_inprocess_failed_export_and_orphan_format(inprocess) -> None:
    _, rows, _, _, cache = inprocess
    boom = [r for r in rows if r.exporter == "boom" and (r.device == "cpu" or CUDA)]
    assert [r.reason for r in boom] == ["export failed: RuntimeError: exporter exploded"] * len(boom) and boom
    orphan = [r for r in rows if r.exporter == "orphan"]
    assert [r.reason for r in orphan] == ["no backend in the suite loads format 'nothing-loads-this'"] * 2
    leftovers = [p.name for p in (cache / "exports").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the failed build left no staging directory
