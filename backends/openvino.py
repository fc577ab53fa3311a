"""OpenVINO on the CPU: ONNX artifacts (FP32 or QDQ-quantized) and OpenVINO IR directories.

OpenVINO's CPU plugin runs FP32 models in BF16 on CPUs with AVX512-BF16 or AMX unless told otherwise,
so every compile passes INFERENCE_PRECISION_HINT explicitly and ``describe`` reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from harness.adapters import Artifact, Backend, Options, Session

MODEL_FILES = {"onnx": "model.onnx", "openvino": "model.xml"}


class OpenVinoOptions(Options):
    # the arithmetic of non-quantized ops; quantized (QDQ) parts stay INT8 either way
    precision: Literal["f32", "bf16"] = "f32"
    performance_hint: Literal["LATENCY", "THROUGHPUT"] = "LATENCY"
    num_streams: int = Field(1, ge=1)
    # compile one model per (batch, width) the cell uses, in ``prepare``, instead of one dynamic model
    static_shapes: bool = False


def compile_config(options: OpenVinoOptions, threads: int) -> dict[str, Any]:
    return {
        "INFERENCE_PRECISION_HINT": options.precision,
        "PERFORMANCE_HINT": options.performance_hint,
        "NUM_STREAMS": options.num_streams,
        "INFERENCE_NUM_THREADS": threads,
    }


def read_precision(compiled: Any) -> str:
    """The inference precision a compiled model really uses (e.g. "f32"), as OpenVINO reports it."""
    return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


@dataclass(frozen=True)
class Prepared:
    request: Any  # the InferRequest of the compiled model for these shapes
    tensors: dict[str, Any]  # input name -> openvino.Tensor sharing the numpy array's memory
    arrays: tuple[np.ndarray, ...]  # keeps the shared memory alive as long as the tensors


class OpenVinoSession(Session):
    def __init__(self, core: Any, model: Any, options: OpenVinoOptions, threads: int) -> None:
        self.core = core
        self.model = model
        self.options = options
        self.config = compile_config(options, threads)
        self.inputs = [(i.get_any_name(), i.get_element_type().to_dtype()) for i in model.inputs]
        # (compiled model, its one InferRequest) per static shape, or under None for the dynamic model;
        # requests are made here, outside the clock, and reused by every call
        self.compiled: dict[tuple[tuple[int, ...], ...] | None, tuple[Any, Any]] = {}
        if not options.static_shapes:
            self._compile(None, model)

    def _compile(self, key: tuple[tuple[int, ...], ...] | None, model: Any) -> Any:
        compiled = self.core.compile_model(model, "CPU", self.config)
        actual = read_precision(compiled)
        # A CPU without BF16 silently falls back to f32: a row labelled bf16 would then be a lie.
        if actual != self.options.precision:
            raise RuntimeError(f"asked OpenVINO for {self.options.precision} inference, it compiled {actual}")
        request = compiled.create_infer_request()
        self.compiled[key] = (compiled, request)
        return request

    def prepare(self, batch: Mapping[str, np.ndarray]) -> Prepared:
        import openvino

        arrays = {name: np.ascontiguousarray(batch[name], dtype=dtype) for name, dtype in self.inputs}
        key = None
        if self.options.static_shapes:
            key = tuple(arrays[name].shape for name, _ in self.inputs)
        if key in self.compiled:
            request = self.compiled[key][1]
        else:
            model = self.model.clone()
            model.reshape({name: openvino.PartialShape(list(array.shape)) for name, array in arrays.items()})
            request = self._compile(key, model)
        tensors = {name: openvino.Tensor(array, shared_memory=True) for name, array in arrays.items()}
        return Prepared(request, tensors, tuple(arrays.values()))

    def run(self, prepared: Prepared) -> np.ndarray:
        # share_outputs=False copies the logits (batch x labels floats, negligible) so a later call
        # on the same request cannot overwrite an output the caller still holds, as ORT returns
        # fresh arrays too; the inputs are already Tensors, so nothing else is copied.
        return prepared.request.infer(prepared.tensors, share_inputs=True)[0]

    def logits(self, output: Any) -> np.ndarray:
        return np.array(output, dtype=np.float32, copy=True)

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "static_shapes": self.options.static_shapes,
            "compiled_shapes": len(self.compiled) if self.options.static_shapes else 0,
        }
        if self.compiled:
            # read back from a compiled model, not echoed from the options: this is what ran
            compiled = next(iter(self.compiled.values()))[0]
            facts["inference_precision"] = read_precision(compiled)
            facts["inference_num_threads"] = int(compiled.get_property("INFERENCE_NUM_THREADS"))
            facts["num_streams"] = int(compiled.get_property("NUM_STREAMS"))
            facts["performance_hint"] = str(compiled.get_property("PERFORMANCE_HINT"))
        return facts

    def close(self) -> None:
        self.compiled.clear()
        self.model = None


# what OpenVINO cannot compile from an architecture's ONNX export
UNSUPPORTED_MODELS = {
    "deberta-v2": (
        "OpenVINO's CPU plugin cannot compile the If operation of dynamic rank in DeBERTa-v2's ONNX graph "
        "(its relative-position helpers are TorchScript functions, exported as control flow)"
    ),
}


class OpenVinoBackend(Backend):
    name = "openvino"
    formats = frozenset(MODEL_FILES)
    devices = ("cpu",)
    requires = ("openvino",)
    runtime = "openvino"
    keeps_batch_invariance = True
    preload = ("openvino", "backends.openvino")
    Options = OpenVinoOptions

    def model_unavailable_reason(self, model_type: str) -> str | None:
        return UNSUPPORTED_MODELS.get(model_type)

    def options_unavailable_reason(self, options: Options, device: str) -> str | None:
        from harness.environment import bf16_unavailable_reason

        return bf16_unavailable_reason("cpu") if getattr(options, "precision", "f32") == "bf16" else None

    def precision(self, exporter_precision: str, options: Options) -> str:
        if getattr(options, "precision", "f32") == "bf16" and exporter_precision == "fp32":
            return "bf16"
        return exporter_precision

    def load(self, artifact: Artifact, device: str, threads: int, options: Options | None = None) -> OpenVinoSession:
        import openvino

        if device != "cpu":
            raise ValueError(f"backend 'openvino' runs on the CPU only, not {device!r}")
        options = options if options is not None else OpenVinoOptions()
        if not isinstance(options, OpenVinoOptions):
            raise TypeError(f"expected OpenVinoOptions, got {type(options).__name__}")
        core = openvino.Core()
        model = core.read_model(Path(artifact.path) / MODEL_FILES[artifact.format])
        return OpenVinoSession(core, model, options, threads)

    def gemm_peak(self, threads: int, size: int, repeats: int) -> dict[str, tuple[float, str]]:
        import openvino

        from harness.measure.peak import best_seconds

        core = openvino.Core()
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        rng = np.random.default_rng(0)
        # non-negative activations: the u8 side of a u8 x i8 GEMM, as in ORT's MatMulInteger peak
        a = np.abs(rng.standard_normal((size, size), dtype=np.float32))
        b = rng.standard_normal((size, size), dtype=np.float32)
        # (precision, inference hint, quantized operands, what the GEMM must really run in)
        plans = [("fp32", "f32", False, ("f32",))]
        if "BF16" in capabilities:
            plans.append(("bf16", "bf16", False, ("bf16",)))
        if "INT8" in capabilities:
            plans.append(("int8", "f32", True, ("u8", "i8")))
        found: dict[str, tuple[float, str]] = {}
        for precision, hint, quantized, expected in plans:
            config = compile_config(OpenVinoOptions(precision=hint), threads)
            compiled = core.compile_model(_gemm_model(size, b, quantized), "CPU", config)
            layer, kernel_precision, kernel = _gemm_kernel(compiled)
            # a peak is only that precision's if the plugin really ran it (LPT may leave a
            # FakeQuantize pattern in f32; a CPU may fall back from bf16)
            if kernel_precision not in expected:
                continue
            request = compiled.create_infer_request()
            request.set_input_tensor(openvino.Tensor(a))
            # share_outputs: copying the size^2 result out would be timed with the GEMM
            seconds = best_seconds(lambda r=request: r.infer(share_outputs=True), repeats)
            found[precision] = (seconds, f"{layer}[{kernel}]")
        return found


def _gemm_model(size: int, weights: np.ndarray, quantized: bool) -> Any:
    """``Y = A @ B`` with B a constant; quantized: FakeQuantize on both operands (u8 activations,
    i8 weights), the pattern the CPU plugin's low-precision transformations turn into an int8 GEMM."""
    import openvino
    import openvino.opset13 as ops

    a = ops.parameter([size, size], openvino.Type.f32, name="A")
    left, right = a, ops.constant(weights)
    if quantized:
        left = _fake_quantize(left, 0.0, 4.0, 256)
        right = _fake_quantize(right, -4.0, 4.0, 255)
    return openvino.Model([ops.matmul(left, right, False, False)], [a], "gemm")


def _fake_quantize(node: Any, low: float, high: float, levels: int) -> Any:
    import openvino.opset13 as ops

    lo, hi = ops.constant(np.float32(low)), ops.constant(np.float32(high))
    return ops.fake_quantize(node, lo, hi, lo, hi, levels)


def _gemm_kernel(compiled: Any) -> tuple[str, str, str]:
    """(layer type, runtime precision, primitive) of the GEMM the plugin really runs, from the
    executed graph: e.g. ("FullyConnected", "u8", "brgemm_avx512_I8")."""
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str)
        if layer in ("FullyConnected", "MatMul"):
            return layer, info["runtimePrecision"].astype(str), info["primitiveType"].astype(str)
    raise RuntimeError("the compiled GEMM has no FullyConnected or MatMul node")


BACKEND = OpenVinoBackend()
