"""Cell memory: every cell's RSS fields, and ONNX Runtime cells that never carry torch.

Each backend's fork server preloads only its own runtime (``Backend.preload``), so an ONNX Runtime
cell starts from a much smaller baseline than a PyTorch one. The direct tests use a drop-in backend
that refuses to load wherever torch is imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from harness_testutil import REPO, cli_env, read_jsonl, run_cli

from harness.adapters import Artifact

TORCHLESS = textwrap.dedent(
    '''
    """ONNX Runtime that refuses to run in a process where torch has been imported."""
    import sys

    from backends.onnxruntime import OnnxRuntimeBackend


    class TorchlessOrt(OnnxRuntimeBackend):
        name = "ort-torchless"

        def load(self, artifact, device, threads):
            session = super().load(artifact, device, threads)
            if "torch" in sys.modules:
                raise RuntimeError("torch is imported in this cell process")
            return session


    BACKEND = TorchlessOrt()
    '''
)

# Runs run_isolated in a fresh interpreter, so the fork servers it starts see HARNESS_PLUGIN_PATH
# (a server inherits the environment it was started with and is reused for the rest of a process).
DRIVER = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path


    def main():
        import numpy as np
        import torch  # noqa: F401  (the parent has torch loaded, as a real run has after training)

        from harness.adapters import Artifact
        from harness.measure.execute import ScoreTask, TimingTask, VariantJob
        from harness.measure.isolation import run_isolated
        from harness.measure.timing import PassPolicy
        from harness.registry import backends

        batch = {k: np.asarray(v, dtype=np.int64) for k, v in json.loads(sys.argv[2]).items()}
        job = VariantJob(
            backend="ort-torchless",
            artifact=Artifact(Path(sys.argv[1]), "onnx"),
            device="cpu",
            threads=1,
            policy=PassPolicy(budget_s=0.01),
            timing=[TimingTask(("cell",), [batch], min_count=1, count=1)],
            scoring=[ScoreTask("score", [batch])],
        )
        preload = backends().get("ort-torchless").preload
        report = {"parent_has_torch": "torch" in sys.modules, "preload": list(preload)}
        for label, modules in (("own", preload), ("with-torch", (*preload, "torch"))):
            outcome = run_isolated(job, 120, modules)
            report[label] = {
                "status": outcome.status,
                "reason": outcome.reason,
                "scores": {k: v.tolist() for k, v in outcome.scores.items()},
                "timed": {"/".join(k): c.count for k, c in outcome.cells.items()},
            }
        print(json.dumps(report))


    # a forkserver child imports this script again (as __mp_main__): only its definitions may run
    if __name__ == "__main__":
        main()
    """
)


# --- the rows of the shared smoke run -------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_rows(smoke_run) -> list[dict]:
    assert smoke_run.proc.returncode == 0, smoke_run.proc.stderr[-3000:]
    rows = [r for r in smoke_run.rows if r["status"] == "ok" and r["device"] == "cpu"]
    assert {r["backend"] for r in rows} == {"pytorch", "onnxruntime"}
    return rows


def test_every_cpu_cell_reports_its_memory(cpu_rows) -> None:
    for r in cpu_rows:
        assert r["baseline_rss_mb"] > 0, r
        assert r["cell_rss_mb"] >= 0, r
        assert r["peak_rss_mb"] >= r["baseline_rss_mb"], r
        # the fields come from one round's process: the cell's share is its peak above its baseline
        assert r["cell_rss_mb"] == pytest.approx(r["peak_rss_mb"] - r["baseline_rss_mb"]), r


def test_onnxruntime_cells_start_without_torch(cpu_rows) -> None:
    ort = [r["baseline_rss_mb"] for r in cpu_rows if r["backend"] == "onnxruntime"]
    torch = [r["baseline_rss_mb"] for r in cpu_rows if r["backend"] == "pytorch"]
    assert ort and torch
    assert max(ort) + 100 < min(torch), f"onnxruntime baselines {sorted(ort)} MB, pytorch {sorted(torch)} MB"


