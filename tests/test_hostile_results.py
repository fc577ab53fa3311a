"""Hostile results files and arguments for ``report`` and ``compare``: every one is a single line on
stderr naming the file and the place, exit 2, no traceback, and nothing written but the output.

Valid rows come from the helpers of ``test_report``; each malformed case breaks one thing in them.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness_testutil import run_cli_guarded as run_cli
from test_report import row, run_info

PNG_HEIGHT_LIMIT = 4000


def valid_rows() -> list[dict[str, Any]]:
    run = run_info("ra", "CPU-A")
    return [
        row(run, "eager-fp32", "pytorch", "cpu", 1, 4.0),
        row(run, "onnx-fp32", "onnxruntime", "cpu", 1, 1.0),
        row(run, "eager-fp32", "pytorch", "cpu", 8, 10.0),
    ]


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def single_error(proc: Any, *parts: str) -> str:
    """The one stderr line of a refused command, checked to contain every part."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (signature, then the IHDR chunk)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def changed(**fields: Any) -> Callable[[], bytes]:
    """Every valid row with ``fields`` replaced (a ``run`` dict is merged into the row's run)."""

    def build() -> bytes:
        rows = valid_rows()
        for r in rows:
            run = fields.get("run")
            r.update({k: v for k, v in fields.items() if k != "run"})
            if run is not None:
                r["run"] = {**r["run"], **run} if isinstance(run, dict) else run
        return jsonl(rows)

    return build


def without(name: str) -> Callable[[], bytes]:
    return lambda: jsonl([{k: v for k, v in r.items() if k != name} for r in valid_rows()])


def replaced(field: str, text: str) -> Callable[[], bytes]:
    """The valid file with every number of ``field`` written as ``text``: what ``json.dumps`` will not write."""
    return lambda: re.sub(rf'"{field}": [0-9.]+'.encode(), f'"{field}": {text}'.encode(), jsonl(valid_rows()))


# (case, file content, what the message says after "no result rows (")
BAD_FILES = [
    ("empty", lambda: b"", "the file is empty"),
    ("blank lines only", lambda: b"\n   \n\t\n", "the file is empty"),
    ("binary", lambda: b"\xff\xfe\x00\x01\x02garbage\n", "line 1: not UTF-8 text (byte b'\\xff' at column 1)"),
    ("UTF-16", lambda: jsonl(valid_rows()).decode().encode("utf-16"), "line 1: not UTF-8 text"),
    ("Latin-1 name", lambda: changed(model="caf\xe9")().replace(b"caf\\u00e9", b"caf\xe9"), "line 1: not UTF-8"),
    ("not JSON", lambda: b"model,exporter,backend\nm,e,b\n", "line 1: not valid JSON (column 1: Expecting value)"),
    ("truncated object", lambda: b'{"model": "m", "exporter":\n' * 3, "line 1: not valid JSON"),
    ("array", lambda: b"[1, 2]\n", "line 1: not a JSON object (an array)"),
    ("string", lambda: b'"a row"\n', "line 1: not a JSON object (a string)"),
    ("null", lambda: b"null\n", "line 1: not a JSON object (null)"),
    ("number", lambda: b"42\n", "line 1: not a JSON object (a number)"),
    ("deep nesting", lambda: b"[" * 100_000 + b"]" * 100_000 + b"\n", "line 1: JSON nested too deeply"),
    ("5000-digit integer", lambda: b'{"model": ' + b"9" * 5000 + b"}\n", "line 1: not valid JSON (Exceeds"),
    ("torn only line", lambda: jsonl(valid_rows()[:1])[:300], "line 1: not valid JSON"),
    ("no model", without("model"), "line 1: field 'model' is missing"),
    ("empty model", changed(model=""), "line 1: field 'model' is '', expected a name"),
    ("no status", without("status"), "line 1: field 'status' is missing"),
    ("null status", changed(status=None), "line 1: field 'status' is None, expected a name"),
    ("batch as text", changed(batch_size="1"), "line 1: field 'batch_size' is '1', expected an integer"),
    ("batch as boolean", changed(batch_size=True), "line 1: field 'batch_size' is True, expected an integer"),
    ("seq_len a list", changed(seq_len=[64]), "line 1: field 'seq_len' is [64], expected an integer or a name"),
    ("run a string", changed(run="yesterday"), "line 1: field 'run' is 'yesterday', expected an object"),
]


