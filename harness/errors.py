"""Errors the CLI turns into one clear line instead of a traceback."""

from __future__ import annotations


class HarnessError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits with ``exit_code``."""

    exit_code = 1


class SuiteError(HarnessError):
    """A suite file is invalid. Rendered as ``FILE: key.path: what is wrong``."""

    exit_code = 2

    def __init__(self, file: str, key_path: str, message: str) -> None:
        self.file = file
        self.key_path = key_path
        self.message = message
        location = f"{file}: {key_path}" if key_path else file
        super().__init__(f"{location}: {message}")


class DataNotFoundError(HarnessError):
    """No copy of a dataset is reachable: neither the hub nor a local directory."""

    exit_code = 3


class ModelNotFoundError(HarnessError):
    """A model source cannot be resolved to a local directory."""

    exit_code = 3


class InputError(HarnessError):
    """Bad command-line input: a missing file, an invalid option, results that cannot be compared."""

    exit_code = 2
