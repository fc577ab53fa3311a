"""PyTorch dynamic INT8: Linear weights quantised ahead of time, activations at run time.

The quantised state dict is persisted, so a benchmark loads the INT8 weights instead of
re-quantising; loading uses ``weights_only=True`` and never unpickles code.
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
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def load_quantized(path: Path) -> Any:
    """Rebuild the INT8 module structure from config, then load the saved INT8 tensors."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(path)
    skeleton = quantize_linear_layers(AutoModelForSequenceClassification.from_config(config).eval())
    skeleton.load_state_dict(torch.load(path / STATE_FILE, weights_only=True))
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
        torch.save(quantize_linear_layers(model).state_dict(), out_dir / STATE_FILE)
        copy_tokenizer(source, out_dir)


EXPORTER = TorchDynamicInt8()
