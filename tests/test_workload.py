"""harness.data.workload: the timed sample of the split and the batches cut from it."""

from __future__ import annotations

import numpy as np

from harness.data.workload import (
    Batch,
    full_batch_count,
    in_eval_order,
    make_batches,
    mean_real_tokens,
    ordered_batches,
    pad_batch,
    scoring_order,
    stratified_sample,
    timing_order,
)

# lengths[i] = 379 i mod 1000 is a permutation of 0..999 (379 and 1000 are coprime), so a sentence's
# index and its length differ: a sample of positions in the sorted order would fail the checks.
SHUFFLED_LENGTHS = [(379 * i) % 1000 for i in range(1000)]

# ten sentences of token ids; sentence i is [10 i + 1, ..., 10 i + len], lengths 3, 1, 4, 1, 5, 2, 6, 2, 3, 5
LENGTHS = [3, 1, 4, 1, 5, 2, 6, 2, 3, 5]
TOKENS = [[10 * i + t for t in range(1, n + 1)] for i, n in enumerate(LENGTHS)]
PAD = 0


# --- stratified_sample ------------------------------------------------------------------------


def test_stratified_sample_gives_count_distinct_indices() -> None:
    picks = stratified_sample(SHUFFLED_LENGTHS, 100, seed=0)
    assert len(picks) == 100
    assert len(set(picks.tolist())) == 100
    assert all(0 <= i < 1000 for i in picks)


def test_stratified_sample_of_more_than_the_split_is_the_whole_split() -> None:
    picks = stratified_sample(list(range(50)), 80, seed=0)
    assert sorted(picks.tolist()) == list(range(50))


