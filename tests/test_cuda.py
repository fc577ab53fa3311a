"""CUDA checks: these run only where torch sees a CUDA device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.adapters import Artifact
from harness.registry import backends

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)"),
]


def test_pytorch_cuda_logits_match_cpu(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from harness.data.workload import encode, make_batches

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = encode(tokenizer, ["a warm , funny film .", "dull and far too long ."], "dynamic", 128)
    batch = make_batches(ids, 2, "dynamic", tokenizer.pad_token_id)[0]
    backend = backends().get("pytorch")
    assert backend.unavailable_reason("cuda") is None
    artifact = Artifact(tiny_model_dir, "transformers")
    results = {}
    for device in ("cpu", "cuda"):
        session = backend.load(artifact, device, 1)
        out = session.run(session.prepare(batch.arrays))
        session.synchronize()
        results[device] = session.logits(out)
        session.close()
    assert results["cuda"].shape == (2, 2)
    np.testing.assert_allclose(results["cuda"], results["cpu"], atol=1e-3, rtol=0)


def test_pytorch_dynamic_int8_is_na_on_cuda() -> None:
    reason = backends().get("pytorch").cell_unavailable_reason("torch-dynamic-int8", "cuda")
    assert reason == "PyTorch dynamic INT8 kernels exist only for CPU"


def _tiny_batch(model_dir: Path) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    from harness.data.workload import encode, make_batches

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = encode(tokenizer, ["a warm , funny film .", "dull and far too long ."], "dynamic", 128)
    return make_batches(ids, 2, "dynamic", tokenizer.pad_token_id)[0].arrays


def _logits(backend_name: str, artifact: Artifact, device: str, batch: dict[str, np.ndarray]) -> np.ndarray:
    session = backends().get(backend_name).load(artifact, device, 1)
    out = session.run(session.prepare(batch))
    session.synchronize()
    logits = session.logits(out)
    session.close()
    return logits


def test_eager_fp16_on_cuda_matches_fp32(tiny_model_dir: Path, tmp_path: Path) -> None:
    from harness.registry import exporters

    exporter = exporters().get("eager-fp16")
    exporter.export(tiny_model_dir, tmp_path, exporter.Options())
    batch = _tiny_batch(tiny_model_dir)
    fp16 = _logits("pytorch", Artifact(tmp_path, "transformers-fp16"), "cuda", batch)
    fp32 = _logits("pytorch", Artifact(tiny_model_dir, "transformers"), "cpu", batch)
    np.testing.assert_allclose(fp16, fp32, atol=2e-2, rtol=0)


def test_onnxruntime_cuda_iobinding_matches_cpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    backend = backends().get("onnxruntime")
    if backend.unavailable_reason("cuda"):
        pytest.skip(backend.unavailable_reason("cuda"))
    from harness.registry import exporters

    exporter = exporters().get("onnx-fp32")
    exporter.export(tiny_model_dir, tmp_path, exporter.Options())
    batch = _tiny_batch(tiny_model_dir)
    on_gpu = _logits("onnxruntime", Artifact(tmp_path, "onnx"), "cuda", batch)
    on_cpu = _logits("onnxruntime", Artifact(tmp_path, "onnx"), "cpu", batch)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-3, rtol=0)
