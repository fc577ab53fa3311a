"""Suite validation: through ``python -m harness validate`` and through ``harness.suite.load_suite``."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness_testutil import REPO, TOY_ROWS, run_cli, write_tsv

from harness.errors import SuiteError
from harness.registry import backends, exporters
from harness.suite import load_suite

BASE: dict[str, Any] = {
    "name": "schema-test",
    "task": {"local": "toy"},
    "models": [{"name": "tiny", "source": "builtin:tiny-bert"}],
    "exporters": ["eager-fp32", "onnx-fp32"],
    "backends": ["pytorch", "onnxruntime"],
    "devices": ["cpu", "cuda"],
    "shapes": {"batch_sizes": [1, 8], "seq_lens": ["dynamic", 64]},
    "timing": {"rounds": 2, "seconds_per_cell": 0.01, "max_passes": 5},
}


def suite_with(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        target = raw
        *parents, last = dotted.split("__")
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    return raw


def write_suite(tmp_path: Path, raw: Any, name: str = "suite.yaml") -> Path:
    """Write a suite; its toy data folder is created next to it, since validate checks the data."""
    if isinstance(raw, dict) and isinstance(raw.get("task"), dict) and raw["task"].get("local") == "toy":
        write_tsv(tmp_path / "toy" / "validation.tsv", TOY_ROWS)
        raw = {**raw, "task": {**raw["task"], "local": str(tmp_path / "toy")}}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def load_with_registries(path: Path):
    return load_suite(path, exporters(), backends())


def assert_one_line_error(proc, path: Path, *fragments: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip("\n").splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: ")
    assert str(path) in line
    for fragment in fragments:
        assert fragment in line, line
    return line


# (changes, expected key path, expected message fragment)
KEYED_CASES = {
    "unknown-top-level-key": ({"colour": "red"}, "colour", "unknown key"),
    "unknown-nested-key": ({"timing__warmups": 3}, "timing.warmups", "unknown key"),
    "wrong-type": ({"threads": "two"}, "threads", "valid integer"),
    "wrong-type-list": ({"backends": "pytorch"}, "backends", "valid list"),
    "batch-size-zero": ({"shapes__batch_sizes": [1, 0]}, "shapes.batch_sizes[1]", "must be at least 1 (got 0)"),
    "rounds-negative": ({"timing__rounds": -1}, "timing.rounds", "must be at least 1 (got -1)"),
    "max-samples-zero": ({"task__max_samples": 0}, "task.max_samples", "must be at least 1"),
    "max-length-over-512": ({"max_length": 513}, "max_length", "must be at most 512 (got 513)"),
    "seq-len-over-512": ({"shapes__seq_lens": ["dynamic", 600]}, "shapes.seq_lens[1]", "(got 600)"),
    "max-below-min-passes": ({"timing__min_passes": 9}, "timing", "max_passes must be at least min_passes"),
    "misspelt-backend": (
        {"backends": ["pytorch", "onnxruntim"]},
        "backends[1].name",
        "unknown backend 'onnxruntim' (did you mean 'onnxruntime'?)",
    ),
    "misspelt-exporter": (
        {"exporters": ["eager-fp32", "onnx-fp23"]},
        "exporters[1].name",
        "unknown exporter 'onnx-fp23' (did you mean 'onnx-fp32'?)",
    ),
    "misspelt-exporter-mapping": (
        {"exporters": ["eager-fp32", {"name": "ort-int9", "label": "q"}]},
        "exporters[1].name",
        "did you mean 'ort-int8'",
    ),
    "misspelt-device": ({"devices": ["cpu", "cdua"]}, "devices[1]", "unknown device 'cdua' (did you mean 'cuda'?)"),
    "unknown-exporter-option": (
        {"exporters": ["eager-fp32", {"name": "ort-int8", "options": {"xyz": 1}}]},
        "exporters[1].options.xyz",
        "unknown key",
    ),
    "wrong-type-exporter-option": (
        {"exporters": ["eager-fp32", {"name": "ort-int8", "options": {"optimize": "maybe"}}]},
        "exporters[1].options.optimize",
        "valid boolean",
    ),
    "duplicate-exporter": (
        {"exporters": ["eager-fp32", "eager-fp32"]},
        "exporters[1].name",
        "'eager-fp32' appears twice (first at [0]); give one a distinct label",
    ),
    "unknown-backend-option": (
        {"backends": ["pytorch", {"name": "onnxruntime", "options": {"xyz": 1}}]},
        "backends[1].options.xyz",
        "unknown key",
    ),
    "duplicate-backend": (
        {"backends": ["pytorch", {"name": "pytorch"}]},
        "backends[1].name",
        "'pytorch' appears twice (first at [0]); give one a distinct label",
    ),
    "baseline-backend-not-in-suite": (
        {"backends": [{"name": "pytorch", "label": "torch-eager"}]},
        "baseline.backend",
        "unknown backend 'pytorch'",
    ),
    "baseline-not-in-suite": ({"baseline": {"exporter": "ort-int8"}}, "baseline.exporter", "unknown exporter"),
    "bad-model-name": ({"models": [{"name": "a b", "source": "x"}]}, "models[0].name", "should match pattern"),
}


@pytest.mark.parametrize("case", list(KEYED_CASES))
def test_keyed_errors_cli_and_load_suite(tmp_path: Path, case: str) -> None:
    changes, key_path, message = KEYED_CASES[case]
    path = write_suite(tmp_path, suite_with(**changes))

    with pytest.raises(SuiteError) as raised:
        load_with_registries(path)
    assert raised.value.key_path == key_path
    assert message in raised.value.message
    assert raised.value.exit_code == 2
    assert str(raised.value) == f"{path}: {key_path}: {raised.value.message}"

    proc = run_cli("validate", path)
    line = assert_one_line_error(proc, path, f": {key_path}: ", message)
    assert line == f"error: {path}: {key_path}: {raised.value.message}"
    assert proc.stdout == ""


FILE_CASES = {
    "malformed-yaml": ("name: smoke\nmodels: [unclosed\n", "malformed YAML"),
    "empty-file": ("", "the file is empty"),
    "comments-only": ("# nothing here\n", "the file is empty"),
    "top-level-list": ("- name: a\n- name: b\n", "the top level must be a mapping of keys, not a list"),
    "top-level-scalar": ("just a string\n", "not a str"),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_file_level_errors(tmp_path: Path, case: str) -> None:
    text, message = FILE_CASES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SuiteError) as raised:
        load_suite(path)
    assert message in str(raised.value)
    assert_one_line_error(run_cli("validate", path), path, message)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntask:\n  local: toy\nmodels: [unclosed\n", encoding="utf-8")
    with pytest.raises(SuiteError) as raised:
        load_suite(path)
    assert raised.value.key_path.startswith("line ")
    assert raised.value.message.startswith("malformed YAML: ")


def test_directory_path(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="is a directory"):
        load_suite(tmp_path)
    assert_one_line_error(run_cli("validate", tmp_path), tmp_path, "is a directory, expected a YAML suite file")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SuiteError, match="no such file"):
        load_suite(path)
    assert_one_line_error(run_cli("validate", path), path, "no such file")


def test_debug_shows_traceback(tmp_path: Path) -> None:
    path = write_suite(tmp_path, suite_with(backends=["pytorch", "onnxruntim"]))
    proc = run_cli("validate", "--debug", path)
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    assert "SuiteError" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {path}: backends[1].name: ")


def test_valid_smoke_suite_validates_quickly() -> None:
    started = time.perf_counter()
    proc = run_cli("validate", "suites/smoke.yaml")
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    suite = load_with_registries(REPO / "suites" / "smoke.yaml")
    # 1 model x 5 exporters x 2 backends x 2 devices x (2 batch sizes x 2 seq lens)
    assert proc.stdout == f"suites/smoke.yaml: ok (suite 'smoke', hash {suite.content_hash()}, 40 cells)\n"
    assert elapsed < 15, f"validate took {elapsed:.1f}s; it must not import torch or run anything"


def test_validate_many_files_checks_every_one(tmp_path: Path) -> None:
    good = write_suite(tmp_path, BASE, "good.yaml")
    bad = write_suite(tmp_path, suite_with(devices=["cpu", "gpu0"]), "bad.yaml")
    also_good = write_suite(tmp_path, BASE, "also-good.yaml")
    proc = run_cli("validate", good, bad, also_good)
    assert proc.stdout.startswith(f"{good}: ok (suite 'schema-test'")
    assert f"{also_good}: ok (suite 'schema-test'" in proc.stdout
    assert_one_line_error(proc, bad, "devices[1]", "unknown device 'gpu0'")


def test_content_hash_ignores_key_order_and_comments(tmp_path: Path) -> None:
    a = write_suite(tmp_path, BASE, "a.yaml")
    reordered = dict(reversed(list(yaml.safe_load(a.read_text(encoding="utf-8")).items())))
    b = tmp_path / "b.yaml"
    b.write_text("# a comment\n" + yaml.safe_dump(reordered, sort_keys=False), encoding="utf-8")
    assert load_suite(a).content_hash() == load_suite(b).content_hash()
    c = write_suite(tmp_path, suite_with(threads=3), "c.yaml")
    assert load_suite(c).content_hash() != load_suite(a).content_hash()


def test_plain_backends_keep_the_hash_they_had_as_names(tmp_path: Path) -> None:
    """A backend with no label or options is its name in the hashed content, as before backends had
    options, so earlier results of an unchanged suite still belong to it."""
    plain = load_suite(write_suite(tmp_path, suite_with(backends=["pytorch", "onnxruntime"])))
    assert plain.model_dump(mode="json")["backends"] == ["pytorch", "onnxruntime"]
    spelled = suite_with(backends=[{"name": "pytorch"}, {"name": "onnxruntime"}])
    assert load_suite(write_suite(tmp_path, spelled, "b.yaml")).content_hash() == plain.content_hash()
    labelled = suite_with(backends=["pytorch", {"name": "onnxruntime", "label": "ort"}])
    dumped = load_suite(write_suite(tmp_path, labelled, "c.yaml")).model_dump(mode="json")["backends"]
    assert dumped == ["pytorch", {"label": "ort", "options": {}, "name": "onnxruntime"}]


def test_defaults_and_exporter_shorthand(tmp_path: Path) -> None:
    suite = load_with_registries(write_suite(tmp_path, BASE))
    assert [e.name for e in suite.exporters] == ["eager-fp32", "onnx-fp32"]
    assert [e.options for e in suite.exporters] == [{}, {}]
    assert suite.timing.rounds == 2
    assert suite.timing.single_inputs == 256 and suite.timing.min_batches == 8
    assert suite.output.cache_dir == ".harness-cache"
    assert suite.baseline_model == "tiny"
    assert suite.output_name() == "schema-test"


def test_unknown_key_starting_with_int_keeps_its_path(tmp_path: Path) -> None:
    path = write_suite(tmp_path, suite_with(timing__interval=3))
    with pytest.raises(SuiteError) as raised:
        load_suite(path)
    assert raised.value.key_path == "timing.interval"


def test_seq_len_over_512_message_names_the_limit(tmp_path: Path) -> None:
    path = write_suite(tmp_path, suite_with(shapes__seq_lens=[600]))
    with pytest.raises(SuiteError) as raised:
        load_suite(path)
    assert "512" in raised.value.message
