"""ONNX Runtime helpers shared by the ORT exporters (modules starting with '_' are not adapters;
their source is part of every exporter's code version, so editing them rebuilds those exports)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

# an ONNX graph with ONNX Runtime's contrib ops (Attention, SkipLayerNormalization): only ORT loads it
ORT_ONLY_FORMAT = "onnx-ort"
# the fused ops that replace a layer's self-attention subgraph
ATTENTION_OPS = ("Attention", "MultiHeadAttention")


def ort_model_type(source: Path) -> str:
    """The ONNX Runtime optimizer's model type for the model in ``source``: the architecture's own
    (``harness.compress.architectures``; BERT, DistilBERT, RoBERTa and ELECTRA take the BERT fusions),
    else as optimum maps it; raises ``NotApplicable`` where no fusion covers its attention."""
    from optimum.onnxruntime.utils import ORTConfigManager

    from harness.adapters import NotApplicable
    from harness.compress.architectures import ARCHITECTURES

    model_type = json.loads((Path(source) / "config.json").read_text()).get("model_type")
    if model_type in ARCHITECTURES:
        arch = ARCHITECTURES[model_type]
        if arch.ort_model_type is None:
            raise NotApplicable(
                f"ONNX Runtime's transformer optimizer fuses no attention of {model_type}: {arch.ort_note}"
            )
        return arch.ort_model_type
    try:
        return ORTConfigManager.get_model_ort_type(model_type)
    except KeyError:
        raise NotApplicable(f"ONNX Runtime's transformer optimizer has no graph fusions for {model_type!r}") from None


def fuse_transformer_graph(model_path: Path, out_path: Path, config_path: Path) -> None:
    from transformers import AutoConfig

    model_type = ort_model_type(config_path.parent)  # first: an unfusable model stops here
    # read through transformers, which maps each architecture's own names (DistilBERT's n_heads, dim)
    config = AutoConfig.from_pretrained(config_path.parent)
    fuse(model_path, model_type, config).save_model_to_file(str(out_path))


def fuse(model_path: Path, model_type: str, config: Any) -> Any:
    """ORT's ``model_type`` fusions of ``model_path`` (an ``OnnxModel``); raises ``NotApplicable``
    unless they fused the attention of every layer: a "fused" variant with plain attention would
    misname what it measures."""
    from onnxruntime.transformers import optimizer

    from harness.adapters import NotApplicable

    fusion_log = logging.getLogger("onnxruntime.transformers")
    level = fusion_log.level
    fusion_log.setLevel(logging.ERROR)  # it warns for every pattern it does not find
    try:
        fused = optimizer.optimize_model(
            str(model_path),
            model_type=model_type,
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=1,
            use_gpu=False,
        )
    finally:
        fusion_log.setLevel(level)
    counts = {op: n for op, n in fused.get_fused_operator_statistics().items() if n}
    attention, layers = sum(counts.get(op, 0) for op in ATTENTION_OPS), int(config.num_hidden_layers)
    if attention != layers:
        others = ", ".join(f"{n} {op}" for op, n in sorted(counts.items())) or "nothing"
        raise NotApplicable(
            f"ONNX Runtime's {model_type!r} fusions fuse the attention of {attention} of {config.model_type}'s "
            f"{layers} layers (they fuse {others})"
        )
    return fused
