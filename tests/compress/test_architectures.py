"""Every supported encoder through fine-tune, distil (with hidden-state and attention losses) and
prune, by its own module names, on tiny random models built offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _compress_toys import toy_data
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from harness.compress.architectures import ARCHITECTURES as DESCRIBED
from harness.compress.architectures import (
    accepts,
    architecture_of,
    config_depth,
    depth_of,
    embedding_modules,
    encoder_layers,
    ffn_width,
    head_size,
    heads_in,
    model_inputs,
)
from harness.compress.distill import _attention_mse, _hidden_mse, distill, make_student
from harness.compress.finetune import finetune
from harness.compress.lineage import describe_model
from harness.compress.options import DistillOptions, FinetuneOptions, PruneOptions
from harness.compress.prune import prune
from harness.compress.structure import remove_ffn_neurons, remove_heads, unit_masks
from harness.compress.training import accuracy
from harness.errors import HarnessError
from harness.models.tiny import ARCHITECTURES, create_tiny_model

NO_HEAD_PRUNING = ("deberta-v2", "mpnet")  # transformers cannot reload or run them with fewer heads
SMALL = {"max_train_samples": 24, "batch_size": 12, "max_length": 24, "bf16": False, "learning_rate": 1e-3}
HEADS, HIDDEN = 4, 32  # 4 heads of 8, so that a quarter of one layer's heads is one head


def test_every_tiny_architecture_is_described() -> None:
    assert set(ARCHITECTURES) == set(DESCRIBED)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def chain(request, tmp_path_factory) -> dict:
    """One architecture fine-tuned, distilled to its second layer (hidden-state and attention losses)
    and pruned: the folders and reports of each stage."""
    arch, root = request.param, tmp_path_factory.mktemp(request.param)
    shape = {"n_heads": HEADS, "dim": HIDDEN} if arch == "distilbert" else {"num_attention_heads": HEADS}
    base = create_tiny_model(arch, root / "base", **shape)
    texts, labels = toy_data(32, seed=1)
    held = dict(zip(("validation_texts", "validation_labels"), toy_data(12, seed=2)))
    finetune(base, texts, labels, 2, FinetuneOptions(epochs=1, **SMALL), root / "teacher", **held)
    distill_options = DistillOptions(layers=[1], hidden_loss_weight=1.0, attention_loss_weight=1.0, **SMALL)
    distilled = distill(root / "teacher", texts, labels, distill_options, root / "student", **held)
    head_fraction = 0.0 if arch in NO_HEAD_PRUNING else 0.25
    prune_options = PruneOptions(
        head_fraction=head_fraction, ffn_fraction=0.5, importance_samples=12, hidden_loss_weight=1.0, **SMALL
    )
    report = prune(
        root / "student", texts, labels, prune_options, root / "pruned", teacher_dir=root / "teacher", **held
    )
    folders = {name: root / name for name in ("teacher", "student", "pruned")}
    return {"arch": arch, **folders, "distilled": distilled, "report": report, **held}


def _load(path: Path):
    return AutoModelForSequenceClassification.from_pretrained(path).eval()


def _batch(model, path: Path) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["the movie was good", "bad", "a very dull plot"], padding=True, return_tensors="pt")
    return model_inputs(model, dict(batch))


def _logits(model, path: Path) -> torch.Tensor:
    with torch.no_grad():
        return model(**_batch(model, path)).logits


def test_the_description_matches_the_model(chain) -> None:
    teacher = _load(chain["teacher"])
    arch = architecture_of(teacher)
    saved = json.loads((chain["teacher"] / "config.json").read_text())
    layers = list(encoder_layers(teacher))
    assert len(layers) == depth_of(teacher.config) == config_depth(saved) == saved[arch.depth_key] == 2
    assert [heads_in(layer, arch) for layer in layers] == [saved[arch.heads_key]] * 2 == [HEADS] * 2
    assert [ffn_width(layer, arch) for layer in layers] == [saved[arch.ffn_key]] * 2
    assert head_size(layers[0], arch) * HEADS == saved[arch.hidden_key] == HIDDEN
    assert accepts(teacher, "token_type_ids") is arch.token_type_ids
    assert len(embedding_modules(teacher)) == len(arch.embeddings)  # every named module exists
    from onnxruntime.transformers.optimizer import MODEL_TYPES

    assert arch.ort_model_type in MODEL_TYPES if arch.ort_model_type else arch.ort_note


def test_a_student_of_every_layer_is_the_teacher(chain) -> None:
    teacher = _load(chain["teacher"])
    student = make_student(teacher, [0, 1]).eval()
    torch.testing.assert_close(_logits(student, chain["teacher"]), _logits(teacher, chain["teacher"]), rtol=0, atol=0)
    # and its hidden states and attention maps: the distillation losses are zero, their shapes agree
    batch = _batch(teacher, chain["teacher"])
    with torch.no_grad():
        s = student(**batch, output_hidden_states=True, output_attentions=True)
        t = teacher(**batch, output_hidden_states=True, output_attentions=True)
    mask = batch["attention_mask"]
    assert [a.shape for a in s.attentions] == [(3, HEADS, mask.shape[1], mask.shape[1])] * 2
    assert float(_hidden_mse(s.hidden_states, t.hidden_states, [0, 1], mask)) == 0.0
    assert float(_attention_mse(s.attentions, t.attentions, [0, 1], mask)) == 0.0
    assert float(_hidden_mse(s.hidden_states, t.hidden_states, [1, 0], mask)) > 0  # the loss can fail


def test_a_student_copies_the_chosen_layer_and_everything_outside_the_layers(chain) -> None:
    teacher = _load(chain["teacher"])
    arch = architecture_of(teacher)
    student = make_student(teacher, [1])
    assert depth_of(student.config) == 1 and student.config.distilled_from_layers == [1]
    t_state, s_state = teacher.state_dict(), student.state_dict()
    infix = "." + arch.layer_prefix
    for key, value in s_state.items():
        source = key.replace(f"{infix}0.", f"{infix}1.")
        assert (source != key) == (infix in key)
        torch.testing.assert_close(value, t_state[source], rtol=0, atol=0)
    # the teacher's parameters outside its layers (DeBERTa-v2's rel_embeddings, MPNet's
    # relative_attention_bias, ...) all reach the student
    assert {k for k in t_state if infix not in k} <= set(s_state)


def test_the_distilled_student_trained_and_reloads(chain) -> None:
    report = chain["distilled"]
    assert report["steps"] == 2 and report["final_loss"] == report["final_loss"]  # not NaN
    student = _load(chain["student"])
    assert describe_model(student)["layers"] == 1 and student.config.model_type == chain["arch"]
    _scores_as_reported(student, chain["student"], chain, report)


def _scores_as_reported(model, path: Path, chain: dict, report: dict) -> None:
    from harness.compress.batching import encode
    from harness.compress.training import predict_logits

    tokenizer = AutoTokenizer.from_pretrained(path)
    logits = predict_logits(model, encode(tokenizer, chain["validation_texts"], SMALL["max_length"]))
    assert accuracy(logits, chain["validation_labels"]) == report["validation_accuracy"]


def test_the_pruned_model_reloads_smaller_with_the_accuracy_it_was_saved_with(chain) -> None:
    pruned, student = _load(chain["pruned"]), describe_model(chain["student"])
    shape = describe_model(pruned)
    removed = 0 if chain["arch"] in NO_HEAD_PRUNING else 1  # a quarter of the one layer's 4 heads
    assert chain["report"]["structure"]["heads_removed"] == removed
    assert shape["heads_per_layer"] == [HEADS - removed] and shape["heads"] == student["heads"] - removed
    assert shape["ffn_per_layer"] == [student["ffn"] // 2]
    assert shape["params_total"] < student["params_total"]
    assert shape["flops_per_token"] < student["flops_per_token"]
    assert shape["params_embedding"] == student["params_embedding"] > 0
    _scores_as_reported(pruned, chain["pruned"], chain, chain["report"])


def test_removing_units_equals_masking_them_and_survives_a_reload(chain, tmp_path: Path) -> None:
    model = _load(chain["teacher"])
    arch = architecture_of(model)
    heads = {} if chain["arch"] in NO_HEAD_PRUNING else {0: [1, 3], 1: [0]}  # uneven: 2 and 3 heads left
    keep = [torch.arange(0, ffn_width(layer, arch), 2) for layer in encoder_layers(model)]
    with unit_masks(model, torch.device("cpu")) as (head_mask, ffn_masks), torch.no_grad():
        for layer, dropped in heads.items():
            head_mask[layer, dropped] = 0
        for mask, kept in zip(ffn_masks, keep):
            mask.zero_()[kept] = 1
        masked = _logits(model, chain["teacher"])
    if heads:
        remove_heads(model, heads)
    remove_ffn_neurons(model, keep)
    pruned = _logits(model, chain["teacher"])
    torch.testing.assert_close(pruned, masked, rtol=1e-5, atol=1e-5)
    assert describe_model(model)["heads_per_layer"] == [HEADS - len(heads.get(i, [])) for i in range(2)]
    model.save_pretrained(tmp_path)
    again = _load(tmp_path)
    assert again.config.pruned_heads == heads
    torch.testing.assert_close(_logits(again, chain["teacher"]), pruned, rtol=0, atol=0)


def test_an_unsupported_architecture_is_named() -> None:
    from transformers import GPT2Config

    with pytest.raises(HarnessError, match=r"model type 'gpt2' is not supported .*supported: bert, deberta-v2"):
        architecture_of(GPT2Config())
    with pytest.raises(HarnessError, match=r"model type 't5' is not supported .*distilbert, electra, mpnet, roberta"):
        architecture_of({"model_type": "t5"})


@pytest.mark.parametrize("arch", NO_HEAD_PRUNING)
def test_heads_that_cannot_be_pruned_are_refused_with_the_reason(arch: str, tmp_path: Path) -> None:
    base = create_tiny_model(arch, tmp_path / "base")
    texts, labels = toy_data(16, seed=1)
    with pytest.raises(HarnessError, match=f"cannot prune the heads of a {arch} model.*use head_fraction: 0"):
        prune(base, texts, labels, PruneOptions(head_fraction=0.5, **SMALL), tmp_path / "pruned")
