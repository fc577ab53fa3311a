"""The OpenVINO backend against ONNX Runtime and eager PyTorch on a tiny random BERT.

The FP32 checks exist because OpenVINO's CPU plugin silently runs BF16 on CPUs that have it: the
precision read back and the logits must both show FP32, and a BF16 load must visibly differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from harness.adapters import Artifact
from harness.data.workload import pad_batch
from harness.models.tiny import character_vocabulary, create_tiny_bert
from harness.registry import backends, exporters

pytest.importorskip("openvino")

FP32_TOLERANCE = 1e-4
THREADS = 2
CPU_HAS_BF16 = any(
    flag in line.split()
    for line in Path("/proc/cpuinfo").read_text().splitlines()
    if line.startswith("flags")
    for flag in ("avx512_bf16", "amx_bf16")
)


@pytest.fixture(scope="session")
def backend():
    return backends().get("openvino")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    # Wider initial weights than BERT's 0.02 give logits of order 1, as a trained classifier has;
    # the default tiny model's logits (~0.01) are so small that BF16's error falls under 1e-4.
    return create_tiny_bert(tmp_path_factory.mktemp("openvino-model") / "tiny", initializer_range=0.2)


@pytest.fixture(scope="session")
def onnx_artifact(tmp_path_factory, model_dir) -> Artifact:
    exporter = exporters().get("onnx-fp32")
    out = tmp_path_factory.mktemp("openvino-onnx")
    exporter.export(model_dir, out, exporter.Options())
    return Artifact(out, "onnx")


@pytest.fixture(scope="session")
def batches() -> list[dict[str, np.ndarray]]:
    """Padded batches of batch size 1 and 3 at different widths, rows of unequal length."""
    rng = np.random.default_rng(0)
    vocabulary = len(character_vocabulary())
    shapes = [[7], [12, 4, 9], [5, 5, 2]]
    made = []
    for lengths in shapes:
        ids = [rng.integers(5, vocabulary, length).tolist() for length in lengths]
        made.append(pad_batch(ids, "dynamic", 0, np.arange(len(ids))).arrays)
    return made


def run_all(session, batches) -> list[np.ndarray]:
    return [session.logits(session.run(session.prepare(batch))) for batch in batches]


@pytest.fixture(scope="session")
def ort_logits(onnx_artifact, batches) -> list[np.ndarray]:
    session = backends().get("onnxruntime").load(onnx_artifact, "cpu", THREADS)
    return run_all(session, batches)


@pytest.fixture(scope="session")
def torch_logits(model_dir, batches) -> list[np.ndarray]:
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        return [model(**{k: torch.from_numpy(v) for k, v in b.items()}).logits.float().numpy() for b in batches]


@pytest.fixture(scope="session")
def fp32_session(backend, onnx_artifact):
    session = backend.load(onnx_artifact, "cpu", THREADS)
    yield session
    session.close()


def max_difference(left: list[np.ndarray], right: list[np.ndarray]) -> float:
    assert [a.shape for a in left] == [b.shape for b in right]
    return max(float(np.abs(a - b).max()) for a, b in zip(left, right))


def test_registered_and_available(backend):
    assert backend.name == "openvino"
    assert "onnx" in backend.formats
    assert backend.unavailable_reason() is None
    assert backend.unavailable_reason("cpu") is None
    assert "cuda" in backend.unavailable_reason("cuda")
    assert "openvino" in backend.versions()


def test_matches_onnxruntime(fp32_session, batches, ort_logits):
    logits = run_all(fp32_session, batches)
    assert all(a.dtype == np.float32 for a in logits)
    assert [a.shape for a in logits] == [(1, 2), (3, 2), (3, 2)]
    assert max_difference(logits, ort_logits) < FP32_TOLERANCE


def test_fp32_cell_really_runs_fp32(backend, onnx_artifact, fp32_session, batches, torch_logits):
    assert fp32_session.describe()["inference_precision"] == "f32"
    assert max_difference(run_all(fp32_session, batches), torch_logits) < FP32_TOLERANCE
    if not CPU_HAS_BF16:
        pytest.skip("no BF16 on this CPU: nothing to tell FP32 apart from")
    options = backend.Options(precision="bf16")
    bf16 = backend.load(onnx_artifact, "cpu", THREADS, options)
    try:
        assert bf16.describe()["inference_precision"] == "bf16"
        # the hint matters: left to itself (or told bf16) this CPU would not give FP32 logits
        assert max_difference(run_all(bf16, batches), torch_logits) > FP32_TOLERANCE
    finally:
        bf16.close()
    assert backend.precision("fp32", options) == "bf16"
    assert backend.precision("int8", options) == "int8"
    assert backend.precision("fp32", backend.Options()) == "fp32"


def test_static_shapes(backend, onnx_artifact, batches, ort_logits):
    session = backend.load(onnx_artifact, "cpu", THREADS, backend.Options(static_shapes=True))
    try:
        assert session.describe()["compiled_shapes"] == 0  # compiling waits for prepare
        first = run_all(session, batches)
        again = run_all(session, batches[:1])  # a shape seen before reuses its compiled model
        described = session.describe()
    finally:
        session.close()
    assert max_difference(first, ort_logits) < FP32_TOLERANCE
    np.testing.assert_array_equal(again[0], first[0])
    assert described["static_shapes"] is True
    assert described["compiled_shapes"] == len({b["input_ids"].shape for b in batches})
    assert described["inference_precision"] == "f32"


def test_prepare_takes_only_model_inputs(fp32_session, batches, ort_logits):
    extra = {**batches[0], "labels": np.zeros(1, dtype=np.int64)}
    int32 = {name: array.astype(np.int32) for name, array in batches[0].items()}
    assert max_difference(run_all(fp32_session, [extra, int32]), [ort_logits[0]] * 2) < FP32_TOLERANCE


def test_openvino_ir_format(backend, onnx_artifact, batches, ort_logits, tmp_path):
    import openvino

    model = openvino.Core().read_model(onnx_artifact.path / "model.onnx")
    # save_model stores weights as FP16 by default: FP32 parity needs them kept FP32
    openvino.save_model(model, tmp_path / "model.xml", compress_to_fp16=False)
    session = backend.load(Artifact(tmp_path, "openvino"), "cpu", THREADS)
    try:
        assert max_difference(run_all(session, batches), ort_logits) < FP32_TOLERANCE
    finally:
        session.close()


@pytest.mark.parametrize(
    "raw",
    [{"precision": "fp16"}, {"precision": "F32"}, {"num_streams": 0}, {"threads": 4}, {"static_shapes": "yes"}],
)
def test_options_validated(backend, raw):
    with pytest.raises(ValidationError):
        backend.Options.model_validate(raw, strict=True)


def test_options_defaults_and_frozen(backend):
    options = backend.Options.model_validate({"precision": "bf16", "num_streams": 2}, strict=True)
    assert (options.precision, options.num_streams, options.performance_hint) == ("bf16", 2, "LATENCY")
    assert backend.Options().precision == "f32"  # FP32 must be asked for explicitly
    with pytest.raises(ValidationError):
        options.precision = "f32"


def test_gemm_peak(backend):
    peaks = backend.gemm_peak(THREADS, 256, 2)
    seconds, kernel = peaks["fp32"]
    assert seconds > 0 and kernel
    assert set(peaks) <= {"fp32", "bf16", "int8"}
    assert all(seconds > 0 for seconds, _ in peaks.values())
    if CPU_HAS_BF16:
        assert "bf16" in peaks["bf16"][1]
    if "int8" in peaks:
        assert "I8" in peaks["int8"][1].upper()
