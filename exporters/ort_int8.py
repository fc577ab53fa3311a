"""ONNX Runtime dynamic INT8, optionally on top of ORT's transformer graph optimisation."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from exporters._common import copy_tokenizer, export_onnx
from harness.adapters import Exporter, Options


class OrtInt8Options(Options):
    optimize: bool = False
    per_channel: bool = False
    reduce_range: bool = False


def fuse_transformer_graph(model_path: Path, out_path: Path, config_path: Path) -> None:
    from onnxruntime.transformers import optimizer

    config = json.loads(config_path.read_text())
    fused = optimizer.optimize_model(
        str(model_path),
        model_type="bert",
        num_heads=config.get("num_attention_heads", 0),
        hidden_size=config.get("hidden_size", 0),
        opt_level=1,
        use_gpu=False,
    )
    fused.save_model_to_file(str(out_path))


class OrtInt8(Exporter):
    name = "ort-int8"
    format = "onnx"
    precision = "int8"
    Options = OrtInt8Options
    requires = ("optimum.exporters.onnx", "onnx", "onnxruntime")

    def export(self, source: Path, out_dir: Path, options: OrtInt8Options) -> None:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

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
