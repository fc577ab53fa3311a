"""Hostile suite files: bounded YAML, one strict schema, cross-field rules, every problem at once.

Each case is a file built from ``suites/smoke.yaml`` and the problems it must report, one
``(where, what)`` each. Every case is loaded in-process (exact problems, and the time the bombs
take), and all of them go through one ``validate`` call together, which must print exactly those
lines for each file and nothing else; a few also run alone to check the exit code per file.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness_testutil import REPO, TOY_ROWS, write_tsv
from harness_testutil import run_cli_guarded as run_cli

from harness.errors import SuiteError, SuiteErrors
from harness.registry import backends, exporters
from harness.suite import load_suite
from harness.suite_yaml import MAX_BYTES

SMOKE_TEXT = (REPO / "suites" / "smoke.yaml").read_text(encoding="utf-8")
SMOKE = yaml.safe_load(SMOKE_TEXT)
TINY = {"name": "tiny", "source": "builtin:tiny-bert"}


def changed(**changes: Any) -> str:
    """smoke.yaml with ``a__b__0__c=value`` changes (``__`` separates keys and list indexes)."""
    raw = copy.deepcopy(SMOKE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = raw
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return yaml.safe_dump(raw, sort_keys=False)


def with_models(*extra: dict[str, Any]) -> str:
    return changed(models=[TINY, *extra])


def line_of(text: str, snippet: str, occurrence: int = 1) -> str:
    index = -1
    for _ in range(occurrence):
        index = text.index(snippet, index + 1)
    return f"line {text[:index].count(chr(10)) + 1}"


def laughs_bomb() -> str:
    """About 700 bytes that expand to 10^9 nodes: each level repeats the one before ten times."""
    lines = ["name: laughs", "lol0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def merge_bomb() -> str:
    """About 600 bytes of merge keys; PyYAML's own loader takes 0.6 s at 6 levels, ~7x more per level."""
    lines = ["name: merge", "m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9, j: 10}"]
    lines += [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}]}}" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


DUPLICATE_TOP = SMOKE_TEXT + "threads: 4\n"
DUPLICATE_NESTED = SMOKE_TEXT.replace("  rounds: 2\n", "  rounds: 2\n  seed: 1\n  rounds: 3\n")
DEEP_FLOW = SMOKE_TEXT.replace("description: Tiny", "extra: " + "[" * 200 + "]" * 200 + "\ndescription: Tiny")
DEEP_BLOCK = "name: deep\n" + "".join("  " * i + f"k{i}:\n" for i in range(40)) + "  " * 40 + "leaf\n"
ALIAS_DEEP = "name: x\nd: &d " + "[" * 20 + "1" + "]" * 20 + "\ne: &e [[[[[[[[[[[[[[[*d]]]]]]]]]]]]]]]\n"
LONG_VALUE = "x" * 10_000

