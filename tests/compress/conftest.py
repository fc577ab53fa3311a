"""Fixtures: a tiny vocabulary tokenizer and a saved tiny classifier (no hub, no files)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _compress_toys import FILLER, NEG, POS, SPECIAL, tiny_model


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    from transformers import BertTokenizerFast

    d = tmp_path_factory.mktemp("vocab")
    vocab = d / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + POS + NEG + FILLER) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)


@pytest.fixture
def model_dir(tmp_path: Path, tokenizer) -> Path:
    """A saved tiny classifier + tokenizer, usable as base/teacher/student directory."""
    d = tmp_path / "tiny"
    tiny_model().save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d