# --- direct: a drop-in backend that fails wherever torch is imported -------------------------------


@pytest.fixture(scope="module")
def plugin_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("torchless")
    (root / "backends").mkdir()
    (root / "backends" / "torchless.py").write_text(TORCHLESS, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def onnx_artifact(tiny_model_dir: Path, tmp_path_factory) -> Artifact:
    from harness.registry import exporters

    exporter = exporters().get("onnx-fp32")
    out = tmp_path_factory.mktemp("onnx") / "tiny"
    out.mkdir()
    exporter.export(tiny_model_dir, out, exporter.Options())
    return Artifact(out, exporter.format)


def test_run_isolated_onnxruntime_child_has_no_torch(plugin_root, onnx_artifact, tmp_path) -> None:
    from harness.registry import backends

    batch = {"input_ids": [[2, 30, 31, 32, 3]], "attention_mask": [[1] * 5], "token_type_ids": [[0] * 5]}
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(driver), str(onnx_artifact.path), json.dumps(batch)],
        cwd=REPO,
        env=cli_env(HARNESS_PLUGIN_PATH=str(plugin_root)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["parent_has_torch"]
    assert "torch" not in report["preload"]  # the plugin inherits ONNX Runtime's preload

    own = report["own"]
    assert own["status"] == "ok", own["reason"]
    assert own["timed"] == {"cell": 1}
    # the child really ran the model: its logits are those of the same artifact loaded here
    session = backends().get("onnxruntime").load(onnx_artifact, "cpu", 1)
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in batch.items()}
    expected = session.logits(session.run(session.prepare(arrays)))
    np.testing.assert_allclose(np.asarray(own["scores"]["score"]), expected, atol=1e-6)

    # the probe is not vacuous: from a server that does preload torch the same job fails
    with_torch = report["with-torch"]
    assert with_torch["status"] == "error"
    assert "torch is imported in this cell process" in with_torch["reason"]


def test_runner_gives_onnxruntime_cells_a_torch_free_server(plugin_root, tmp_path, toy_data_root, cache_dir) -> None:
    """Through the CLI, with PyTorch cells in the same run: each backend gets its own fork server."""
    suite = {
        "name": "torchless",
        "task": {"local": str(toy_data_root / "toy"), "source": "local"},
        "models": [{"name": "tiny", "source": "builtin:tiny-bert"}],
        "exporters": ["eager-fp32", "onnx-fp32"],
        "backends": ["pytorch", "ort-torchless"],
        "devices": ["cpu"],
        "shapes": {"batch_sizes": [1, 4], "seq_lens": ["dynamic"]},
        "threads": 1,
        "timing": {"rounds": 2, "seconds_per_cell": 0.02, "single_inputs": 12, "peak_gemm_size": 64},
        "isolation": {"timeout_s": 120},
        "output": {"cache_dir": str(cache_dir)},
    }
    suite_file = tmp_path / "torchless.yaml"
    suite_file.write_text(yaml.safe_dump(suite), encoding="utf-8")
    env = cli_env(HARNESS_PLUGIN_PATH=str(plugin_root))
    proc = run_cli("run", suite_file, "--out", tmp_path / "out", "--no-progress", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(tmp_path / "out" / "torchless.jsonl")
    found = sorted((r["exporter"], r["backend"], r["batch_size"], r["status"]) for r in rows)
    assert found == [
        ("eager-fp32", "pytorch", 1, "ok"),
        ("eager-fp32", "pytorch", 4, "ok"),
        ("onnx-fp32", "ort-torchless", 1, "ok"),
        ("onnx-fp32", "ort-torchless", 4, "ok"),
    ], [r["reason"] for r in rows]
    ort = [r["baseline_rss_mb"] for r in rows if r["backend"] == "ort-torchless"]
    torch = [r["baseline_rss_mb"] for r in rows if r["backend"] == "pytorch"]
    assert max(ort) + 100 < min(torch), (ort, torch)
