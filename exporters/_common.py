"""Shared helpers for exporters (modules starting with '_' are not adapters)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from harness.compress.lightweight_options import MODEL_TYPES

# ONNX inputs and dynamic axes named as optimum names them, so the backends feed every export alike
STUDENT_INPUTS = ("input_ids", "attention_mask")
STUDENT_OPSET = 17


def load_hf_classifier(source: Path) -> Any:
    from harness.models.classifier import load_classifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_classifier(source).eval()


def copy_tokenizer(source: Path, out_dir: Path) -> None:
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(source).save_pretrained(out_dir)


def is_lightweight(source: Path) -> bool:
    """Whether ``source`` holds one of the harness's own non-transformer students."""
    config = json.loads((Path(source) / "config.json").read_text())
    return config.get("model_type") in MODEL_TYPES.values()


def export_onnx(source: Path, out_dir: Path) -> Path:
    """FP32 ONNX (model.onnx and config.json in ``out_dir``); returns the model file.

    Transformers go through optimum's exporter; the lightweight students, which optimum does not
    know, through torch's."""
    if is_lightweight(source):
        return _export_student_onnx(source, out_dir)
    from optimum.exporters.onnx import main_export

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main_export(str(source), output=out_dir, task="text-classification", no_post_process=True, device="cpu")
    return out_dir / "model.onnx"


def _logits_only(model: Any) -> Any:
    """The student as a module from its ONNX inputs to its logits (the exporter wants tensors out)."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    return LogitsOnly()


def _export_student_onnx(source: Path, out_dir: Path) -> Path:
    import torch

    model = load_hf_classifier(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    # a padded example, so no branch of the trace is specialised to equal lengths
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    axes = {name: {0: "batch_size", 1: "sequence_length"} for name in STUDENT_INPUTS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the TorchScript exporter: it writes nn.LSTM as one ONNX LSTM op with dynamic batch and
        # length (the dynamo exporter needs onnxscript, which the harness does not install)
        torch.onnx.export(
            _logits_only(model),
            (ids, mask),
            str(path),
            dynamo=False,
            input_names=list(STUDENT_INPUTS),
            output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "batch_size"}},
            opset_version=STUDENT_OPSET,
        )
    model.config.save_pretrained(out_dir)
    return path


# ops that only move or join values: a pooled vector passes through them unchanged
_LAYOUT_OPS = frozenset({"Concat", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity"})


def max_pooled_matmuls(model: Any, head: bool = False) -> list[str]:
    """Names of the MatMul/Gemm nodes that read a max-pool over time (a ``ReduceMax``, through layout
    ops only): the lightweight students' classifier inputs; with ``head``, every MatMul/Gemm after
    the pool (their whole classifier). Static INT8 keeps them float: OpenVINO computes ORT's quantized
    max-pooled input wrongly (the BiLSTM student's accuracy falls from 86% to 56-57%, and is back to
    ORT's with that one Gemm left float), and NNCF's quantized classifier head of the BiLSTM scores
    at chance on every runtime (with the head float, its output equals FP32's). It costs nothing:
    the LSTM and convolutions carry the arithmetic."""
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: dict[str, None] = {}
    frontier = [n.output[0] for n in model.graph.node if n.op_type == "ReduceMax"]
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.op_type in ("MatMul", "Gemm") and node.name not in found:
                found[node.name] = None
                if head:
                    frontier.extend(node.output)
            elif head or node.op_type in _LAYOUT_OPS:
                frontier.extend(node.output)
    return list(found)
