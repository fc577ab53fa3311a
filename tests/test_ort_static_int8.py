"""The ONNX Runtime static INT8 exporter: discovery, accuracy against FP32 ONNX, the float exclusions
(LayerNorm, GELU, mask Add, embedding Adds), and a calibration reader that never sees held-out text.

One tiny BERT is exported once per session (static INT8 and FP32 ONNX); every test reads those.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from exporters.ort_static_int8 import CalibrationReader, excluded_nodes
from harness.adapters import CalibrationData

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
MAX_LENGTH = 64
# Bounds on int8 vs fp32 logits. This export measures 0.04 / 0.98 / 0.9987; with its activation
# scales off by 2x it gives 0.08 / 0.94 / 0.9956, by 4x 0.13 / 0.91 / 0.982 (see the test below).
MAX_RELATIVE_DIFF, MIN_ARGMAX_AGREEMENT, MIN_MARGIN_CORRELATION = 0.1, 0.95, 0.995


def random_sentences(count: int, seed: int) -> list[str]:
    """Short sentences of characters the tiny model's vocabulary has."""
    rng = random.Random(seed)
    alphabet = string.ascii_lowercase + string.digits
    words = lambda: "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))  # noqa: E731
    return [" ".join(words() for _ in range(rng.randint(2, 12))) for _ in range(count)]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    from harness.models.tiny import create_tiny_bert

    # The default init (std 0.02) gives near-constant logits across inputs (spread 2e-5), against which
    # any quantization "agrees"; std 0.2 with this seed varies them (about half of each class).
    return create_tiny_bert(tmp_path_factory.mktemp("static-int8") / "tiny", seed=3, initializer_range=0.2)


@pytest.fixture(scope="session")
def calibration() -> CalibrationData:
    texts = tuple(random_sentences(64, seed=0))
    return CalibrationData(texts, tuple(i % 2 for i in range(64)), "test-calibration", MAX_LENGTH)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, model_dir, calibration) -> dict[str, Path]:
    from harness.registry import exporters

    registry = exporters()
    out = {}
    for name in ("ort-static-int8", "onnx-fp32"):
        exporter = registry.get(name)
        out[name] = tmp_path_factory.mktemp(name)
        args = (calibration,) if exporter.needs_calibration else ()
        exporter.export(model_dir, out[name], exporter.Options(), *args)
    return out


@pytest.fixture(scope="session")
def eval_feed(model_dir) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer(random_sentences(64, seed=1), padding=True, return_tensors="np")
    return {k: encoded[k].astype(np.int64) for k in INPUTS}


def logits(model: Path | bytes, feed: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model)).run(None, feed)[0]


def agreement(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float, float]:
    """(max |diff| / max |reference|, argmax agreement, correlation of the class-1 margins)."""
    relative = float(np.abs(candidate - reference).max() / np.abs(reference).max())
    agree = float((candidate.argmax(1) == reference.argmax(1)).mean())
    margins = [x[:, 1] - x[:, 0] for x in (reference, candidate)]
    return relative, agree, float(np.corrcoef(*margins)[0, 1])


def within_bounds(relative: float, agree: float, correlation: float) -> bool:
    return relative <= MAX_RELATIVE_DIFF and agree >= MIN_ARGMAX_AGREEMENT and correlation >= MIN_MARGIN_CORRELATION


def test_exporter_is_discovered_and_available():
    from exporters.ort_static_int8 import OrtStaticInt8
    from harness.registry import exporters

    exporter = exporters().get("ort-static-int8")
    assert isinstance(exporter, OrtStaticInt8)
    assert exporter.unavailable_reason() is None
    assert (exporter.format, exporter.precision, exporter.needs_calibration) == ("onnx", "int8", True)
    assert exporter.format_for({"optimize": True}) != exporter.format_for({}) == "onnx"


