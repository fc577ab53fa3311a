"""Describe a (possibly compressed) encoder classifier: shape, size, compute, sparsity.

Used to put "what was removed" next to every benchmark number.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.compress.architectures import (
    architecture_of,
    embedding_modules,
    encoder_layers,
    ffn_width,
    head_size,
    heads_in,
)
from harness.measure.flops import encoder_flops_per_token


def _load(model_or_dir: torch.nn.Module | str | Path) -> torch.nn.Module:
    if isinstance(model_or_dir, torch.nn.Module):
        return model_or_dir
    from harness.models.classifier import load_classifier

    return load_classifier(model_or_dir)


def describe_model(model_or_dir: torch.nn.Module | str | Path, seq_len: int = 128) -> dict:
    """Structural summary; ``model_or_dir`` is a loaded model or a save_pretrained directory.

    ``params_non_embedding`` = all parameters minus the embedding modules (so it includes the
    pooler and classifier head), the usual basis for comparing compressed encoders. The embedding
    modules are each architecture's own (``Architecture.embeddings``): with ELECTRA's projection up
    to the hidden size and DeBERTa-v2's and MPNet's relative position tables.
    """
    from harness.compress.prune import sparsity

    model = _load(model_or_dir)
    cfg = model.config
    if cfg.model_type.startswith("harness-"):  # a BiLSTM or CNN student: no layers, heads or FFN
        from harness.compress.lightweight import describe_lightweight

        return describe_lightweight(model, seq_len)
    arch = architecture_of(model)
    layers = list(encoder_layers(model))
    head_dim = head_size(layers[0], arch)
    heads = [heads_in(layer, arch) for layer in layers]
    ffn = [ffn_width(layer, arch) for layer in layers]
    total = sum(p.numel() for p in model.parameters())
    emb = sum(p.numel() for module in embedding_modules(model) for p in module.parameters())
    return {
        "model_type": cfg.model_type,
        "layers": len(layers),
        "hidden": int(getattr(cfg, arch.hidden_key)),
        "heads": sum(heads),
        "heads_per_layer": heads,
        "head_dim": head_dim,
        "ffn": sum(ffn),
        "ffn_per_layer": ffn,
        "params_total": int(total),
        "params_embedding": int(emb),
        "params_non_embedding": int(total - emb),
        "flops_per_token": encoder_flops_per_token(int(getattr(cfg, arch.hidden_key)), heads, head_dim, ffn, seq_len),
        "flops_seq_len": seq_len,
        "sparsity": sparsity(model),
        "distilled_from_layers": getattr(cfg, "distilled_from_layers", None),
        "pruned_heads": {int(k): sorted(v) for k, v in (cfg.pruned_heads or {}).items()},
    }
