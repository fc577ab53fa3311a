import torch
from _compress_toys import tiny_model

from harness.compress.distill import make_student
from harness.compress.lineage import describe_model
from harness.compress.prune import magnitude_prune
from harness.compress.structure import remove_ffn_neurons


def test_describe_dense_model(model_dir):
    model = tiny_model()
    d = describe_model(model, seq_len=16)
    assert (d["layers"], d["heads"], d["ffn_per_layer"]) == (4, 16, [64] * 4)
    assert d["params_total"] == sum(p.numel() for p in model.parameters())
    emb = sum(p.numel() for p in model.bert.embeddings.parameters())
    assert d["params_non_embedding"] == d["params_total"] - emb
    # per layer: 4*h*a + 2*L*a + 2*h*f = 4096 + 1024 + 4096 MACs; x4 layers; x2 FLOPs per MAC
    assert d["flops_per_token"] == 2 * 4 * 9216
    assert d["sparsity"] == 0.0
    assert describe_model(model_dir, seq_len=16) == d  # from a directory too


def test_describe_compressed_model():
    model = make_student(tiny_model(), [0, 2, 3])
    model.prune_heads({0: [0, 1]})
    remove_ffn_neurons(model, [torch.arange(40)] * 3)
    magnitude_prune(model, 0.3)
    d = describe_model(model, seq_len=16)
    assert d["layers"] == 3 and d["heads_per_layer"] == [2, 4, 4] and d["ffn"] == 120
    # layer 0: a=16: 4*32*16 + 2*16*16 + 2*32*40 = 2048 + 512 + 2560; others a=32, f=40
    assert d["flops_per_token"] == 2 * ((2048 + 512 + 2560) + 2 * (4096 + 1024 + 2560))
    assert abs(d["sparsity"] - 0.3) < 1e-3
    assert d["distilled_from_layers"] == [0, 2, 3] and d["pruned_heads"] == {0: [0, 1]}
