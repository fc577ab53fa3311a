"""FP32 ONNX through optimum's exporter."""

from __future__ import annotations

from pathlib import Path

from exporters._common import copy_tokenizer, export_onnx
from harness.adapters import Exporter, Options


class OnnxFP32(Exporter):
    name = "onnx-fp32"
    format = "onnx"
    batch_invariant = True
    requires = ("optimum.exporters.onnx", "onnx")

    def export(self, source: Path, out_dir: Path, options: Options) -> None:
        export_onnx(source, out_dir)
        copy_tokenizer(source, out_dir)


EXPORTER = OnnxFP32()
