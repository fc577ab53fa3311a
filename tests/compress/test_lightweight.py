"""The non-transformer students (BiLSTM, CNN): padding invariance, the teacher's embedding table,
save and reload, ONNX and dynamic-INT8 export, distillation, and their options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from exporters._common import export_onnx
from harness.compress.distill import distill
from harness.compress.lightweight import build_student, describe_lightweight, reading_orders, teacher_table
from harness.compress.lightweight_options import LightweightOptions
from harness.compress.options import DistillOptions
from harness.models.classifier import load_classifier

TEXTS = ["a good movie", "bad", "it was not very good at all, sadly", "fine"]
SHAPES = {"bilstm": {"kind": "bilstm", "hidden": 8}, "cnn": {"kind": "cnn", "hidden": 8, "filters": 6}}


@pytest.fixture(scope="module")
def teacher(tiny_model_dir: Path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoModelForSequenceClassification.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(
        tiny_model_dir
    )


def _student(teacher, kind: str, **extra):
    torch.manual_seed(1)
    return build_student(teacher[0], LightweightOptions(**SHAPES[kind], **extra), num_labels=2)


def _logits(model, batch) -> np.ndarray:
    with torch.no_grad():
        return model(**batch).logits.numpy()


def test_reading_orders_match_hand_computed_indices() -> None:
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 1, 1, 1]], dtype=torch.bool)
    forward, backward, valid = reading_orders(mask)
    assert forward.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3], [1, 2, 3, 3]]
    assert backward.tolist() == [[2, 1, 0, 0], [1, 0, 0, 0], [3, 2, 1, 0]]
    assert valid.tolist() == [[True, True, True, False], [True, True, False, False], [True, True, True, False]]


@pytest.mark.parametrize("kind", ["bilstm", "cnn"])
def test_a_sentences_logits_do_not_depend_on_its_padding(teacher, kind: str) -> None:
    model = _student(teacher, kind)
    tokenizer = teacher[1]
    alone = np.concatenate([_logits(model, tokenizer([text], return_tensors="pt")) for text in TEXTS])
    right = _logits(model, tokenizer(TEXTS, padding="max_length", max_length=48, return_tensors="pt"))
    tokenizer.padding_side = "left"
    try:
        left = _logits(model, tokenizer(TEXTS, padding=True, return_tensors="pt"))
    finally:
        tokenizer.padding_side = "right"
    np.testing.assert_allclose(right, alone, atol=1e-5)
    np.testing.assert_allclose(left, alone, atol=1e-5)
    assert np.abs(alone[0] - alone[1]).max() > 1e-4  # different sentences, different logits


def test_the_embedding_table_is_the_teachers_or_its_principal_coordinates(teacher) -> None:
    table = teacher[0].get_input_embeddings().weight.detach()
    full, init = teacher_table(teacher[0], None)
    assert init == "teacher" and torch.equal(full, table)
    reduced, init = teacher_table(teacher[0], 8)
    assert init == "teacher-pca-8" and reduced.shape == (table.shape[0], 8)
    # principal coordinates: centred, uncorrelated, in decreasing variance, and no other 8 orthonormal
    # directions keep more of the table's variance than the top 8
    gram = (reduced.T @ reduced).double()
    np.testing.assert_allclose(reduced.mean(dim=0).numpy(), 0, atol=1e-5)
    assert torch.allclose(gram - torch.diag(gram.diagonal()), torch.zeros_like(gram), atol=1e-3 * gram.max())
    assert torch.all(gram.diagonal()[:-1] >= gram.diagonal()[1:])
    centred = (table - table.mean(dim=0)).double()
    random_axes, _ = torch.linalg.qr(
        torch.randn(table.shape[1], 8, dtype=torch.float64, generator=torch.manual_seed(0))
    )
    assert gram.trace() >= (centred @ random_axes).pow(2).sum()
    with pytest.raises(ValueError, match="exceeds the teacher's embedding width"):
        teacher_table(teacher[0], table.shape[1] + 1)
    student = _student(teacher, "cnn", embedding_dim=8)
    assert torch.equal(student.embeddings.weight.detach(), reduced)


@pytest.mark.parametrize("kind", ["bilstm", "cnn"])
def test_saved_student_reloads_and_its_onnx_export_matches_eager(teacher, kind: str, tmp_path: Path) -> None:
    import onnxruntime

    model = _student(teacher, kind)
    model.save_pretrained(tmp_path / "model", safe_serialization=True)
    teacher[1].save_pretrained(tmp_path / "model")
    reloaded = load_classifier(tmp_path / "model").eval()
    path = export_onnx(tmp_path / "model", tmp_path / "onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert not any(node.op_type == "LSTM" and "sequence_lens" in node.input for node in _nodes(path))
    for batch in (
        teacher[1](TEXTS, padding=True, return_tensors="np"),  # the dynamic width of the longest row
        teacher[1](TEXTS[:1], padding="max_length", max_length=64, return_tensors="np"),
    ):
        eager = _logits(model, {k: torch.from_numpy(batch[k]) for k in ("input_ids", "attention_mask")})
        np.testing.assert_array_equal(_logits(reloaded, {k: torch.from_numpy(v) for k, v in batch.items()}), eager)
        ort = session.run(None, {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")})[0]
        np.testing.assert_allclose(ort, eager, atol=1e-5)


@pytest.mark.parametrize("kind", ["bilstm", "cnn"])
def test_static_int8_keeps_the_max_pooled_classifier_input_float_and_openvino_agrees(
    teacher, kind: str, tmp_path: Path
) -> None:
    import onnx
    import onnxruntime

    from exporters._common import max_pooled_matmuls
    from exporters.ort_static_int8 import OrtStaticInt8
    from harness.adapters import Artifact, CalibrationData
    from harness.registry import backends

    model = _student(teacher, kind)
    model.save_pretrained(tmp_path / "model", safe_serialization=True)
    teacher[1].save_pretrained(tmp_path / "model")
    fp32 = onnx.load(str(export_onnx(tmp_path / "model", tmp_path / "onnx")))
    pooled = max_pooled_matmuls(fp32)
    nodes = {n.name: n for n in fp32.graph.node}
    producer = {o: n for n in fp32.graph.node for o in n.output}
    # the classifier's first Gemm, whose input is the max over time (joined across kernels for the CNN)
    assert len(pooled) == 1 and nodes[pooled[0]].op_type == "Gemm"
    head = max_pooled_matmuls(fp32, head=True)  # the whole classifier: Linear, ReLU, Linear
    assert head[0] == pooled[0] and [nodes[name].op_type for name in head] == ["Gemm", "Gemm"]
    source = producer[nodes[pooled[0]].input[0]]
    assert source.op_type == ("ReduceMax" if kind == "bilstm" else "Concat")
    texts = tuple(TEXTS * 4)
    calibration = CalibrationData(texts, (0, 1) * 8, "k", 32)
    (tmp_path / "int8").mkdir()
    OrtStaticInt8().export(tmp_path / "model", tmp_path / "int8", OrtStaticInt8.Options(), calibration)
    quantized = onnx.load(str(tmp_path / "int8" / "model.onnx"))
    gemms = [n for n in quantized.graph.node if n.op_type == "Gemm"]
    made = {o: n.op_type for n in quantized.graph.node for o in n.output}
    # the pooled Gemm reads float activations; the one after it reads dequantized ones
    assert [made.get(n.input[0]) for n in gemms] == [source.op_type, "DequantizeLinear"]
    batch = teacher[1](TEXTS, padding="max_length", truncation=True, max_length=16, return_tensors="np")
    feed = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
    ort = onnxruntime.InferenceSession(str(tmp_path / "int8" / "model.onnx"), providers=["CPUExecutionProvider"])
    session = backends().get("openvino").load(Artifact(tmp_path / "int8", "onnx"), "cpu", 1)
    openvino = session.logits(session.run(session.prepare(feed)))
    np.testing.assert_allclose(openvino, ort.run(None, feed)[0], atol=1e-3)


def _nodes(path: Path):
    import onnx

    return onnx.load(str(path)).graph.node


def test_dynamic_int8_export_reloads_the_quantised_lstm(teacher, tmp_path: Path) -> None:
    from exporters.torch_dynamic_int8 import TorchDynamicInt8, load_quantized, quantize_linear_layers
    from harness.adapters import Options

    model = _student(teacher, "bilstm")
    model.save_pretrained(tmp_path / "model", safe_serialization=True)
    teacher[1].save_pretrained(tmp_path / "model")
    (tmp_path / "int8").mkdir()
    TorchDynamicInt8().export(tmp_path / "model", tmp_path / "int8", Options())
    loaded = load_quantized(tmp_path / "int8")
    assert type(loaded.lstm_forward).__module__.startswith("torch.ao.nn.quantized.dynamic")
    batch = teacher[1](TEXTS, padding=True, return_tensors="pt")
    expected = _logits(quantize_linear_layers(load_classifier(tmp_path / "model").eval()), batch)
    np.testing.assert_array_equal(_logits(loaded, batch), expected)
    np.testing.assert_allclose(expected, _logits(model, batch), atol=0.05)


def test_distilling_a_cnn_student_learns_the_teachers_decisions(tiny_model_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    words = ["good", "bad"]
    texts = [f"the {words[i]} film {rng.integers(100)}" for i in rng.integers(0, 2, 240)]
    positive = np.array(["good" in t for t in texts])
    # a teacher that is sure of itself: the soft targets carry the same decision as the labels
    logits = np.stack([np.where(positive, -3.0, 3.0), np.where(positive, 3.0, -3.0)], axis=1).astype(np.float32)
    options = DistillOptions(
        student={"kind": "cnn", "filters": 16, "hidden": 16, "kernel_sizes": [3]},
        epochs=6,
        learning_rate=1e-2,
        batch_size=16,
        bf16=False,
        max_length=24,
    )
    report = distill(
        tiny_model_dir, texts, positive.astype(int).tolist(), options, tmp_path / "cnn", logits, texts[:60],
        positive[:60].astype(int).tolist(),
    )  # fmt: skip
    assert report["validation_accuracy"] >= 0.95
    student = load_classifier(tmp_path / "cnn")
    assert student.config.model_type == "harness-cnn"
    assert describe_lightweight(student)["kernel_sizes"] == [3]


def test_describe_counts_parameters_and_hand_computed_flops(teacher) -> None:
    width = teacher[0].config.hidden_size  # 32: the table is copied whole
    bilstm = describe_lightweight(_student(teacher, "bilstm"))
    # 2 directions x 4 gates x 8 units x (32 inputs + 8 recurrent) MACs, 2 FLOPs each
    assert bilstm["flops_per_token"] == 2 * 2 * 4 * 8 * (width + 8)
    assert bilstm["params_embedding"] == teacher[0].config.vocab_size * width
    lstm = 2 * (4 * 8 * width + 4 * 8 * 8 + 2 * 4 * 8)  # two one-way LSTMs: input, recurrent, 2 biases
    mlp = 2 * 8 * 8 + 8 + 8 * 2 + 2
    assert bilstm["params_non_embedding"] == lstm + mlp
    cnn = describe_lightweight(_student(teacher, "cnn"))
    assert cnn["flops_per_token"] == 2 * 6 * width * (3 + 5)
    assert (cnn["layers"], cnn["heads"], cnn["ffn"]) == (1, 0, 0)


def test_lightweight_options_reject_what_does_not_apply() -> None:
    with pytest.raises(ValidationError, match="filters only apply to kind: cnn"):
        LightweightOptions(kind="bilstm", filters=8)
    with pytest.raises(ValidationError, match="layers only apply to a transformer student"):
        DistillOptions(student={"kind": "cnn"}, layers=[0])
    with pytest.raises(ValidationError, match="cannot be searched"):
        DistillOptions(student={"kind": "cnn"}, search={"trials": 2, "space": {"student": {"choices": [None]}}})
    searched = DistillOptions(
        student={"kind": "cnn"}, search={"trials": 2, "space": {"alpha": {"low": 0.1, "high": 0.9}}}
    )
    assert searched.student.kind == "cnn"


def test_a_lightweight_student_cannot_be_compressed_further() -> None:
    from harness.errors import SuiteError
    from harness.suite import parse_suite

    raw = {
        "name": "s",
        "task": {"local": "sst2", "split": "validation", "text_column": "sentence", "label_column": "label"},
        "models": [
            {"name": "t", "source": "builtin:tiny-bert"},
            {"name": "lstm", "parent": "t", "distill": {"student": {"kind": "bilstm"}}},
            {"name": "p", "parent": "lstm", "prune": {}},
        ],
        "exporters": ["eager-fp32"],
        "backends": ["pytorch"],
    }
    with pytest.raises(SuiteError, match=r"models\[2\]\.parent: 'lstm' is a bilstm student"):
        parse_suite(raw, "s.yaml")


def test_nncf_int8_is_not_applicable_to_the_bilstm_student_with_the_reason() -> None:
    from exporters.openvino_int8 import OpenVinoInt8

    reason = OpenVinoInt8().model_unavailable_reason("harness-bilstm")
    assert reason is not None and "classifier head" in reason and "scores at chance" in reason
    assert OpenVinoInt8().model_unavailable_reason("harness-cnn") is None  # its convolutions quantize