def test_logits_do_not_depend_on_batch_or_padding(exported, model_dir):
    """Backs ``batch_invariant``: fixed scales, so padding and batch mates cannot move a sentence."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = random_sentences(12, seed=4)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(exported["ort-static-int8"] / "model.onnx"), options)

    def run(batch: list[str], **padding) -> np.ndarray:
        encoded = tokenizer(batch, return_tensors="np", **padding)
        return session.run(None, {k: encoded[k].astype(np.int64) for k in INPUTS})[0]

    alone = np.concatenate([run([t]) for t in texts])
    for together in (run(texts, padding="longest"), run(texts, padding="max_length", max_length=MAX_LENGTH)):
        assert float(np.abs(together - alone).max()) <= 1e-5


def test_static_int8_runs_and_agrees_with_fp32(exported, eval_feed):
    out = exported["ort-static-int8"]
    assert {"model.onnx", "config.json", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    ops = [n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    fp32 = logits(exported["onnx-fp32"] / "model.onnx", eval_feed)
    assert len(set(fp32.argmax(1))) == 2, "the eval set must hold both predicted classes"
    relative, agree, correlation = agreement(fp32, logits(out / "model.onnx", eval_feed))
    assert within_bounds(relative, agree, correlation), (relative, agree, correlation)


def test_bounds_reject_miscalibrated_scales(exported, eval_feed):
    from onnx import numpy_helper

    model = onnx.load(str(exported["ort-static-int8"] / "model.onnx"))
    initializers = {t.name: t for t in model.graph.initializer}
    for name in {n.input[1] for n in model.graph.node if n.op_type == "QuantizeLinear"}:
        scaled = numpy_helper.to_array(initializers[name]) * np.float32(4.0)
        initializers[name].CopyFrom(numpy_helper.from_array(scaled, name))
    fp32 = logits(exported["onnx-fp32"] / "model.onnx", eval_feed)
    assert not within_bounds(*agreement(fp32, logits(model.SerializeToString(), eval_feed)))


def expected_exclusions(model) -> dict[str, set[str]]:
    """The tiny BERT's fragile nodes, found by a direct reading of its (opset 18) structure."""
    nodes = list(model.graph.node)
    producer = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    initializers = {t.name for t in model.graph.initializer}

    def only_consumer(node):
        (found,) = consumers[node.output[0]]
        return found

    def upstream_inputs(tensor: str) -> set[str]:
        seen, stack, inputs = set(), [tensor], set()
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in producer:
                stack.extend(producer[name].input)
            else:
                inputs.add(name)
        return inputs

    gelu = set()
    for erf in (n for n in nodes if n.op_type == "Erf"):
        div, add = producer[erf.input[0]], only_consumer(erf)
        mul = only_consumer(add)
        chain = [div, erf, add, mul, only_consumer(mul)]
        assert [n.op_type for n in chain] == ["Div", "Erf", "Add", "Mul", "Mul"]
        gelu |= {n.name for n in chain}
    mask_add = set()
    for softmax in (n for n in nodes if n.op_type == "Softmax"):
        add = producer[softmax.input[0]]
        assert add.op_type == "Add"
        assert {producer[i].op_type for i in add.input} >= {"MatMul"}
        assert any("attention_mask" in upstream_inputs(i) for i in add.input if producer[i].op_type != "MatMul")
        mask_add.add(add.name)
    norms = [n for n in nodes if n.op_type == "LayerNormalization"]
    embedding_add, stack = set(), [producer[norms[0].input[0]]]
    while stack:
        node = stack.pop()
        if node.op_type == "Add":
            embedding_add.add(node.name)
            stack.extend(producer[i] for i in node.input)
        else:
            assert node.op_type == "Gather" and node.input[0] in initializers
    found = {"layernorm": {n.name for n in norms}, "gelu": gelu, "mask_add": mask_add, "embedding_add": embedding_add}
    return {**found, "max_pooled": set()}  # no max-pool over time in a transformer


