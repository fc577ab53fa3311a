import numpy as np
import pytest
import torch
from _compress_toys import tiny_model, toy_data
from transformers import AutoModelForSequenceClassification

from harness.compress.prune import (
    PruneOptions,
    magnitude_prune,
    prune,
    prune_structured,
    select_heads,
    sparsity,
)

HEAD_DIM, HIDDEN = 8, 32


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def _silence_head(model, layer, head):
    # zero V for one head: its output is 0 whatever the mask, so its importance is exactly 0
    v = model.bert.encoder.layer[layer].attention.self.value
    with torch.no_grad():
        v.weight[head * HEAD_DIM : (head + 1) * HEAD_DIM] = 0
        v.bias[head * HEAD_DIM : (head + 1) * HEAD_DIM] = 0


def test_structured_pruning_removes_exact_units_and_reloads(tokenizer, tmp_path):
    model = tiny_model(seed=3)
    _silence_head(model, 1, 2)
    _silence_head(model, 3, 0)
    with torch.no_grad():  # a dead FFN neuron: its output column is zero
        model.bert.encoder.layer[0].output.dense.weight[:, 5] = 0
    before = _n_params(model)
    texts, labels = toy_data(64, seed=1)
    info = prune_structured(model, 0.5, 0.25, 48, texts, labels, tokenizer, max_length=32, batch_size=16)

    assert info["heads_removed"] == 8 and info["ffn_width_after"] == 48
    assert 2 in info["pruned_heads"][1] and 0 in info["pruned_heads"][3]
    heads_left = []
    for i, layer in enumerate(model.bert.encoder.layer):
        n = layer.attention.self.num_attention_heads
        heads_left.append(n)
        assert layer.attention.self.query.weight.shape == (n * HEAD_DIM, HIDDEN)
        assert layer.attention.output.dense.weight.shape == (HIDDEN, n * HEAD_DIM)
        assert layer.intermediate.dense.weight.shape == (48, HIDDEN)
        assert layer.output.dense.weight.shape == (HIDDEN, 48)
        assert n == 4 - len(info["pruned_heads"].get(i, []))
    assert sum(heads_left) == 8 and min(heads_left) >= 1
    # the dead neuron (column 5) must be gone from layer 0: no all-zero column remains
    assert (model.bert.encoder.layer[0].output.dense.weight.abs().sum(0) > 0).all()
    per_head = 3 * (HEAD_DIM * HIDDEN + HEAD_DIM) + HEAD_DIM * HIDDEN  # q,k,v rows + out cols
    per_neuron = HIDDEN + 1 + HIDDEN  # intermediate row + bias + output column
    assert before - _n_params(model) == 8 * per_head + 4 * 16 * per_neuron

    model.save_pretrained(tmp_path / "p")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "p").eval()
    assert _n_params(again) == _n_params(model)
    assert {int(k): sorted(v) for k, v in again.config.pruned_heads.items()} == info["pruned_heads"]
    ids = tokenizer(texts[:6], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(again(**ids).logits, model.eval()(**ids).logits, atol=1e-5, rtol=0)


def test_select_heads_never_empties_a_layer():
    imp = torch.rand(4, 4, generator=torch.Generator().manual_seed(0))
    chosen = select_heads(imp, 0.95)
    assert sum(len(v) for v in chosen.values()) == 12
    assert all(len(v) == 3 for v in chosen.values())
    imp[2, 1] = 0.0
    assert select_heads(imp, 1 / 16) == {2: [1]}


def test_magnitude_prune_hits_sparsity_and_drops_smallest():
    model = tiny_model(seed=4)
    linears = [m for m in model.bert.encoder.modules() if isinstance(m, torch.nn.Linear)]
    orig = [m.weight.detach().clone() for m in linears]
    cls = model.classifier.weight.detach().clone()
    assert sparsity(model) == 0.0
    magnitude_prune(model, 0.6)
    total = sum(w.numel() for w in orig)
    assert abs(sparsity(model) - 0.6) <= 1.0 / total
    zeroed = torch.cat([o[m.weight == 0].abs() for o, m in zip(orig, linears)])
    kept = torch.cat([o[m.weight != 0].abs() for o, m in zip(orig, linears)])
    assert zeroed.max() <= kept.min()
    assert all(not hasattr(m, "weight_orig") and isinstance(m.weight, torch.nn.Parameter) for m in linears)
    assert torch.equal(model.classifier.weight, cls)


def test_prune_with_recovery_end_to_end(model_dir, tmp_path):
    texts, labels = toy_data(96, seed=6)
    ev_t, ev_l = toy_data(32, seed=7)
    opts = PruneOptions(
        head_fraction=0.25,
        ffn_fraction=0.5,
        importance_samples=64,
        recovery_epochs=1.0,
        batch_size=16,
        max_length=32,
        learning_rate=1e-3,
    )
    rep = prune(
        model_dir,
        texts,
        labels,
        opts,
        tmp_path / "pruned",
        teacher_dir=model_dir,
        validation_texts=ev_t,
        validation_labels=ev_l,
    )
    assert rep["structure"]["heads_removed"] == 4 and rep["steps"] == 6
    m = AutoModelForSequenceClassification.from_pretrained(tmp_path / "pruned")
    assert m.config.intermediate_size == 32
    assert sum(x.attention.self.num_attention_heads for x in m.bert.encoder.layer) == 12
    assert 0 <= rep["validation_accuracy"] <= 1 and np.isfinite(rep["final_loss"])


def test_prune_rejects_teacher_logits_of_wrong_length(model_dir, tmp_path):
    texts, labels = toy_data(10)
    with pytest.raises(ValueError):
        prune(
            model_dir,
            texts,
            labels,
            PruneOptions(importance_samples=8),
            tmp_path / "x",
            teacher_logits=np.zeros((3, 2), dtype=np.float32),
        )
