"""Every supported encoder (tiny random BERT, DistilBERT, RoBERTa, DeBERTa-v2, ELECTRA, MPNet) through
every exporter, and every variant on every backend that loads its format: workload batches (dynamic
and fixed length, batch 1 and a padded batch of 8) run, and the logits match eager FP32 within the
variant's precision's tolerance. What cannot apply says why: ONNX Runtime fuses no attention of
DeBERTa-v2 or MPNet, and OpenVINO cannot compile DeBERTa-v2's graph.

Each model and each export is built once (a module-scoped cache). Trimmed for time:
torch-compile (seconds of Inductor per graph) runs DistilBERT's FP32 variant only, the one whose
inputs it must filter; tests/test_torch_compile.py covers its BF16 and compile options on BERT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_ort_static_int8 import agreement, random_sentences

from harness.adapters import Artifact, CalibrationData, NotApplicable
from harness.data.workload import encode, make_batches, pad_batch
from harness.models.tiny import ARCHITECTURES, create_tiny_model
from harness.registry import backends, exporters
from harness.results.stats import classification_scores

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "eager-fp32": ("eager-fp32", {}),
    "eager-bf16": ("eager-bf16", {}),
    "torch-dynamic-int8": ("torch-dynamic-int8", {}),
    "onnx-fp32": ("onnx-fp32", {}),
    "ort-int8": ("ort-int8", {}),
    "ort-int8-fused": ("ort-int8", {"optimize": True}),
    "ort-static-int8": ("ort-static-int8", {"samples": 32, "batch_size": 8}),
    "ort-static-int8-fused": ("ort-static-int8", {"samples": 32, "batch_size": 8, "optimize": True}),
    "openvino-int8": ("openvino-int8", {"samples": 32}),
}
BACKENDS = ("pytorch", "torch-compile", "onnxruntime", "openvino")
TORCH_COMPILE_CELLS = {("distilbert", "eager-fp32")}
# what must be n/a, and a pattern its reason matches
NO_ATTENTION_FUSION = {"deberta-v2", "mpnet"}
FUSION_REASON = r"fuses no attention of (deberta-v2|mpnet): optimum maps it to ONNX Runtime's 'bert' optimizer"
OPENVINO_REASON = "If operation of dynamic rank"
MODEL_FILES = {"transformers": "model.safetensors", "transformers-bf16": "model.safetensors",
               "torch-dynamic-int8": "model_int8.pt", "onnx": "model.onnx", "onnx-ort": "model.onnx"}  # fmt: skip
SEQ_LENS = ("dynamic", 24)  # 24 truncates the longer sentences
SINGLES = 3  # the first sentences also run alone, at batch 1
# Tolerances against eager FP32. Measured on these models: BF16 <= 0.03 relative; INT8 <= 0.21
# relative (NNCF on MPNet) and margin correlation >= 0.82 (NNCF on ELECTRA). Eager FP32 with the
# padding left unmasked is >= 0.30 relative (ELECTRA), so these bounds still catch a lost mask.
FP32_MAX_ABS = 1e-4
BOUNDS = {"bf16": (0.05, 0.99), "int8": (0.25, 0.8)}  # (max relative diff, min margin correlation)


def _format(label: str) -> str:
    name, options = VARIANTS[label]
    return exporters().get(name).format_for(options)


def _not_applicable(arch: str, label: str, backend: str) -> bool:
    fused = label.endswith("-fused") and arch in NO_ATTENTION_FUSION
    openvino = arch == "deberta-v2" and (backend == "openvino" or label == "openvino-int8")
    return fused or openvino


CELLS = [
    pytest.param(arch, label, backend, id=f"{arch}-{label}-{backend}")
    for arch in ARCHITECTURES
    for label in VARIANTS
    for backend in BACKENDS
    if _format(label) in backends().get(backend).formats
    and not _not_applicable(arch, label, backend)
    and (backend != "torch-compile" or (arch, label) in TORCH_COMPILE_CELLS)
]


@dataclass
class Tiny:
    """One architecture's tiny model, its workload feeds, eager FP32 logits and exports."""

    arch: str
    path: Path
    work: Path
    calibration: CalibrationData
    feeds: dict[tuple[Any, str], list[dict[str, np.ndarray]]] = field(default_factory=dict)
    reference: dict[tuple[Any, str], np.ndarray] = field(default_factory=dict)
    model_module: str = ""
    exports: dict[str, Artifact | NotApplicable] = field(default_factory=dict)

    def export(self, label: str) -> Artifact | NotApplicable:
        """The variant (built on first use), or the verdict that it does not apply, found the way
        the runner finds it: the exporter's model check, then the export itself."""
        if label not in self.exports:
            name, raw = VARIANTS[label]
            exporter = exporters().get(name)
            reason = exporter.model_unavailable_reason(self.arch)
            out = self.work / label
            out.mkdir()
            try:
                if reason:
                    raise NotApplicable(reason)
                args = (self.calibration,) if exporter.needs_calibration else ()
                exporter.export(self.path, out, exporter.Options(**raw), *args)
                self.exports[label] = Artifact(out, exporter.format_for(raw))
            except NotApplicable as verdict:
                self.exports[label] = verdict
        return self.exports[label]


