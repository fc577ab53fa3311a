"""The validation slice carved from the train split: whole sentences, their phrases kept out."""

import numpy as np
import pytest
from harness_testutil import SST2_DIR, SST2_PRESENT

from harness.data.holdout import carve_holdout

# Two parse trees, SST style: every phrase is a row of its own, plus a sentence standing alone.
ROWS = [
    "a warm and funny film",  # root
    "warm and funny",
    "funny film",
    "film",
    "dull , slow and far too long",  # root
    "far too long",
    "too long",
    "dull",
    "an instant classic",  # root
    "instant classic",
]
ROOTS = {0, 4, 8}


def test_validation_is_whole_sentences_and_their_phrases_leave_training():
    holdout = carve_holdout(ROWS, sentences=1, seed=0)
    (root,) = holdout.validation.tolist()
    assert root in ROOTS
    inside = {i for i, row in enumerate(ROWS) if i != root and f" {row} " in f" {ROWS[root]} "}
    assert set(holdout.removed.tolist()) == inside
    assert set(holdout.train.tolist()) == set(range(len(ROWS))) - inside - {root}


def test_parts_are_disjoint_cover_the_split_and_are_deterministic():
    rows = ROWS + [f"filler sentence number {i}" for i in range(10)]
    roots = ROOTS | set(range(len(ROWS), len(rows)))
    a = carve_holdout(rows, sentences=2, seed=5)
    b = carve_holdout(rows, sentences=2, seed=5)
    for part in ("train", "validation", "removed"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    parts = [set(a.train.tolist()), set(a.validation.tolist()), set(a.removed.tolist())]
    assert sum(map(len, parts)) == len(rows) and set.union(*parts) == set(range(len(rows)))
    assert len(a.validation) == 2 and set(a.validation.tolist()) <= roots
    picks = {tuple(carve_holdout(rows, sentences=2, seed=seed).validation.tolist()) for seed in range(6)}
    assert len(picks) > 1  # the seed chooses


def test_a_row_repeated_is_no_root():
    doubled = carve_holdout(ROWS * 2, sentences=2, seed=5)
    assert not doubled.validation.size and len(doubled.train) == 2 * len(ROWS)


def test_at_most_a_tenth_of_the_rows_validate():
    rows = [f"sentence number {i} stands alone" for i in range(40)]
    assert len(carve_holdout(rows, sentences=100, seed=0).validation) == 4
    assert not carve_holdout(rows[:9], sentences=100, seed=0).validation.size


def test_no_slice_asked_keeps_everything_for_training():
    holdout = carve_holdout(ROWS, sentences=0, seed=0)
    assert holdout.train.tolist() == list(range(len(ROWS))) and not holdout.validation.size


@pytest.mark.integration
@pytest.mark.skipif(not SST2_PRESENT, reason="needs ../shared/data/sst2")
def test_sst2_slice_looks_like_the_dev_set_and_leaks_nothing():
    import csv

    import pandas as pd

    frame = pd.read_csv(
        SST2_DIR / "train.tsv", sep="\t", quoting=csv.QUOTE_NONE, lineterminator="\n", keep_default_na=False
    )
    texts = [t.strip() for t in frame["sentence"]]
    holdout = carve_holdout(texts, sentences=500, seed=0)
    assert len(holdout.validation) == 500
    # whole sentences, as long as the dev set's (19.5 words on average), not SST's short phrases (4.7)
    assert 16 < np.mean([len(texts[i].split()) for i in holdout.validation]) < 23
    train_text = "\n".join(f" {texts[i]} " for i in holdout.train)
    sample = holdout.validation[:50]
    assert not any(f" {texts[i]} " in train_text for i in sample)
