"""Transfer-set augmentation for distillation (Tang et al. 2019, "Distilling Task-Specific
Knowledge from BERT into Simple Neural Networks", section 3.3).

Each synthetic sentence starts from a train sentence: every word is masked with ``mask_prob``,
then with ``ngram_prob`` only a random n-gram (n in 1..``ngram_max``) of it is kept. The teacher
labels the synthetic sentences, so the student sees the teacher's behaviour on inputs the train
split does not cover. Their POS-guided word swap is left out: it needs a tagger we do not ship.

Pure Python and numpy: deterministic under a seed, no torch, no tokenizer (it works on words).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.compress.options import AugmentOptions


def synthetic_sentence(words: list[str], options: AugmentOptions, mask_token: str, rng: np.random.Generator) -> str:
    masked = [mask_token if rng.random() < options.mask_prob else word for word in words]
    if len(masked) > 1 and rng.random() < options.ngram_prob:
        n = int(rng.integers(1, min(options.ngram_max, len(masked)) + 1))
        start = int(rng.integers(0, len(masked) - n + 1))
        masked = masked[start : start + n]
    return " ".join(masked)


def augment(texts: Sequence[str], options: AugmentOptions, mask_token: str, seed: int) -> list[str]:
    """``options.copies`` draws per train sentence, keeping only sentences not seen before
    (neither in ``texts`` nor earlier draws): a duplicate adds no information, only compute.

    The result depends only on (texts, options, mask_token, seed): one generator walks the texts
    in order, so the same call always yields the same transfer set.
    """
    if options.copies == 0:
        return []
    rng = np.random.default_rng(seed)
    seen = set(texts)
    synthetic: list[str] = []
    for text in texts:
        words = text.split()
        if not words:
            continue
        for _ in range(options.copies):
            sentence = synthetic_sentence(words, options, mask_token, rng)
            if sentence not in seen:
                seen.add(sentence)
                synthetic.append(sentence)
    return synthetic
