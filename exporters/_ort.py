"""ONNX Runtime helpers shared by the ORT exporters (modules starting with '_' are not adapters;
their source is part of every exporter's code version, so editing them rebuilds those exports)."""

from __future__ import annotations

import json
from pathlib import Path

# an ONNX graph with ONNX Runtime's contrib ops (Attention, SkipLayerNormalization): only ORT loads it
ORT_ONLY_FORMAT = "onnx-ort"


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
