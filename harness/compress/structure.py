"""Structural surgery on any supported encoder: masks on heads and FFN neurons (for importance),
and their physical removal, by each architecture's module names.

A head's mask multiplies its context vector where the heads are mixed back (the attention output
projection's input): the same gradient as Michel et al.'s mask on the attention probabilities, since
a head's context is linear in them, and it needs no ``head_mask`` argument, which DeBERTa-v2 lacks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers.pytorch_utils import prune_linear_layer

from harness.compress.architectures import (
    architecture_of,
    encoder_layers,
    ffn_width,
    heads_in,
    set_submodule,
    submodule,
)
from harness.errors import HarnessError


@contextlib.contextmanager
def unit_masks(model: torch.nn.Module, device: torch.device) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
    """Masks of ones, ``[layers, heads]`` and one per layer's FFN width, that multiply each head's
    context and each FFN neuron's activation while the context is open (gradients flow to them)."""
    arch = architecture_of(model)
    layers = list(encoder_layers(model))
    heads = {heads_in(layer, arch) for layer in layers}
    if len(heads) != 1:
        raise ValueError("head importance needs a model without pruned heads (as many heads in every layer)")
    head_mask = torch.ones(len(layers), heads.pop(), device=device, requires_grad=True)
    ffn_masks = [torch.ones(ffn_width(layer, arch), device=device, requires_grad=True) for layer in layers]
    hooks = []
    for index, layer in enumerate(layers):
        hooks.append(submodule(layer, arch.attention_out).register_forward_pre_hook(_per_head(head_mask[index])))
        hooks.append(submodule(layer, arch.ffn_out).register_forward_pre_hook(_per_unit(ffn_masks[index])))
    try:
        yield head_mask, ffn_masks
    finally:
        for hook in hooks:
            hook.remove()


def _per_head(mask: torch.Tensor):
    def hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        context = args[0]
        split = context.unflatten(-1, (mask.numel(), -1))  # [..., heads, head_dim]
        return ((split * mask.to(context.dtype).unsqueeze(-1)).flatten(-2), *args[1:])

    return hook


def _per_unit(mask: torch.Tensor):
    def hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (args[0] * mask.to(args[0].dtype), *args[1:])

    return hook


def remove_heads(model: torch.nn.Module, heads: dict[int, list[int]]) -> None:
    """Physically remove ``{layer: [head, ...]}`` with transformers' own ``prune_heads``, which
    records ``config.pruned_heads`` so that ``from_pretrained`` rebuilds the pruned shape."""
    reason = architecture_of(model).no_head_pruning
    if reason is not None:
        raise HarnessError(f"cannot prune the heads of a {model.config.model_type} model: {reason}")
    model.prune_heads(heads)


def remove_ffn_neurons(model: torch.nn.Module, keep: list[torch.Tensor]) -> None:
    """Keep only the given FFN neurons per layer (as many in every layer: the config has one width)."""
    arch = architecture_of(model)
    widths = {len(k) for k in keep}
    if len(widths) != 1:
        raise ValueError("every layer must keep the same number of FFN neurons")
    for layer, idx in zip(encoder_layers(model), keep):
        idx = torch.as_tensor(idx, dtype=torch.long).sort().values
        set_submodule(layer, arch.ffn_in, prune_linear_layer(submodule(layer, arch.ffn_in), idx, dim=0))
        set_submodule(layer, arch.ffn_out, prune_linear_layer(submodule(layer, arch.ffn_out), idx, dim=1))
    setattr(model.config, arch.ffn_key, widths.pop())