def at(problem: str, batch: int = 1, seq: object = "dynamic") -> str:
    """A value problem as named in the first row's cell."""
    return f"line 1: cell m/eager-fp32/pytorch/cpu/{batch}/{seq}: {problem}"


# (case, file content, what is wrong in the first row): the values make every row unusable
BAD_VALUES = [
    ("negative p50", changed(p50_ms=-1.0), at("p50_ms is -1.0, expected a finite number >= 0")),
    ("infinite p50", replaced("p50_ms", "1e999"), at("p50_ms is inf, expected a finite number")),
    ("NaN accuracy", replaced("accuracy", "NaN"), at("accuracy is nan, expected a number from 0")),
    ("accuracy above 1", changed(accuracy=1.5), at("accuracy is 1.5, expected a number from 0 to 1")),
    ("accuracy boolean", changed(accuracy=True), at("accuracy is True, expected a number from 0 to 1")),
    ("latency as text", changed(p95_ms="fast"), at("p95_ms is 'fast', expected a finite number >= 0")),
    ("huge parameter count", changed(params=10**30), at("params is 1000000000000000000000000000000, expected")),
    ("zero batch", changed(batch_size=0), at("batch_size is 0, expected a positive integer", batch=0)),
    ("negative seq_len", changed(seq_len=-5), at("seq_len is -5, expected a positive integer or a name", seq=-5)),
    (
        "ragged timings",
        changed(input_ms=[[1.0, 2.0], [1.0]]),
        at("input_ms is [[1.0, 2.0], [1.0]], expected a non-empty"),
    ),
    ("text in timings", changed(input_ms=[[1.0, "x"]]), at("input_ms is [[1.0, 'x']], expected")),
    ("empty timings", changed(input_ms=[]), at("input_ms is [], expected a non-empty rounds x inputs matrix")),
    ("negative round p50", changed(round_p50s_ms=[1.0, -2.0]), at("round_p50s_ms is [1.0, -2.0], expected a list")),
    ("boolean load", changed(load_avg_1m=[1.0, True]), at("load_avg_1m is [1.0, True], expected a list of finite")),
    ("warnings as text", changed(warnings="slow"), at("warnings is 'slow', expected a list of texts")),
    ("lineage a list", changed(lineage=[1, 2]), at("lineage is [1, 2], expected an object")),
    ("env a string", changed(run={"env": "fast box"}), at("run.env is 'fast box', expected an object")),
    ("run id a list", changed(run={"run_id": ["a"]}), at("run.run_id is ['a'], expected text")),
    ("negative threads", changed(run={"env": {"threads": -2}}), at("run.env.threads is -2, expected a finite number")),
    ("versions a list", changed(run={"env": {"versions": ["torch"]}}), at("run.env.versions is ['torch'], expected")),
    ("gate as text", changed(run={"accuracy_gate": "high"}), at("run.accuracy_gate is 'high', expected a number")),
]


@pytest.mark.parametrize(
    ("case", "content", "problem"), BAD_FILES + BAD_VALUES, ids=lambda v: v if isinstance(v, str) else ""
)
def test_report_refuses_a_file_without_usable_rows(tmp_path: Path, case: str, content: Callable, problem: str) -> None:
    results = tmp_path / "in" / "results.jsonl"
    results.parent.mkdir()
    results.write_bytes(content())
    proc = run_cli("report", results, "-o", tmp_path / "out" / "r.md")
    single_error(proc, f"error: {results}: no result rows ({problem}")
    assert files_under(tmp_path) == {"in", "in/results.jsonl"}  # nothing written, not even the folder


