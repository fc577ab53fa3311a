"""Where each supported encoder keeps its layers, attention and FFN: the module names the model
pipeline (layer selection, head and FFN pruning, lineage) needs, so nothing assumes BERT's.

Torch-free: paths are dotted attribute names resolved on a loaded model.
"""

from __future__ import annotations

import inspect
import operator
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError


@dataclass(frozen=True)
class Architecture:
    """Module paths of one ``model_type`` (relative to the base model, then to one layer)."""

    layers: str  # the ModuleList of encoder layers
    attention: str  # the self-attention module (its Q/K/V projections and head count)
    projections: tuple[str, str, str]  # query, key, value Linear layers inside ``attention``
    attention_out: str  # the Linear that mixes the heads back (input: the heads' contexts)
    ffn_in: str  # the Linear up to the FFN width
    ffn_out: str  # the Linear back down to the hidden size
    heads_attr: str = "num_attention_heads"  # per-layer head count on ``attention``
    ffn_key: str = "intermediate_size"  # config key of the FFN width
    # why heads cannot be removed (transformers' ``prune_heads`` rebuilds the pruned shape from
    # ``config.pruned_heads`` on reload; an architecture without it could not reload a pruned model)
    no_head_pruning: str | None = None

    @property
    def layer_prefix(self) -> str:
        return self.layers + "."


_BERT_LIKE = Architecture(
    layers="encoder.layer",
    attention="attention.self",
    projections=("query", "key", "value"),
    attention_out="attention.output.dense",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
)
ARCHITECTURES: dict[str, Architecture] = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "distilbert": Architecture(
        layers="transformer.layer",
        attention="attention",
        projections=("q_lin", "k_lin", "v_lin"),
        attention_out="attention.out_lin",
        ffn_in="ffn.lin1",
        ffn_out="ffn.lin2",
        heads_attr="n_heads",
        ffn_key="hidden_dim",
    ),
    "mpnet": Architecture(
        layers="encoder.layer",
        attention="attention.attn",
        projections=("q", "k", "v"),
        attention_out="attention.attn.o",
        ffn_in="intermediate.dense",
        ffn_out="output.dense",
        no_head_pruning=(
            "transformers' MPNet adds a relative position bias computed for every head the config names, "
            "so a layer with fewer heads fails at its first forward: use head_fraction: 0"
        ),
    ),
    "deberta-v2": Architecture(
        layers="encoder.layer",
        attention="attention.self",
        projections=("query_proj", "key_proj", "value_proj"),
        attention_out="attention.output.dense",
        ffn_in="intermediate.dense",
        ffn_out="output.dense",
        no_head_pruning=(
            "transformers' DeBERTa-v2 has no prune_heads and sizes every attention output projection by "
            "hidden_size, so a model with fewer heads could not be saved and loaded again: use head_fraction: 0"
        ),
    ),
}


def architecture_of(model_or_config: Any) -> Architecture:
    """The module map of a model (or config); a clear error for an architecture not supported."""
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise HarnessError(
            f"model type {model_type!r} is not supported by the compression stages "
            f"(supported: {', '.join(sorted(ARCHITECTURES))})"
        )
    return ARCHITECTURES[model_type]


def submodule(root: Any, path: str) -> Any:
    return operator.attrgetter(path)(root)


def set_submodule(root: Any, path: str, module: Any) -> None:
    parent, _, name = path.rpartition(".")
    setattr(submodule(root, parent) if parent else root, name, module)


def encoder_layers(model: Any) -> Any:
    return submodule(model.base_model, architecture_of(model).layers)


def heads_in(layer: Any, arch: Architecture) -> int:
    return int(getattr(submodule(layer, arch.attention), arch.heads_attr))


def ffn_width(layer: Any, arch: Architecture) -> int:
    return int(submodule(layer, arch.ffn_in).out_features)


def accepts(model: Any, name: str) -> bool:
    """Whether ``model``'s forward takes the keyword ``name`` (DistilBERT and MPNet take no
    token_type_ids)."""
    parameters = inspect.signature(model.forward).parameters
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def model_inputs(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` without the inputs ``model`` does not take."""
    return {key: value for key, value in batch.items() if accepts(model, key)}
