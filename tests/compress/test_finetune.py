import torch
from _compress_toys import toy_data
from transformers import AutoModelForSequenceClassification

from harness.compress.finetune import FinetuneOptions, finetune


def test_finetune_learns_toy_task_and_is_deterministic(model_dir, tmp_path):
    texts, labels = toy_data(256, seed=0)
    ev_t, ev_l = toy_data(64, seed=1)
    opts = FinetuneOptions(epochs=3.0, learning_rate=3e-3, batch_size=16, max_length=32, seed=7)
    rep = finetune(model_dir, texts, labels, 2, opts, tmp_path / "a", ev_t, ev_l)
    assert rep["steps"] == 48 and rep["train_samples"] == 256
    # one sentiment word decides the label: a working loop must beat chance by far
    assert rep["validation_accuracy"] >= 0.9, rep
    rep_b = finetune(model_dir, texts, labels, 2, opts, tmp_path / "b")
    assert rep_b["final_loss"] == rep["final_loss"]
    a = AutoModelForSequenceClassification.from_pretrained(tmp_path / "a").state_dict()
    b = AutoModelForSequenceClassification.from_pretrained(tmp_path / "b").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fractional_epochs_and_sample_cap(model_dir, tmp_path):
    texts, labels = toy_data(100, seed=0)
    opts = FinetuneOptions(epochs=0.5, batch_size=10, max_length=32, max_train_samples=60, bf16=True)
    rep = finetune(model_dir, texts, labels, 2, opts, tmp_path / "c")
    assert rep["train_samples"] == 60 and rep["steps"] == 3
    assert "validation_accuracy" not in rep


def test_stages_accept_suite_pydantic_options(model_dir, tmp_path):
    # suite files build harness.compress.options models; the stages must take them as-is
    from harness.compress import options as suite_options
    from harness.compress.distill import distill

    texts, labels = toy_data(40, seed=3)
    ft = suite_options.FinetuneOptions(epochs=0.5, batch_size=10, max_length=32)
    rep = finetune(model_dir, texts, labels, 2, ft, tmp_path / "f")
    assert rep["options"]["batch_size"] == 10 and rep["steps"] == 2
    ds = suite_options.DistillOptions(layers=[0, 2], epochs=0.5, batch_size=10, max_length=32)
    rep = distill(tmp_path / "f", texts, labels, ds, tmp_path / "d")
    assert rep["options"]["layers"] == [0, 2] and rep["steps"] == 2


def test_frozen_embeddings_stay_as_they_were_and_the_rest_still_learns(model_dir, tmp_path):
    from harness.compress import options as suite_options
    from harness.compress.distill import distill
    from harness.compress.prune import prune

    texts, labels = toy_data(64, seed=2)
    before = AutoModelForSequenceClassification.from_pretrained(model_dir).state_dict()
    table = "bert.embeddings.word_embeddings.weight"
    stages = {
        "f": lambda out: finetune(
            model_dir,
            texts,
            labels,
            2,
            FinetuneOptions(epochs=1.0, batch_size=16, max_length=32, freeze_embeddings=True),
            out,
        ),
        "d": lambda out: distill(
            model_dir,
            texts,
            labels,
            suite_options.DistillOptions(
                layers=[0, 2], epochs=1.0, batch_size=16, max_length=32, freeze_embeddings=True
            ),
            out,
        ),
        "p": lambda out: prune(
            model_dir,
            texts,
            labels,
            suite_options.PruneOptions(
                head_fraction=0.5,
                ffn_fraction=0.5,
                importance_samples=32,
                batch_size=16,
                max_length=32,
                freeze_embeddings=True,
            ),
            out,
            teacher_dir=model_dir,
        ),
    }
    for name, run in stages.items():
        run(tmp_path / name)
        after = AutoModelForSequenceClassification.from_pretrained(tmp_path / name).state_dict()
        assert torch.equal(after[table], before[table]), name
        # the encoder's own weights did train
        moved = [
            k
            for k in after
            if k in before and k != table and after[k].shape == before[k].shape and not torch.equal(after[k], before[k])
        ]
        assert moved, name


def test_unfrozen_embeddings_train_and_the_flag_is_restored(model_dir, tmp_path):
    from harness.compress.training import frozen_input_embeddings

    texts, labels = toy_data(64, seed=2)
    finetune(model_dir, texts, labels, 2, FinetuneOptions(epochs=1.0, batch_size=16, max_length=32), tmp_path / "u")
    before = AutoModelForSequenceClassification.from_pretrained(model_dir).state_dict()
    after = AutoModelForSequenceClassification.from_pretrained(tmp_path / "u").state_dict()
    table = "bert.embeddings.word_embeddings.weight"
    assert not torch.equal(after[table], before[table])
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    with frozen_input_embeddings(model):
        assert not model.get_input_embeddings().weight.requires_grad
    assert model.get_input_embeddings().weight.requires_grad
