"""Where each supported encoder keeps its layers, attention and FFN: the module names and config keys
the model pipeline (layer selection, head and FFN pruning, lineage, batching) needs, so nothing
assumes BERT's.

Torch-free: paths are dotted attribute names resolved on a loaded model, config keys are read from a
config object or a config.json mapping.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError


@dataclass(frozen=True)
class Architecture:
    """One ``model_type``: module paths relative to the base model (``layers``, ``embeddings``), then
    to one layer (``attention``, ``attention_out``, ``ffn_in``, ``ffn_out``), then to the attention
    module (``projections``), and its config keys."""

    model_type: str
    layers: str  # the ModuleList of encoder layers
    attention: str  # the self-attention module (its Q/K/V projections and head count)
    projections: tuple[str, str, str]  # query, key, value Linear layers inside ``attention``
    attention_out: str  # the Linear that mixes the heads back (input: the heads' contexts)
    ffn_in: str  # the Linear up to the FFN width
    ffn_out: str  # the Linear back down to the hidden size
    # embedding parameters (lineage's params_embedding): token/position tables, and the relative
    # position tables and projections of architectures that keep them outside ``embeddings``
    embeddings: tuple[str, ...] = ("embeddings",)
    heads_attr: str = "num_attention_heads"  # per-layer head count on ``attention``
    depth_key: str = "num_hidden_layers"  # config keys (config.json spelling)
    heads_key: str = "num_attention_heads"
    hidden_key: str = "hidden_size"
    ffn_key: str = "intermediate_size"
    token_type_ids: bool = True  # whether forward takes token_type_ids (checked against the signature in tests)
    # ONNX Runtime transformer optimizer model type (onnxruntime.transformers.optimizer.MODEL_TYPES) whose
    # fusions cover this architecture's attention; None (and why) where none does
    ort_model_type: str | None = "bert"
    ort_note: str | None = None
    # why heads cannot be removed (None: they can, and a pruned model reloads with ``from_pretrained``)
    no_head_pruning: str | None = None

    @property
    def layer_prefix(self) -> str:
        return self.layers + "."


def _bert_like(model_type: str, **changes: Any) -> Architecture:
    fields = {
        "layers": "encoder.layer",
        "attention": "attention.self",
        "projections": ("query", "key", "value"),
        "attention_out": "attention.output.dense",
        "ffn_in": "intermediate.dense",
        "ffn_out": "output.dense",
    }
    return Architecture(model_type=model_type, **{**fields, **changes})


_ORT_UNFUSED = (
    "optimum maps it to ONNX Runtime's 'bert' optimizer, whose attention fusion matches no pattern of its {what}: "
    "only LayerNorm, GELU and bias fusions apply"
)

ARCHITECTURES: dict[str, Architecture] = {
    "bert": _bert_like("bert"),
    "roberta": _bert_like("roberta"),
    # ELECTRA projects its (smaller) embeddings up to the hidden size: that Linear is part of the embedding
    "electra": _bert_like("electra", embeddings=("embeddings", "embeddings_project")),
    "distilbert": Architecture(
        model_type="distilbert",
        layers="transformer.layer",
        attention="attention",
        projections=("q_lin", "k_lin", "v_lin"),
        attention_out="attention.out_lin",
        ffn_in="ffn.lin1",
        ffn_out="ffn.lin2",
        heads_attr="n_heads",
        depth_key="n_layers",
        heads_key="n_heads",
        hidden_key="dim",
        ffn_key="hidden_dim",
        token_type_ids=False,
    ),
    "mpnet": _bert_like(
        "mpnet",
        attention="attention.attn",
        projections=("q", "k", "v"),
        attention_out="attention.attn.o",
        embeddings=("embeddings", "encoder.relative_attention_bias"),
        token_type_ids=False,
        ort_model_type=None,
        ort_note=_ORT_UNFUSED.format(what="attention with a relative position bias"),
        no_head_pruning=(
            "transformers' MPNet adds one relative position bias, computed for every head the config names, "
            "to every layer, so a layer with fewer heads fails at its first forward: use head_fraction: 0"
        ),
    ),
    "deberta-v2": _bert_like(
        "deberta-v2",
        projections=("query_proj", "key_proj", "value_proj"),
        embeddings=("embeddings", "encoder.rel_embeddings"),
        ort_model_type=None,
        ort_note=_ORT_UNFUSED.format(what="disentangled (content-to-position) attention"),
        no_head_pruning=(
            "transformers' DeBERTa-v2 has no prune_heads and sizes every attention output projection by "
            "hidden_size, so a model with fewer heads could not be saved and loaded again: use head_fraction: 0"
        ),
    ),
}


def architecture_of(model_or_config: Any) -> Architecture:
    """The description of a model, config or config.json mapping; a clear error for an architecture
    not supported."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = config.get("model_type") if isinstance(config, Mapping) else getattr(config, "model_type", None)
    return architecture_named(model_type)


def architecture_named(model_type: Any) -> Architecture:
    if model_type not in ARCHITECTURES:
        raise HarnessError(
            f"model type {model_type!r} is not supported by the compression stages "
            f"(supported: {', '.join(sorted(ARCHITECTURES))})"
        )
    return ARCHITECTURES[model_type]


def config_depth(config: Mapping[str, Any], model_type: str | None = None) -> int | None:
    """The layer count a config.json mapping states, by the architecture's own key (DistilBERT's
    ``n_layers``); for an architecture not supported, whichever of the usual keys it has."""
    model_type = model_type if model_type is not None else config.get("model_type")
    if model_type in ARCHITECTURES:
        return config.get(ARCHITECTURES[model_type].depth_key)
    return config.get("num_hidden_layers", config.get("n_layers"))


def depth_of(config: Any) -> int:
    """The layer count of a loaded config."""
    return int(getattr(config, architecture_of(config).depth_key))


def submodule(root: Any, path: str) -> Any:
    return operator.attrgetter(path)(root)


def optional_submodule(root: Any, path: str) -> Any | None:
    try:
        return submodule(root, path)
    except AttributeError:
        return None


def set_submodule(root: Any, path: str, module: Any) -> None:
    parent, _, name = path.rpartition(".")
    setattr(submodule(root, parent) if parent else root, name, module)


def encoder_layers(model: Any) -> Any:
    """The ModuleList of encoder layers of a model (or of its base model)."""
    return submodule(model.base_model, architecture_of(model).layers)


def embedding_modules(model: Any) -> list[Any]:
    """The modules whose parameters count as embeddings (those the model has)."""
    found = (optional_submodule(model.base_model, path) for path in architecture_of(model).embeddings)
    return [module for module in found if module is not None]


def heads_in(layer: Any, arch: Architecture) -> int:
    return int(getattr(submodule(layer, arch.attention), arch.heads_attr))


def head_size(layer: Any, arch: Architecture) -> int:
    """Width of one head's context: the attention output projection's input over the head count."""
    return int(submodule(layer, arch.attention_out).in_features) // heads_in(layer, arch)


def ffn_width(layer: Any, arch: Architecture) -> int:
    return int(submodule(layer, arch.ffn_in).out_features)


def accepts(model: Any, name: str) -> bool:
    """Whether ``model``'s forward takes the keyword ``name`` (DistilBERT and MPNet take no
    token_type_ids)."""
    parameters = inspect.signature(model.forward).parameters
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def model_inputs(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` without the inputs ``model`` does not take (token_type_ids for DistilBERT and MPNet).

    Filtered per model rather than left out of the batch: one batch feeds a teacher and a student
    that may take different inputs (a lightweight student of a BERT teacher)."""
    return {key: value for key, value in batch.items() if accepts(model, key)}
