"""Helpers for the compress tests: tiny random BERT classifiers and toy sentiment data."""

from __future__ import annotations

import random

import torch

POS = ["good", "great", "fun", "lovely", "brilliant", "moving"]
NEG = ["bad", "awful", "boring", "dull", "terrible", "flat"]
FILLER = ["the", "movie", "film", "was", "very", "plot", "acting", "really", "and", "a", "it", "is"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def toy_data(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """Sentences of varying length whose label is decided by one sentiment word."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.choices(FILLER, k=rng.randint(1, 14))
        words.insert(rng.randint(0, len(words)), rng.choice(POS if label else NEG))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def tiny_config(**overrides):
    from transformers import BertConfig

    kw = dict(
        vocab_size=len(SPECIAL) + len(POS) + len(NEG) + len(FILLER) + 40,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    kw.update(overrides)
    return BertConfig(**kw)


def tiny_model(seed: int = 0, **overrides):
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_config(**overrides)).eval()
