"""Errors the CLI turns into one clear line instead of a traceback.

Exit codes are the same for every command: 0 fine, 1 a regression (``compare``) or failed cells
(``run``), 2 bad input or environment. Every error here is the user's to fix, so every one is 2.
"""

from __future__ import annotations

import re

EXIT_OK, EXIT_REGRESSION, EXIT_BAD_INPUT = 0, 1, 2
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def quote(value: object, limit: int = 80) -> str:
    """A value for a one-line message: quoted, control characters escaped, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str, limit: int = 2000) -> str:
    """``text`` with control characters (newlines included) escaped, so it cannot spoof another line."""
    escaped = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


class HarnessError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits with ``exit_code``."""

    exit_code = EXIT_BAD_INPUT


class SuiteError(HarnessError):
    """A suite file is invalid. Rendered as ``FILE: key.path: what is wrong``."""

    def __init__(self, file: str, key_path: str, message: str) -> None:
        self.file = file
        self.key_path = key_path
        self.message = message
        location = f"{file}: {key_path}" if key_path else file
        super().__init__(f"{location}: {message}")


class SuiteErrors(HarnessError):
    """Every problem found in one suite file, one ``SuiteError`` each."""

    def __init__(self, problems: list[SuiteError]) -> None:
        self.problems = problems
        super().__init__("\n".join(one_line(str(p)) for p in problems))


class DataNotFoundError(HarnessError):
    """No copy of a dataset is reachable: neither the hub nor a local directory."""


class ModelNotFoundError(HarnessError):
    """A model source cannot be resolved to a local directory."""


class InputError(HarnessError):
    """Bad command-line input: a missing file, an invalid option, results that cannot be compared."""
