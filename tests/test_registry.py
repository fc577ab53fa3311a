"""Registry: suggestions, drop-in adapters through HARNESS_PLUGIN_PATH, and broken modules."""

from __future__ import annotations

import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from harness_testutil import cli_env, read_jsonl, run_cli

from harness.adapters import Backend
from harness.registry import BrokenAdapter, UnknownNameError, backends, closest, exporters

DROPIN = textwrap.dedent(
    '''
    """ONNX Runtime with graph optimisation off, single-threaded: a drop-in test backend."""
    from __future__ import annotations

    import numpy as np

    from harness.adapters import Artifact, Backend, Session


    class DropinSession(Session):
        def __init__(self, session):
            self.session = session
            self.names = [i.name for i in session.get_inputs()]

        def prepare(self, batch):
            return {n: np.ascontiguousarray(batch[n]) for n in self.names}

        def run(self, prepared):
            return self.session.run(None, prepared)[0]

        def logits(self, output):
            return np.asarray(output, dtype=np.float32)


    class OrtDropin(Backend):
        name = "ort-dropin"
        formats = frozenset({"onnx"})
        devices = ("cpu",)
        requires = ("onnxruntime",)

        def load(self, artifact: Artifact, device: str, threads: int) -> DropinSession:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
            options.intra_op_num_threads = 1
            return DropinSession(onnxruntime.InferenceSession(
                str(artifact.path / "model.onnx"), options, providers=["CPUExecutionProvider"]))


    BACKEND = OrtDropin()
    '''
)


@pytest.fixture(scope="module")
def plugin_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plugins")
    folder = root / "backends"
    folder.mkdir()
    (folder / "ort_dropin.py").write_text(DROPIN, encoding="utf-8")
    (folder / "broken.py").write_text("raise ImportError('needs libfoo 9')\n", encoding="utf-8")
    (folder / "helper.py").write_text("VALUE = 1  # no BACKEND: a helper, not an adapter\n", encoding="utf-8")
    (folder / "_private.py").write_text("raise SystemExit('must never be imported')\n", encoding="utf-8")
    return root


def test_closest_and_unknown_name_message() -> None:
    assert closest("onnxruntim", ["pytorch", "onnxruntime"]) == "onnxruntime"
    assert closest("zzzzzz", ["pytorch", "onnxruntime"]) is None
    error = UnknownNameError("backend", "onnxruntim", ["pytorch", "onnxruntime"])
    assert str(error) == "unknown backend 'onnxruntim' (did you mean 'onnxruntime'?)"
    assert error.suggestion == "onnxruntime"
    assert str(UnknownNameError("backend", "zzzzzz", ["pytorch"])) == "unknown backend 'zzzzzz'"


def test_builtin_names(monkeypatch) -> None:
    monkeypatch.delenv("HARNESS_PLUGIN_PATH", raising=False)
    assert backends().names() == ["onnxruntime", "openvino", "pytorch", "torch-compile"]
    assert exporters().names() == [
        "eager-bf16",
        "eager-fp16",
        "eager-fp32",
        "onnx-fp32",
        "openvino-int8",
        "ort-int8",
        "ort-static-int8",
        "torch-dynamic-int8",
    ]
    with pytest.raises(UnknownNameError, match="did you mean 'pytorch'"):
        backends().get("pytorc")


def test_dropin_backend_is_discovered(plugin_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_PLUGIN_PATH", str(plugin_root))
    registry = backends()
    assert registry.names() == ["broken", "onnxruntime", "openvino", "ort-dropin", "pytorch", "torch-compile"]
    dropin = registry.get("ort-dropin")
    assert isinstance(dropin, Backend)
    assert dropin.formats == frozenset({"onnx"})
    assert dropin.unavailable_reason("cpu") is None
    assert dropin.unavailable_reason("cuda") == "backend 'ort-dropin' does not support device 'cuda'"
    broken = registry.entries()["broken"]
    assert isinstance(broken, BrokenAdapter)
    assert broken.reason == "import failed: needs libfoo 9"
    with pytest.raises(RuntimeError, match="backend 'broken' is unavailable: import failed: needs libfoo 9"):
        registry.get("broken")
    assert registry.get("pytorch").name == "pytorch"  # the others are unaffected


def test_list_shows_dropin_and_broken(plugin_root: Path) -> None:
    proc = run_cli("list", env=cli_env(HARNESS_PLUGIN_PATH=str(plugin_root)))
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines()]
    # available, with the version of the package it requires
    assert ["ort-dropin", "[cpu]", "available", "(onnxruntime", f"{version('onnxruntime')})"] in lines
    assert [
        "ort-dropin",
        "[cuda]",
        "unavailable:",
        "backend",
        "'ort-dropin'",
        "does",
        "not",
        "support",
        "device",
        "'cuda'",
    ] in lines
    assert ["broken", "unavailable:", "import", "failed:", "needs", "libfoo", "9"] in lines
    heads = [line[:4] for line in lines]
    for name in ("pytorch", "onnxruntime", "openvino", "torch-compile"):
        assert [name, "[cpu]", "available"] in [line[:3] for line in lines], name
    assert ["eager-fp32", "available", "format", "transformers"] in heads
    assert ["openvino", "[cpu]", "available", f"(openvino {version('openvino')})"] in [
        line[:3] + [" ".join(line[3:5])] for line in lines
    ]


def test_run_with_dropin_backend(plugin_root: Path, toy_data_root: Path, cache_dir: Path, tmp_path: Path) -> None:
    suite = {
        "name": "dropin",
        "task": {"local": str(toy_data_root / "toy"), "source": "local"},
        "models": [{"name": "tiny", "source": "builtin:tiny-bert"}],
        "exporters": ["onnx-fp32"],
        "backends": ["ort-dropin"],
        "devices": ["cpu", "cuda"],
        "shapes": {"batch_sizes": [2], "seq_lens": [16]},
        "threads": 1,
        "timing": {"rounds": 1, "seconds_per_cell": 0.001, "max_passes": 1, "min_batches": 2, "peak_gemm_size": 64},
        "baseline": {"exporter": "onnx-fp32", "backend": "ort-dropin"},
        "output": {"cache_dir": str(cache_dir)},
    }
    path = tmp_path / "dropin.yaml"
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    env = cli_env(HARNESS_PLUGIN_PATH=str(plugin_root))
    proc = run_cli("run", path, "--out", tmp_path / "out", "--no-progress", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(tmp_path / "out" / "dropin.jsonl")
    # measured cells are written when their last round ends, cells that could not run after them
    assert [(r["backend"], r["device"], r["status"]) for r in rows] == [
        ("ort-dropin", "cpu", "ok"),
        ("ort-dropin", "cuda", "n/a"),
    ]
    ok, na = rows
    assert ok["agreement"] == 1.0
    assert ok["max_abs_logit_diff"] < 1e-4
    assert ok["eval_samples"] == 12
    assert ok["iterations"] == ok["inputs_distinct"] >= 2  # one round, one pass
    assert na["reason"] == "backend 'ort-dropin' does not support device 'cuda'"
    assert (tmp_path / "out" / "dropin.md").is_file()
