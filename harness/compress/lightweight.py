"""Non-transformer students (Tang et al. 2019): a BiLSTM or a multi-width 1-D CNN over token
embeddings initialised from the teacher's, max-pooled, then a small MLP.

Both are ``transformers`` models with their own config types, so they save with
``save_pretrained(safe_serialization=True)`` and load through the Auto classes once
:func:`register` has run: no remote code, no pickles.

A sentence's logits never depend on the padding around it (the harness scores one batch shape for
every shape): the BiLSTM reads each row within its own length in both directions, so padding only
ever follows the real tokens of a causal LSTM; the CNN sees padding as zero vectors, which is
exactly the zero "same" padding a sentence gets alone. Both pool over real tokens only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from harness.compress.lightweight_options import MODEL_TYPES, LightweightOptions

_DEFAULTS = LightweightOptions(kind="cnn")


class _StudentConfig(PretrainedConfig):
    def __init__(
        self,
        vocab_size: int = 30522,
        embedding_dim: int = 768,
        hidden: int = _DEFAULTS.hidden,
        dropout: float = _DEFAULTS.dropout,
        freeze_embeddings: bool = False,
        embedding_init: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.hidden = hidden
        self.dropout = dropout
        self.freeze_embeddings = freeze_embeddings
        self.embedding_init = embedding_init  # provenance: "teacher" (copied) or "teacher-pca-<n>"
        super().__init__(**kwargs)


class BiLSTMConfig(_StudentConfig):
    model_type = MODEL_TYPES["bilstm"]


class CNNConfig(_StudentConfig):
    model_type = MODEL_TYPES["cnn"]

    def __init__(self, kernel_sizes: list[int] | None = None, filters: int = _DEFAULTS.filters, **kwargs: Any) -> None:
        self.kernel_sizes = list(kernel_sizes or _DEFAULTS.kernel_sizes)
        self.filters = filters
        super().__init__(**kwargs)


class _Student(PreTrainedModel):
    main_input_name = "input_ids"
    base_model_prefix = ""  # no separate base model: ``base_model`` is the model itself

    def _build_common(self, config: _StudentConfig, pooled_width: int) -> None:
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.embeddings.weight.requires_grad_(not config.freeze_embeddings)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Sequential(
            nn.Linear(pooled_width, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.num_labels),
        )

    def _init_weights(self, module: nn.Module) -> None:
        # PyTorch's own initialisation (uniform LSTM and Linear weights) is the one these layers are
        # tuned for; the embedding table comes from the teacher (``build_student``).
        pass

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def _output(self, pooled: torch.Tensor, labels: torch.Tensor | None) -> SequenceClassifierOutput:
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if self.config.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.float())
            else:
                loss = F.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def _no_transformer_outputs(kwargs: dict[str, Any]) -> None:
    # the distillation losses on hidden states / attention maps need a transformer student
    for name in ("output_hidden_states", "output_attentions"):
        if kwargs.get(name):
            raise ValueError(f"a lightweight student has no transformer layers: {name} is not available")


def _real_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        return torch.ones_like(input_ids, dtype=torch.bool)
    return attention_mask.bool()


def reading_orders(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row gather indices for reading each row's real tokens forwards and backwards from
    position 0, and which output positions hold real tokens. Handles right and left padding (the
    real tokens must be contiguous). Indices past a row's length point at arbitrary tokens: a causal
    LSTM reads them only after the real ones, and pooling leaves them out."""
    positions = torch.cumsum(torch.ones_like(mask, dtype=torch.long), dim=1) - 1  # [B, L]: 0..L-1
    last = positions[:, -1:]
    lengths = mask.long().sum(dim=1, keepdim=True)
    start = torch.where(mask, positions, last).amin(dim=1, keepdim=True)  # 0 unless left-padded
    forward = torch.minimum(start + positions, last)
    backward = (start + lengths - 1 - positions).clamp(min=0)
    return forward, backward, positions < lengths


class BiLSTMForSequenceClassification(_Student):
    config_class = BiLSTMConfig

    def __init__(self, config: BiLSTMConfig) -> None:
        super().__init__(config)
        self._build_common(config, 2 * config.hidden)
        # two one-way LSTMs rather than one bidirectional: the backward one reads each row reversed
        # within its own length (no packed sequences, which do not export to ONNX)
        self.lstm_forward = nn.LSTM(config.embedding_dim, config.hidden, batch_first=True)
        self.lstm_backward = nn.LSTM(config.embedding_dim, config.hidden, batch_first=True)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        _no_transformer_outputs(kwargs)
        forward, backward, valid = reading_orders(_real_tokens(input_ids, attention_mask))
        states_forward, _ = self.lstm_forward(self.dropout(self.embeddings(input_ids.gather(1, forward))))
        states_backward, _ = self.lstm_backward(self.dropout(self.embeddings(input_ids.gather(1, backward))))
        states = torch.cat([states_forward, states_backward], dim=-1)
        # LSTM outputs lie in (-1, 1): a -1 at padding never beats a real token (a finite fill, so
        # static quantisation calibrates no huge range and an all-padding row stays finite)
        pooled = states.masked_fill(~valid.unsqueeze(-1), -1.0).amax(dim=1)
        return self._output(pooled, labels)


