"""Transfer-set augmentation (Tang et al. 2019): deterministic, and each draw is what it claims."""

from harness.compress.augment import augment, synthetic_sentence
from harness.compress.options import AugmentOptions

TEXTS = [
    "a warm , funny and engaging film",
    "dull and far too long",
    "the best movie of the year",
    "it never finds its footing at all",
    "boring",
]


def test_same_seed_same_transfer_set_other_seed_another():
    options = AugmentOptions(copies=4)
    first = augment(TEXTS, options, "[MASK]", seed=3)
    assert first == augment(TEXTS, options, "[MASK]", seed=3)
    assert first != augment(TEXTS, options, "[MASK]", seed=4)
    assert len(first) > len(TEXTS)


def test_draws_are_masked_spans_of_their_source_and_never_repeat():
    import numpy as np

    options = AugmentOptions(copies=1, mask_prob=0.3, ngram_prob=0.5, ngram_max=3)
    rng = np.random.default_rng(0)
    words = TEXTS[0].split()
    for _ in range(200):
        drawn = synthetic_sentence(words, options, "[MASK]", rng).split()
        assert 1 <= len(drawn) <= len(words)
        if len(drawn) < len(words):
            assert len(drawn) <= 3  # an n-gram keeps at most ngram_max words
        spans = [words[s : s + len(drawn)] for s in range(len(words) - len(drawn) + 1)]
        assert any(all(d in ("[MASK]", w) for d, w in zip(drawn, span)) for span in spans)
    synthetic = augment(TEXTS, AugmentOptions(copies=20), "[MASK]", seed=0)
    assert len(set(synthetic)) == len(synthetic) and not set(synthetic) & set(TEXTS)


def test_extreme_probabilities():
    everything_masked = augment(TEXTS, AugmentOptions(copies=1, mask_prob=1.0, ngram_prob=0.0), "<m>", seed=0)
    # 7, 5, 6, 7 and 1 words: the second 7-word mask repeats the first and is dropped
    assert [len(s.split()) for s in everything_masked] == [7, 5, 6, 1]
    assert all(set(s.split()) == {"<m>"} for s in everything_masked)
    # nothing changes a sentence: every draw equals its source, so nothing new is added
    assert augment(TEXTS, AugmentOptions(copies=3, mask_prob=0.0, ngram_prob=0.0), "[MASK]", seed=0) == []
    assert augment(TEXTS, AugmentOptions(copies=0), "[MASK]", seed=0) == []
