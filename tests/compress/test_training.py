"""Training plumbing: the precision choice and the checkpoints a search hooks into."""

import pytest
import torch
from _compress_toys import toy_data

from harness.compress.batching import encode
from harness.compress.trainer_loop import trainer_train_loop
from harness.compress.training import BF16_MARGIN, Checkpoint, bf16_speedup, resolve_bf16


def test_explicit_precision_is_kept_and_auto_measures_once():
    assert resolve_bf16(True) is True and resolve_bf16(False) is False
    choice = resolve_bf16("auto")
    assert choice is (bf16_speedup("cpu") >= BF16_MARGIN)
    before = bf16_speedup.cache_info().hits
    assert resolve_bf16("auto") is choice  # measured once per process, then reused
    assert bf16_speedup.cache_info().hits == before + 1


@pytest.mark.parametrize(("count", "total", "marks"), [(4, 10, [3, 5, 8, 10]), (1, 7, [7]), (3, 2, [1, 2])])
def test_checkpoints_are_evenly_spaced_and_the_last_is_the_final_step(count, total, marks):
    checkpoint = Checkpoint(lambda model, step: None, count)
    assert [s for s in range(1, total + 1) if checkpoint.due(s, total)] == marks


def test_train_loop_calls_the_checkpoint_in_training_and_a_raise_stops_it(model_dir, tokenizer):
    from transformers import AutoModelForSequenceClassification

    texts, labels = toy_data(64, seed=0)
    y = torch.tensor(labels)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    seen = []

    def callback(m: torch.nn.Module, step: int) -> None:
        seen.append((step, m.training))
        if len(seen) == 2:
            raise KeyboardInterrupt  # what a pruned trial does: leave the loop at once

    def loss(m, batch, idx):
        return torch.nn.functional.cross_entropy(m(**batch).logits.float(), y[idx])

    kwargs = dict(learning_rate=1e-3, batch_size=8, warmup_ratio=0.0, weight_decay=0.0, seed=0, bf16=False)
    with pytest.raises(KeyboardInterrupt):
        trainer_train_loop(
            model,
            encode(tokenizer, texts, 32),
            loss,
            epochs=1.0,
            device=torch.device("cpu"),
            checkpoint=Checkpoint(callback, 4),
            **kwargs,
        )
    assert [step for step, _ in seen] == [2, 4]
