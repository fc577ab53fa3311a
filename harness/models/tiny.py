"""A tiny randomly initialised BERT classifier, so smoke runs and tests need no download."""

from __future__ import annotations

import string
from pathlib import Path

TINY_BERT_CONFIG = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
}
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def character_vocabulary() -> list[str]:
    """A fixed WordPiece vocabulary of single characters: deterministic and needs no corpus."""
    characters = string.ascii_lowercase + string.digits + string.punctuation
    return SPECIAL_TOKENS + list(characters) + [f"##{c}" for c in characters]


def create_tiny_bert(out_dir: Path, num_labels: int = 2, seed: int = 0, **overrides: float) -> Path:
    """Write a tiny random ``BertForSequenceClassification`` with its tokenizer into ``out_dir``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = character_vocabulary()
    vocab_file = out_dir / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    tokenizer.save_pretrained(out_dir)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), num_labels=num_labels, **{**TINY_BERT_CONFIG, **overrides})
    BertForSequenceClassification(config).eval().save_pretrained(out_dir)
    return out_dir
