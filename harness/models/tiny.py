"""Tiny randomly initialised encoder classifiers, so smoke runs and tests need no download.

One per supported architecture, all sharing a character-level WordPiece tokenizer: the tokenizer
type is irrelevant to what the tests prove (every stage, exporter and backend on that architecture's
own modules), and a BPE or SentencePiece model would need a corpus to train.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

TINY_BERT_CONFIG = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
}
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD_ID = 0

# each architecture's own names for the same tiny shape (transformers config classes)
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "bert": TINY_BERT_CONFIG,
    "distilbert": {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64, "max_position_embeddings": 512},
    # RoBERTa numbers positions from pad_token_id + 1, hence the two extra positions
    "roberta": {**TINY_BERT_CONFIG, "max_position_embeddings": 514, "type_vocab_size": 1},
    "deberta-v2": {**TINY_BERT_CONFIG, "relative_attention": True, "pos_att_type": ["p2c", "c2p"]},
    "electra": {**TINY_BERT_CONFIG, "embedding_size": 16},
    "mpnet": {**TINY_BERT_CONFIG, "max_position_embeddings": 514},
}
ARCHITECTURES = tuple(TINY_CONFIGS)


def character_vocabulary() -> list[str]:
    """A fixed WordPiece vocabulary of single characters: deterministic and needs no corpus."""
    characters = string.ascii_lowercase + string.digits + string.punctuation
    return SPECIAL_TOKENS + list(characters) + [f"##{c}" for c in characters]


def create_tiny_model(architecture: str, out_dir: Path, num_labels: int = 2, seed: int = 0, **overrides: Any) -> Path:
    """Write a tiny random ``<architecture>ForSequenceClassification`` and a tokenizer into ``out_dir``."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, BertTokenizerFast

    if architecture not in TINY_CONFIGS:
        raise ValueError(f"no tiny config for '{architecture}' (known: {', '.join(ARCHITECTURES)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = character_vocabulary()
    vocab_file = out_dir / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True).save_pretrained(out_dir)
    torch.manual_seed(seed)
    settings = {**TINY_CONFIGS[architecture], **overrides}
    config = AutoConfig.for_model(
        architecture, vocab_size=len(vocab), num_labels=num_labels, pad_token_id=PAD_ID, **settings
    )
    AutoModelForSequenceClassification.from_config(config).eval().save_pretrained(out_dir)
    return out_dir


def create_tiny_bert(out_dir: Path, num_labels: int = 2, seed: int = 0, **overrides: Any) -> Path:
    """Write a tiny random ``BertForSequenceClassification`` with its tokenizer into ``out_dir``."""
    return create_tiny_model("bert", out_dir, num_labels, seed, **overrides)