def test_exclusion_finder_picks_the_fragile_nodes_and_no_matmul(exported):
    model = onnx.load(str(exported["onnx-fp32"] / "model.onnx"))
    found = {kind: set(names) for kind, names in excluded_nodes(model).items()}
    expected = expected_exclusions(model)
    layers = 2
    sizes = {"layernorm": 2 * layers + 1, "gelu": 5 * layers, "mask_add": layers, "embedding_add": 2, "max_pooled": 0}
    assert {kind: len(names) for kind, names in expected.items()} == sizes
    assert found == expected
    matmuls = {n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm")}
    assert matmuls and not matmuls & set().union(*found.values())


def test_no_dequantize_feeds_excluded_or_float_nodes(exported):
    fp32 = onnx.load(str(exported["onnx-fp32"] / "model.onnx"))
    excluded = set().union(*excluded_nodes(fp32).values())
    model = onnx.load(str(exported["ort-static-int8"] / "model.onnx"))
    by_name = {n.name: n for n in model.graph.node}
    producer = {o: n for n in model.graph.node for o in n.output}
    assert excluded <= by_name.keys()
    for name in excluded:
        fed_by = {producer[i].op_type for i in by_name[name].input if i in producer}
        assert "DequantizeLinear" not in fed_by, name
    # every MatMul/Gemm was quantized, and dequantized activations reach nothing else
    matmuls = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm")]
    assert matmuls and all(
        any(producer.get(i) and producer[i].op_type == "DequantizeLinear" for i in n.input) for n in matmuls
    )
    activation_dq = {
        n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in producer
    }
    assert all(n.op_type in ("MatMul", "Gemm") for n in model.graph.node if activation_dq & set(n.input))


class RecordingTokenizer:
    """A real tokenizer that remembers every text it was asked to tokenize."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.seen: list[str] = []

    def __call__(self, texts, **kwargs):
        self.seen.extend([texts] if isinstance(texts, str) else texts)
        return self.tokenizer(texts, **kwargs)


def test_calibration_reader_reads_only_the_calibration_part(model_dir):
    from transformers import AutoTokenizer

    marker = "zzz held out marker 999"
    texts = random_sentences(41, seed=2)
    probe = CalibrationData(tuple(texts), (0,) * len(texts), "probe", MAX_LENGTH)
    held_out = probe.sample(len(texts), "validation")[0]
    texts[texts.index(held_out[0])] = marker  # the permutation depends only on the count and seed
    data = CalibrationData(tuple(texts), (0,) * len(texts), "marked", MAX_LENGTH)
    assert marker in data.sample(len(texts), "validation")[0]
    calibration_texts = set(data.sample(len(texts), "calibration")[0])

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    spy = RecordingTokenizer(tokenizer)
    reader = CalibrationReader(data, spy, INPUTS, samples=100_000, batch_size=4)
    assert set(spy.seen) == calibration_texts and marker not in spy.seen
    batches = list(iter(reader.get_next, None))
    assert len(batches) == len(reader) == -(-len(calibration_texts) // 4)
    decoded = {tokenizer.decode(row, skip_special_tokens=True) for b in batches for row in b["input_ids"]}
    assert decoded == calibration_texts
    # length-sorted, each batch padded only to its own longest sentence
    widths = [b["input_ids"].shape[1] for b in batches]
    assert widths == sorted(widths)
    assert all(b["attention_mask"].sum(1).max() == b["input_ids"].shape[1] for b in batches)
    assert all(set(b) == set(INPUTS) and b["input_ids"].dtype == np.int64 for b in batches)


def test_options_are_validated():
    from pydantic import ValidationError

    from exporters.ort_static_int8 import EXPORTER

    defaults = EXPORTER.Options()
    assert (defaults.method, defaults.samples, defaults.batch_size, defaults.per_channel) == ("minmax", 256, 8, True)
    assert EXPORTER.Options(method="entropy", samples=10).method == "entropy"
    for bad in ({"method": "kl"}, {"samples": 0}, {"batch_size": 0}, {"percentile": 0.0}, {"calibrate": "minmax"}):
        with pytest.raises(ValidationError):
            EXPORTER.Options(**bad)


def test_exclusion_finder_handles_decomposed_layernorm(tmp_path, model_dir):
    """Below opset 17 LayerNorm is exported as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add."""
    import warnings

    from optimum.exporters.onnx import main_export

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main_export(str(model_dir), output=tmp_path, task="text-classification", no_post_process=True, opset=14)
    model = onnx.load(str(tmp_path / "model.onnx"))
    assert not [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    expected = set()
    for power in (n for n in model.graph.node if n.op_type == "Pow"):
        sub = producer[power.input[0]]
        group = [producer[sub.input[1]], sub, power]
        for _ in range(6):  # variance mean, + eps, sqrt, divide, * gamma, + beta
            (following,) = consumers[group[-1].output[0]]
            group.append(following)
        types = ["ReduceMean", "Sub", "Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul", "Add"]
        assert [n.op_type for n in group] == types
        expected |= {n.name for n in group}
    found = excluded_nodes(model)
    assert len(expected) == 9 * 5 and set(found["layernorm"]) == expected
    assert [len(found[kind]) for kind in ("gelu", "mask_add", "embedding_add")] == [10, 2, 2]


def test_export_leaves_nothing_in_the_working_directory(tmp_path, model_dir, calibration, monkeypatch):
    """ORT's symbolic shape inference, when it gives up, saves a debug model into the current folder."""
    from harness.registry import exporters

    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    exporter = exporters().get("ort-static-int8")
    out = tmp_path / "out"
    out.mkdir()
    exporter.export(model_dir, out, exporter.Options(samples=16), calibration)
    assert (out / "model.onnx").is_file()
    assert sorted(p.name for p in work.iterdir()) == []
