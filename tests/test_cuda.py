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

    from harness.inputs import encode, make_batches

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
