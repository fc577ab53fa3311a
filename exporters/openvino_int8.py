"""NNCF post-training static INT8: a QDQ ONNX model that OpenVINO and ONNX Runtime both run.

NNCF quantizes the FP32 ONNX graph directly (QuantizeLinear/DequantizeLinear pairs), so one artifact
serves both runtimes; OpenVINO turns the pairs into FakeQuantize when it reads the file.

Two settings matter for accuracy. ``model_type=TRANSFORMER`` confines quantizers to MatMul/Gemm inputs;
without it NNCF also quantizes the elementwise ops, including the additive attention mask (0 where a
token is real, float32 min where it is padding). Calibrated on unpadded sentences that mask quantizer
learns a range of about +-4e-5 and clamps the padding bias to nothing, so padded batches attend to
padding; calibrated on padded sentences its range overflows to an infinite scale and every prediction
is the same class. The mask path is also put in an ignored scope taken from the graph, so a graph whose
attention NNCF's transformer patterns miss still keeps its mask in float.

Accuracy control stays ONNX too: NNCF 3.4 restores accuracy on ONNX models (see ``accuracy_validator``).
ONNX Runtime runs the QDQ graph correctly but slowly (it fuses no DequantizeLinear->MatMul whose output
stays float, so it dequantizes every weight on every call); the artifact is meant for OpenVINO, where
it was as fast as the same quantization saved as OpenVINO IR.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from exporters._common import copy_tokenizer, export_onnx, max_pooled_matmuls
from harness.adapters import CalibrationData, Exporter, NotApplicable, Options
from harness.compress.lightweight_options import MODEL_TYPES

MASK_INPUT = "attention_mask"
NOTHING_IN_INT8 = (
    "NNCF would leave nothing in INT8: the model's only MatMul/Gemm layers are a classifier head after a max-pool, "
    "kept float because NNCF's INT8 head of the BiLSTM student scores at chance"
)
# The mask path ends where the masked scores are normalised; the layers it meets are never ignored
# (Conv: the lightweight CNN student masks its embeddings before its convolutions).
MASK_PATH_STOPS = frozenset({"Softmax", "MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "Conv"})


class OpenVinoInt8Options(Options):
    samples: int = Field(300, ge=1, le=100_000)  # calibration sentences drawn from the train split
    preset: Literal["performance", "mixed"] = "mixed"  # mixed: asymmetric activations (NNCF's transformer default)
    fast_bias_correction: bool = True
    subset_size: int | None = Field(None, ge=1)  # sentences NNCF takes statistics on; None: all ``samples``
    accuracy_control: bool = False
    max_drop: float = Field(0.01, gt=0.0, lt=1.0)  # absolute accuracy drop allowed on the validation part
    validation_samples: int = Field(300, ge=1, le=100_000)

    @model_validator(mode="after")
    def _consistent(self) -> OpenVinoInt8Options:
        if self.subset_size is not None and self.subset_size > self.samples:
            raise ValueError(f"subset_size ({self.subset_size}) exceeds samples ({self.samples})")
        stray = {"max_drop", "validation_samples"} & self.model_fields_set
        if stray and not self.accuracy_control:
            raise ValueError(f"{', '.join(sorted(stray))} only apply with accuracy_control: true")
        return self


def model_inputs(model: Any) -> dict[str, np.dtype]:
    """The graph's inputs and the numpy dtype each expects (optimum exports int64)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    initializers = {i.name for i in model.graph.initializer}
    return {
        i.name: np.dtype(tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
        for i in model.graph.input
        if i.name not in initializers
    }


def encoder(tokenizer: Any, inputs: dict[str, np.dtype], max_length: int) -> Callable[[str], dict[str, np.ndarray]]:
    """One sentence to a batch-1 feed: unpadded, so padding never enters the activation statistics."""

    def encode(text: str) -> dict[str, np.ndarray]:
        encoded = tokenizer(text, truncation=True, max_length=max_length, return_tensors="np")
        ids = encoded["input_ids"]
        # Single-segment tokenizers (or ones without segment ids) still feed a graph that has them.
        defaults = {"attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        feed = {}
        for name, dtype in inputs.items():
            value = encoded.get(name, defaults.get(name))
            if value is None:
                raise ValueError(f"the ONNX model wants input {name!r}, which the tokenizer does not make")
            feed[name] = np.asarray(value, dtype=dtype)
        return feed

    return encode


def mask_path_nodes(model: Any) -> list[str]:
    """Names of the nodes the attention mask flows through before it is added to the scores (that
    Add included), found by walking forward from the mask input."""
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: dict[str, None] = {}
    frontier = [MASK_INPUT]
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.op_type in MASK_PATH_STOPS or node.name in found:
                continue
            found[node.name] = None
            frontier.extend(node.output)
    return list(found)


def name_nodes(model: Any) -> None:
    """NNCF addresses nodes by name, so unnamed ones get one the ignored scope can list."""
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"unnamed_{node.op_type}_{index}"


def accuracy_validator(inputs: Sequence[str]) -> Callable[[Any, Iterable[Any]], tuple[float, list[float]]]:
    """NNCF's ``validation_fn``: accuracy on (feed, label) items, with each item's 0/1 score. The
    per-item scores put the accuracy restorer in metric mode, which ranks quantizers by the accuracy
    they cost; its logits mode has no ONNX implementation in NNCF 3.4 (UnsupportedBackendError).
    The artifact is judged on ONNX Runtime: in-memory, and it scored as OpenVINO did on SST-2."""
    session_for: list[Any] = []  # [model, session]: the ranker validates each model item by item

    def validate(model: Any, items: Iterable[Any]) -> tuple[float, list[float]]:
        import onnxruntime

        if not session_for or session_for[0] is not model:
            session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            session_for[:] = [model, session]
        session = session_for[1]
        correct = [
            float(session.run(None, {name: feed[name] for name in inputs})[0][0].argmax() == label)
            for feed, label in items
        ]
        return float(np.mean(correct)) if correct else 0.0, correct

    return validate


class OpenVinoInt8(Exporter):
    name = "openvino-int8"
    format = "onnx"
    precision = "int8"
    needs_calibration = True
    int8_attention = True  # every MatMul is quantized, the attention products included
    # fixed activation scales: a sentence scores the same alone, padded or in any batch (tested)
    batch_invariant = True
    Options = OpenVinoInt8Options

    def model_unavailable_reason(self, model_type: str) -> str | None:
        from backends.openvino import UNSUPPORTED_MODELS  # NNCF runs the graph on OpenVINO to calibrate

        if model_type == MODEL_TYPES["bilstm"]:
            return NOTHING_IN_INT8 + " (the BiLSTM student's LSTM is not a layer NNCF quantizes)"
        return UNSUPPORTED_MODELS.get(model_type)

    # onnxruntime: NNCF's ONNX backend collects its statistics by running the graph in it
    requires = ("nncf", "openvino", "optimum.exporters.onnx", "onnx", "onnxruntime")

    def export(self, source: Path, out_dir: Path, options: OpenVinoInt8Options, calibration: CalibrationData) -> None:
        import nncf
        import onnx
        from transformers import AutoTokenizer

        texts, _ = calibration.sample(options.samples, "calibration")
        if not texts:
            raise ValueError("the calibration part of the train split is empty")
        staging = out_dir / "fp32"
        model = onnx.load(export_onnx(source, staging))
        name_nodes(model)
        inputs = model_inputs(model)
        encode = encoder(AutoTokenizer.from_pretrained(source), inputs, calibration.max_length)
        ignored = (mask_path_nodes(model) if MASK_INPUT in inputs else []) + max_pooled_matmuls(model, head=True)
        common = {
            "preset": nncf.QuantizationPreset(options.preset),
            "subset_size": min(options.subset_size or options.samples, len(texts)),
            "fast_bias_correction": options.fast_bias_correction,
            "model_type": nncf.ModelType.TRANSFORMER,
            # NNCF's graph drops some of these (e.g. a Cast to bool), and strict matching would refuse them.
            "ignored_scope": nncf.IgnoredScope(names=ignored, validate=False),
        }
        calibration_set = nncf.Dataset(texts, encode)
        nncf.set_log_level(logging.WARNING)  # its INFO lines list every node it leaves alone
        if options.accuracy_control:
            val_texts, val_labels = calibration.sample(options.validation_samples, "validation")
            items = [(encode(text), label) for text, label in zip(val_texts, val_labels)]
            quantized = nncf.quantize_with_accuracy_control(
                model,
                calibration_set,
                nncf.Dataset(items, lambda item: item[0]),
                accuracy_validator(list(inputs)),
                max_drop=options.max_drop,
                **common,
            )
        else:
            quantized = nncf.quantize(model, calibration_set, **common)
        if not any(node.op_type == "QuantizeLinear" for node in quantized.graph.node):
            raise NotApplicable(NOTHING_IN_INT8)
        onnx.save(quantized, out_dir / "model.onnx")
        shutil.copy(staging / "config.json", out_dir / "config.json")
        shutil.rmtree(staging)
        copy_tokenizer(source, out_dir)


EXPORTER = OpenVinoInt8()
