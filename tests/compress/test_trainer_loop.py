"""``trainer_train_loop`` (transformers.Trainer) against ``train_loop``: same steps, batches, schedule,
losses and checkpoints, and no trace left in the process or the file system."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.optim.optimizer as torch_optimizer
from _compress_toys import tiny_model, toy_data
from reference_training_loop import _param_groups, train_loop

from harness.compress.batching import Encoded, encode
from harness.compress.trainer_loop import make_trainer, trainer_train_loop
from harness.compress.training import Checkpoint, predict_logits

LR = 1e-3
# 40 examples in batches of 8 for 1.5 epochs: ceil(1.5 * 5) = 8 steps over two epochs. A warmup
# ratio of 0.3 gives 2.4 steps, which train_loop truncates to 2 where Trainer alone would round up to 3.
SHORT = dict(epochs=1.5, learning_rate=LR, batch_size=8, warmup_ratio=0.3, weight_decay=0.01, seed=3)
EXPECTED_LRS = [0.0, LR / 2] + [LR * (8 - s) / 6 for s in range(2, 8)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The toy model is far too small to gain from intra-op threads, and on a loaded machine they
    # wait on each other (a 14 ms step took 600 ms with two threads). Module scope, so that the
    # module-scoped runs below get it too.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toy(tokenizer) -> tuple[Encoded, torch.Tensor]:
    texts, labels = toy_data(40, seed=0)
    return encode(tokenizer, texts, 32), torch.tensor(labels)


@dataclass
class Record:
    """What one run of a loop showed its step_loss, its optimizer and its checkpoint."""

    stats: dict = field(default_factory=dict)
    batches: list[list[int]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    autocast: list[bool] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    checkpoints: list[tuple[int, bool]] = field(default_factory=list)


def run(loop, encoded: Encoded, labels: torch.Tensor, bf16: bool, model=None, **overrides) -> Record:
    record = Record()
    model = model if model is not None else tiny_model(0)

    def step_loss(m, batch, idx):
        record.batches.append(idx.tolist())
        record.autocast.append(torch.is_autocast_enabled("cpu"))
        loss = torch.nn.functional.cross_entropy(m(**batch).logits.float(), labels[idx])
        record.losses.append(float(loss.detach()))
        return loss

    def on_step(optimizer, args, kwargs):  # the learning rate each optimizer step uses
        record.lrs.append(optimizer.param_groups[0]["lr"])

    checkpoint = Checkpoint(lambda m, step: record.checkpoints.append((step, m.training)), 3)
    handle = torch_optimizer.register_optimizer_step_pre_hook(on_step)
    try:
        kwargs = {**SHORT, "device": torch.device("cpu"), "bf16": bf16, "checkpoint": checkpoint, **overrides}
        record.stats = loop(model, encoded, step_loss, **kwargs)
    finally:
        handle.remove()
    return record


@pytest.fixture(scope="module", params=[False, True], ids=["fp32", "bf16"])
def both(request, toy) -> tuple[Record, Record, bool]:
    encoded, labels = toy
    bf16 = request.param
    return run(train_loop, encoded, labels, bf16), run(trainer_train_loop, encoded, labels, bf16), bf16


def test_same_number_of_steps_for_fractional_epochs(both):
    ours, trainer, _ = both
    assert ours.stats["steps"] == trainer.stats["steps"] == 8
    assert len(trainer.losses) == len(trainer.lrs) == 8


def test_same_batches_in_the_same_order_across_epochs(both):
    ours, trainer, _ = both
    assert trainer.batches == ours.batches
    # the second epoch is a fresh draw (seed + 1), not a replay of the first
    assert trainer.batches[5:8] != trainer.batches[0:3]


def test_same_learning_rate_schedule_with_truncated_warmup(both):
    ours, trainer, _ = both
    assert ours.lrs == pytest.approx(EXPECTED_LRS)
    assert trainer.lrs == pytest.approx(ours.lrs, rel=1e-12, abs=0.0)


def test_same_autocast_and_same_losses(both):
    ours, trainer, bf16 = both
    assert ours.autocast == trainer.autocast == [bf16] * 8
    # same init, batches, optimizer, clipping and schedule: the runs agree to the last bit
    assert trainer.losses == ours.losses
    assert trainer.stats["final_loss"] == ours.stats["final_loss"] == pytest.approx(np.mean(ours.losses))


def test_checkpoint_fires_at_the_same_steps_in_training_mode(both):
    ours, trainer, _ = both
    assert trainer.checkpoints == ours.checkpoints == [(3, True), (6, True), (8, True)]


def test_optimizer_groups_match_train_loop(toy, tmp_path):
    encoded, _ = toy
    model = tiny_model(0)
    trainer = make_trainer(
        model,
        encoded,
        lambda m, batch, idx: m(**batch).logits.sum(),
        output_dir=str(tmp_path),
        total_steps=4,
        learning_rate=LR,
        batch_size=8,
        warmup_ratio=0.0,
        weight_decay=0.05,
        seed=0,
        device=torch.device("cpu"),
        bf16=False,
        max_grad_norm=1.0,
        callbacks=[],
    )
    optimizer = trainer.create_optimizer()
    ours = _param_groups(model, 0.05)
    theirs = optimizer.param_groups
    assert [{id(p) for p in g["params"]} for g in theirs] == [{id(p) for p in g["params"]} for g in ours]
    assert [g["weight_decay"] for g in theirs] == [0.05, 0.0]
    assert all(g["fused"] for g in theirs)


def test_loss_falls_on_the_toy_task(tokenizer):
    texts, labels = toy_data(256, seed=0)
    encoded, y = encode(tokenizer, texts, 32), torch.tensor(labels)
    model = tiny_model(0)
    settings = dict(epochs=3.0, learning_rate=5e-3, batch_size=16, warmup_ratio=0.1, seed=7)
    record = run(trainer_train_loop, encoded, y, False, model=model, **settings)
    assert record.stats["steps"] == 48
    assert np.mean(record.losses[-8:]) < 0.5 * np.mean(record.losses[:8]), record.losses
    held_texts, held_labels = toy_data(64, seed=1)
    logits = predict_logits(model, encode(tokenizer, held_texts, 32))
    # one sentiment word decides the label: a working loop beats chance by far
    assert (logits.argmax(axis=1) == np.array(held_labels)).mean() >= 0.9


def test_deterministic_under_a_seed_and_the_seed_matters(toy):
    encoded, labels = toy
    dropout = dict(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)  # the seed drives dropout too
    models = [tiny_model(0, **dropout) for _ in range(3)]
    a, b = (run(trainer_train_loop, encoded, labels, False, model=m) for m in models[:2])
    c = run(trainer_train_loop, encoded, labels, False, model=models[2], seed=4)
    assert a.losses == b.losses and a.batches == b.batches
    state_a, state_b = models[0].state_dict(), models[1].state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert c.batches != a.batches and c.losses != a.losses


def test_a_raising_checkpoint_stops_training(toy):
    encoded, labels = toy
    seen = []

    def callback(m: torch.nn.Module, step: int) -> None:
        seen.append(step)
        if len(seen) == 2:
            raise KeyboardInterrupt  # what a pruned search trial does

    with pytest.raises(KeyboardInterrupt):
        run(trainer_train_loop, encoded, labels, False, checkpoint=Checkpoint(callback, 4))
    assert seen == [2, 4]


def test_leaves_no_files_no_environment_and_no_patched_forward(toy, tmp_path, monkeypatch):
    encoded, labels = toy
    cwd, temp_root = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    temp_root.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))  # where TemporaryDirectory goes
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    model = tiny_model(0)
    record = run(trainer_train_loop, encoded, labels, True, model=model)
    assert record.stats["steps"] == 8
    assert list(cwd.iterdir()) == [] and list(temp_root.iterdir()) == []
    # TrainingArguments(bf16=True) would leave ACCELERATE_MIXED_PRECISION=bf16 behind for every
    # later Trainer, and accelerate would leave a bf16-autocast forward patched onto the model
    assert "ACCELERATE_MIXED_PRECISION" not in os.environ
    assert "forward" not in vars(model) and not model.training