@pytest.mark.parametrize(
    ("case", "make", "problem"),
    [
        ("missing", lambda tmp: tmp / "nope.jsonl", "no such results file"),
        ("a directory", lambda tmp: tmp, "not a regular file"),
        ("/dev/zero", lambda tmp: Path("/dev/zero"), "not a regular file"),
        ("a FIFO", lambda tmp: (os.mkfifo(tmp / "fifo"), tmp / "fifo")[1], "not a regular file"),
        ("over 2 GiB", lambda tmp: _sparse(tmp / "big.jsonl", 2 * 2**30 + 1), "2147483649 bytes, more than the"),
        ("a 70 MB line", lambda tmp: _sparse(tmp / "line.jsonl", 70 * 2**20), "line 1: longer than 67108864 bytes"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_report_refuses_what_is_not_a_results_file(tmp_path: Path, case: str, make: Callable, problem: str) -> None:
    path = make(tmp_path)
    before = files_under(tmp_path)
    started = time.perf_counter()
    single_error(run_cli("report", path, "-o", tmp_path / "out" / "r.md"), f"error: {path}: ", problem)
    assert time.perf_counter() - started < 20  # refused up front, never read whole
    assert files_under(tmp_path) == before


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as handle:
        handle.truncate(size)  # a hole: no disk used
    return path


def test_a_bad_line_is_skipped_with_one_warning(tmp_path: Path) -> None:
    good = valid_rows()
    lines = [json.dumps(good[0]), "{not json", json.dumps(good[1]), "[1]", "", json.dumps(good[2])]
    results = tmp_path / "results.jsonl"
    results.write_text("\n".join(lines) + "\n" + json.dumps(good[0])[:50], encoding="utf-8")  # and a torn tail
    out = tmp_path / "out" / "r.md"
    proc = run_cli("report", results, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"warning: {results}: skipped 2 of 5 lines (first: line 2: not valid JSON (column 2: Expecting property "
        "name enclosed in double quotes))"
    ]
    assert proc.stdout == f"3 rows -> {out}\n"
    assert out.read_text(encoding="utf-8").startswith("# Benchmark report\n<!-- harness report")


def test_a_row_with_impossible_numbers_is_skipped_and_named(tmp_path: Path) -> None:
    rows = valid_rows()
    rows[1]["p50_ms"] = -3.0
    results = tmp_path / "results.jsonl"
    results.write_bytes(jsonl(rows))
    proc = run_cli("report", results, "-o", tmp_path / "r.md")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"warning: {results}: skipped 1 of 3 lines (first: line 2: cell m/onnx-fp32/onnxruntime/cpu/1/dynamic: "
        "p50_ms is -3.0, expected a finite number >= 0)"
    ]


def test_report_over_its_own_input_leaves_it_byte_identical(tmp_path: Path) -> None:
    results = tmp_path / "X.jsonl"
    results.write_bytes(jsonl(valid_rows()))
    before = results.read_bytes()
    single_error(run_cli("report", results, "-o", results), f"error: {results}: is the input results file {results}")
    assert results.read_bytes() == before
    assert files_under(tmp_path) == {"X.jsonl"}


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_report_over_a_link_to_its_input_is_refused(tmp_path: Path, link: str) -> None:
    results = tmp_path / "X.jsonl"
    results.write_bytes(jsonl(valid_rows()))
    before = results.read_bytes()
    output = tmp_path / "report.md"
    (os.symlink if link == "symlink" else os.link)(results, output)
    single_error(run_cli("report", results, "-o", output), f"error: {output}: is the input results file {results}")
    assert results.read_bytes() == before


@pytest.mark.parametrize(
    ("case", "make", "problem"),
    [
        (
            "notes of the user",
            lambda p: p.write_text("# My notes\n\nkeep me\n"),
            "exists and is not a report the harness wrote",
        ),
        ("a directory", lambda p: p.mkdir(), "is a directory"),
        ("a dangling link", lambda p: p.symlink_to(p.parent / "nowhere"), "exists and is not a regular file"),
        ("/dev/null", None, "exists and is not a regular file"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_report_over_what_it_did_not_write_is_refused(tmp_path: Path, case: str, make: Callable, problem: str) -> None:
    results = tmp_path / "results.jsonl"
    results.write_bytes(jsonl(valid_rows()))
    output = Path("/dev/null") if make is None else tmp_path / "report.md"
    if make:
        make(output)
    before = files_under(tmp_path)
    single_error(run_cli("report", results, "-o", output), f"error: {output}: {problem}")
    assert files_under(tmp_path) == before
    if case == "notes of the user":
        assert output.read_text() == "# My notes\n\nkeep me\n"


def test_output_folder_that_cannot_exist_is_one_line(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_bytes(jsonl(valid_rows()))
    output = tmp_path / "results.jsonl" / "sub" / "r.md"  # below a file
    single_error(run_cli("report", results, "-o", output), f"error: {output}: cannot write here: Not a directory")


def test_a_report_overwrites_its_own_earlier_report(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_bytes(jsonl(valid_rows()))
    output = tmp_path / "r.md"
    assert run_cli("report", results, "-o", output).returncode == 0
    first = output.read_text(encoding="utf-8")
    proc = run_cli("report", results, "-o", output, "--title", "Again")
    assert proc.returncode == 0, proc.stderr
    assert output.read_text(encoding="utf-8") == first.replace("# Benchmark report\n", "# Again\n", 1)
    assert files_under(tmp_path) == {"results.jsonl", "r.md", "r-cpu-pareto.png", "r-cpu-speedup.png"}


def test_a_report_written_before_the_marker_may_be_overwritten(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_bytes(jsonl(valid_rows()))
    output = tmp_path / "r.md"
    output.write_text("# Old\n\n## Summary\n\n## Notes\n\n- Latency is one call of the backend on prepared inputs.\n")
    proc = run_cli("report", results, "-o", output)
    assert proc.returncode == 0, proc.stderr
    assert output.read_text(encoding="utf-8").startswith("# Benchmark report\n<!-- harness report")


def test_a_title_cannot_break_the_first_line(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_bytes(jsonl(valid_rows()))
    output = tmp_path / "r.md"
    proc = run_cli("report", results, "-o", output, "--title", "two\nlines" + "x" * 10_000)
    assert proc.returncode == 0, proc.stderr
    first, marker = output.read_text(encoding="utf-8").splitlines()[:2]
    assert first.startswith("# two\\nlinesxxx") and first.endswith("...") and len(first) == 202
    assert marker.startswith("<!-- harness report")
    # and so a second report may replace it
    assert run_cli("report", results, "-o", output).returncode == 0


def test_a_refused_figure_leaves_no_partial_report(tmp_path: Path) -> None:
    """The figures are rendered aside and moved in only when all succeeded: one that may not replace
    what is there stops the report with nothing new in the folder and the old file untouched."""
    results = tmp_path / "results.jsonl"
    results.write_bytes(jsonl(valid_rows()))
    (tmp_path / "r-cpu-speedup.png").write_text("not an image: mine")
    proc = run_cli("report", results, "-o", tmp_path / "r.md")
    single_error(proc, f"error: {tmp_path / 'r-cpu-speedup.png'}: the report's figure would replace a file that is not")
    assert files_under(tmp_path) == {"results.jsonl", "r-cpu-speedup.png"}  # no PNG, no report, no staging
    assert (tmp_path / "r-cpu-speedup.png").read_text() == "not an image: mine"


def test_names_from_the_file_cannot_escape_the_output_folder_or_break_the_report(tmp_path: Path) -> None:
    rows = valid_rows()
    for r in rows:
        r["device"] = "../../escaped"
        r["model"] = "m$\\frac{1}{0}$|x\nsecond line"
        r["run"] = {**r["run"], "baseline": "m$\\frac{1}{0}$|x\nsecond line/eager-fp32/pytorch"}
    results = tmp_path / "results.jsonl"
    results.write_bytes(jsonl(rows))
    proc = run_cli("report", results, "-o", tmp_path / "out" / "r.md")
    assert proc.returncode == 0, proc.stderr
    assert files_under(tmp_path) == {
        "results.jsonl", "out", "out/r.md", "out/r-escaped-pareto.png", "out/r-escaped-speedup.png"
    }  # fmt: skip
    text = (tmp_path / "out" / "r.md").read_text(encoding="utf-8")
    assert "| m$\\frac{1}{0}$\\|x\\nsecond line |" in text  # one cell: the pipe escaped, the newline shown


@pytest.mark.parametrize(
    "options",
    [
        ["--threshold", "-0.1"],
        ["--threshold", "0"],
        ["--threshold", "nan"],
        ["--threshold", "inf"],
        ["--alpha", "0"],
        ["--alpha", "1.5"],
        ["--alpha", "nan"],
        ["--drift-allowance", "-1"],
        ["--drift-allowance", "nan"],
        ["--drift-allowance", "inf"],
    ],
    ids=" ".join,
)
def test_compare_refuses_bad_options(tmp_path: Path, options: list[str]) -> None:
    results = tmp_path / "results.jsonl"
    results.write_bytes(jsonl(valid_rows()))
    single_error(run_cli("compare", results, results, *options), f"error: {options[0]} must be")


@pytest.mark.parametrize(
    ("case", "content", "problem"),
    [
        ("empty", lambda: b"", "no result rows (the file is empty)"),
        ("binary", lambda: b"\x00\xff" * 100, "no result rows (line 1: not UTF-8 text"),
        ("array", lambda: b"[]\n", "no result rows (line 1: not a JSON object (an array))"),
        ("negative p50", changed(p50_ms=-1.0), f"no result rows ({at('p50_ms is -1.0')}"),
        ("batch as text", changed(batch_size="8"), "no result rows (line 1: field 'batch_size' is '8'"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
@pytest.mark.parametrize("side", ["old", "new"])
def test_compare_refuses_a_file_without_usable_rows(
    tmp_path: Path, side: str, case: str, content: Callable, problem: str
) -> None:
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_bytes(jsonl(valid_rows()))
    bad.write_bytes(content())
    files = (bad, good) if side == "old" else (good, bad)
    single_error(run_cli("compare", *files), f"error: {bad}: {problem}")
    assert files_under(tmp_path) == {"good.jsonl", "bad.jsonl"}


def test_compare_of_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(jsonl(valid_rows()))
    os.mkfifo(tmp_path / "fifo")
    single_error(run_cli("compare", good, tmp_path / "fifo", timeout=30), f"error: {tmp_path / 'fifo'}: not a regular")


def test_compare_skips_bad_lines_with_a_warning(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(jsonl(valid_rows()))
    noisy = tmp_path / "noisy.jsonl"
    noisy.write_bytes(jsonl(valid_rows()) + b"\x00\x00\n")
    proc = run_cli("compare", good, noisy)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [f"warning: {noisy}: skipped 1 of 4 lines (first: line 4: not valid JSON "
                                        "(column 1: Expecting value))"]  # fmt: skip
    assert "3 cells compared" in proc.stdout


def synthetic_rows(count: int, variants: int = 400, runs: int = 10, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` valid rows: ``runs`` machines x ``variants`` (the first the baseline) x 25 shapes, each with
    its own timings (3 rounds x 4 inputs) and accuracy."""
    rng = np.random.default_rng(seed)
    shapes = [(b, s) for b in (1, 2, 4, 8, 16) for s in ("dynamic", 64, 128, 256, 512)]
    rows: list[dict[str, Any]] = []
    for machine in range(runs):
        run = run_info(f"r{machine}", f"CPU-{machine}")
        for variant in range(variants):
            exporter, backend = ("eager-fp32", "pytorch") if variant == 0 else (f"e{variant}", "onnxruntime")
            for batch, seq_len in shapes:
                if len(rows) == count:
                    return rows
                p50 = float(rng.uniform(1, 50))
                cell = row(run, exporter, backend, "cpu", batch, p50)
                cell.update(seq_len=seq_len, accuracy=float(rng.uniform(0.5, 0.95)))
                cell["input_ms"] = (p50 * rng.uniform(0.9, 1.1, (3, 4))).tolist()
                rows.append(cell)
    return rows


def test_report_over_100k_rows_is_fast_and_its_plots_stay_readable(tmp_path: Path) -> None:
    results = tmp_path / "big.jsonl"
    results.write_bytes(jsonl(synthetic_rows(100_000)))
    out = tmp_path / "r.md"
    started = time.perf_counter()
    proc = run_cli("report", results, "-o", out)
    elapsed = time.perf_counter() - started
    print(f"report over 100,000 rows: {elapsed:.1f} s")
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 60  # about 18 s here; the 30 s target is checked by hand
    text = out.read_text(encoding="utf-8")
    # 10 machines x 400 variants at the figure's shape: the 30 fastest and the baselines are drawn
    assert "speedup over the baseline cell (30 fastest of 4000 variants shown, and the baseline)" in text
    assert "Speedup intervals were bootstrapped for 2000 of the 100000 cells" in text
    for figure in ("r-cpu-speedup.png", "r-cpu-pareto.png"):
        width, height = png_size(tmp_path / figure)
        assert height < PNG_HEIGHT_LIMIT and width < PNG_HEIGHT_LIMIT, (figure, width, height)
