"""Value checks for result rows read from files: numbers that cannot be right make a row unusable.

A results file may come from another machine, an older harness or a hand edit. ``report`` and
``compare`` divide, take logs and bootstrap these numbers, so a negative latency, an accuracy of 3 or
a ragged timing matrix is caught here, named, and its row skipped, instead of failing deep inside.
Every row of a file is checked, so the checks are plain comparisons: ``type(x) in NUMBER`` rules out
booleans, and ``0 <= x <= FLOAT_MAX`` rules out NaN and infinity (``1e999`` parses to infinity).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from harness.errors import quote

NUMBER = (int, float)
FLOAT_MAX = sys.float_info.max
LARGEST_INTEGER = 2**53  # beyond it a float cannot hold the integer, and pandas falls back to objects
CELL_LABEL_LIMIT = 120


def _fraction(value: Any) -> bool:
    return type(value) in NUMBER and 0 <= value <= 1


def _non_negative(value: Any) -> bool:
    return type(value) in NUMBER and 0 <= value <= (LARGEST_INTEGER if type(value) is int else FLOAT_MAX)


def _finite(value: Any) -> bool:
    return (
        type(value) in NUMBER
        and -FLOAT_MAX <= value <= FLOAT_MAX
        and (type(value) is float or -LARGEST_INTEGER < value < LARGEST_INTEGER)
    )


def _text(value: Any) -> bool:
    return type(value) is str


def _texts(value: Any) -> bool:
    return type(value) is list and all(type(x) is str for x in value)


def _object(value: Any) -> bool:
    return type(value) is dict


def _numbers(value: Any) -> bool:
    return type(value) is list and all(type(x) in NUMBER and 0 <= x <= FLOAT_MAX for x in value)


def _integers(value: Any) -> bool:
    return type(value) is list and all(type(x) is int and 0 <= x < LARGEST_INTEGER for x in value)


def _matrix(value: Any) -> bool:
    """A non-empty rounds x inputs matrix: a list of equally long, non-empty lists of numbers >= 0."""
    if type(value) is not list or not value or type(value[0]) is not list or not value[0]:
        return False
    width = len(value[0])
    return all(type(row) is list and len(row) == width and _numbers(row) for row in value)


Check = tuple[Callable[[Any], bool], str]
FRACTION: Check = (_fraction, "a number from 0 to 1")
NON_NEGATIVE: Check = (_non_negative, "a finite number >= 0")
FIELDS: dict[str, Check] = {
    **dict.fromkeys(
        ("accuracy", "macro_f1", "agreement", "source_accuracy", "teacher_accuracy", "mcnemar_p"), FRACTION
    ),
    **dict.fromkeys(
        (
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "mean_ms",
            "std_ms",
            "p50_ci_low_ms",
            "p50_ci_high_ms",
            "timer_resolution_ms",
            "max_abs_logit_diff",
            "params",
            "size_mb",
            "throughput_per_s",
            "iterations",
            "peak_rss_mb",
            "eval_samples",
            "inputs_distinct",
            "input_mean_tokens",
            "split_mean_tokens",
            "rounds",
            "instability_cv",
            "input_cv",
            "gflops_per_s",
            "peak_fraction",
            "baseline_rss_mb",
            "cuda_peak_allocated_mb",
            "cuda_peak_reserved_mb",
            "gpu_process_mb",
        ),  # fmt: skip
        NON_NEGATIVE,
    ),
    "cell_rss_mb": (_finite, "a finite number"),  # the cell's memory above its process's baseline: may be < 0
    **dict.fromkeys(
        (
            "reason",
            "precision",
            "percentile_method",
            "inputs_key",
            "accuracy_shape",
            "accuracy_gate",
            "teacher_gate",
            "score_error",
            "peak_source",
        ),  # fmt: skip
        (_text, "text"),
    ),
    **dict.fromkeys(("warnings", "percentile_notes"), (_texts, "a list of texts")),
    "lineage": (_object, "an object"),
    **dict.fromkeys(("round_p50s_ms", "load_avg_1m"), (_numbers, "a list of finite numbers >= 0")),
    "input_starts": (_integers, "a list of integers >= 0"),
    "input_ms": (_matrix, "a non-empty rounds x inputs matrix of finite numbers >= 0"),
}
RUN_TEXTS = ("run_id", "suite", "suite_hash", "env_fingerprint", "baseline", "started", "eval_origin")
ENV_NUMBERS = ("threads", "cores", "load_avg_1m")


def row_problem(row: Mapping[str, Any]) -> str:
    """``''`` for a row ``report`` and ``compare`` can use, else ``cell ...: field is value, expected ...``.

    The row's required fields are already known to be present and of the right type.
    """
    problem = _field_problem(row) or _run_problem(row.get("run") or {})
    return f"cell {cell_label(row)}: {problem}" if problem else ""


def cell_label(row: Mapping[str, Any]) -> str:
    names = (row.get(name) for name in ("model", "exporter", "backend", "device", "batch_size", "seq_len"))
    label = "/".join(map(str, names))
    return label if len(label) <= CELL_LABEL_LIMIT else label[: CELL_LABEL_LIMIT - 3] + "..."


def _field_problem(row: Mapping[str, Any]) -> str:
    if row["batch_size"] < 1:
        return _wrong("batch_size", row["batch_size"], "a positive integer")
    if type(row["seq_len"]) is int and row["seq_len"] < 1:
        return _wrong("seq_len", row["seq_len"], "a positive integer or a name")
    for name, value in row.items():
        check = FIELDS.get(name)
        if check is not None and value is not None and not check[0](value):
            return _wrong(name, value, check[1])
    return ""


def _run_problem(run: Mapping[str, Any]) -> str:
    for name in RUN_TEXTS:
        value = run.get(name)
        if value is not None and not _text(value):
            return _wrong(f"run.{name}", value, "text")
    gate = run.get("accuracy_gate")
    if gate is not None and not _fraction(gate):
        return _wrong("run.accuracy_gate", gate, FRACTION[1])
    for name in ("env", "machine_peak"):
        if run.get(name) is not None and not _object(run[name]):
            return _wrong(f"run.{name}", run[name], "an object")
    env = run.get("env") or {}
    for name in ENV_NUMBERS:
        value = env.get(name)
        if value is not None and not _non_negative(value):
            return _wrong(f"run.env.{name}", value, NON_NEGATIVE[1])
    if env.get("versions") is not None and not _object(env["versions"]):
        return _wrong("run.env.versions", env["versions"], "an object")
    return ""


def _wrong(name: str, value: Any, expected: str) -> str:
    return f"{name} is {quote(value)}, expected {expected}"