def test_stratified_sample_takes_one_sentence_from_each_length_decile_block() -> None:
    lengths = np.array(SHUFFLED_LENGTHS)
    for seed in (0, 1, 2):
        picked_lengths = np.sort(lengths[stratified_sample(SHUFFLED_LENGTHS, 100, seed)])
        # 1000 lengths cut into 100 bins of 10 consecutive lengths: exactly one from each
        assert (picked_lengths // 10).tolist() == list(range(100))


def test_stratified_sample_keeps_the_share_of_tied_lengths() -> None:
    lengths = [5, 10] * 500  # half short, half long
    picks = stratified_sample(lengths, 10, seed=3)
    assert sorted(lengths[i] for i in picks) == [5] * 5 + [10] * 5
    assert len(set(picks.tolist())) == 10


def test_stratified_sample_is_deterministic_per_seed() -> None:
    first = stratified_sample(SHUFFLED_LENGTHS, 100, seed=4)
    assert np.array_equal(stratified_sample(SHUFFLED_LENGTHS, 100, seed=4), first)
    assert set(stratified_sample(SHUFFLED_LENGTHS, 100, seed=5).tolist()) != set(first.tolist())


def test_stratified_sample_comes_in_random_order_not_by_length() -> None:
    lengths = np.array(SHUFFLED_LENGTHS)
    picked_lengths = lengths[stratified_sample(SHUFFLED_LENGTHS, 100, seed=0)]
    assert not np.array_equal(picked_lengths, np.sort(picked_lengths))
    assert not np.array_equal(picked_lengths, np.sort(picked_lengths)[::-1])


# --- timing_order -----------------------------------------------------------------------------


def test_timing_order_at_batch_one_is_the_stratified_sample() -> None:
    order = timing_order(SHUFFLED_LENGTHS, batch_size=1, single_inputs=100, seed=6)
    assert np.array_equal(order, stratified_sample(SHUFFLED_LENGTHS, 100, seed=6))
    assert len(order) == 100


def test_timing_order_at_larger_batches_is_a_seeded_permutation_of_the_split() -> None:
    order = timing_order(SHUFFLED_LENGTHS, batch_size=8, single_inputs=100, seed=6)
    assert sorted(order.tolist()) == list(range(1000))
    assert not np.array_equal(order, np.arange(1000))
    assert np.array_equal(timing_order(SHUFFLED_LENGTHS, batch_size=8, single_inputs=100, seed=6), order)
    assert not np.array_equal(timing_order(SHUFFLED_LENGTHS, batch_size=8, single_inputs=100, seed=7), order)


# --- ordered_batches --------------------------------------------------------------------------

ORDER = np.array([7, 2, 9, 0, 4, 1, 8, 3, 6, 5])


def test_ordered_batches_follow_the_order_and_keep_the_ragged_tail_last() -> None:
    batches = ordered_batches(TOKENS, ORDER, batch_size=4, seq_len="dynamic", pad_id=PAD)
    assert [b.indices.tolist() for b in batches] == [[7, 2, 9, 0], [4, 1, 8, 3], [6, 5]]
    assert full_batch_count(len(ORDER), 4) == 2  # the timed ones: the short tail is not the shape timed


def test_full_batch_count_of_a_split_smaller_than_a_batch_is_one_short_batch() -> None:
    assert full_batch_count(3, 4) == 1
    assert full_batch_count(0, 4) == 0
    assert full_batch_count(256, 1) == 256
    assert full_batch_count(872, 32) == 27


def test_dynamic_timing_batches_pad_to_the_longest_sentence_of_the_batch() -> None:
    first, second, _ = ordered_batches(TOKENS, ORDER, batch_size=4, seq_len="dynamic", pad_id=PAD)
    # lengths of sentences 7, 2, 9, 0: 2, 4, 5, 3; of 4, 1, 8, 3: 5, 1, 3, 1
    assert first.shape == (4, 5)
    assert second.shape == (4, 5)
    assert first.arrays["input_ids"].tolist() == [
        [71, 72, 0, 0, 0],
        [21, 22, 23, 24, 0],
        [91, 92, 93, 94, 95],
        [1, 2, 3, 0, 0],
    ]
    assert first.arrays["attention_mask"].tolist() == [
        [1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0],
    ]
    assert first.arrays["token_type_ids"].tolist() == [[0] * 5] * 4


def test_dynamic_width_is_per_batch() -> None:
    order = np.array([1, 3, 6, 5])  # lengths 1, 1, 6, 2
    short, long = ordered_batches(TOKENS, order, batch_size=2, seq_len="dynamic", pad_id=PAD)
    assert short.shape == (2, 1)
    assert long.shape == (2, 6)


def test_fixed_length_timing_batches_are_exactly_seq_len_wide() -> None:
    batches = ordered_batches(TOKENS, ORDER, batch_size=4, seq_len=8, pad_id=PAD)
    assert [b.shape for b in batches] == [(4, 8), (4, 8), (2, 8)]
    assert batches[0].arrays["input_ids"][0].tolist() == [71, 72, 0, 0, 0, 0, 0, 0]
    assert batches[0].arrays["attention_mask"].sum(axis=1).tolist() == [2, 4, 5, 3]


def test_pad_id_fills_the_padding() -> None:
    (batch,) = ordered_batches(TOKENS, np.array([1, 0]), batch_size=2, seq_len=4, pad_id=7)
    assert batch.arrays["input_ids"].tolist() == [[11, 7, 7, 7], [1, 2, 3, 7]]
    assert batch.arrays["input_ids"].dtype == np.int64


def test_a_split_smaller_than_one_batch_gives_one_short_batch() -> None:
    (batch,) = ordered_batches(TOKENS, np.array([2, 0, 1]), batch_size=4, seq_len="dynamic", pad_id=PAD)
    assert batch.indices.tolist() == [2, 0, 1]
    assert batch.shape == (3, 4)


# --- scoring order: timed inputs first, logits back in eval order -------------------------------


def test_scoring_order_puts_the_timed_sentences_first_then_the_rest_in_eval_order() -> None:
    order = scoring_order(np.array([7, 2, 9]), 10)
    assert order.tolist() == [7, 2, 9, 0, 1, 3, 4, 5, 6, 8]


def test_scored_batches_begin_with_exactly_the_timed_batches() -> None:
    timed = ORDER[:8]  # two full batches of 4
    batches = ordered_batches(TOKENS, scoring_order(timed, 10), 4, "dynamic", PAD)
    expected = ordered_batches(TOKENS, timed, 4, "dynamic", PAD)
    for got, want in zip(batches[:2], expected):
        assert got.indices.tolist() == want.indices.tolist()
        assert got.arrays["input_ids"].tolist() == want.arrays["input_ids"].tolist()
    assert sorted(np.concatenate([b.indices for b in batches]).tolist()) == list(range(10))


def test_in_eval_order_undoes_the_batch_order() -> None:
    batches = ordered_batches(TOKENS, ORDER, 4, "dynamic", PAD)
    # logits row for sentence i is [i, -i]: any misplacement shows
    logits = [np.stack([b.indices, -b.indices], axis=1).astype(float) for b in batches]
    assert in_eval_order([b.indices for b in batches], logits)[:, 0].tolist() == list(range(10))


# --- make_batches -----------------------------------------------------------------------------


def test_make_batches_cover_every_sentence_once_in_eval_order() -> None:
    batches = make_batches(TOKENS, batch_size=4, seq_len="dynamic", pad_id=PAD)
    assert [b.indices.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert np.concatenate([b.indices for b in batches]).tolist() == list(range(10))
    # rows hold the sentences in order; the partial last batch is padded to its own longest (5)
    assert [b.shape for b in batches] == [(4, 4), (4, 6), (2, 5)]
    assert batches[2].arrays["input_ids"].tolist() == [[81, 82, 83, 0, 0], [91, 92, 93, 94, 95]]
    for batch in batches:
        for row, index in enumerate(batch.indices):
            real = batch.arrays["input_ids"][row][batch.arrays["attention_mask"][row] == 1]
            assert real.tolist() == TOKENS[index]


def test_make_batches_at_a_fixed_length_keep_the_partial_last_batch() -> None:
    batches = make_batches(TOKENS, batch_size=3, seq_len=6, pad_id=PAD)
    assert [b.shape for b in batches] == [(3, 6), (3, 6), (3, 6), (1, 6)]
    assert batches[-1].indices.tolist() == [9]


# --- token counts -----------------------------------------------------------------------------


def test_real_tokens_is_the_mean_unpadded_length_of_the_batch() -> None:
    token_ids = [[1, 2, 3], [1, 2, 3, 4, 5], [1]]
    indices = np.arange(3)
    # (3 + 5 + 1) / 3 = 3.0, however wide the padding
    assert pad_batch(token_ids, "dynamic", PAD, indices).real_tokens == 3.0
    assert pad_batch(token_ids, 16, PAD, indices).real_tokens == 3.0
    assert pad_batch([[1, 2], [1, 2, 3]], 8, PAD, np.arange(2)).real_tokens == 2.5


def test_real_tokens_of_hand_built_arrays() -> None:
    mask = np.array([[1, 1, 1, 1], [1, 0, 0, 0]])
    batch = Batch({"input_ids": np.zeros((2, 4), dtype=np.int64), "attention_mask": mask}, np.arange(2))
    assert batch.real_tokens == 2.5
    assert batch.shape == (2, 4)


def test_mean_real_tokens() -> None:
    assert mean_real_tokens(TOKENS) == sum(LENGTHS) / 10  # 32 / 10
    assert mean_real_tokens([]) == 0.0
