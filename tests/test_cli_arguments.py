"""Bad command-line arguments are one line on stderr and exit 2, like every other bad input."""

from __future__ import annotations

import pytest

from harness.cli import main

CASES = {
    "unknown-command": (["frob"], "harness: argument command: invalid choice: 'frob'"),
    "no-command": ([], "harness: the following arguments are required: command"),
    "run-without-suite": (["run"], "harness run: the following arguments are required: suite"),
    "unknown-flag": (["list", "--colour"], "harness: unrecognized arguments: --colour"),
    "threshold-not-a-number": (["compare", "a", "b", "--threshold", "abc"], "invalid float value: 'abc'"),
    "alpha-not-a-number": (["compare", "a", "b", "--alpha", "1e"], "invalid float value: '1e'"),
    "normalize-unknown": (["compare", "a", "b", "--normalize", "median"], "invalid choice: 'median'"),
    "report-without-output": (["report", "x.jsonl"], "the following arguments are required: -o/--output"),
    "newline-in-choice": (["compare", "a", "b", "--normalize", "x\nerror: ok"], "invalid choice: 'x\\nerror: ok'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_arguments_are_one_line_and_exit_2(case: str, capsys) -> None:
    argv, expected = CASES[case]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: harness") and expected in lines[0], lines[0]
    assert "--help" in lines[0] and captured.out == ""
