"""Machine GEMM peaks per runtime and precision, and the mixed-precision peak fraction."""

from __future__ import annotations

import pytest

from harness.measure.peak import _gemm_model, measure_peaks, native_bf16, onnxruntime_kernels, peak_fraction
from harness.registry import backends

SIZE, REPEATS = 256, 2


def kernels_of(*names: str) -> dict:
    """Each named backend's own GEMM timer, keyed by its runtime, as the runner gathers them."""
    return {backends().get(n).runtime: backends().get(n).gemm_peak for n in names}


@pytest.fixture(scope="module")
def peaks() -> dict:
    return measure_peaks(threads=1, kernels=kernels_of("pytorch", "onnxruntime"), size=SIZE, repeats=REPEATS)


def test_both_precisions_measured_with_the_best_runtime(peaks):
    assert set(peaks) == ({"fp32", "int8", "bf16"} if native_bf16() else {"fp32", "int8"})
    for precision, entry in peaks.items():
        assert entry["gflops"] > 0, precision
        assert entry["gflops"] == max(entry["by_runtime"].values())
        assert all(v > 0 for v in entry["by_runtime"].values())
        assert entry["source"].endswith(f"{SIZE}^3")
        assert entry["source"].split()[0] in entry["by_runtime"]
        assert entry["method"].startswith(f"best of {REPEATS} ")
    assert set(peaks["fp32"]["by_runtime"]) == {"torch", "onnxruntime"}
    assert "onnxruntime" in peaks["int8"]["by_runtime"]


def test_torch_thread_count_is_restored():
    import torch

    before = torch.get_num_threads()
    measure_peaks(threads=before + 1, kernels=kernels_of("pytorch"), size=64, repeats=1)
    assert torch.get_num_threads() == before


def test_runtimes_that_cannot_measure_are_skipped():
    def not_installed(threads, size, repeats):
        import tensorrt_that_is_not_there  # noqa: F401

    def broken(threads, size, repeats):
        raise RuntimeError("no GEMM here")

    kernels = {"onnxruntime": onnxruntime_kernels, "tensorrt": not_installed, "nope": broken}
    only_ort = measure_peaks(threads=1, kernels=kernels, size=64, repeats=1)
    assert set(only_ort["fp32"]["by_runtime"]) == {"onnxruntime"}
    assert measure_peaks(threads=1, kernels={"nope": broken}, size=64, repeats=1) == {}
    assert measure_peaks(threads=1, kernels={}, size=64, repeats=1) == {}


def test_bf16_peak_only_where_the_cpu_has_native_bf16(tmp_path):
    plain = tmp_path / "cpuinfo"
    plain.write_text("model name\t: X\nflags\t\t: avx2 avx512f avx512_vnni\n")
    assert not native_bf16(plain)
    plain.write_text("model name\t: X\nflags\t\t: avx2 avx512f avx512_bf16\n")
    assert native_bf16(plain)


PEAKS = {"int8": {"gflops": 400.0}, "fp32": {"gflops": 100.0}}


def test_peak_fraction_mixes_precisions():
    # 4e9 / 400e9 + 1e9 / 100e9 = 0.02 s at best, done in 0.04 s -> half the peak.
    assert peak_fraction({"int8": 4e9, "fp32": 1e9}, 0.04, PEAKS) == pytest.approx(0.5)
    assert peak_fraction({"fp32": 1e9}, 0.01, PEAKS) == pytest.approx(1.0)


def test_peak_fraction_none_without_a_peak_or_a_time():
    assert peak_fraction({"fp16": 1e9}, 0.04, PEAKS) is None
    assert peak_fraction({"int8": 1e9}, 0.04, {"fp32": {"gflops": 100.0}}) is None
    assert peak_fraction({"int8": 4e9, "fp32": 1e9}, 0.0, PEAKS) is None
    assert peak_fraction({"int8": 4e9, "fp32": 1e9}, -1.0, PEAKS) is None
    # A precision with no work needs no peak.
    assert peak_fraction({"fp32": 1e9, "fp16": 0.0}, 0.01, PEAKS) == pytest.approx(1.0)


def test_ort_int8_graph_is_an_integer_gemm():
    from onnx import TensorProto

    model = _gemm_model("int8", 8)
    assert [node.op_type for node in model.graph.node] == ["MatMulInteger"]
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert model.graph.initializer[0].data_type == TensorProto.INT8
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.INT32
    assert [node.op_type for node in _gemm_model("fp32", 8).graph.node] == ["MatMul"]
