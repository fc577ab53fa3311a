"""Process isolation: a backend that raises, one that kills its own process and one that hangs each
cost only their own cells; and a backend made 30% slower is caught by `harness compare`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from harness_testutil import cli_env, read_jsonl, run_cli

FAULTY = textwrap.dedent(
    '''
    """ONNX Runtime wrapped to fail on purpose in ``run``: raise, SIGKILL itself, or hang."""
    import os
    import signal
    import time

    from backends.onnxruntime import OnnxRuntimeBackend, OrtSession


    class FaultySession(OrtSession):
        mode = "raise"

        def run(self, prepared):
            if self.mode == "raise":
                raise RuntimeError("injected failure")
            if self.mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(3600)


    def faulty(mode):
        class Faulty(OnnxRuntimeBackend):
            name = f"ort-{mode}"

            def load(self, artifact, device, threads):
                session = FaultySession(super().load(artifact, device, threads).session)
                session.mode = mode
                return session

        return Faulty()
    '''
)

SPIN = textwrap.dedent(
    '''
    """ONNX Runtime plus a fixed busy-wait per call, scaled by $SPIN_FACTOR: a controllable slowdown."""
    import os
    import time

    from backends.onnxruntime import OnnxRuntimeBackend, OrtSession

    SPIN_S = 0.002


    class SpinSession(OrtSession):
        def run(self, prepared):
            out = super().run(prepared)
            end = time.perf_counter() + SPIN_S * self.factor
            while time.perf_counter() < end:
                pass
            return out


    class Spin(OnnxRuntimeBackend):
        name = "ort-spin"

        def load(self, artifact, device, threads):
            session = SpinSession(super().load(artifact, device, threads).session)
            session.factor = float(os.environ.get("SPIN_FACTOR", "1"))
            return session


    BACKEND = Spin()
    '''
)


def _plugins(root: Path) -> Path:
    backends = root / "backends"
    backends.mkdir(parents=True)
    (backends / "_faulty_base.py").write_text(FAULTY, encoding="utf-8")
    for mode in ("raise", "kill", "hang"):
        module = f"from _faulty_base import faulty\n\nBACKEND = faulty({mode!r})\n"
        (backends / f"faulty_{mode}.py").write_text(module, encoding="utf-8")
    (backends / "spin.py").write_text(SPIN, encoding="utf-8")
    # the same busy-wait, never slowed: a baseline as steady as the cell it is compared with
    steady = SPIN.replace('"ort-spin"', '"ort-steady"').replace('os.environ.get("SPIN_FACTOR", "1")', '"1"')
    (backends / "steady.py").write_text(steady, encoding="utf-8")
    return root


def _suite(path: Path, toy_data_root: Path, cache_dir: Path, backends: list[str], **timing) -> Path:
    suite = {
        "name": path.stem,
        "task": {"local": str(toy_data_root / "toy"), "source": "local"},
        "models": [{"name": "tiny", "source": "builtin:tiny-bert"}],
        "exporters": ["onnx-fp32"],
        "backends": backends,
        "devices": ["cpu"],
        "shapes": {"batch_sizes": [1, 4], "seq_lens": ["dynamic"]},
        "threads": 1,
        "timing": {"rounds": 3, "seconds_per_cell": 0.1, "single_inputs": 12, "peak_gemm_size": 256, **timing},
        "isolation": {"timeout_s": 8},
        "baseline": {"exporter": "onnx-fp32", "backend": backends[0]},
        "output": {"cache_dir": str(cache_dir)},
    }
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    root = _plugins(tmp_path_factory.mktemp("plugins"))
    # the faulty modules import their shared base from the plugin folder itself
    return cli_env(HARNESS_PLUGIN_PATH=str(root), PYTHONPATH=str(root / "backends"))


def test_crashing_and_hanging_cells_cost_only_themselves(tmp_path, plugin_env, toy_data_root, cache_dir) -> None:
    backends = ["onnxruntime", "ort-raise", "ort-kill", "ort-hang"]
    suite = _suite(tmp_path / "faults.yaml", toy_data_root, cache_dir, backends)
    proc = run_cli("run", suite, "--out", tmp_path / "out", "--no-progress", env=plugin_env, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]  # the run finished, but some cells failed
    assert ", 6 failed) -> " in proc.stdout
    rows = {(r["backend"], r["batch_size"]): r for r in read_jsonl(tmp_path / "out" / "faults.jsonl")}
    assert len(rows) == 8
    for batch in (1, 4):
        healthy = rows["onnxruntime", batch]
        assert healthy["status"] == "ok" and healthy["rounds"] == 3 and healthy["accuracy"] is not None
        assert rows["ort-raise", batch]["status"] == "error"
        assert "RuntimeError: injected failure" in rows["ort-raise", batch]["reason"]
        assert rows["ort-kill", batch]["status"] == "error"
        assert "SIGKILL" in rows["ort-kill", batch]["reason"]
        assert rows["ort-hang", batch]["status"] == "timeout"
        assert "8 s" in rows["ort-hang", batch]["reason"] and rows["ort-hang", batch]["reason"].startswith("round 1")


def test_compare_flags_a_30_percent_slower_backend(tmp_path, plugin_env, toy_data_root, cache_dir) -> None:
    # the baseline runs in the same rounds: a slower spin backend stands out against it however
    # the machine drifts between the runs
    suite = _suite(tmp_path / "spin.yaml", toy_data_root, cache_dir, ["ort-steady", "ort-spin"], rounds=5)
    results = {}
    for name, factor in (("first", "1"), ("second", "1"), ("slower", "1.3")):
        out = tmp_path / name
        env = {**plugin_env, "SPIN_FACTOR": factor}
        proc = run_cli("run", suite, "--out", out, "--no-progress", env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = out / "spin.jsonl"

    same = run_cli("compare", results["first"], results["second"], env=plugin_env)
    assert same.returncode == 0, same.stdout
    assert "0 regressed" in same.stdout

    slower = run_cli("compare", results["first"], results["slower"], env=plugin_env)
    assert slower.returncode == 1, slower.stdout
    assert "2 regressed" in slower.stdout
    assert slower.stdout.count("| regressed") == 2
