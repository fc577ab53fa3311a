"""Shared helpers for exporters (modules starting with '_' are not adapters)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def load_hf_classifier(source: Path) -> Any:
    from transformers import AutoModelForSequenceClassification

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForSequenceClassification.from_pretrained(source).eval()


def copy_tokenizer(source: Path, out_dir: Path) -> None:
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(source).save_pretrained(out_dir)


def export_onnx(source: Path, out_dir: Path) -> Path:
    """FP32 ONNX through optimum's exporter; returns the model file."""
    from optimum.exporters.onnx import main_export

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main_export(str(source), output=out_dir, task="text-classification", no_post_process=True, device="cpu")
    return out_dir / "model.onnx"
