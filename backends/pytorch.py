"""PyTorch eager inference on CPU or CUDA."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from harness.adapters import Artifact, Backend, Options, Session

DTYPES = {"transformers-fp16": "float16", "transformers-bf16": "bfloat16"}


def model_input_filter(model: Any) -> Any:
    """Which batch arrays ``model``'s forward takes, decided once at load (DistilBERT and MPNet take
    no token_type_ids)."""
    from harness.compress.architectures import accepts

    taken = {name: accepts(model, name) for name in ("input_ids", "attention_mask", "token_type_ids")}
    return lambda name: taken.get(name, False)


def modeling_modules() -> tuple[str, ...]:
    """The transformers modules of every encoder the harness supports (``deberta-v2`` lives in
    ``transformers.models.deberta_v2.modeling_deberta_v2``)."""
    from harness.compress.architectures import ARCHITECTURES

    packages = [model_type.replace("-", "_") for model_type in ARCHITECTURES]
    return tuple(f"transformers.models.{package}.modeling_{package}" for package in packages)


class TorchSession(Session):
    def __init__(self, model: Any, device: str) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.device = device
        self.takes = model_input_filter(model)

    def prepare(self, batch: Mapping[str, np.ndarray]) -> dict[str, Any]:
        return {k: self.torch.from_numpy(v).to(self.device) for k, v in batch.items() if self.takes(k)}

    def run(self, prepared: dict[str, Any]) -> Any:
        with self.torch.inference_mode():
            return self.model(**prepared).logits

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def logits(self, output: Any) -> np.ndarray:
        return output.float().cpu().numpy()

    def close(self) -> None:
        del self.model
        if self.device.startswith("cuda"):
            self.torch.cuda.empty_cache()


class PyTorchBackend(Backend):
    name = "pytorch"
    formats = frozenset({"transformers", "transformers-fp16", "transformers-bf16", "torch-dynamic-int8"})
    devices = ("cpu", "cuda")
    requires = ("torch", "transformers")
    runtime = "torch"
    keeps_batch_invariance = True
    # transformers imports model classes lazily: name them, or every cell pays that import again
    # (every supported encoder's: about 80 ms for the five beyond BERT, once per run)
    preload = (
        "torch",
        "transformers",
        "transformers.modeling_utils",
        "transformers.models.auto.modeling_auto",
        *modeling_modules(),
        "backends.pytorch",
        "exporters.torch_dynamic_int8",
    )

    def unavailable_reason(self, device: str | None = None) -> str | None:
        reason = super().unavailable_reason(device)
        if reason is None and device == "cuda":
            import torch

            if not torch.cuda.is_available():
                build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
                return f"no CUDA device (torch {torch.__version__}, {build})"
        return reason

    def cell_unavailable_reason(self, artifact_format: str, device: str) -> str | None:
        if artifact_format == "torch-dynamic-int8" and device != "cpu":
            return "PyTorch dynamic INT8 kernels exist only for CPU"
        if artifact_format == "transformers-fp16" and device == "cpu":
            return "FP16 eager is a GPU variant: CPUs without native FP16 matmul emulate it slowly"
        if artifact_format == "transformers-bf16":
            from harness.environment import bf16_unavailable_reason

            return bf16_unavailable_reason(device)
        return None

    def gemm_peak(self, threads: int, size: int, repeats: int) -> dict[str, tuple[float, str]]:
        from harness.measure.peak import torch_kernels

        return torch_kernels(threads, size, repeats)

    def load(self, artifact: Artifact, device: str, threads: int, options: Options | None = None) -> TorchSession:
        import torch

        torch.set_num_threads(threads)
        if artifact.format == "torch-dynamic-int8":
            from exporters.torch_dynamic_int8 import load_quantized

            with warnings.catch_warnings():  # torch.load of packed INT8 weights warns about TypedStorage
                warnings.simplefilter("ignore")
                model = load_quantized(artifact.path)
        else:
            model = load_transformers(artifact)
        return TorchSession(model.eval().to(device), device)


def load_transformers(artifact: Artifact) -> Any:
    """A ``save_pretrained`` classifier in the dtype its format names (FP32, FP16 or BF16)."""
    import torch

    from harness.models.classifier import load_classifier

    dtype = getattr(torch, DTYPES.get(artifact.format, "float32"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_classifier(artifact.path, dtype=dtype)


BACKEND = PyTorchBackend()