# name -> (file text, [(where, what)] for every line validate must print)
CASES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    # the YAML reader's bounds
    "duplicate-top-key": (
        DUPLICATE_TOP,
        [
            (
                line_of(DUPLICATE_TOP, "threads: 4"),
                f"duplicate key 'threads' (first at {line_of(SMOKE_TEXT, 'threads')})",
            )
        ],
    ),
    "duplicate-nested-key": (
        DUPLICATE_NESTED,
        [(line_of(DUPLICATE_NESTED, "rounds", 2), "duplicate key 'rounds' (first at line")],
    ),
    "billion-laughs": (laughs_bomb(), [("line ", "more than 10000 nodes once aliases and merge keys are expanded")]),
    "merge-key-bomb": (merge_bomb(), [("line ", "more than 10000 nodes once aliases and merge keys are expanded")]),
    "deep-flow-nesting": (DEEP_FLOW, [(line_of(DEEP_FLOW, "extra:"), "nested more than 32 levels deep")]),
    "deep-block-nesting": (DEEP_BLOCK, [("line 33", "nested more than 32 levels deep")]),
    "deep-through-aliases": (ALIAS_DEEP, [("line 3", "aliases nest the document more than 32 levels deep")]),
    "recursive-alias": ("name: x\nloop: &a [1, *a]\n", [("line 2", "an alias refers to a node that contains it")]),
    "huge-integer": (changed(threads=int("9" * 99)).replace("9" * 99, "9" * 5000), [("line ", "a number of 5000")]),
    "two-documents": (SMOKE_TEXT + "---\nname: other\n", [("line ", "expected a single document in the stream")]),
    "control-character": (SMOKE_TEXT + "colour: \x07\n", [("line ", "'\\x07' is not allowed in YAML")]),
    # strict types: no bool as number, no NaN or infinity
    "seconds-bool": (changed(timing__seconds_per_cell=True), [("timing.seconds_per_cell", "valid number (got True)")]),
    "seconds-nan": (changed(timing__seconds_per_cell=float("nan")), [("timing.seconds_per_cell", "finite number")]),
    "timeout-infinite": (changed(isolation={"timeout_s": float("inf")}), [("isolation.timeout_s", "finite number")]),
    "gate-nan": (changed(accuracy_gate=float("nan")), [("accuracy_gate", "must be a finite number (got nan)")]),
    "batch-size-bool": (changed(shapes__batch_sizes=[1, True]), [("shapes.batch_sizes[1]", "valid integer")]),
    "number-as-string": (changed(timing__rounds="3"), [("timing.rounds", "valid integer (got '3')")]),
    "finetune-strict": (
        changed(models=[{**TINY, "finetune": {"epochs": True, "learning_rate": float("inf"), "bf16": "yes"}}]),
        [
            ("models[0].finetune.epochs", "valid number (got True)"),
            ("models[0].finetune.learning_rate", "finite number"),
            ("models[0].finetune.bf16", "true, false or 'auto' (got 'yes')"),
        ],
    ),
    "exporter-option-int-as-bool": (
        changed(exporters__4__options={"optimize": 1}),
        [("exporters[4].options.optimize", "valid boolean (got 1)")],
    ),
    # upper bounds that name the limit (and every problem of a file at once)
    "absurd-sizes": (
        changed(
            threads=100_000,
            accuracy_batch_size=10**6,
            shapes__batch_sizes=[1, 5000],
            timing__rounds=10**6,
            timing__seconds_per_cell=1e9,
            timing__single_inputs=10**7,
            timing__min_batches=10**6,
            timing__seed=2**40,
            task__max_samples=10**12,
        ),
        [
            ("task.max_samples", "must be at most 10000000"),
            ("shapes.batch_sizes[1]", "must be at most 4096 (got 5000)"),
            ("threads", "must be at most 1024 (got 100000)"),
            ("accuracy_batch_size", "must be at most 4096"),
            ("timing.rounds", "must be at most 1000"),
            ("timing.seconds_per_cell", "must be at most 3600"),
            ("timing.single_inputs", "must be at most 100000"),
            ("timing.min_batches", "must be at most 10000"),
            ("timing.seed", "must be at most 4294967295"),
        ],
    ),
    "stage-sizes": (
        with_models({"name": "s", "parent": "tiny", "distill": {"layers": [0, 5000], "batch_size": 10**5}}),
        [
            ("models[1].distill.batch_size", "must be at most 4096"),
            ("models[1].distill.layers[1]", "must be at most 1023"),
        ],
    ),
    "num-labels-huge": (changed(models__0__num_labels=10**9), [("models[0].num_labels", "must be at most 10000")]),
    "long-description": (changed(description=LONG_VALUE), [("description", "at most 2000 characters (got 'xxxx")]),
    # cross-field rules
    "parent-declared-later": (
        with_models(
            {"name": "pruned", "parent": "student", "prune": {"head_fraction": 0.5}},
            {"name": "student", "parent": "tiny", "distill": {"layers": [0]}},
        ),
        [("models[1].parent", "parent 'student' is declared after this model (at models[2]); move it earlier")],
    ),
    "parent-cycle": (
        with_models(
            {"name": "a", "parent": "b", "distill": {"layers": [0]}},
            {"name": "b", "parent": "a", "prune": {"head_fraction": 0.5}},
        ),
        [("models[1].parent", "the parents form a cycle: a -> b -> a")],
    ),
    "own-parent": (
        with_models({"name": "a", "parent": "a", "distill": {"layers": [0]}}),
        [("models[1].parent", "the parents form a cycle: a -> a")],
    ),
    "duplicate-model-name": (with_models(TINY), [("models[1].name", "'tiny' appears twice (first at [0])")]),
    "prune-removes-nothing": (
        with_models({"name": "p", "parent": "tiny", "prune": {"head_fraction": 0, "ffn_fraction": 0.0}}),
        [("models[1].prune", "head_fraction and ffn_fraction are both 0, so nothing would be pruned")],
    ),
    "magnitude-removes-nothing": (
        with_models({"name": "m", "parent": "tiny", "magnitude": {"sparsity": 0}}),
        [("models[1].magnitude.sparsity", "must be greater than 0")],
    ),
    "distill-layer-twice": (
        with_models({"name": "s", "parent": "tiny", "distill": {"layers": [0, 1, 1]}}),
        [("models[1].distill.layers[2]", "1 appears twice (first at [1])")],
    ),
    "distill-layer-negative": (
        with_models({"name": "s", "parent": "tiny", "distill": {"layers": [-1, 0]}}),
        [("models[1].distill.layers[0]", "must be at least 0 (got -1)")],
    ),
    "duplicate-batch-size": (
        changed(shapes__batch_sizes=[8, 1, 8]),
        [("shapes.batch_sizes[2]", "8 appears twice (first at [0])")],
    ),
    "duplicate-seq-len": (changed(shapes__seq_lens=[64, "dynamic", 64]), [("shapes.seq_lens[2]", "64 appears twice")]),
    "duplicate-backend": (
        changed(backends=["pytorch", "onnxruntime", "pytorch"]),
        [("backends[2]", "'pytorch' appears twice (first at [0])")],
    ),
    "train-split-traversal": (changed(task__train_split="../train"), [("task.train_split", "should match pattern")]),
    "train-split-not-text": (changed(task__train_split=2020), [("task.train_split", "valid string (got 2020)")]),
    "dataset-three-parts": (
        changed(task__dataset="nyu-mll/glue/sst2"),
        [("task.dataset", "must be a hub dataset id such as 'nyu-mll/glue'")],
    ),
    "dataset-bad-characters": (changed(task__dataset="my data--set"), [("task.dataset", "must be a hub dataset id")]),
    "baseline-all-wrong": (
        changed(baseline={"model": "tinny", "exporter": "onnx", "backend": "ort"}),
        [
            ("baseline.model", "unknown model 'tinny' (did you mean 'tiny'?)"),
            ("baseline.exporter", "unknown exporter 'onnx'"),
            ("baseline.backend", "unknown backend 'ort'"),
        ],
    ),
    # keys and values that must not bend the one-line format
    "integer-key": (changed(models=[{**TINY, 1: "one"}]), [("models[0].1", "unknown key")]),
    "option-integer-key": (changed(exporters__4__options={2: True}), [("exporters[4].options.2", "must be strings")]),
    "newline-key": (
        changed(**{"timing__x\nerror: suite.yaml: ok": 1}),
        [("timing.'x\\nerror: suite.yaml: ok'", "unknown key")],
    ),
    "control-character-path": (changed(output__dir="reports\tsmoke"), [("output.dir", "must not contain control")]),
    "long-unknown-key": (changed(**{LONG_VALUE: 1}), [("'xxxx", "unknown key")]),
}


