"""A validation slice carved from the train split, for choosing among trained models.

The eval split scores the final models once, for the report; every choice before that (a search's
trials, a recipe) is judged here instead. SST-2's train split holds every phrase of each parse
tree, so a random slice of rows would be judged on phrases whose longer sentences were trained
on. The slice is therefore made of whole sentences ("roots": rows inside no other row), and every
row inside a held-out root leaves the train part with it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Holdout:
    """Indices into the train split: ``train`` to learn from, ``validation`` (roots only) to judge by,
    and ``removed`` (phrases inside validation roots), kept out of both."""

    train: np.ndarray
    validation: np.ndarray
    removed: np.ndarray


def carve_holdout(texts: Sequence[str], sentences: int, seed: int) -> Holdout:
    """Up to ``sentences`` seeded roots for validation; what remains, minus their phrases, to train.

    At most a tenth of the rows become validation sentences, so a small split is not halved: with
    fewer than ten rows, or ``sentences`` 0, everything is train. Deterministic in its arguments.
    """
    n = len(texts)
    sentences = min(sentences, n // 10)
    if sentences <= 0:
        return Holdout(np.arange(n), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    words = [text.split() for text in texts]
    postings = _postings(words)
    roots: list[int] = []
    for i in np.random.default_rng(seed).permutation(n).tolist():
        if len(roots) == sentences:
            break
        if len(words[i]) >= 2 and not _inside_another_row(i, texts, words, postings):
            roots.append(i)
    validation = np.array(sorted(roots), dtype=np.int64)
    removed = _phrases_of(validation, words) - set(validation.tolist())
    held = set(validation.tolist()) | removed
    train = np.array([i for i in range(n) if i not in held], dtype=np.int64)
    return Holdout(train, validation, np.array(sorted(removed), dtype=np.int64))


def _postings(words: list[list[str]]) -> dict[str, list[int]]:
    index: dict[str, list[int]] = defaultdict(list)
    for row, tokens in enumerate(words):
        for token in set(tokens):
            index[token].append(row)
    return index


def _inside_another_row(i: int, texts: Sequence[str], words: list[list[str]], postings: dict) -> bool:
    # only rows holding the row's rarest word can contain it: a short list to scan
    rarest = min(set(words[i]), key=lambda token: len(postings[token]))
    needle = f" {texts[i]} "
    return any(j != i and needle in f" {texts[j]} " for j in postings[rarest])


def _phrases_of(roots: np.ndarray, words: list[list[str]]) -> set[int]:
    """Rows whose text is a contiguous word span of some root (the roots included)."""
    rows_of: dict[str, list[int]] = defaultdict(list)
    for row, tokens in enumerate(words):
        rows_of[" ".join(tokens)].append(row)
    found: set[int] = set()
    for root in roots.tolist():
        tokens = words[root]
        for start in range(len(tokens)):
            for end in range(start + 1, len(tokens) + 1):
                found.update(rows_of.get(" ".join(tokens[start:end]), ()))
    return found
