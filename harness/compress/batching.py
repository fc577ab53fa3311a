"""Length-bucketed batching shared by every training and inference loop in this package.

SST-2 sentences range from 2 to ~60 tokens; padding every batch to ``max_length`` wastes most
of the compute, so we tokenize once, group examples of similar length, and pad each batch only
to its own longest member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

# How many batches' worth of examples are sorted together. Larger = tighter padding but less
# randomness in batch composition; 50 keeps padding overhead at a few percent on SST-2.
DEFAULT_POOL_BATCHES = 50


@dataclass(frozen=True)
class Encoded:
    """Token ids for a list of texts, unpadded, in the caller's original order."""

    input_ids: list[list[int]]
    pad_token_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))


def encode(tokenizer, texts: Sequence[str], max_length: int) -> Encoded:
    """Tokenize all texts once (truncated, no padding)."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(input_ids=[list(x) for x in ids], pad_token_id=int(pad))


def bucket_batches(
    lengths: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    pool_batches: int = DEFAULT_POOL_BATCHES,
) -> list[np.ndarray]:
    """Split example indices into batches of similar length.

    With ``shuffle``: shuffle all indices, sort within pools of ``pool_batches*batch_size``,
    cut into batches and shuffle the batch order -- every step uses ``np.random.default_rng(seed)``
    only, so the result is a pure function of (lengths, batch_size, seed).
    Without ``shuffle`` (inference): one global sort, longest first so a memory problem shows
    up on the first batch rather than the last.
    """
    n = len(lengths)
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    if not shuffle:
        order = np.argsort(-lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    pool = max(batch_size, batch_size * pool_batches)
    batches: list[np.ndarray] = []
    for start in range(0, n, pool):
        chunk = perm[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def collate(encoded: Encoded, indices: np.ndarray) -> dict[str, torch.Tensor]:
    """Pad the selected examples to the longest one in this batch."""
    rows = [encoded.input_ids[int(i)] for i in indices]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), encoded.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        ids[j, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[j, : len(r)] = 1
    # Single-segment classification: token_type_ids are all zero, passed explicitly so that
    # models without a registered default buffer behave the same. Every model call takes the batch
    # through architectures.model_inputs, which drops them for a model that does not take them
    # (DistilBERT, MPNet, the lightweight students): one batch may feed a teacher and a student
    # that differ in this.
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