def write_case(folder: Path, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(CASES[name][0], encoding="utf-8")
    return path


def problems_of(path: Path) -> list[SuiteError]:
    with pytest.raises((SuiteError, SuiteErrors)) as raised:
        load_suite(path, exporters(), backends())
    return raised.value.problems if isinstance(raised.value, SuiteErrors) else [raised.value]


def assert_problem_lines(lines: list[str], path: Path, expected: list[tuple[str, str]]) -> None:
    assert len(lines) == len(expected), "\n".join(lines)
    for line, (where, what) in zip(lines, expected):
        assert line.startswith(f"error: {path}: {where}"), line
        assert what in line, line
        assert len(line) < len(str(path)) + 400, line  # values are quoted short, never echoed whole


@pytest.mark.parametrize("case", list(CASES))
def test_each_problem_is_found_in_process(case: str, tmp_path: Path) -> None:
    path = write_case(tmp_path, case)
    lines = [f"error: {problem}" for problem in problems_of(path)]
    assert_problem_lines(lines, path, CASES[case][1])


def test_every_case_through_one_validate_call(tmp_path: Path) -> None:
    paths = {name: write_case(tmp_path, name) for name in CASES}
    proc = run_cli("validate", *paths.values())
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert all(line.startswith("error: ") for line in lines), proc.stderr
    for name, path in paths.items():
        own = [line for line in lines if line.startswith(f"error: {path}: ")]
        assert_problem_lines(own, path, CASES[name][1])
        assert own == [f"error: {problem}" for problem in problems_of(path)]
    assert len(lines) == sum(len(expected) for _, expected in CASES.values())


@pytest.mark.parametrize("case", ["duplicate-top-key", "billion-laughs", "gate-nan", "parent-cycle", "newline-key"])
def test_one_bad_file_alone_exits_2(case: str, tmp_path: Path) -> None:
    path = write_case(tmp_path, case)
    proc = run_cli("validate", path)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert_problem_lines(proc.stderr.splitlines(), path, CASES[case][1])


@pytest.mark.parametrize("case", ["billion-laughs", "merge-key-bomb", "deep-flow-nesting", "huge-integer"])
def test_bombs_are_refused_quickly(case: str, tmp_path: Path) -> None:
    path = write_case(tmp_path, case)
    if case.endswith(("laughs", "bomb")):
        assert path.stat().st_size <= 1024
    started = time.perf_counter()
    problems_of(path)
    assert time.perf_counter() - started < 1.0


def test_a_huge_flat_list_stops_at_the_node_budget(tmp_path: Path) -> None:
    path = tmp_path / "flat.yaml"
    path.write_text("name: flat\nthreads: [" + ", ".join(["1"] * 300_000) + "]\n", encoding="utf-8")
    started = time.perf_counter()
    (problem,) = problems_of(path)
    assert time.perf_counter() - started < 1.0
    assert problem.message.endswith("(at most 10000)")


def test_oversized_and_special_files_are_refused_before_reading(tmp_path: Path) -> None:
    sparse = tmp_path / "huge.yaml"
    with sparse.open("wb") as handle:
        handle.truncate(2 * 2**30)  # 2 GiB of holes: reading it would take seconds and the memory
    just_over = tmp_path / "over.yaml"
    just_over.write_text(SMOKE_TEXT + "#" * (MAX_BYTES - len(SMOKE_TEXT.encode())) + "\n", encoding="utf-8")
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # opening a FIFO to read blocks until a writer comes, unless refused first
    started = time.perf_counter()
    for path in (sparse, just_over):
        (problem,) = problems_of(path)
        assert f"a suite file may be at most {MAX_BYTES}" in problem.message
    assert time.perf_counter() - started < 1.0

    proc = run_cli("validate", sparse, "/dev/zero", fifo, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: {sparse}: the file is {2 * 2**30} bytes; a suite file may be at most {MAX_BYTES} bytes",
        "error: /dev/zero: is not a regular file (a device, FIFO or socket); give a YAML suite file",
        f"error: {fifo}: is not a regular file (a device, FIFO or socket); give a YAML suite file",
    ]


def test_merged_keys_may_be_overridden(tmp_path: Path) -> None:
    """A key given beside a merge key overrides the merged one: that is YAML, not a duplicate."""
    path = tmp_path / "merge.yaml"
    path.write_text(SMOKE_TEXT.replace("timing:\n", "timing:\n  <<: {rounds: 5, seed: 7}\n"), encoding="utf-8")
    suite = load_suite(path, exporters(), backends())
    assert (suite.timing.rounds, suite.timing.seed) == (2, 7)


def test_validate_three_files_reports_every_problem_of_each(tmp_path: Path) -> None:
    data = tmp_path / "toy"
    write_tsv(data / "validation.tsv", TOY_ROWS)
    good_raw = {**copy.deepcopy(SMOKE), "task": {"local": str(data), "source": "local"}}
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(good_raw, sort_keys=False), encoding="utf-8")
    two = tmp_path / "two-problems.yaml"
    two.write_text(changed(threads=True, shapes__batch_sizes=[1, 8, 1]), encoding="utf-8")
    bomb = write_case(tmp_path, "merge-key-bomb")

    proc = run_cli("validate", two, good, bomb)

    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [f"{good}: ok (suite 'smoke', hash {load_suite(good).content_hash()}, 40 cells)"]
    lines = proc.stderr.splitlines()
    assert lines[:2] == [
        f"error: {two}: shapes.batch_sizes[2]: 1 appears twice (first at [0])",
        f"error: {two}: threads: Input should be a valid integer (got True)",
    ]
    assert len(lines) == 3 and lines[2].startswith(f"error: {bomb}: line ")
    assert "at most 10000" in lines[2]


