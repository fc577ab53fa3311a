"""ONNX Runtime helpers shared by the ORT exporters (modules starting with '_' are not adapters;
their source is part of every exporter's code version, so editing them rebuilds those exports)."""

from __future__ import annotations

import json
from pathlib import Path

# an ONNX graph with ONNX Runtime's contrib ops (Attention, SkipLayerNormalization): only ORT loads it
ORT_ONLY_FORMAT = "onnx-ort"


def ort_model_type(source: Path) -> str:
    """The ONNX Runtime optimizer's model type for the model in ``source``, as optimum maps it
    (DistilBERT, RoBERTa, DeBERTa-v2, ELECTRA and MPNet all take the BERT fusions); raises
    ``NotApplicable`` for an architecture it has no fusions for."""
    from optimum.onnxruntime.utils import ORTConfigManager

    from harness.adapters import NotApplicable

    model_type = json.loads((Path(source) / "config.json").read_text()).get("model_type")
    try:
        return ORTConfigManager.get_model_ort_type(model_type)
    except KeyError:
        raise NotApplicable(f"ONNX Runtime's transformer optimizer has no graph fusions for {model_type!r}") from None


def fuse_transformer_graph(model_path: Path, out_path: Path, config_path: Path) -> None:
    from onnxruntime.transformers import optimizer
    from transformers import AutoConfig

    model_type = ort_model_type(config_path.parent)  # first: an unfusable model stops here
    # read through transformers, which maps each architecture's own names (DistilBERT's n_heads, dim)
    config = AutoConfig.from_pretrained(config_path.parent)
    fused = optimizer.optimize_model(
        str(model_path),
        model_type=model_type,
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        opt_level=1,
        use_gpu=False,
    )
    fused.save_model_to_file(str(out_path))
