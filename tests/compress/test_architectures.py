"""Every supported encoder through fine-tune, distil (with hidden-state and attention losses) and
prune, by its own module names, on tiny random configs built offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _compress_toys import toy_data
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from harness.compress.architectures import architecture_of, encoder_layers, heads_in
from harness.compress.distill import distill, make_student
from harness.compress.finetune import finetune
from harness.compress.lineage import describe_model
from harness.compress.options import DistillOptions, FinetuneOptions, PruneOptions
from harness.compress.prune import prune
from harness.errors import HarnessError
from harness.models.tiny import ARCHITECTURES, create_tiny_model

NO_HEAD_PRUNING = ("deberta-v2", "mpnet")  # transformers cannot run or reload them with fewer heads
SMALL = {"max_train_samples": 32, "batch_size": 16, "max_length": 24, "bf16": False, "learning_rate": 1e-3}


@pytest.fixture(scope="module", params=ARCHITECTURES)
def chain(request, tmp_path_factory) -> dict[str, Path]:
    """One architecture fine-tuned, distilled to one layer and pruned: the folders of each stage."""
    root = tmp_path_factory.mktemp(request.param)
    # 4 heads so that pruning a quarter of them (evenly too) leaves heads in every layer
    base = create_tiny_model(request.param, root / "base", **_four_heads(request.param))
    texts, labels = toy_data(48, seed=1)
    held_texts, held_labels = toy_data(16, seed=2)
    held = {"validation_texts": held_texts, "validation_labels": held_labels}
    finetune(base, texts, labels, 2, FinetuneOptions(epochs=1, **SMALL), root / "teacher", **held)
    distill_options = DistillOptions(layers=[1], hidden_loss_weight=1.0, attention_loss_weight=1.0, **SMALL)
    report = distill(root / "teacher", texts, labels, distill_options, root / "student", **held)
    assert report["validation_samples"] == 16
    head_fraction = 0.0 if request.param in NO_HEAD_PRUNING else 0.25
    prune_options = PruneOptions(head_fraction=head_fraction, ffn_fraction=0.5, importance_samples=16, **SMALL)
    prune(root / "student", texts, labels, prune_options, root / "pruned", teacher_dir=root / "teacher", **held)
    return {"base": base, "teacher": root / "teacher", "student": root / "student", "pruned": root / "pruned"}


def _four_heads(architecture: str) -> dict:
    # DistilBERT names its head count and width n_heads and dim
    return {"n_heads": 4, "dim": 48} if architecture == "distilbert" else {"num_attention_heads": 4, "hidden_size": 48}


def _load(path: Path):
    return AutoModelForSequenceClassification.from_pretrained(path).eval()


def _logits(model, path: Path) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["the movie was good", "bad"], padding=True, return_tensors="pt")
    if model.config.model_type in ("distilbert", "mpnet"):
        batch.pop("token_type_ids")
    with torch.no_grad():
        return model(**batch).logits


def test_a_student_of_every_layer_is_the_teacher(chain) -> None:
    teacher = _load(chain["teacher"])
    depth = teacher.config.num_hidden_layers
    student = make_student(teacher, list(range(depth))).eval()
    torch.testing.assert_close(_logits(student, chain["teacher"]), _logits(teacher, chain["teacher"]))


def test_the_student_keeps_the_chosen_layer(chain) -> None:
    teacher, student = _load(chain["teacher"]), _load(chain["student"])
    assert student.config.num_hidden_layers == 1 and student.config.distilled_from_layers == [1]
    assert student.config.model_type == teacher.config.model_type
    assert describe_model(student)["layers"] == 1


def test_the_pruned_model_reloads_smaller_with_the_logits_it_was_saved_with(chain, tmp_path: Path) -> None:
    pruned = _load(chain["pruned"])
    arch = architecture_of(pruned)
    student = describe_model(chain["student"])
    shape = describe_model(pruned)
    removed = 0 if pruned.config.model_type in NO_HEAD_PRUNING else 1  # a quarter of one layer's 4 heads
    assert shape["heads"] == student["heads"] - removed
    assert shape["ffn"] == student["ffn"] // 2
    assert [heads_in(layer, arch) for layer in encoder_layers(pruned)] == [4 - removed]
    pruned.save_pretrained(tmp_path / "again")
    again = _load(tmp_path / "again")
    torch.testing.assert_close(_logits(again, chain["pruned"]), _logits(pruned, chain["pruned"]))
    assert shape["params_total"] < student["params_total"]


def test_an_unsupported_architecture_is_named() -> None:
    from transformers import GPT2Config

    with pytest.raises(HarnessError, match=r"model type 'gpt2' is not supported .*supported: bert, deberta-v2"):
        architecture_of(GPT2Config())


@pytest.mark.parametrize("architecture", NO_HEAD_PRUNING)
def test_heads_that_cannot_be_pruned_are_refused_with_the_reason(architecture: str, tmp_path: Path) -> None:
    base = create_tiny_model(architecture, tmp_path / "base")
    texts, labels = toy_data(16, seed=1)
    with pytest.raises(HarnessError, match=f"cannot prune the heads of a {architecture} model.*use head_fraction: 0"):
        prune(base, texts, labels, PruneOptions(head_fraction=0.5, **SMALL), tmp_path / "pruned")
