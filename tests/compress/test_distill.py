import math

import numpy as np
import pytest
import torch
from _compress_toys import tiny_model, toy_data
from transformers import AutoModelForSequenceClassification

from harness.compress.distill import (
    DistillOptions,
    compute_teacher_logits,
    distill,
    distillation_loss,
    make_student,
)


def _softmax(v):
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def test_distillation_loss_matches_hand_computation():
    s = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    t = [[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    y = [1, 2]
    T, alpha = 2.0, 0.3
    kl = ce = 0.0
    for si, ti, yi in zip(s, t, y):
        ps, pt = _softmax([x / T for x in si]), _softmax([x / T for x in ti])
        kl += sum(a * math.log(a / b) for a, b in zip(pt, ps))
        ce += -math.log(_softmax(si)[yi])
    expected = alpha * T * T * kl / 2 + (1 - alpha) * ce / 2
    got = distillation_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), T, alpha)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_distillation_loss_limits():
    # identical logits: KL term vanishes, leaving (1-alpha)*CE; uniform 2-class CE is ln 2
    z = torch.zeros(3, 2)
    got = distillation_loss(z, z, torch.tensor([0, 1, 1]), 4.0, 0.25)
    assert got.item() == pytest.approx(0.75 * math.log(2), rel=1e-6)
    # alpha=1: pure soft loss, independent of labels
    s, t = torch.tensor([[0.5, -0.5]]), torch.tensor([[-1.0, 1.0]])
    a = distillation_loss(s, t, torch.tensor([0]), 1.0, 1.0)
    b = distillation_loss(s, t, torch.tensor([1]), 1.0, 1.0)
    assert a.item() == pytest.approx(b.item()) and a.item() > 0


def test_student_layers_are_copies_of_chosen_teacher_layers(tmp_path):
    teacher = tiny_model(seed=1)
    layers = [0, 3]
    student = make_student(teacher, layers)
    assert student.config.num_hidden_layers == 2 and len(student.bert.encoder.layer) == 2
    for new, old in enumerate(layers):
        t_params = dict(teacher.bert.encoder.layer[old].named_parameters())
        s_params = dict(student.bert.encoder.layer[new].named_parameters())
        assert t_params.keys() == s_params.keys()
        for name, p in s_params.items():
            assert torch.equal(p, t_params[name]), name
            assert p.data_ptr() != t_params[name].data_ptr()  # a copy, not shared storage
    # a wrongly mapped layer must differ (guards against the test passing vacuously)
    assert not torch.equal(
        student.bert.encoder.layer[1].attention.self.query.weight,
        teacher.bert.encoder.layer[1].attention.self.query.weight,
    )
    for mod in ("bert.embeddings", "bert.pooler", "classifier"):
        t_sd = teacher.get_submodule(mod).state_dict()
        for k, v in student.get_submodule(mod).state_dict().items():
            assert torch.equal(v, t_sd[k]), f"{mod}.{k}"
    student.save_pretrained(tmp_path / "s")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s").eval()
    ids = torch.randint(5, 30, (3, 9))
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids).logits, student.eval()(input_ids=ids).logits, atol=1e-6, rtol=0)
    assert again.config.distilled_from_layers == layers


def test_make_student_rejects_bad_layers():
    with pytest.raises(ValueError):
        make_student(tiny_model(), [0, 4])
    with pytest.raises(ValueError):
        make_student(tiny_model(), [1, 1])


def test_teacher_logits_are_in_original_order(model_dir, tokenizer):
    texts, _ = toy_data(23, seed=5)
    got = compute_teacher_logits(model_dir, texts, batch_size=4, max_length=32)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        for i in (0, 7, 22):
            ref = model(**tokenizer(texts[i], return_tensors="pt")).logits[0].numpy()
            np.testing.assert_allclose(got[i], ref, atol=1e-5)


@pytest.mark.parametrize(("hidden", "attention"), [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)])
def test_distill_end_to_end_saves_reloadable_student(model_dir, tmp_path, hidden, attention):
    texts, labels = toy_data(96, seed=2)
    ev_t, ev_l = toy_data(32, seed=3)
    opts = DistillOptions(
        layers=[1, 3],
        epochs=1.0,
        batch_size=16,
        max_length=32,
        hidden_loss_weight=hidden,
        attention_loss_weight=attention,
        learning_rate=1e-3,
    )
    rep = distill(model_dir, texts, labels, opts, tmp_path / "student", validation_texts=ev_t, validation_labels=ev_l)
    assert rep["steps"] == 6 and rep["train_samples"] == 96 and 0 <= rep["validation_accuracy"] <= 1
    assert np.isfinite(rep["final_loss"])
    m = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student")
    assert m.config.num_hidden_layers == 2
    assert (tmp_path / "student" / "model.safetensors").exists()


def test_intermediate_losses_by_hand_and_padding_ignored():
    from harness.compress.distill import _attention_mse, _hidden_mse

    mask = torch.tensor([[1, 1, 0]])  # the third position is padding
    teacher = [torch.zeros(1, 3, 2) for _ in range(3)]  # embeddings + 2 layers, hidden 2
    student = [torch.zeros(1, 3, 2), torch.zeros(1, 3, 2)]
    student[1][0, 0, 0] = 2.0  # one value off by 2 at a real position
    student[1][0, 2, :] = 100.0  # anything at the pad position must not count
    # student layer 0 imitates teacher layer 1: 2^2 over 2 positions x 2 values
    assert float(_hidden_mse(student, teacher, [1], mask)) == pytest.approx(1.0)
    maps_t = [torch.full((1, 1, 3, 3), 0.5)]
    maps_s = [torch.full((1, 1, 3, 3), 0.5)]
    maps_s[0][0, 0, 0, 1] = 1.5  # off by 1 inside the 2x2 real block
    maps_s[0][0, 0, 2, :] = 9.0  # a padded query row
    assert float(_attention_mse(maps_s, maps_t, [0], mask)) == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="heads"):
        _attention_mse([torch.zeros(1, 2, 3, 3)], maps_t, [0], mask)
