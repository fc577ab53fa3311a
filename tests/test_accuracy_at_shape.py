"""Accuracy at shape: which scoring a row's accuracy comes from, and the batch-invariance claim behind it.

An exporter with ``batch_invariant = True`` is scored once (at the suite's accuracy shape) and that
accuracy serves every shape, so the claim is proven here for every such exporter in the registry;
dynamic INT8 exporters are scored at each shape, because their logits do move with the batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from harness_testutil import TOY_ROWS

from harness.adapters import Artifact, CalibrationData
from harness.data.workload import encode, make_batches
from harness.registry import BrokenAdapter, backends, exporters
from harness.suite import load_suite

TEXTS = [text for text, _ in TOY_ROWS]
MAX_LENGTH = 128
FIXED = 32
# (batch size, seq len): one sentence at a time, a ragged tail (12 = 4 + 4 + 4 = 5 + 5 + 2), fixed
# padding, and every sentence in one batch padded to the longest
SHAPES = [(1, "dynamic"), (4, "dynamic"), (5, FIXED), (12, "dynamic")]


def _exporters(predicate) -> list[str]:
    return sorted(n for n, e in exporters().entries().items() if not isinstance(e, BrokenAdapter) and predicate(e))


BATCH_INVARIANT = _exporters(lambda e: e.batch_invariant)
# activation ranges taken per call: what a calibrating (static) exporter does not do
DYNAMIC_INT8 = _exporters(lambda e: not e.batch_invariant and e.precision == "int8" and not e.needs_calibration)


def test_the_parametrisations_are_not_empty() -> None:
    assert {"eager-fp32", "onnx-fp32"} <= set(BATCH_INVARIANT)
    assert {"ort-int8", "torch-dynamic-int8"} <= set(DYNAMIC_INT8)


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory) -> Path:
    """A tiny BERT whose logits spread over about +-1 (the default init keeps them within ~1e-4 of each
    other, so an absolute tolerance would hide any dependence on the batch)."""
    from harness.models.tiny import create_tiny_bert

    return create_tiny_bert(tmp_path_factory.mktemp("wide-model") / "tiny", seed=3, initializer_range=0.2)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    lengths = [len(ids) for ids in encode(tok, TEXTS, "dynamic", MAX_LENGTH)]
    # the shapes only differ in padding and batch composition if the sentences differ in length and
    # none is cut at the fixed length (a cut sentence would rightly score differently)
    assert len(set(lengths)) > 3 and max(lengths) <= FIXED, lengths
    return tok


def _export(name: str, source: Path, out: Path) -> Artifact:
    exporter = exporters().get(name)
    if exporter.unavailable_reason():
        pytest.skip(f"{name}: {exporter.unavailable_reason()}")
    out.mkdir(parents=True)
    if exporter.needs_calibration:
        calibration = CalibrationData(tuple(TEXTS * 4), tuple(label for _, label in TOY_ROWS) * 4, "toy", MAX_LENGTH)
        exporter.export(source, out, exporter.Options(), calibration)
    else:
        exporter.export(source, out, exporter.Options())
    return Artifact(out, exporter.format)


def _loaders(fmt: str, invariance_kept: bool = False) -> list:
    """Available CPU backends that load ``fmt``; only those the invariance claim is applied on when asked."""
    found = [
        b
        for b in backends().entries().values()
        if not isinstance(b, BrokenAdapter)
        and fmt in b.formats
        and b.unavailable_reason("cpu") is None
        and (b.keeps_batch_invariance or not invariance_kept)
    ]
    assert found, f"no available backend loads format '{fmt}'"
    return found


def _score(backend, artifact: Artifact, tokenizer, shapes) -> dict[tuple[int, int | str], np.ndarray]:
    """Logits of every sentence, in order, at each shape (cpu, one thread)."""
    pad = tokenizer.pad_token_id or 0
    session = backend.load(artifact, "cpu", 1)
    try:
        scored = {}
        for batch_size, seq_len in shapes:
            batches = make_batches(encode(tokenizer, TEXTS, seq_len, MAX_LENGTH), batch_size, seq_len, pad)
            assert batches[0].shape[0] == min(batch_size, len(TEXTS))
            if seq_len != "dynamic":
                assert all(b.shape[1] == seq_len for b in batches)
            logits = [session.logits(session.run(session.prepare(b.arrays))) for b in batches]
            scored[batch_size, seq_len] = np.concatenate(logits)
        return scored
    finally:
        session.close()


@pytest.mark.parametrize("name", BATCH_INVARIANT)
def test_batch_invariant_exporters_score_the_same_at_every_shape(name, wide_model_dir, tokenizer, tmp_path) -> None:
    artifact = _export(name, wide_model_dir, tmp_path / name)
    for backend in _loaders(artifact.format, invariance_kept=True):
        scored = _score(backend, artifact, tokenizer, SHAPES)
        reference = scored[1, "dynamic"]
        assert reference.shape == (len(TEXTS), 2) and np.isfinite(reference).all()
        assert np.ptp(reference[:, 1] - reference[:, 0]) > 0.1, "the sentences' logits must differ to test anything"
        for shape, logits in scored.items():
            where = f"{name} on {backend.name} at batch {shape[0]}, seq {shape[1]}"
            assert (logits.argmax(-1) == reference.argmax(-1)).all(), where
            difference = float(np.abs(logits - reference).max())
            assert difference <= 1e-5, f"{where}: logits moved by {difference:.3g}"


@pytest.mark.parametrize("name", DYNAMIC_INT8)
def test_dynamic_int8_logits_depend_on_the_batch(name, tiny_model_dir, tokenizer, tmp_path) -> None:
    """The contrast: the invariance test above would catch a variant like this one."""
    artifact = _export(name, tiny_model_dir, tmp_path / name)
    for backend in _loaders(artifact.format):
        scored = _score(backend, artifact, tokenizer, [(1, "dynamic"), (12, "dynamic")])
        difference = float(np.abs(scored[12, "dynamic"] - scored[1, "dynamic"]).max())
        assert difference > 1e-6, f"{name} on {backend.name}: batch 12 moved the logits by only {difference:.3g}"


# --- scoring that reuses the timed calls -------------------------------------------------------


@pytest.mark.parametrize("name", DYNAMIC_INT8)
def test_timed_calls_score_their_batches_exactly_as_scoring_alone(name, tiny_model_dir, tokenizer, tmp_path) -> None:
    """A dynamic INT8 variant's logits depend on batch composition, so a timed output credited to the
    wrong batch, or put back out of eval order, would show here."""
    from harness.data.workload import in_eval_order, ordered_batches, scoring_order
    from harness.measure.execute import ScoreTask, TimingTask, VariantJob, execute_variant
    from harness.measure.timing import PassPolicy

    artifact = _export(name, tiny_model_dir, tmp_path / name)
    token_ids = encode(tokenizer, TEXTS, "dynamic", MAX_LENGTH)
    timed = np.array([9, 2, 11, 0, 5, 7, 3, 10])  # two batches of 4 are timed, the other 4 sentences are not
    batches = ordered_batches(token_ids, scoring_order(timed, len(TEXTS)), 4, "dynamic", tokenizer.pad_token_id)
    score = ScoreTask("b4", [b.arrays for b in batches], [b.indices for b in batches])
    timing = TimingTask(("cell",), score.batches[:2], min_count=2, count=2, score_label="b4")
    policy = PassPolicy(budget_s=0.0, warmup_passes=1, min_passes=2)
    for backend in _loaders(artifact.format):
        outcome = execute_variant(VariantJob(backend.name, artifact, "cpu", 1, policy, [timing], [score]))
        assert outcome.status == "ok" and not outcome.score_errors, (outcome.reason, outcome.score_errors)
        assert len(outcome.cells[("cell",)].passes) == 2
        session = backend.load(artifact, "cpu", 1)
        try:
            logits = [session.logits(session.run(session.prepare(b.arrays))) for b in batches]
            alone = in_eval_order([b.indices for b in batches], logits)
            in_file_order = np.concatenate(
                [
                    session.logits(session.run(session.prepare(b.arrays)))
                    for b in ordered_batches(token_ids, np.arange(len(TEXTS)), 4, "dynamic", tokenizer.pad_token_id)
                ]
            )
        finally:
            session.close()
        assert np.abs(outcome.scores["b4"] - alone).max() <= 1e-6, backend.name
        # the batch composition is what the logits were measured at: another one gives other logits
        assert np.abs(outcome.scores["b4"] - in_file_order).max() > 1e-6, backend.name


# --- the rows of the shared smoke run -------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke(smoke_run):
    assert smoke_run.proc.returncode == 0, smoke_run.proc.stderr[-3000:]
    suite = load_suite(smoke_run.suite_file)
    registry = exporters()
    invariant = {e.display_name: registry.get(e.name).batch_invariant for e in suite.exporters}
    rows = [r for r in smoke_run.rows if r["status"] == "ok"]
    assert rows
    return suite, invariant, rows


def _shape_label(row: dict) -> str:
    length = "dynamic" if row["seq_len"] == "dynamic" else f"seq {row['seq_len']}"
    return f"batch {row['batch_size']}, {length}"


def test_accuracy_shape_names_where_the_row_was_scored(smoke) -> None:
    suite, invariant, rows = smoke
    kinds = set()
    for r in rows:
        shape = r["accuracy_shape"]
        if invariant[r["exporter"]]:
            assert shape.startswith(f"batch {suite.accuracy_batch_size}, dynamic"), r
            assert "serves every shape" in shape, r
        else:
            assert shape == _shape_label(r), r
        kinds.add(invariant[r["exporter"]])
    assert suite.accuracy_batch_size == 32
    assert kinds == {True, False}  # both kinds of exporter were checked


def test_a_batch_invariant_variant_has_one_accuracy_for_all_its_shapes(smoke) -> None:
    _, invariant, rows = smoke
    by_variant: dict[tuple, set] = {}
    for r in rows:
        if invariant[r["exporter"]]:
            variant = (r["model"], r["exporter"], r["backend"], r["device"])
            by_variant.setdefault(variant, set()).add((r["accuracy"], r["agreement"], r["max_abs_logit_diff"]))
    assert len(by_variant) >= 2
    for variant, scores in by_variant.items():
        assert len(scores) == 1, (variant, scores)


def test_every_row_carries_its_accuracy_and_gates(smoke) -> None:
    suite, invariant, rows = smoke
    reference = [r for r in rows if r["exporter"] == "eager-fp32" and r["backend"] == "pytorch"]
    assert reference
    source = reference[0]["source_accuracy"]
    for r in rows:
        assert r["score_error"] is None, r
        for field in ("accuracy", "source_accuracy", "teacher_accuracy"):
            assert isinstance(r[field], float) and 0.0 <= r[field] <= 1.0, (field, r)
        # one model, so it is its own teacher; the reference is scored once for every row
        assert r["source_accuracy"] == r["teacher_accuracy"] == source
        expected = "pass" if r["accuracy"] >= suite.accuracy_gate * source else "fail"
        assert r["accuracy_gate"] == r["teacher_gate"] == expected, r
    for r in reference:  # eager FP32 on PyTorch is the reference itself
        assert r["accuracy"] == source and r["accuracy_gate"] == "pass"
    int8 = [r for r in rows if not invariant[r["exporter"]] and r["precision"] == "int8"]
    assert len({(r["batch_size"], r["seq_len"]) for r in int8}) == 4  # every shape scored on its own
