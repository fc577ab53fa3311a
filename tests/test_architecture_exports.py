"""Every supported encoder, and both lightweight students, through every exporter and backend of a
real run (the CLI, isolated cells): each variant runs, and its logits match eager FP32 within its
precision's tolerance. What cannot apply is an ``n/a`` row that says why, never an error."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from harness_testutil import SST2_PRESENT, TOY_ROWS, cli_env, read_jsonl, run_cli, write_tsv

from harness.models.tiny import ARCHITECTURES

EXPORTERS = [
    "eager-fp32",
    "eager-bf16",
    "torch-dynamic-int8",
    "onnx-fp32",
    "ort-int8",
    {"name": "ort-int8", "label": "ort-int8-fused", "options": {"optimize": True}},
    {"name": "ort-static-int8", "options": {"samples": 16, "batch_size": 4}},
    {"name": "openvino-int8", "options": {"samples": 16}},
]
# the CNN's export and ONNX Runtime parity are tested in tests/compress/test_lightweight.py
STUDENTS = {"bilstm": {"kind": "bilstm", "hidden": 8}}
FP32 = {"eager-fp32", "onnx-fp32"}


@pytest.fixture(scope="module")
def rows(tmp_path_factory, cache_dir: Path) -> list[dict]:
    work = tmp_path_factory.mktemp("architectures")
    models = [{"name": arch, "source": f"builtin:tiny-{arch}"} for arch in ARCHITECTURES]
    small = {"max_train_samples": 32, "batch_size": 16, "max_length": 32, "bf16": False}
    models += [
        {"name": name, "parent": "bert", "distill": {"student": student, **small}} for name, student in STUDENTS.items()
    ]
    suite = {
        "name": "architectures",
        "task": {
            "local": "sst2",
            "split": "validation",
            "train_split": "train",  # the calibrating exporters and the students read it
            "text_column": "sentence",
            "label_column": "label",
            "max_samples": 16,
            "validation_sentences": 20,
        },
        "models": models,
        "exporters": EXPORTERS,
        "backends": ["pytorch", "torch-compile", "onnxruntime", "openvino"],
        "devices": ["cpu"],
        "exclude": [{"exporter": "eager-bf16", "backend": "torch-compile"}],
        "shapes": {"batch_sizes": [4], "seq_lens": ["dynamic"]},
        "threads": 1,
        "timing": {"rounds": 1, "seconds_per_cell": 0.01, "single_inputs": 4, "min_batches": 1, "peak_gemm_size": 256},
        "output": {"cache_dir": str(cache_dir)},
    }
    extra = {}
    if not SST2_PRESENT:
        write_tsv(work / "data" / "sst2" / "validation.tsv", TOY_ROWS * 4)
        write_tsv(work / "data" / "sst2" / "train.tsv", TOY_ROWS * 40)
        extra["HARNESS_DATA_PATH"] = str(work / "data")
    (work / "suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    proc = run_cli(
        "run", work / "suite.yaml", "--out", work / "out", "--no-progress", env=cli_env(**extra), timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read_jsonl(work / "out" / "architectures.jsonl")


@pytest.mark.parametrize("model", [*ARCHITECTURES, *STUDENTS])
def test_every_variant_of_every_architecture_runs_or_says_why_not(rows: list[dict], model: str) -> None:
    mine = [r for r in rows if r["model"] == model]
    assert {r["exporter"] for r in mine} == {e if isinstance(e, str) else e.get("label", e["name"]) for e in EXPORTERS}
    errors = [(r["exporter"], r["backend"], r["reason"]) for r in mine if r["status"] not in ("ok", "n/a")]
    assert not errors
    not_applicable = {(r["exporter"], r["reason"]) for r in mine if r["status"] == "n/a"}
    if model in STUDENTS:  # the graph fusions are for transformers
        fusion = f"ONNX Runtime's transformer optimizer has no graph fusions for 'harness-{model}'"
        assert not_applicable == {("ort-int8-fused", fusion)}
    elif model == "deberta-v2":  # OpenVINO cannot compile its graph: OpenVINO cells and NNCF's export
        assert {exporter for exporter, _ in not_applicable} == {
            "onnx-fp32",
            "ort-int8",
            "ort-static-int8",
            "openvino-int8",
        }
        assert all("If operation of dynamic rank" in reason for _, reason in not_applicable)
    else:
        assert not not_applicable
    backends = {"pytorch", "torch-compile", "onnxruntime"} | ({"openvino"} if model != "deberta-v2" else set())
    assert {r["backend"] for r in mine if r["status"] == "ok"} == backends


@pytest.mark.parametrize("model", [*ARCHITECTURES, *STUDENTS])
def test_logits_match_eager_fp32_within_each_precision(rows: list[dict], model: str) -> None:
    for row in (r for r in rows if r["model"] == model and r["status"] == "ok"):
        diff = row["max_abs_logit_diff"]
        assert math.isfinite(diff), row["exporter"]
        if row["exporter"] in FP32 and row["precision"] == "fp32":
            assert diff < 1e-4, (row["exporter"], row["backend"], diff)
        else:  # bf16 and int8 round, a little
            assert diff < 0.5, (row["exporter"], row["backend"], diff)
