"""Writing a report without destroying anything: never over an input or a file the harness did not
write, and all at once: the figures and the markdown are rendered into a staging folder next to the
report and renamed into place only when every one of them succeeded."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import InputError, one_line

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEAD_BYTES = 4096
# reports written before the marker existed end with these notes; nothing else does
LEGACY_NOTES = "\n## Notes\n\n- Latency is one call of the backend on prepared inputs"
LEGACY_EMPTY = re.compile(r"# [^\n]*\n\nNo results\.\n")
MAX_LEGACY_BYTES = 256 * 2**20


def check_report_target(output: Path, inputs: Sequence[Path]) -> None:
    """Refuse (``InputError``) a report path that is one of the ``inputs`` (also through a symlink or
    a hard link) or an existing file that is not a report the harness wrote."""
    name = one_line(str(output))
    _refuse_an_input(output, inputs, "is the input results file {source}; write the report elsewhere")
    if not os.path.lexists(output):
        return
    if output.is_dir():
        raise InputError(f"{name}: is a directory; the report needs a file name")
    if not output.is_file():
        raise InputError(f"{name}: exists and is not a regular file")
    if not is_report(output):
        raise InputError(
            f"{name}: exists and is not a report the harness wrote; remove it or write the report elsewhere"
        )


def is_report(path: Path) -> bool:
    """Whether ``path`` holds a report the harness wrote: its marker on the second line (or the notes of
    a report written before the marker)."""
    from harness.results.report import MARKER

    try:
        with path.open("rb") as stream:
            head = stream.read(HEAD_BYTES).decode("utf-8", errors="replace")
            lines = head.split("\n", 2)
            if len(lines) > 1 and lines[0].startswith("# ") and lines[1] == MARKER:
                return True
            if not head.startswith("# ") or path.stat().st_size > MAX_LEGACY_BYTES:
                return False
            text = head + stream.read().decode("utf-8", errors="replace")
    except OSError:
        return False
    return LEGACY_NOTES in text or LEGACY_EMPTY.fullmatch(text) is not None


def write_report(
    rows: Sequence[Mapping[str, Any]],
    path: Path,
    title: str,
    inputs: Sequence[Path] = (),
    scenarios: Sequence[Mapping[str, Any]] = (),
) -> None:
    """The report at ``path`` and its figures beside it, renamed into place only once all are rendered;
    on any failure nothing is left behind and the files already there are untouched. ``scenarios``:
    the scenario rows of the same results."""
    from harness.results.figures import write_figures
    from harness.results.report import render_report, report_frame
    from harness.results.scenario_section import scenario_figures

    name = one_line(str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name[:40]}.", suffix=".tmp", dir=path.parent))
    except OSError as error:
        raise InputError(f"{name}: cannot write here: {error.strerror or error}") from None
    try:
        # a rendering bug propagates as the bug it is; the staging folder goes, so no half report stays
        with warnings.catch_warnings():  # extreme values overflow a ratio: shown as inf, not a page of warnings
            warnings.simplefilter("ignore", RuntimeWarning)
            frame = report_frame(rows) if rows else None
            figures = write_figures(frame, staging, path.stem) if frame is not None else {}
            figures.update(scenario_figures(scenarios, staging, path.stem) if frame is not None else {})
            text = render_report(frame if frame is not None else [], title, figures, scenarios)
        for figure in figures.values():
            _check_figure_target(path.parent / figure, inputs)
        (staging / "report.tmp").write_text(text, encoding="utf-8")
        for figure in figures.values():
            os.replace(staging / figure, path.parent / figure)
        os.replace(staging / "report.tmp", path)
    except OSError as error:
        raise InputError(f"{name}: cannot be written: {error.strerror or error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _refuse_an_input(path: Path, inputs: Sequence[Path], problem: str) -> None:
    """``InputError`` when ``path`` is one of ``inputs`` (also through a symlink or a hard link)."""
    for source in inputs:
        if _same_file(path, source):
            raise InputError(f"{one_line(str(path))}: " + problem.format(source=one_line(str(source))))


def _check_figure_target(path: Path, inputs: Sequence[Path]) -> None:
    """A figure replaces only a PNG that is not an input."""
    name = one_line(str(path))
    _refuse_an_input(path, inputs, "the report's figure would replace the input {source}")
    if not os.path.lexists(path):
        return
    try:
        regular = stat.S_ISREG(path.lstat().st_mode)
        with path.open("rb") as stream:
            png = stream.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    except OSError:
        regular = png = False
    if not (regular and png):
        raise InputError(f"{name}: the report's figure would replace a file that is not a PNG image")


def _same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file: the same inode (symlinks and hard links), or the same resolved path."""
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet)
        try:
            return first.resolve() == second.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            return False
