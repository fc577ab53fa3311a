"""ONNX Runtime dynamic INT8, optionally on top of ORT's transformer graph optimisation."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exporters._common import copy_tokenizer, export_onnx
from exporters._ort import ORT_ONLY_FORMAT, fuse_transformer_graph, ort_model_type
from harness.adapters import Exporter, Options


class OrtInt8Options(Options):
    optimize: bool = False
    per_channel: bool = False
    reduce_range: bool = False


class OrtInt8(Exporter):
    name = "ort-int8"
    format = "onnx"
    precision = "int8"
    Options = OrtInt8Options
    requires = ("optimum.exporters.onnx", "onnx", "onnxruntime")

    def format_for(self, options: Mapping[str, Any]) -> str:
        # the fused graph uses com.microsoft ops (Attention, SkipLayerNormalization): ONNX Runtime only
        return ORT_ONLY_FORMAT if options.get("optimize") else self.format

    def export(self, source: Path, out_dir: Path, options: OrtInt8Options) -> None:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        if options.optimize:
            ort_model_type(source)  # an architecture ORT cannot fuse is n/a before any export work
        staging = out_dir / "fp32"
        fp32 = export_onnx(source, staging)
        extra = {}
        if options.optimize:
            fused = staging / "fused.onnx"
            fuse_transformer_graph(fp32, fused, staging / "config.json")
            fp32 = fused
            # Fused ops carry no type info for the quantiser; without this it cannot type their outputs.
            extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
        logging.getLogger().setLevel(logging.ERROR)  # the quantiser logs a pre-processing hint at WARNING
        quantize_dynamic(
            str(fp32),
            str(out_dir / "model.onnx"),
            weight_type=QuantType.QInt8,
            per_channel=options.per_channel,
            reduce_range=options.reduce_range,
            extra_options=extra,
        )
        shutil.copy(staging / "config.json", out_dir / "config.json")
        shutil.rmtree(staging)
        copy_tokenizer(source, out_dir)


EXPORTER = OrtInt8()
