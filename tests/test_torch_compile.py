"""The torch-compile backend and the eager-bf16 exporter, on the tiny random BERT.

Every compile costs seconds, so two compiled sessions are built once and shared: "marked" with the
default options (freezing on) and "per-width" with freezing off (Inductor's FX graph cache does
not serve frozen graphs, so only the unfrozen ones get faster on later runs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from harness.adapters import Artifact
from harness.registry import backends, exporters

MARKED_STAGES = {"batch 1": [(1, 5), (1, 7), (1, 9)], "batch 3": [(3, 6), (3, 9)]}
# batch 1 at widths 4..12: nine widths, one more than dynamo's default recompile limit of 8
PER_WIDTH_STAGES = {
    "batch 1, 3 widths": [(1, 5), (1, 7), (1, 9)],
    "batch 1, 9 widths": [(1, w) for w in (4, 6, 8, 10, 11, 12)],
    "batch 3": [(3, 6), (3, 9)],
}


def padded_batch(batch: int, width: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random token ids with real padding: row lengths width-1 (batch 1), or width, width-2, 3."""
    rng = np.random.default_rng(seed + 100 * batch + width)
    lengths = [width - 1] if batch == 1 else [width, width - 2, 3][:batch]
    ids = rng.integers(5, 60, size=(batch, width), dtype=np.int64)
    mask = (np.arange(width)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def graph_count() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


@dataclass
class Compiled:
    session: Any
    prepared: dict[tuple[int, int], Any] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # describe() after each stage


def compile_stages(session: Any, stages: dict[str, list[tuple[int, int]]]) -> Compiled:
    compiled = Compiled(session)
    for stage, shapes in stages.items():
        for shape in shapes:
            compiled.prepared[shape] = session.prepare(padded_batch(*shape))
        compiled.stages[stage] = session.describe()
    return compiled


@pytest.fixture(scope="session")
def backend() -> Any:
    return backends().get("torch-compile")


@pytest.fixture(scope="session")
def eager_logits(tiny_model_dir: Path) -> Any:
    session = backends().get("pytorch").load(Artifact(tiny_model_dir, "transformers"), "cpu", 1)

    def logits(shape: tuple[int, int]) -> np.ndarray:
        return session.logits(session.run(session.prepare(padded_batch(*shape))))

    return logits


@pytest.fixture(scope="session")
def marked(backend: Any, tiny_model_dir: Path) -> Compiled:
    session = backend.load(Artifact(tiny_model_dir, "transformers"), "cpu", 1)
    return compile_stages(session, MARKED_STAGES)


@pytest.fixture(scope="session")
def per_width(backend: Any, tiny_model_dir: Path) -> Compiled:
    options = backend.Options(dynamic="per-width", freezing=False)
    session = backend.load(Artifact(tiny_model_dir, "transformers"), "cpu", 1, options)
    return compile_stages(session, PER_WIDTH_STAGES)


@pytest.fixture(scope="session")
def bf16_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    exporter = exporters().get("eager-bf16")
    out = tmp_path_factory.mktemp("eager-bf16")
    exporter.export(tiny_model_dir, out, exporter.Options())
    return out


def test_registry_discovers_backend_and_exporter(backend: Any) -> None:
    import importlib.util

    assert backend.name == "torch-compile"
    assert backend.formats == {"transformers", "transformers-bf16"}
    assert backend.devices == ("cpu", "cuda") and backend.runtime == "torch"
    assert backend.unavailable_reason("cpu") is None
    assert "backends.torch_compile" in backend.preload
    assert all(importlib.util.find_spec(module) for module in backend.preload)
    exporter = exporters().get("eager-bf16")
    assert (exporter.format, exporter.precision) == ("transformers-bf16", "bf16")
    assert exporter.unavailable_reason() is None


def test_gemm_peak_is_measured_for_the_torch_runtime(backend: Any) -> None:
    peaks = backend.gemm_peak(1, 64, 1)
    assert peaks["fp32"][0] > 0


def test_options_are_typed_and_validated(backend: Any, tiny_model_dir: Path) -> None:
    defaults = backend.Options()
    assert (defaults.mode, defaults.freezing, defaults.dynamic) == ("default", True, "marked")
    chosen = backend.Options.model_validate({"mode": "max-autotune-no-cudagraphs", "dynamic": "per-width"})
    assert (chosen.mode, chosen.dynamic) == ("max-autotune-no-cudagraphs", "per-width")
    for bad in ({"mode": "fast"}, {"dynamic": "auto"}, {"freezing": "sometimes"}, {"threads": 4}):
        with pytest.raises(ValidationError):
            backend.Options.model_validate(bad)
    with pytest.raises(TypeError):
        backend.load(Artifact(tiny_model_dir, "transformers"), "cpu", 1, backends().get("pytorch").Options())


@pytest.mark.parametrize("name", ["marked", "per_width"])
def test_compiled_logits_match_eager_on_padded_batches(
    name: str, request: pytest.FixtureRequest, eager_logits: Any
) -> None:
    compiled: Compiled = request.getfixturevalue(name)
    for shape in [(1, 5), (1, 9), (3, 6), (3, 9)]:
        got = compiled.session.logits(compiled.session.run(compiled.prepared[shape]))
        np.testing.assert_allclose(got, eager_logits(shape), atol=1e-4, rtol=0, err_msg=f"{name} {shape}")


def test_marked_compiles_one_graph_per_batch_size(marked: Compiled) -> None:
    batch1, batch3 = marked.stages["batch 1"], marked.stages["batch 3"]
    assert batch1["recompiles"] == 1 and batch1["shapes"] == 3
    assert batch3["recompiles"] == 2 and batch3["shapes"] == 5
    assert 0 < batch1["compile_s"] < batch3["compile_s"]
    assert (batch3["dynamic"], batch3["mode"], batch3["freezing"]) == ("marked", "default", True)
    json.dumps(marked.session.describe())  # goes into the result row as is


def test_per_width_compiles_every_width_past_the_default_limit(per_width: Compiled, marked: Compiled) -> None:
    three, nine = per_width.stages["batch 1, 3 widths"], per_width.stages["batch 1, 9 widths"]
    assert three["recompiles"] == 3 > marked.stages["batch 1"]["recompiles"]
    assert three["compile_s"] > 0
    # 9 graphs for 9 widths: dynamo's default limit (8) would have run the 9th width in eager
    assert nine["recompiles"] == 9 == nine["shapes"]
    assert per_width.stages["batch 3"]["recompiles"] == 11
    assert (nine["dynamic"], nine["freezing"]) == ("per-width", False)


def test_timed_run_does_not_compile(marked: Compiled, per_width: Compiled) -> None:
    for compiled in (marked, per_width):
        graphs, described = graph_count(), compiled.session.describe()
        for prepared in compiled.prepared.values():
            compiled.session.run(prepared)
            compiled.session.synchronize()
        assert graph_count() == graphs, "run compiled a graph that prepare should have"
        assert compiled.session.describe() == described


def test_marked_new_width_of_known_batch_needs_no_graph(marked: Compiled) -> None:
    graphs = graph_count()
    before = marked.session.describe()
    marked.session.prepare(padded_batch(3, 12))
    after = marked.session.describe()
    assert graph_count() == graphs
    assert after["recompiles"] == before["recompiles"] and after["shapes"] == before["shapes"] + 1


def test_eager_bf16_export_writes_bf16_weights(bf16_dir: Path) -> None:
    import torch
    from safetensors import safe_open

    weights = list(bf16_dir.glob("*.safetensors"))
    assert weights, "no safetensors written"
    with safe_open(weights[0], framework="pt") as handle:
        dtypes = {handle.get_tensor(key).dtype for key in handle.keys()}  # noqa: SIM118 (not a dict)
    assert dtypes == {torch.bfloat16}
    assert (bf16_dir / "tokenizer_config.json").is_file()


def test_eager_bf16_logits_close_to_fp32_but_not_equal(bf16_dir: Path, eager_logits: Any) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(bf16_dir, dtype=torch.bfloat16).eval()
    for shape in [(1, 9), (3, 9)]:
        batch = {k: torch.from_numpy(v) for k, v in padded_batch(*shape).items()}
        with torch.inference_mode():
            got = model(**batch).logits.float().numpy()
        reference = eager_logits(shape)
        np.testing.assert_allclose(got, reference, atol=0.05, rtol=0.05)
        assert not np.array_equal(got, reference), "bf16 logits equal fp32 bit for bit: weights not bf16?"


def test_torch_compile_loads_bf16_artifact_in_bf16(backend: Any, bf16_dir: Path) -> None:
    import torch

    session = backend.load(Artifact(bf16_dir, "transformers-bf16"), "cpu", 1)
    try:
        assert {p.dtype for p in session.model.parameters()} == {torch.bfloat16}
    finally:
        session.close()


def test_bf16_unavailable_reason_reads_cpu_flags(tmp_path: Path, backend: Any) -> None:
    from harness.environment import bf16_unavailable_reason

    plain = tmp_path / "plain"
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n\nprocessor\t: 1\n", encoding="utf-8")
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_tile amx_bf16\n", encoding="utf-8")
    assert "avx512_bf16" in bf16_unavailable_reason("cpu", plain)
    assert bf16_unavailable_reason("cpu", amx) is None
    assert "cannot read" in bf16_unavailable_reason("cpu", tmp_path / "missing")
    # both backends defer to the helper for the format; FP32 is never refused
    assert backend.cell_unavailable_reason("transformers-bf16", "cpu") == bf16_unavailable_reason("cpu")
    assert backend.cell_unavailable_reason("transformers", "cpu") is None


def test_cuda_unavailable_without_a_device(backend: Any) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert "no CUDA device" in backend.unavailable_reason("cuda")
    assert "does not support device" in backend.unavailable_reason("mps")
