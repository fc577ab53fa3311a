"""PyTorch dynamic INT8: Linear (and LSTM) weights quantised ahead of time, activations at run time.

The quantised state dict is persisted, so a benchmark loads the INT8 weights instead of
re-quantising; loading uses ``weights_only=True`` and never unpickles code. The one exception is
the LSTM (the lightweight BiLSTM student): its INT8 weights are packed into TorchBind objects that a
weights-only load refuses, so its float weights are stored and quantised again at load, which is
deterministic (per-tensor min/max), so the INT8 weights are the exporter's.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from exporters._common import copy_tokenizer, load_hf_classifier
from harness.adapters import Exporter, Options

STATE_FILE = "model_int8.pt"


def quantize_linear_layers(model: Any) -> Any:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao eager quantisation is deprecated but still the CPU path
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear, torch.nn.LSTM}, dtype=torch.qint8)


def _lstm_weights(model: Any) -> dict[str, Any]:
    import torch

    return {
        f"{name}.{weight}": value.detach()
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.LSTM)
        for weight, value in module.named_parameters()
    }


def quantized_state(model: Any) -> dict[str, Any]:
    """The INT8 state of float ``model``: plain and quantised tensors only (LSTMs as float)."""
    import torch

    state = quantize_linear_layers(model).state_dict()
    # edited in place: the dict's ``_metadata`` holds the module versions quantised layers load by
    for key in [key for key, value in state.items() if isinstance(value, torch.ScriptObject)]:
        del state[key]
    state.update(_lstm_weights(model))
    return state


def load_quantized(path: Path) -> Any:
    """Rebuild the INT8 module structure from config, then load the saved INT8 tensors."""
    import torch

    from harness.models.classifier import classifier_from_config

    state = torch.load(path / STATE_FILE, weights_only=True)
    model = classifier_from_config(path).eval()
    lstm = _lstm_weights(model)
    model.load_state_dict({key: state.pop(key) for key in lstm}, strict=False)
    skeleton = quantize_linear_layers(model)
    # the packed LSTM weights were just quantised from the stored floats: load them as they are
    state.update({key: value for key, value in skeleton.state_dict().items() if isinstance(value, torch.ScriptObject)})
    skeleton.load_state_dict(state)
    return skeleton.eval()


class TorchDynamicInt8(Exporter):
    name = "torch-dynamic-int8"
    format = "torch-dynamic-int8"
    precision = "int8"
    requires = ("torch", "transformers")

    def export(self, source: Path, out_dir: Path, options: Options) -> None:
        import torch

        model = load_hf_classifier(source)
        model.config.save_pretrained(out_dir)
        torch.save(quantized_state(model), out_dir / STATE_FILE)
        copy_tokenizer(source, out_dir)


EXPORTER = TorchDynamicInt8()
