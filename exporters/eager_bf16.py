"""The source model with BF16 weights: native on CPUs with AVX512-BF16 or AMX, and on Ampere+ GPUs.

Elsewhere BF16 matmuls are emulated (converted to FP32 and back), slower than FP32 itself, so the
backends that load this format ask ``harness.environment.bf16_unavailable_reason`` before running it.
"""

from __future__ import annotations

from pathlib import Path

from exporters._common import copy_tokenizer, load_hf_classifier
from harness.adapters import Exporter, Options


class EagerBF16(Exporter):
    name = "eager-bf16"
    format = "transformers-bf16"
    precision = "bf16"
    requires = ("torch", "transformers")

    def export(self, source: Path, out_dir: Path, options: Options) -> None:
        import torch

        model = load_hf_classifier(source).to(torch.bfloat16)
        model.save_pretrained(out_dir, safe_serialization=True)
        copy_tokenizer(source, out_dir)


EXPORTER = EagerBF16()
