"""What produced a cell: export cache keys that follow the exporter's own packages and calibration
data, attention FLOPs by where they run, and a session whose self-description fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.adapters import Artifact, Backend, CalibrationData, Exporter, Options, Session
from harness.cache import ArtifactCache
from harness.measure.execute import TimingTask, VariantJob, execute_variant
from harness.measure.flops import flops_by_precision
from harness.measure.timing import PassPolicy
from harness.run.exports import Judging, export_variant
from harness.run.models import PreparedModel
from harness.run.plan import Variant
from harness.suite import BackendEntry, ExporterEntry

LINEAGE = {"hidden": 8, "heads_per_layer": [2], "head_dim": 4, "ffn_per_layer": [16]}


def test_static_int8_counts_attention_as_int8() -> None:
    # per token at width 4: linear 2*(4*8*8 + 2*8*16) = 1024, attention 2*(2*4*8) = 128; x 4 tokens
    dynamic = flops_by_precision(LINEAGE, [(1, 4)], "int8")
    static = flops_by_precision(LINEAGE, [(1, 4)], "int8", int8_attention=True)
    assert dynamic == {"int8": 4096.0, "fp32": 512.0}
    assert static == {"int8": 4608.0}
    assert flops_by_precision(LINEAGE, [(1, 4)], "fp32", int8_attention=True) == {"fp32": 4608.0}


class Recording(Exporter):
    name, format, needs_calibration = "recording", "onnx", True
    requires = ("numpy",)
    pinned = {"numpy": "1.0"}

    def versions(self) -> dict[str, str]:
        return dict(self.pinned)

    def export(self, source: Path, out_dir: Path, options: Options, calibration: CalibrationData) -> None:
        (out_dir / "model.onnx").write_text(f"{calibration.content_key} {self.pinned}")


class Plain(Backend):
    name, formats = "plain", frozenset({"onnx"})

    def load(self, artifact, device, threads, options=None) -> Session:
        raise NotImplementedError


def _export(tmp_path: Path, exporter: Exporter, content_key: str) -> Path:
    model = PreparedModel(None, tmp_path, "model-key", None, 1, np.zeros((1, 2)), LINEAGE)
    variant = Variant("m", ExporterEntry(name="recording"), BackendEntry(name="plain"), "cpu", ())
    data = CalibrationData(("a", "b"), (0, 1), content_key, 16)
    judging = Judging(np.zeros(1), np.zeros((1, 2)), 0.99, {})
    cache = ArtifactCache(tmp_path / "cache")
    return export_variant(variant, model, exporter, Plain(), cache, lambda: data, judging).artifact.path


def test_export_key_follows_calibration_content_and_the_exporters_own_packages(tmp_path: Path) -> None:
    exporter = Recording()
    first = _export(tmp_path, exporter, "train-v1")
    assert _export(tmp_path, exporter, "train-v1") == first  # cached
    assert _export(tmp_path, exporter, "train-v2") != first  # edited train data: calibrate again
    exporter.pinned = {"numpy": "1.0", "nncf": "9.9"}  # a package outside the fixed list changed
    assert _export(tmp_path, exporter, "train-v1") != first


class SelfDoubting(Session):
    def prepare(self, batch):
        return batch

    def run(self, prepared):
        return np.zeros((1, 2), dtype=np.float32)

    def logits(self, output):
        return output

    def describe(self):
        raise RuntimeError("property not supported")


class SelfDoubtingBackend(Backend):
    name, formats = "self-doubting", frozenset({"onnx"})

    def load(self, artifact, device, threads, options=None) -> Session:
        return SelfDoubting()


def test_a_failing_describe_keeps_the_timings(monkeypatch, tmp_path: Path) -> None:
    import harness.registry

    class Only:
        def get(self, name):
            return SelfDoubtingBackend()

    monkeypatch.setattr(harness.registry, "backends", lambda: Only())
    task = TimingTask(("cell",), [{"input_ids": np.zeros((1, 3), dtype=np.int64)}], min_count=1, count=1)
    job = VariantJob("self-doubting", Artifact(tmp_path, "onnx"), "cpu", 1, PassPolicy(0.0), [task])
    outcome = execute_variant(job)
    assert outcome.status == "ok" and outcome.cells[("cell",)].passes
    assert outcome.notes["describe_error"].startswith("RuntimeError: property not supported")
