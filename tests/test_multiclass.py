"""Tasks with more than two classes: macro-F1 by hand, McNemar and the gates on correctness alone,
the report's column, and a three-class suite with string labels through ``python -m harness run``."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from harness_testutil import cli_env, read_jsonl, run_cli
from test_report import row, run_info, table_after

from harness.results.build import CellContext, Scored, accuracy_fields
from harness.results.checks import row_problem
from harness.results.report import render_report
from harness.results.stats import macro_f1

LABELS = {"negative": 0, "neutral": 1, "positive": 2}


def test_macro_f1_by_hand() -> None:
    # class 0: TP 2, FP 0, FN 1 -> 4/5; class 1: TP 1, FP 1, FN 1 -> 2/4; class 2: TP 1, FP 1, FN 0 -> 2/3
    assert macro_f1([0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2]) == pytest.approx((4 / 5 + 2 / 4 + 2 / 3) / 3)
    # a class predicted but absent from the labels counts 0; one in neither is no class of the average
    assert macro_f1([0, 3, 1], [0, 0, 1]) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert macro_f1([2, 2, 2, 2], [2, 2, 0, 0]) == pytest.approx((0 + 2 * 2 / 6) / 2)  # never predicted: 0
    assert macro_f1(np.array([1, 0]), np.array([1, 0])) == 1.0
    with pytest.raises(ValueError, match="equally long"):
        macro_f1([0, 1], [0])
    with pytest.raises(ValueError, match=">= 0"):
        macro_f1([0, -1], [0, 1])


def test_macro_f1_matches_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for classes in (2, 3, 7):
        labels = rng.integers(0, classes, 200)
        predictions = np.where(rng.random(200) < 0.6, labels, rng.integers(0, classes + 1, 200))
        expected = metrics.f1_score(labels, predictions, average="macro", zero_division=0)
        assert macro_f1(predictions, labels) == pytest.approx(expected, abs=1e-12)


def one_hot(predictions: list[int], classes: int = 3) -> np.ndarray:
    return np.eye(classes)[predictions]


def test_mcnemar_and_gates_compare_correct_against_incorrect() -> None:
    labels = np.array([0, 1, 2, 2, 1, 0])
    teacher = one_hot([0, 1, 2, 2, 2, 1])  # wrong on the last two
    context = CellContext(labels, teacher, teacher, 0.99, {}, {}, "fp32")
    # wrong on the same two sentences with the other wrong class: nothing McNemar or a gate can see
    other_wrong = accuracy_fields(Scored(one_hot([0, 1, 2, 2, 0, 2]), "batch 1"), context)
    assert other_wrong["mcnemar_p"] == 1.0 and other_wrong["accuracy"] == 4 / 6
    assert other_wrong["accuracy_gate"] == other_wrong["teacher_gate"] == "pass"
    assert other_wrong["agreement"] == 4 / 6  # the predictions do differ
    # F1 = 2 hits / (support + predicted): class 0 hits 1 of 2, predicted twice; class 1 hits 1 of 2,
    # predicted once; class 2 hits 2 of 2, predicted three times
    f1 = {0: 2 * 1 / (2 + 2), 1: 2 * 1 / (2 + 1), 2: 2 * 2 / (2 + 3)}
    assert other_wrong["macro_f1"] == pytest.approx(sum(f1.values()) / 3)
    # right where the teacher erred, wrong on two it got: 2 discordant pairs each way
    swapped = accuracy_fields(Scored(one_hot([1, 2, 2, 2, 1, 0]), "batch 1"), context)
    assert swapped["accuracy"] == 4 / 6 and swapped["mcnemar_p"] == 1.0
    worse = accuracy_fields(Scored(one_hot([1, 2, 2, 2, 2, 1]), "batch 1"), context)
    # 2 discordant pairs, both against the variant: two-sided binomial p = 2 x 0.5^2
    assert worse["mcnemar_p"] == pytest.approx(0.5) and worse["teacher_gate"] == "fail"


def test_a_row_with_macro_f1_out_of_range_is_refused() -> None:
    good = {**row(run_info("r", "CPU"), "eager-fp32", "pytorch", "cpu", 1, 2.0), "macro_f1": 0.4}
    assert row_problem(good) == ""
    assert "macro_f1 is 1.5, expected a number from 0 to 1" in row_problem({**good, "macro_f1": 1.5})
    assert "macro_f1 is True" in row_problem({**good, "macro_f1": True})


def test_the_accuracy_table_shows_macro_f1_beside_accuracy() -> None:
    run = run_info("r", "CPU")
    rows = [
        {**row(run, "eager-fp32", "pytorch", "cpu", 1, 4.0), "macro_f1": 0.25},
        row(run, "onnx-fp32", "onnxruntime", "cpu", 1, 2.0),  # written before macro-F1 existed
    ]
    text = render_report(rows)
    header = next(line for line in text.splitlines() if "accuracy (%)" in line and "macro-F1" in line)
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[columns.index("accuracy (%)") + 1] == "macro-F1 (%)"
    table = {r["exporter"]: r["macro-F1 (%)"] for r in table_after(text, "### Accuracy")}
    assert table == {"eager-fp32": "25", "onnx-fp32": "—"}


def three_class_rows(counts: dict[str, int], seed: int) -> list[tuple[str, str]]:
    """Sentences whose class is decided by one word, ``counts[label]`` of each, shuffled."""
    words = {"negative": ["bad", "awful", "dull"], "neutral": ["okay", "average", "plain"], "positive": ["great"]}
    filler = ["the", "film", "was", "a", "plot", "and", "acting", "really"]
    rng = random.Random(seed)
    rows = []
    for label, count in counts.items():
        for _ in range(count):
            sentence = rng.choices(filler, k=rng.randint(2, 6))
            sentence.insert(rng.randint(0, len(sentence)), rng.choice(words[label]))
            rows.append((" ".join(sentence) + f" {len(rows)}", label))  # numbered: no row inside another
    rng.shuffle(rows)
    return rows


def three_class_suite(tmp_path: Path, student: dict) -> tuple[Path, list[int]]:
    data = tmp_path / "data"
    data.mkdir()
    # unbalanced on purpose: there, macro-F1 differs from accuracy and from support-weighted F1
    splits = {"validation": three_class_rows({"negative": 15, "neutral": 10, "positive": 5}, 1)}
    splits["train"] = three_class_rows({"negative": 20, "neutral": 20, "positive": 20}, 2)
    for name, rows in splits.items():
        lines = ["sentence\tlabel", *(f"{text}\t{label}" for text, label in rows)]
        (data / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    raw = {
        "name": "three",
        "task": {"local": str(data), "source": "local", "label_map": LABELS, "validation_sentences": 6},
        "models": [
            {"name": "teacher", "source": "builtin:tiny-bert", "num_labels": 3},
            {"name": "student", "parent": "teacher", **student},
        ],
        "exporters": ["eager-fp32", "torch-dynamic-int8"],
        "backends": ["pytorch"],
        "devices": ["cpu"],
        "shapes": {"batch_sizes": [1], "seq_lens": ["dynamic"]},
        "threads": 1,
        "timing": {"rounds": 1, "seconds_per_cell": 0.05, "single_inputs": 6, "min_batches": 2, "peak_gemm_size": 64},
        "output": {"dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache")},
    }
    suite = tmp_path / "three.yaml"
    suite.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return suite, [LABELS[label] for _, label in splits["validation"]]


DISTILL = {"layers": [0], "epochs": 1.0, "batch_size": 8, "max_length": 32, "bf16": False}


def test_three_string_labelled_classes_run_end_to_end(tmp_path: Path) -> None:
    # num_labels is repeated on the student: preflight does not take it from the parent (see below)
    suite, labels = three_class_suite(tmp_path, {"num_labels": 3, "distill": DISTILL})
    proc = run_cli("run", suite, "--out", tmp_path / "out", "--no-progress", env=cli_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(tmp_path / "out" / "three.jsonl")
    assert sorted((r["model"], r["exporter"], r["status"]) for r in rows) == sorted(
        (m, e, "ok") for m in ("teacher", "student") for e in ("eager-fp32", "torch-dynamic-int8")
    )
    # the eager FP32 cells are the models' reference logits, cached by the run: score them again
    references = [np.load(path) for path in (tmp_path / "cache").glob("reference/*/logits.npy")]
    assert len(references) == 2 and all(logits.shape == (30, 3) for logits in references)
    expected = [(float((ref.argmax(1) == labels).mean()), macro_f1(ref.argmax(1), labels)) for ref in references]
    for r in rows:
        assert r["eval_samples"] == 30 and 0 <= r["macro_f1"] <= 1 and 0 <= r["mcnemar_p"] <= 1
        assert r["accuracy_gate"] in ("pass", "fail") and r["teacher_gate"] in ("pass", "fail")
        if r["exporter"] == "eager-fp32":
            assert any(r["accuracy"] == pytest.approx(a) and r["macro_f1"] == pytest.approx(f) for a, f in expected)
    teacher = next(r for r in rows if r["model"] == "teacher" and r["exporter"] == "eager-fp32")
    assert teacher["mcnemar_p"] == 1.0 and teacher["teacher_gate"] == "pass"
    report = (tmp_path / "out" / "three.md").read_text(encoding="utf-8")
    shown = {(r["model"], r["exporter"]): r["macro-F1 (%)"] for r in table_after(report, "### Accuracy")}
    assert shown == {(r["model"], r["exporter"]): format(r["macro_f1"] * 100, ".4g") for r in rows}


def test_a_student_takes_its_teachers_classes(tmp_path: Path) -> None:
    suite, _ = three_class_suite(tmp_path, {"distill": DISTILL})
    proc = run_cli("validate", suite, env=cli_env())
    assert proc.returncode == 0, proc.stderr


def test_a_student_cannot_be_given_other_classes_than_its_teacher(tmp_path: Path) -> None:
    suite, _ = three_class_suite(tmp_path, {"distill": DISTILL, "num_labels": 2})
    proc = run_cli("validate", suite, env=cli_env())
    assert proc.returncode != 0
    assert "models[1].num_labels" in proc.stderr and "3 classes" in proc.stderr, proc.stderr
