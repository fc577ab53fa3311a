"""The source model as-is: FP32 weights in a ``save_pretrained`` directory."""

from __future__ import annotations

from pathlib import Path

from exporters._common import copy_tokenizer, load_hf_classifier
from harness.adapters import Exporter, Options


class EagerFP32(Exporter):
    name = "eager-fp32"
    format = "transformers"
    batch_invariant = True
    requires = ("torch", "transformers")

    def export(self, source: Path, out_dir: Path, options: Options) -> None:
        load_hf_classifier(source).save_pretrained(out_dir, safe_serialization=True)
        copy_tokenizer(source, out_dir)


EXPORTER = EagerFP32()
