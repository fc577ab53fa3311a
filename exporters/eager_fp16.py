"""The source model with FP16 weights, for GPU inference (tensor cores); CPUs emulate FP16 slowly."""

from __future__ import annotations

from pathlib import Path

from exporters._common import copy_tokenizer, load_hf_classifier
from harness.adapters import Exporter, Options


class EagerFP16(Exporter):
    name = "eager-fp16"
    format = "transformers-fp16"
    precision = "fp16"
    requires = ("torch", "transformers")

    def export(self, source: Path, out_dir: Path, options: Options) -> None:
        load_hf_classifier(source).half().save_pretrained(out_dir, safe_serialization=True)
        copy_tokenizer(source, out_dir)


EXPORTER = EagerFP16()
