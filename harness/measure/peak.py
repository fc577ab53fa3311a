"""The machine's GEMM peak per precision, and how close a cell came to it.

The peak is the best any runtime in the suite reaches on a large GEMM, not one library's number: at
small sizes ONNX Runtime's MLAS FP32 GEMM beat torch.mm by ~1.7x, so a torch-only peak let cells
report more than 100%. INT8 is measured with real integer GEMMs (int8 x int8 -> int32), not a
dynamic-quantized Linear, whose activation quantization would understate the peak.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("harness")
METHOD = "best of {repeats} square GEMMs of each size per runtime, measured before any cell and before the last round"


Kernels = Callable[[int, int, int], Mapping[str, tuple[float, str]]]


def measure_peaks(
    threads: int,
    kernels: Mapping[str, Kernels],
    size: int = 2048,
    repeats: int = 5,
    sizes: Sequence[int] | None = None,
) -> dict[str, dict[str, Any]]:
    """GFLOP/s peak per precision: the best any runtime reaches on a best-of-``repeats`` square GEMM
    of each of ``sizes`` (default: just ``size``).

    ``kernels`` maps a runtime's name to its GEMM timer (``Backend.gemm_peak``: threads, size,
    repeats -> {precision: (best seconds, kernel name)}). A runtime that cannot be imported is
    skipped; a precision with no successful measurement is absent from the result. On a shared VM
    the speed of the moment varies between calls, so more sizes and repeats give a peak closer to
    the machine's real one.
    """
    measured: dict[str, dict[str, tuple[float, str]]] = {}
    for side in sizes or (size,):
        flops = 2.0 * side**3
        for runtime, kernel in kernels.items():
            try:
                found = kernel(threads, side, repeats)
            except ImportError:  # runtime not installed on this machine: nothing to compare against
                continue
            except Exception as error:  # a runtime that cannot run a plain GEMM gives no peak, not a failed run
                log.warning("no %s GEMM peak at %d: %s: %s", runtime, side, type(error).__name__, error)
                continue
            for precision, (seconds, name) in found.items():
                best = (flops / seconds / 1e9, f"{runtime} {name} {side}^3")
                by_runtime = measured.setdefault(precision, {})
                by_runtime[runtime] = max(by_runtime.get(runtime, best), best)

    peaks: dict[str, dict[str, Any]] = {}
    for precision, by_runtime in measured.items():
        if not by_runtime:
            continue
        gflops, source = max(by_runtime.values())
        peaks[precision] = {
            "gflops": gflops,
            "source": source,
            "by_runtime": {runtime: value for runtime, (value, _) in by_runtime.items()},
            "method": METHOD.format(repeats=repeats),
        }
    return peaks


def peak_fraction(
    flops_by_precision: Mapping[str, float], seconds: float, peaks: Mapping[str, Mapping[str, Any]]
) -> float | None:
    """Fraction of the machine's peak a cell reached: the fastest possible time for its work / its time.

    A cell may mix precisions (dynamic-INT8 models run Linear layers in INT8 and attention in FP32),
    so the fastest time is sum(flops_p / peak_p). None when ``seconds`` <= 0 or a precision with work
    has no measured peak (FP16/BF16 on CPU, or INT8 where no runtime measured it).
    """
    if seconds <= 0:
        return None
    minimum = 0.0
    for precision, flops in flops_by_precision.items():
        if not flops:
            continue
        gflops = (peaks.get(precision) or {}).get("gflops")
        if not gflops:
            return None
        minimum += flops / (gflops * 1e9)
    return minimum / seconds


def torch_kernels(threads: int, size: int, repeats: int) -> dict[str, tuple[float, str]]:
    """torch.mm in FP32 (and BF16 where the CPU has native BF16), torch._int_mm for INT8."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        found = {"fp32": (best_seconds(lambda: torch.mm(a, b), repeats), "mm")}
        if native_bf16():  # elsewhere BF16 is emulated: no peak worth the name
            ha, hb = a.bfloat16(), b.bfloat16()
            found["bf16"] = (best_seconds(lambda: torch.mm(ha, hb), repeats), "mm bf16")
        qa = torch.randint(-128, 128, (size, size), dtype=torch.int8)
        qb = torch.randint(-128, 128, (size, size), dtype=torch.int8)
        # Builds without a CPU integer GEMM raise here; then torch simply has no INT8 figure.
        with contextlib.suppress(RuntimeError, NotImplementedError, AttributeError):
            found["int8"] = (best_seconds(lambda: torch._int_mm(qa, qb), repeats), "_int_mm")
        return found
    finally:
        torch.set_num_threads(before)  # the cells set their own threads; do not leak ours into them


def onnxruntime_kernels(threads: int, size: int, repeats: int) -> dict[str, tuple[float, str]]:
    """ONNX Runtime MatMul in FP32 and MatMulInteger (uint8 x int8) for INT8."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    rng = np.random.default_rng(0)
    # uint8 activations x int8 weights: what ORT's dynamic-quantized models feed MatMulInteger.
    inputs = {
        "fp32": rng.standard_normal((size, size), dtype=np.float32),
        "int8": rng.integers(0, 256, (size, size), dtype=np.uint8),
    }
    found: dict[str, tuple[float, str]] = {}
    for precision, a in inputs.items():
        model = _gemm_model(precision, size)
        session = ort.InferenceSession(
            model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
        )
        seconds = best_seconds(lambda s=session, a=a: s.run(None, {"A": a}), repeats)
        found[precision] = (seconds, model.graph.node[0].op_type)
    return found


def _gemm_model(precision: str, size: int) -> Any:
    """In-memory ONNX model ``Y = A @ B`` with B an initializer: MatMul for fp32, MatMulInteger for int8."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    if precision == "fp32":
        op, a_type, y_type = "MatMul", TensorProto.FLOAT, TensorProto.FLOAT
        b = rng.standard_normal((size, size), dtype=np.float32)
    else:
        op, a_type, y_type = "MatMulInteger", TensorProto.UINT8, TensorProto.INT32
        b = rng.integers(-128, 128, (size, size), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node(op, ["A", "B"], ["Y"])],
        f"gemm_{precision}",
        [helper.make_tensor_value_info("A", a_type, [size, size])],
        [helper.make_tensor_value_info("Y", y_type, [size, size])],
        [numpy_helper.from_array(b, "B")],
    )
    # Pin IR/opset to ones every supported onnxruntime reads; onnx's defaults can run ahead of ORT.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU computes BF16 natively (AVX512-BF16, AMX-BF16 or ARM BF16), from its flags."""
    from harness.environment import bf16_unavailable_reason

    return bf16_unavailable_reason("cpu", cpuinfo) is None


def best_seconds(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up: first call pays for packing, thread-pool start-up and allocations
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best
