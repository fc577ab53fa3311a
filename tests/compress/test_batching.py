import numpy as np
from _compress_toys import toy_data

from harness.compress.batching import bucket_batches, collate, encode


def test_bucketing_is_a_seeded_partition(tokenizer):
    texts, _ = toy_data(300)
    enc = encode(tokenizer, texts, max_length=16)
    a = bucket_batches(enc.lengths, 8, shuffle=True, seed=3, pool_batches=4)
    b = bucket_batches(enc.lengths, 8, shuffle=True, seed=3, pool_batches=4)
    c = bucket_batches(enc.lengths, 8, shuffle=True, seed=4, pool_batches=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    flat = np.concatenate(a)
    assert sorted(flat.tolist()) == list(range(300))
    assert max(len(x) for x in a) == 8


def test_bucketing_reduces_padding_and_pads_to_batch_max(tokenizer):
    texts, _ = toy_data(400)
    enc = encode(tokenizer, texts, max_length=12)
    assert enc.lengths.max() == 12  # truncation applied
    lengths = enc.lengths
    bucketed = bucket_batches(lengths, 16, shuffle=True, seed=0)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(lengths))
    random_batches = [perm[i : i + 16] for i in range(0, len(perm), 16)]

    def pad(batches):
        return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)

    assert pad(bucketed) < 0.5 * pad(random_batches)
    batch = collate(enc, bucketed[0])
    width = lengths[bucketed[0]].max()
    assert batch["input_ids"].shape == (len(bucketed[0]), width)
    assert batch["attention_mask"].sum(1).tolist() == lengths[bucketed[0]].tolist()
    # padded tail holds the pad id
    row = int(np.argmin(lengths[bucketed[0]]))
    assert (batch["input_ids"][row, lengths[bucketed[0]][row] :] == enc.pad_token_id).all()


def test_inference_order_covers_everything_once(tokenizer):
    texts, _ = toy_data(37)
    enc = encode(tokenizer, texts, max_length=32)
    batches = bucket_batches(enc.lengths, 5, shuffle=False)
    assert sorted(np.concatenate(batches).tolist()) == list(range(37))