class CNNForSequenceClassification(_Student):
    config_class = CNNConfig

    def __init__(self, config: CNNConfig) -> None:
        super().__init__(config)
        self._build_common(config, config.filters * len(config.kernel_sizes))
        self.convs = nn.ModuleList(
            nn.Conv1d(config.embedding_dim, config.filters, size, padding="same") for size in config.kernel_sizes
        )
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        _no_transformer_outputs(kwargs)
        valid = _real_tokens(input_ids, attention_mask)
        embedded = self.embeddings(input_ids)
        # padding as zero vectors: what the convolution's zero "same" padding shows a sentence alone
        embedded = embedded * valid.unsqueeze(-1).to(embedded.dtype)
        features = self.dropout(embedded).transpose(1, 2)  # [batch, channels, tokens]
        padding = ~valid.unsqueeze(1)
        # after the ReLU every feature is >= 0, so 0 at padding never beats a real token
        pooled = [torch.relu(conv(features)).masked_fill(padding, 0.0).amax(dim=-1) for conv in self.convs]
        return self._output(torch.cat(pooled, dim=-1), labels)


CLASSES = {"bilstm": (BiLSTMConfig, BiLSTMForSequenceClassification), "cnn": (CNNConfig, CNNForSequenceClassification)}
_registered: list[bool] = []


def register() -> None:
    """Make the Auto classes build and load these students (idempotent)."""
    if _registered:
        return
    from transformers import AutoConfig, AutoModelForSequenceClassification

    for config_class, model_class in CLASSES.values():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModelForSequenceClassification.register(config_class, model_class, exist_ok=True)
    _registered.append(True)


def teacher_table(teacher_model: nn.Module, dim: int | None) -> tuple[torch.Tensor, str]:
    """The teacher's token-embedding table, reduced to ``dim`` columns by PCA when smaller: the
    coordinates of each token on the table's top ``dim`` principal axes (the best rank-``dim``
    approximation of the centred table). Centred because the offset every token shares carries no
    information, yet dominates a BERT table and would take a dimension of its own."""
    table = teacher_model.get_input_embeddings().weight.detach().float().cpu()
    width = table.shape[1]
    if dim is None or dim == width:
        return table.clone(), "teacher"
    if dim > width:
        raise ValueError(f"embedding_dim {dim} exceeds the teacher's embedding width {width}")
    centred = table.double() - table.double().mean(dim=0, keepdim=True)
    # eigenvectors of the width x width covariance: far cheaper than an SVD of the vocab x width table
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    axes = vectors[:, -dim:].flip(-1)  # eigh sorts ascending: largest variance first
    return (centred @ axes).float(), f"teacher-pca-{dim}"


def build_student(teacher_model: nn.Module, options: LightweightOptions, num_labels: int) -> PreTrainedModel:
    """A fresh student of ``options.kind`` whose embedding table is the teacher's (PCA-reduced to
    ``options.embedding_dim`` when smaller); everything else is newly initialised."""
    table, init = teacher_table(teacher_model, options.embedding_dim)
    teacher_config = teacher_model.config
    labels = {}
    if getattr(teacher_config, "num_labels", None) == num_labels:
        labels = {"id2label": dict(teacher_config.id2label), "label2id": dict(teacher_config.label2id)}
    common = {
        "vocab_size": table.shape[0],
        "embedding_dim": table.shape[1],
        "hidden": options.hidden,
        "dropout": options.dropout,
        "freeze_embeddings": options.freeze_embeddings,
        "embedding_init": init,
        "num_labels": num_labels,
        "pad_token_id": getattr(teacher_config, "pad_token_id", None),
        **labels,
    }
    config_class, model_class = CLASSES[options.kind]
    extra = {"kernel_sizes": list(options.kernel_sizes), "filters": options.filters} if options.kind == "cnn" else {}
    model = model_class(config_class(**common, **extra))
    with torch.no_grad():
        model.embeddings.weight.copy_(table)
    return model.eval()


def _flops_per_token(config: _StudentConfig) -> int:
    """2 x multiply-accumulates per token of the per-token layers. BiLSTM: 2 directions x 4 gates x
    hidden x (embedding_dim + hidden). CNN: filters x width x embedding_dim per kernel width. The MLP
    runs once per sentence, not per token, and is left out, like BERT's pooler and classifier."""
    if isinstance(config, CNNConfig):
        return 2 * config.filters * config.embedding_dim * sum(config.kernel_sizes)
    return 2 * 2 * 4 * config.hidden * (config.embedding_dim + config.hidden)


def describe_lightweight(model_or_dir: nn.Module | str | Path, seq_len: int = 128) -> dict[str, Any]:
    """``lineage.describe_model``'s keys for a lightweight student (no heads, no FFN), plus its own."""
    if isinstance(model_or_dir, nn.Module):
        model = model_or_dir
    else:
        from harness.models.classifier import load_classifier

        model = load_classifier(model_or_dir)
    config = model.config
    total = sum(p.numel() for p in model.parameters())
    embedding = model.embeddings.weight.numel()
    weights = [p for name, p in model.named_parameters() if name.endswith("weight") and "embeddings" not in name]
    zeros, count = sum(int((w == 0).sum()) for w in weights), sum(w.numel() for w in weights)
    is_cnn = isinstance(config, CNNConfig)
    return {
        "model_type": config.model_type,
        "layers": 1,  # one BiLSTM layer, or one layer of parallel convolutions
        "hidden": int(config.hidden),
        "heads": 0,
        "heads_per_layer": [],
        "head_dim": 0,
        "ffn": 0,
        "ffn_per_layer": [],
        "params_total": int(total),
        "params_embedding": int(embedding),
        "params_non_embedding": int(total - embedding),
        "flops_per_token": _flops_per_token(config),
        "flops_seq_len": seq_len,  # not used: the cost per token does not grow with the length
        "sparsity": zeros / count if count else 0.0,
        "distilled_from_layers": None,
        "pruned_heads": {},
        "embedding_dim": int(config.embedding_dim),
        "embedding_init": config.embedding_init,
        "kernel_sizes": list(config.kernel_sizes) if is_cnn else None,
        "filters": int(config.filters) if is_cnn else None,
    }
