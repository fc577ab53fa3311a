"""Describe a (possibly compressed) BERT-family classifier: shape, size, compute, sparsity.

Used to put "what was removed" next to every benchmark number.
"""

from __future__ import annotations

from pathlib import Path

import torch

from harness.measure.flops import encoder_flops_per_token


def _load(model_or_dir: torch.nn.Module | str | Path) -> torch.nn.Module:
    if isinstance(model_or_dir, torch.nn.Module):
        return model_or_dir
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(model_or_dir)


def describe_model(model_or_dir: torch.nn.Module | str | Path, seq_len: int = 128) -> dict:
    """Structural summary; ``model_or_dir`` is a loaded model or a save_pretrained directory.

    ``params_non_embedding`` = all parameters minus the embeddings module (so it includes the
    pooler and classifier head), the usual basis for comparing compressed encoders.
    """
    from harness.compress.prune import sparsity

    model = _load(model_or_dir)
    cfg = model.config
    base = model.base_model
    layers = list(base.encoder.layer)
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    heads = [int(layer.attention.self.num_attention_heads) for layer in layers]
    ffn = [int(layer.intermediate.dense.out_features) for layer in layers]
    total = sum(p.numel() for p in model.parameters())
    emb = sum(p.numel() for p in base.embeddings.parameters())
    return {
        "model_type": cfg.model_type,
        "layers": len(layers),
        "hidden": int(cfg.hidden_size),
        "heads": sum(heads),
        "heads_per_layer": heads,
        "ffn": sum(ffn),
        "ffn_per_layer": ffn,
        "params_total": int(total),
        "params_embedding": int(emb),
        "params_non_embedding": int(total - emb),
        "flops_per_token": encoder_flops_per_token(cfg.hidden_size, heads, head_dim, ffn, seq_len),
        "flops_seq_len": seq_len,
        "sparsity": sparsity(model),
        "distilled_from_layers": getattr(cfg, "distilled_from_layers", None),
        "pruned_heads": {int(k): sorted(v) for k, v in (cfg.pruned_heads or {}).items()},
    }