def run_feeds(session: Any, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.concatenate([session.logits(session.run(session.prepare(feed))) for feed in feeds])


@pytest.fixture(scope="module")
def calibration() -> CalibrationData:
    texts = tuple(random_sentences(64, seed=0))
    return CalibrationData(texts, tuple(i % 2 for i in range(64)), "architectures-calibration", 64)


@pytest.fixture(scope="module")
def models(tmp_path_factory, calibration) -> dict[str, Tiny]:
    """Each architecture's ``Tiny``, built by the first test that asks for it: pytest would set a
    parametrized module fixture up again whenever the architecture changes between tests."""
    return {}


@pytest.fixture
def tiny(request, models: dict[str, Tiny], tmp_path_factory, calibration) -> Tiny:
    arch = request.param
    if arch not in models:
        models[arch] = build_tiny(arch, tmp_path_factory.mktemp(arch), calibration)
    return models[arch]


def build_tiny(arch: str, work: Path, calibration: CalibrationData) -> Tiny:
    from transformers import AutoTokenizer

    # std 0.2 (not 0.02) so the logits vary across sentences, as test_ort_static_int8 does
    path = create_tiny_model(arch, work / "model", seed=3, initializer_range=0.2)
    model = Tiny(arch, path, work, calibration)
    tokenizer = AutoTokenizer.from_pretrained(path)
    texts = random_sentences(16, seed=1)
    eager = backends().get("pytorch").load(Artifact(path, "transformers"), "cpu", 1)
    for seq_len in SEQ_LENS:
        ids = encode(tokenizer, texts, seq_len, 64)
        for batch_size, rows in ((8, ids), (1, ids[:SINGLES])):
            feeds = [batch.arrays for batch in make_batches(rows, batch_size, seq_len, 0)]
            model.feeds[seq_len, f"batch {batch_size}"] = feeds
            model.reference[seq_len, f"batch {batch_size}"] = run_feeds(eager, feeds)
    model.model_module = type(eager.model).__module__
    eager.close()
    return model


def architectures(*archs: str) -> Any:
    return pytest.mark.parametrize("tiny", archs or ARCHITECTURES, indirect=True)


@architectures()
@pytest.mark.parametrize("label", VARIANTS)
def test_every_exporter_makes_its_variant_or_says_why_not(tiny: Tiny, label: str) -> None:
    made = tiny.export(label)
    if label.endswith("-fused") and tiny.arch in NO_ATTENTION_FUSION:
        assert isinstance(made, NotApplicable) and re.search(FUSION_REASON, str(made)), made
    elif label == "openvino-int8" and tiny.arch == "deberta-v2":
        assert isinstance(made, NotApplicable) and OPENVINO_REASON in str(made), made
    else:
        assert isinstance(made, Artifact), made
        files = {p.name for p in made.path.iterdir()}
        assert {"config.json", "tokenizer.json", MODEL_FILES[made.format]} <= files, files
    if label.endswith("-fused") and isinstance(made, Artifact):  # every layer's attention fused
        import onnx

        ops = [n.op_type for n in onnx.load(str(made.path / "model.onnx")).graph.node]
        assert ops.count("Attention") + ops.count("QAttention") == 2, sorted(set(ops))


@pytest.mark.parametrize(("tiny", "label", "backend"), CELLS, indirect=["tiny"])
def test_backend_runs_the_variant_and_matches_eager_fp32(tiny: Tiny, label: str, backend: str) -> None:
    exporter, runtime = exporters().get(VARIANTS[label][0]), backends().get(backend)
    artifact = tiny.export(label)
    assert isinstance(artifact, Artifact), artifact
    reason = runtime.cell_unavailable_reason(artifact.format, "cpu") or runtime.model_unavailable_reason(tiny.arch)
    if reason:
        pytest.skip(reason)  # eager-bf16 on a CPU without BF16
    precision = runtime.precision(exporter.precision, runtime.Options())
    session = runtime.load(artifact, "cpu", 1)
    try:
        logits = {shape: run_feeds(session, feeds) for shape, feeds in tiny.feeds.items()}
    finally:
        session.close()
    for shape, got in logits.items():
        assert got.shape == tiny.reference[shape].shape and np.isfinite(got).all(), shape
    # every shape's rows together: a margin correlation over a batch-1 shape's 3 rows would be noise
    got, reference = (np.concatenate([found[shape] for shape in tiny.feeds]) for found in (logits, tiny.reference))
    difference = classification_scores(got, reference.argmax(1), reference)["max_abs_logit_diff"]
    if precision == "fp32":
        assert difference <= FP32_MAX_ABS, difference
    else:
        relative, _, correlation = agreement(reference, got)
        max_relative, min_correlation = BOUNDS[precision]
        assert relative <= max_relative and correlation >= min_correlation, (relative, correlation)
    # a sentence alone and in a padded batch: the same logits where fixed scales promise it
    if precision == "fp32" or (exporter.batch_invariant and runtime.keeps_batch_invariance):
        for seq_len in SEQ_LENS:
            alone, together = logits[seq_len, "batch 1"], logits[seq_len, "batch 8"][:SINGLES]
            assert float(np.abs(alone - together).max()) <= FP32_MAX_ABS, seq_len


@architectures()
def test_int8_bounds_reject_a_model_that_attends_to_padding(tiny: Tiny) -> None:
    """The bounds above can fail: eager FP32 with the padding unmasked breaks the INT8 ones."""
    session = backends().get("pytorch").load(Artifact(tiny.path, "transformers"), "cpu", 1)
    feeds = tiny.feeds["dynamic", "batch 8"]
    unmasked = run_feeds(session, [{**f, "attention_mask": np.ones_like(f["attention_mask"])} for f in feeds])
    relative, _, correlation = agreement(tiny.reference["dynamic", "batch 8"], unmasked)
    max_relative, min_correlation = BOUNDS["int8"]
    assert relative > max_relative or correlation < min_correlation, (relative, correlation)


@architectures("distilbert", "bert")
def test_pytorch_feeds_only_the_inputs_the_models_forward_takes(tiny: Tiny) -> None:
    batch = pad_batch([[2, 10, 11, 3], [2, 12, 3]], "dynamic", 0, np.arange(2)).arrays
    assert "token_type_ids" in batch  # the workload always makes them
    session = backends().get("pytorch").load(Artifact(tiny.path, "transformers"), "cpu", 1)
    prepared = session.prepare(batch)
    if tiny.arch == "distilbert":
        assert sorted(prepared) == ["attention_mask", "input_ids"]
        with pytest.raises(TypeError, match="token_type_ids"):  # what feeding them would do
            session.run({k: session.torch.from_numpy(v) for k, v in batch.items()})
    else:  # BERT takes them, and gets them: segment 1 moves its logits
        assert sorted(prepared) == ["attention_mask", "input_ids", "token_type_ids"]
        segment_one = {**batch, "token_type_ids": batch["attention_mask"].copy()}
        assert not np.allclose(run_feeds(session, [batch]), run_feeds(session, [segment_one]))
    session.close()


@architectures()
def test_pytorch_preloads_every_architectures_modeling_module(tiny: Tiny) -> None:
    import importlib

    from backends.pytorch import PyTorchBackend
    from backends.torch_compile import TorchCompileBackend

    assert tiny.model_module in PyTorchBackend.preload
    assert tiny.model_module in TorchCompileBackend.preload
    importlib.import_module(tiny.model_module)


@architectures()
def test_static_int8_finds_each_architectures_fragile_nodes(tiny: Tiny) -> None:
    import onnx

    from exporters.ort_static_int8 import excluded_nodes

    artifact = tiny.export("onnx-fp32")
    model = onnx.load(str(artifact.path / "model.onnx"))
    found = excluded_nodes(model)
    nodes = {n.name: n for n in model.graph.node}
    producer = {o: n for n in model.graph.node for o in n.output}
    layers = 2
    # word + position (+ token type, where the embeddings have them) lookups
    token_types = {"bert", "roberta", "electra"}
    assert len(found["embedding_add"]) == (2 if tiny.arch in token_types else 1), found["embedding_add"]
    assert len(found["layernorm"]) == 2 * layers + 1
    assert len(found["mask_add"]) == layers
    # the mask op is what each attention's Softmax reads (DeBERTa-v2 masks with a Where)
    softmax_inputs = {producer[n.input[0]].name for n in model.graph.node if n.op_type == "Softmax"}
    assert softmax_inputs == set(found["mask_add"])
    assert {nodes[name].op_type for name in found["mask_add"]} == {"Where" if tiny.arch == "deberta-v2" else "Add"}
    # every GELU's Erf (ELECTRA's head and DeBERTa-v2's pooler have one more), and no MatMul at all
    erfs = {n.name for n in model.graph.node if n.op_type == "Erf"}
    assert erfs and erfs <= set(found["gelu"])
    excluded = set().union(*map(set, found.values()))
    assert not {nodes[name].op_type for name in excluded} & {"MatMul", "Gemm"}
    # and the static INT8 variant keeps them float: no DequantizeLinear feeds any of them
    quantized = onnx.load(str(tiny.export("ort-static-int8").path / "model.onnx"))
    by_name = {n.name: n for n in quantized.graph.node}
    producer = {o: n for n in quantized.graph.node for o in n.output}
    assert excluded <= by_name.keys()
    fed_by = {producer[i].op_type for name in excluded for i in by_name[name].input if i in producer}
    assert "DequantizeLinear" not in fed_by and "QuantizeLinear" in {n.op_type for n in quantized.graph.node}


@architectures()
def test_ort_fuses_the_attention_of_exactly_the_architectures_that_say_so(tiny: Tiny) -> None:
    """The facts behind the fused variant's n/a: 'bert' fusions on DeBERTa-v2 and MPNet fuse no
    attention, and on every other architecture the attention of every layer."""
    from transformers import AutoConfig

    from exporters._ort import fuse
    from harness.compress.architectures import ARCHITECTURES as FACTS

    config = AutoConfig.from_pretrained(tiny.path)
    graph = tiny.export("onnx-fp32").path / "model.onnx"
    model_type = FACTS[tiny.arch].ort_model_type
    assert (model_type is None) == (tiny.arch in NO_ATTENTION_FUSION)
    if model_type is None:
        with pytest.raises(NotApplicable, match=f"fuse the attention of 0 of {tiny.arch}'s 2 layers"):
            fuse(graph, "bert", config)
    else:
        ops = [n.op_type for n in fuse(graph, model_type, config).model.graph.node]
        assert ops.count("Attention") == 2


@architectures("deberta-v2")
def test_openvino_cannot_compile_deberta_v2_as_its_reason_says(tiny: Tiny) -> None:
    """The n/a verdict is a fact: the day OpenVINO compiles this graph, this test says to drop it."""
    runtime = backends().get("openvino")
    assert OPENVINO_REASON in runtime.model_unavailable_reason("deberta-v2")
    assert all(runtime.model_unavailable_reason(arch) is None for arch in ARCHITECTURES if arch != "deberta-v2")
    with pytest.raises(RuntimeError, match="If operation with dynamic rank"):
        runtime.load(tiny.export("onnx-fp32"), "cpu", 1)
