"""Training loop cost: ``transformers.Trainer`` (``trainer_train_loop``) against our ``train_loop``.

The workload is a fine-tuning step as the compress stages run it: a MiniLM-L6-sized BERT built
from its config (random init, nothing downloaded), batches of 32 token sequences whose lengths
follow SST-2's train split (word counts + 2 from the local file when present, else a fixed
long-tailed distribution), bf16 chosen like ``resolve_bf16("auto")``, cross-entropy step loss. Both
loops get the same model state, batches and schedule (they compute the same losses bit for bit,
see tests/compress/test_trainer_loop.py), so the difference is the loop machinery alone.

The two loops alternate in one process, the order flipping every round, because this machine's
speed drifts by tens of percent within minutes: only the per-round ratio Trainer/ours means
anything. Run with

    python -m pytest tests/benchmarks/test_training_loop.py --benchmark-enable -s \
        --benchmark-json /tmp/training_loop.json

then ``extra_info`` holds the per-round ratios, their median and spread (nothing about speed is
asserted). The default test run keeps pytest-benchmark disabled and checks only that both loops
run the same number of steps on the same workload.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
from harness_testutil import SST2_DIR
from reference_training_loop import train_loop

from harness.compress.batching import Encoded
from harness.compress.trainer_loop import trainer_train_loop
from harness.compress.training import resolve_bf16

BATCH = 32
STEPS, ROUNDS = 50, 7  # benchmark run: 16 runs of 50 steps, 4-5 minutes on an idle 2-core machine
QUICK_STEPS, QUICK_ROUNDS = 2, 1  # default (disabled) run: do both loops run at all
CLS, SEP, PAD = 101, 102, 0
SETTINGS = dict(epochs=1.0, learning_rate=5e-5, batch_size=BATCH, warmup_ratio=0.06, weight_decay=0.01, seed=0)


def sst2_lengths() -> tuple[np.ndarray, str]:
    """Sequence lengths with special tokens: SST-2 train's word counts + 2, or a stand-in."""
    path = SST2_DIR / "train.tsv"
    if path.is_file():
        # lines end at LF only; each sentence carries a stray CR, which read_text would take for a line end
        lines = path.read_bytes().decode("utf-8").split("\n")[1:]
        return np.array([len(line.split("\t")[0].split()) + 2 for line in lines if line.strip()]), str(path)
    # Log-normal word counts (median 8) + 2: mean ~11.6, tail to ~60, close to the real split.
    words = np.random.default_rng(0).lognormal(np.log(8.0), 0.6, 20_000)
    return np.clip(np.round(words), 1, 62).astype(np.int64) + 2, "log-normal stand-in"


def workload(steps: int) -> tuple[Encoded, torch.Tensor, dict]:
    """``steps`` batches' worth of random-token sequences with SST-2 lengths (one epoch = ``steps``)."""
    lengths, source = sst2_lengths()
    rng = np.random.default_rng(0)
    picked = rng.choice(lengths, size=steps * BATCH)
    ids = [[CLS, *rng.integers(1000, 30522, n - 2).tolist(), SEP] for n in picked]
    labels = torch.from_numpy(rng.integers(0, 2, len(ids)))
    info = {"lengths_from": source, "mean_length": float(picked.mean()), "max_length": int(picked.max())}
    return Encoded(ids, PAD), labels, info


def minilm_sized_bert() -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


class Runner:
    """Runs one loop from the same initial weights each time; returns (wall seconds, loop stats)."""

    def __init__(self, steps: int) -> None:
        self.encoded, self.labels, self.info = workload(steps)
        self.model = minilm_sized_bert()
        self.initial = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.bf16 = resolve_bf16("auto")

    def step_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], idx: np.ndarray) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(model(**batch).logits.float(), self.labels[idx])

    def __call__(self, loop: Callable[..., dict]) -> tuple[float, dict]:
        self.model.load_state_dict(self.initial)
        start = time.perf_counter()
        stats = loop(self.model, self.encoded, self.step_loss, device=torch.device("cpu"), bf16=self.bf16, **SETTINGS)
        return time.perf_counter() - start, stats


def interleaved(runner: Runner, rounds: int, warm: bool) -> list[dict]:
    """Per round: both loops, ours first in even rounds and Trainer first in odd ones."""
    if warm:  # first calls pay for lazy imports and oneDNN kernels of every batch shape
        runner(train_loop)
        runner(trainer_train_loop)
    results = []
    for r in range(rounds):
        order = (train_loop, trainer_train_loop) if r % 2 == 0 else (trainer_train_loop, train_loop)
        timed = {loop.__name__: runner(loop) for loop in order}
        results.append(timed)
    return results


def summarise(results: list[dict], steps: int) -> dict:
    def ratio(key: Callable[[tuple[float, dict]], float]) -> list[float]:
        return [key(r["trainer_train_loop"]) / key(r["train_loop"]) for r in results]

    wall = ratio(lambda t: t[0])
    loop = ratio(lambda t: t[1]["train_seconds"])
    ms_per_step = {
        name: float(np.median([r[name][1]["train_seconds"] for r in results])) * 1e3 / steps
        for name in ("train_loop", "trainer_train_loop")
    }
    return {
        # wall: the whole call, Trainer construction included; loop: train_seconds, the loop alone
        "ratio_wall_per_round": wall,
        "ratio_loop_per_round": loop,
        "ratio_wall_median": float(np.median(wall)),
        "ratio_wall_spread": [min(wall), max(wall)],
        "ratio_loop_median": float(np.median(loop)),
        "ratio_loop_spread": [min(loop), max(loop)],
        "ours_ms_per_step_median": ms_per_step["train_loop"],
        "trainer_ms_per_step_median": ms_per_step["trainer_train_loop"],
    }


def test_trainer_against_our_training_loop(benchmark) -> None:
    steps, rounds = (QUICK_STEPS, QUICK_ROUNDS) if benchmark.disabled else (STEPS, ROUNDS)
    runner = Runner(steps)
    results = benchmark.pedantic(interleaved, args=(runner, rounds, not benchmark.disabled), rounds=1, iterations=1)
    assert len(results) == rounds
    assert all(r[name][1]["steps"] == steps for r in results for name in r)
    assert all(math.isfinite(r[name][1]["final_loss"]) for r in results for name in r)
    summary = summarise(results, steps)
    benchmark.extra_info.update(
        steps=steps,
        rounds=rounds,
        batch_size=BATCH,
        bf16=runner.bf16,
        threads=torch.get_num_threads(),
        **runner.info,
        **summary,
    )
    if not benchmark.disabled:
        print(
            f"\nTrainer/ours over {rounds} rounds of {steps} steps: loop {summary['ratio_loop_median']:.3f} "
            f"(spread {summary['ratio_loop_spread'][0]:.3f}-{summary['ratio_loop_spread'][1]:.3f}), whole call "
            f"{summary['ratio_wall_median']:.3f} (spread {summary['ratio_wall_spread'][0]:.3f}-"
            f"{summary['ratio_wall_spread'][1]:.3f}); ours {summary['ours_ms_per_step_median']:.0f} ms/step"
        )


def test_workload_has_sst2_shaped_lengths() -> None:
    encoded, labels, _ = workload(3)
    assert len(encoded) == len(labels) == 3 * BATCH
    assert encoded.lengths.min() >= 3 and all(ids[0] == CLS and ids[-1] == SEP for ids in encoded.input_ids)
    lengths, _ = sst2_lengths()
    assert 9 <= lengths.mean() <= 13 and 50 <= lengths.max() <= 64  # SST-2: mean ~11.4, longest 54 with specials
