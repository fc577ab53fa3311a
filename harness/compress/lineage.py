"""Describe a (possibly compressed) BERT-family classifier: shape, size, compute, sparsity.

Used to put "what was removed" next to every benchmark number.
"""

from __future__ import annotations

from pathlib import Path

import torch


def _load(model_or_dir: torch.nn.Module | str | Path) -> torch.nn.Module:
    if isinstance(model_or_dir, torch.nn.Module):
        return model_or_dir
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(model_or_dir)


def encoder_flops_per_token(
    hidden: int, heads_per_layer: list[int], head_dim: int, ffn_per_layer: list[int], seq_len: int
) -> int:
    """FLOPs (= 2 x multiply-accumulates) per token for the encoder stack at ``seq_len``.

    Per layer, with a = heads*head_dim (attention width after head pruning), f = FFN width:
      Q, K, V projections   3*h*a MACs
      attention output      a*h
      scores Q.K^T          seq_len*a   (one dot product of width head_dim per key, per head)
      probs x V             seq_len*a
      FFN in + out          2*h*f
    Biases, softmax, LayerNorm, GELU, embeddings, pooler and classifier are ignored: they are
    O(h) per token or once per sequence and below 1% for these shapes.
    """
    macs = 0
    for n_heads, f in zip(heads_per_layer, ffn_per_layer):
        a = n_heads * head_dim
        macs += 4 * hidden * a + 2 * seq_len * a + 2 * hidden * f
    return 2 * macs


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
