"""ONNX Runtime on the CPU execution provider, or CUDA where the installed build has it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from harness.adapters import Artifact, Backend, Options, Session

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class OrtSession(Session):
    def __init__(self, session: Any) -> None:
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [session.get_outputs()[0].name]

    def prepare(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(batch[name]) for name in self.input_names}

    def run(self, prepared: dict[str, np.ndarray]) -> Any:
        return self.session.run(self.output_names, prepared)[0]

    def logits(self, output: Any) -> np.ndarray:
        return np.asarray(output, dtype=np.float32)


class OrtCudaSession(OrtSession):
    """CUDA with IOBinding: inputs are copied to the GPU once in ``prepare`` and outputs stay there,
    so the timed call measures inference, not host-device transfers."""

    def prepare(self, batch: Mapping[str, np.ndarray]) -> Any:
        import onnxruntime

        binding = self.session.io_binding()
        for name in self.input_names:
            value = onnxruntime.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(batch[name]), "cuda", 0)
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(self.output_names[0], "cuda")
        return binding

    def run(self, prepared: Any) -> Any:
        self.session.run_with_iobinding(prepared)
        return prepared

    def synchronize(self) -> None:
        # run_with_iobinding already waits for the stream by default; this keeps the contract
        # explicit should a run option make execution asynchronous.
        pass

    def logits(self, output: Any) -> np.ndarray:
        return np.asarray(output.copy_outputs_to_cpu()[0], dtype=np.float32)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    formats = frozenset({"onnx", "onnx-ort"})  # onnx-ort: ONNX with ONNX Runtime's contrib ops
    devices = ("cpu", "cuda")
    requires = ("onnxruntime",)
    runtime = "onnxruntime"
    keeps_batch_invariance = True
    preload = ("onnxruntime", "backends.onnxruntime")

    def unavailable_reason(self, device: str | None = None) -> str | None:
        reason = super().unavailable_reason(device)
        if reason is None and device is not None:
            import onnxruntime

            available = onnxruntime.get_available_providers()
            if PROVIDERS[device] not in available:
                return f"this onnxruntime build has no {PROVIDERS[device]} (it has {', '.join(available)})"
        return reason

    def gemm_peak(self, threads: int, size: int, repeats: int) -> dict[str, tuple[float, str]]:
        from harness.measure.peak import onnxruntime_kernels

        return onnxruntime_kernels(threads, size, repeats)

    def load(self, artifact: Artifact, device: str, threads: int, options: Options | None = None) -> OrtSession:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(
            str(artifact.path / "model.onnx"), options, providers=[PROVIDERS[device]]
        )
        # ORT silently falls back to the CPU provider when CUDA cannot start; a CPU timing
        # labelled "cuda" would be worse than no timing.
        if PROVIDERS[device] not in session.get_providers():
            raise RuntimeError(f"{PROVIDERS[device]} did not start (session uses {session.get_providers()})")
        return OrtCudaSession(session) if device == "cuda" else OrtSession(session)


BACKEND = OnnxRuntimeBackend()