def test_yaml_12_floats_and_text_dates(tmp_path: Path) -> None:
    """``5e-5`` is a float (YAML 1.1 would read text, which the strict schema refuses) and a date
    stays text, so an impossible one cannot crash the constructor."""
    from harness.suite_yaml import read_yaml

    path = tmp_path / "values.yaml"
    path.write_text("lr: 5e-5\nbig: -2.5E+3\nword: 1e\nday: 2001-01-01\nbad_day: 2001-13-45\n", encoding="utf-8")
    assert read_yaml(path, str(path)) == {
        "lr": 5e-5,
        "big": -2500.0,
        "word": "1e",
        "day": "2001-01-01",
        "bad_day": "2001-13-45",
    }
    raw = yaml.safe_load((REPO / "suites" / "sst2.yaml").read_text(encoding="utf-8"))
    suite_text = (REPO / "suites" / "sst2.yaml").read_text(encoding="utf-8").replace("1.0e-4", "1e-4")
    assert "learning_rate: 1e-4" in suite_text and raw["models"][0]["finetune"]["learning_rate"] == 1.0e-4
    written = tmp_path / "sst2.yaml"
    written.write_text(suite_text.replace("description: ", "description: 2001-13-45 "), encoding="utf-8")
    assert load_suite(written).models[0].finetune.learning_rate == 1e-4


def test_a_name_error_quotes_the_value_once(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "suites" / "smoke.yaml").read_text(encoding="utf-8"))
    raw["exporters"][0] = "nope-exporter"
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises((SuiteError, SuiteErrors)) as raised:
        load_suite(path, exporters(), backends())
    assert "unknown exporter 'nope-exporter'" in str(raised.value)
    assert str(raised.value).count("'nope-exporter'") == 1, str(raised.value)
