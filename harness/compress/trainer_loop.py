"""The stages' training loop on ``transformers.Trainer`` (it replaced a hand-written loop, kept as
``tests/reference_training_loop.py`` to prove the two equal: same steps, batches, schedule, losses).

It exists to measure what moving our hand-written loop onto Trainer would cost
(``tests/benchmarks/test_training_loop.py``) and to pin down where the two differ in behaviour
(``tests/compress/test_trainer_loop.py``). Everything Trainer decides on its own is steered back to
what ``train_loop`` does: our bucketed batches and per-epoch reseeding, our warmup rounding, our
autocast scope, our checkpoint steps, and no files outside a temporary directory.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer import DEFAULT_PROGRESS_CALLBACK

from harness.compress.batching import Encoded, bucket_batches, collate
from harness.compress.training import Checkpoint, StepLoss, autocast, frozen_input_embeddings, set_seed

# The batch key that carries each example's position in ``encoded`` through the collator to the loss
# (teacher logits and labels are looked up by it); popped before the model sees the batch.
INDEX_KEY = "original_indices"
_ACCELERATE_PRECISION = "ACCELERATE_MIXED_PRECISION"


class BucketBatchSampler(Sampler[list[int]]):
    """``bucket_batches`` as a batch sampler. Trainer calls ``set_epoch`` before every epoch (through
    accelerate's loader), which reseeds from ``seed + epoch`` exactly as ``train_loop`` does."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        for idx in bucket_batches(self.lengths, self.batch_size, shuffle=True, seed=self.seed + self.epoch):
            yield idx.tolist()

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


class _Positions(Dataset):
    # Items are positions only; the collator pads the token ids of a whole batch at once.
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class _Collator:
    def __init__(self, encoded: Encoded) -> None:
        self.encoded = encoded

    def __call__(self, positions: list[int]) -> dict[str, Any]:
        idx = np.asarray(positions, dtype=np.int64)
        # A numpy array passes Trainer's and accelerate's device moves untouched, so step_loss gets
        # the same type of indices as under train_loop.
        return {**collate(self.encoded, idx), INDEX_KEY: idx}


class StepLossTrainer(Trainer):
    """Trainer whose batches are our buckets and whose loss is our ``step_loss``."""

    def __init__(
        self, *args: Any, encoded: Encoded, step_loss: StepLoss, losses: list[float] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.encoded, self.step_loss = encoded, step_loss
        self.losses = losses if losses is not None else []

    def get_train_dataloader(self) -> DataLoader:
        sampler = BucketBatchSampler(self.encoded.lengths, self.args.per_device_train_batch_size, self.args.seed)
        loader = DataLoader(
            _Positions(len(self.encoded)),
            batch_sampler=sampler,
            collate_fn=_Collator(self.encoded),
            num_workers=self.args.dataloader_num_workers,
        )
        return self.accelerator.prepare(loader)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> torch.Tensor | tuple[torch.Tensor, None]:
        idx = inputs.pop(INDEX_KEY)
        # Trainer autocasts this call only on CPU; ours covers every device and, as in train_loop,
        # the whole step_loss (a per-batch teacher included), not just the student's forward.
        with autocast(self.args.device, self.args.bf16):
            loss = self.step_loss(model, inputs, idx)
        self.losses.append(float(loss.detach()))
        return (loss, None) if return_outputs else loss


class CheckpointCallback(TrainerCallback):
    """Calls a ``Checkpoint`` at the same steps as ``train_loop``: after the optimizer step, the
    scheduler step and zeroing the gradients. An exception it raises leaves ``Trainer.train``."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint

    def on_step_end(self, args: TrainingArguments, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.checkpoint.due(state.global_step, state.max_steps):
            self.checkpoint.callback(model, state.global_step)
            model.train()


class _ProgressBar(TrainerCallback):
    # Trainer's own bar redraws every step and cannot be named; this one matches train_loop's.
    def __init__(self, desc: str, losses: list[float]) -> None:
        self.desc, self.losses, self.bar = desc, losses, None

    def on_train_begin(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        self.bar = tqdm(total=state.max_steps, desc=self.desc, unit="step", mininterval=5.0)

    def on_step_end(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        self.bar.update(1)
        if state.global_step % 50 == 0:
            self.bar.set_postfix(loss=f"{np.mean(self.losses[-50:]):.4f}")

    def on_train_end(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        self.bar.close()


@contextlib.contextmanager
def _accelerate_without_amp() -> Iterator[None]:
    """TrainingArguments(bf16=True) writes ACCELERATE_MIXED_PRECISION=bf16 into the process
    environment, where it stays and turns on bf16 for every later Accelerator, even for a Trainer
    given bf16=False. The Accelerator built from it would also patch ``model.forward`` with an
    autocast wrapper that outlives training, so a checkpoint's or a later fp32 evaluation would
    silently run in bf16. Trainer's own autocast (and ours in compute_loss) does the job; the
    Accelerator is built without mixed precision and the variable is put back as it was.
    """
    before = os.environ.get(_ACCELERATE_PRECISION)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_ACCELERATE_PRECISION, None)
        else:
            os.environ[_ACCELERATE_PRECISION] = before


def total_steps_for(n_examples: int, batch_size: int, epochs: float) -> int:
    """The step count of ``train_loop``: ``ceil(epochs * batches_per_epoch)``, at least one."""
    return max(1, math.ceil(epochs * math.ceil(n_examples / batch_size)))


def make_trainer(
    model: torch.nn.Module,
    encoded: Encoded,
    step_loss: StepLoss,
    *,
    output_dir: str,
    total_steps: int,
    learning_rate: float,
    batch_size: int,
    warmup_ratio: float,
    weight_decay: float,
    seed: int,
    device: torch.device,
    bf16: bool,
    max_grad_norm: float,
    callbacks: list[TrainerCallback],
    losses: list[float] | None = None,
) -> StepLossTrainer:
    """A Trainer configured like ``train_loop``; nothing is written outside ``output_dir``."""
    with _accelerate_without_amp():
        args = TrainingArguments(
            output_dir=output_dir,
            max_steps=total_steps,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            optim="adamw_torch_fused",
            lr_scheduler_type="linear",
            # Trainer would round warmup_ratio * steps up; train_loop truncates, so pass the steps
            warmup_steps=int(warmup_ratio * total_steps),
            max_grad_norm=max_grad_norm or 0.0,
            bf16=bf16,
            use_cpu=device.type == "cpu",
            seed=seed,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to=[],
            dataloader_num_workers=0,
            dataloader_pin_memory=device.type == "cuda",
            remove_unused_columns=False,
        )
        _check_device(args.device, device)
        os.environ[_ACCELERATE_PRECISION] = "no"
        trainer = StepLossTrainer(
            model=model, args=args, encoded=encoded, step_loss=step_loss, losses=losses, callbacks=callbacks
        )
    trainer.remove_callback(DEFAULT_PROGRESS_CALLBACK)
    return trainer


def _check_device(chosen: torch.device, wanted: torch.device) -> None:
    # Trainer picks its device from process-wide accelerate state (use_cpu or the first GPU), not
    # from an argument: refuse rather than train somewhere the caller did not ask for.
    if chosen.type != wanted.type or (wanted.index is not None and chosen.index != wanted.index):
        raise ValueError(f"Trainer would train on {chosen}, not on {wanted}")


def trainer_train_loop(
    model: torch.nn.Module,
    encoded: Encoded,
    step_loss: StepLoss,
    *,
    epochs: float,
    learning_rate: float,
    batch_size: int,
    warmup_ratio: float,
    weight_decay: float,
    seed: int,
    device: torch.device,
    bf16: bool,
    max_grad_norm: float = 1.0,
    desc: str = "train",
    checkpoint: Checkpoint | None = None,
    freeze_embeddings: bool = False,
) -> dict:
    """Train ``model`` on ``step_loss`` with ``transformers.Trainer``: AdamW with linear warmup and
    decay over ``ceil(epochs * batches_per_epoch)`` steps, fractional epochs stopping mid-epoch,
    each epoch's bucketed order drawn from ``seed + epoch``, and ``checkpoint`` called at its evenly
    spaced steps (a search scores the model there and may stop the trial by raising).
    ``freeze_embeddings`` keeps the token-embedding table out of the optimizer for this call.

    ``train_seconds`` covers ``Trainer.train`` only, not building the Trainer (a few hundred ms).
    """
    set_seed(seed)
    device = torch.device(device)
    model.to(device).train()
    total_steps = total_steps_for(len(encoded), batch_size, epochs)
    losses: list[float] = []  # appended to by compute_loss, read by the progress bar
    callbacks: list[TrainerCallback] = [_ProgressBar(desc, losses)]
    if checkpoint is not None:
        callbacks.append(CheckpointCallback(checkpoint))
    with (
        tempfile.TemporaryDirectory(prefix="trainer-loop-") as output_dir,
        frozen_input_embeddings(model, freeze_embeddings),
    ):
        trainer = make_trainer(
            model,
            encoded,
            step_loss,
            output_dir=output_dir,
            total_steps=total_steps,
            learning_rate=learning_rate,
            batch_size=batch_size,
            warmup_ratio=warmup_ratio,
            weight_decay=weight_decay,
            seed=seed,
            device=device,
            bf16=bf16,
            max_grad_norm=max_grad_norm,
            callbacks=callbacks,
            losses=losses,
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    model.eval()
    return {
        "train_seconds": seconds,
        "steps": trainer.state.global_step,
        "final_loss": float(np.mean(losses[-100:])) if losses else float("nan"),
    }
