"""A bounded YAML reader for suite files.

A suite is a few hundred nodes written by hand, so anything far larger is refused before it costs
time or memory: the file size is checked before reading (``/dev/zero`` and FIFOs are not regular
files), nesting depth and the node count after alias and merge-key expansion are checked while the
document is composed (so a kilobyte "billion laughs" fails in milliseconds), and duplicate keys,
which YAML would silently resolve to the last one, are errors naming both lines.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.error import Mark, MarkedYAMLError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from harness.errors import SuiteError, one_line, quote

MAX_BYTES = 2**20
MAX_NODES = 10_000
MAX_DEPTH = 32
MAX_NUMBER_CHARS = 100  # longer numerals cost quadratic time (sexagesimal) or hit int()'s digit limit
_MERGE_TAG = "tag:yaml.org,2002:merge"


class LimitError(MarkedYAMLError):
    """The document breaks one of the reader's limits (or has a duplicate key); not a syntax error."""

    def __init__(self, problem: str, mark: Mark | None) -> None:
        super().__init__(problem=problem, problem_mark=mark)


def read_yaml(path: Path, file: str) -> Any:
    """The YAML document in ``path``; every problem raises ``SuiteError`` naming ``file`` and the line."""
    text = _read_text(path, file)
    loader = None
    try:
        loader = _BoundedLoader(text)
        return loader.get_single_data()
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}" if mark else ""
        if isinstance(error, LimitError):
            raise SuiteError(file, where, error.problem) from None
        problem = ", ".join(part for part in (error.context, error.problem) if part) or "unreadable"
        raise SuiteError(file, where, f"malformed YAML: {one_line(problem)}") from None
    except (ValueError, OverflowError) as error:  # a scalar the safe constructor cannot build
        raise SuiteError(file, "", f"malformed YAML: a value cannot be read ({one_line(str(error))})") from None
    except yaml.reader.ReaderError as error:  # a character YAML does not allow
        line = text[: error.position].count("\n") + 1
        character = quote(chr(error.character)) if isinstance(error.character, int) else "a character"
        raise SuiteError(file, f"line {line}", f"malformed YAML: {character} is not allowed in YAML") from None
    finally:
        if loader is not None:
            loader.dispose()


def _read_text(path: Path, file: str) -> str:
    """At most ``MAX_BYTES`` of a regular file, decoded; opened non-blocking so a FIFO cannot hang us."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SuiteError(file, "", "no such file") from None
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        raise SuiteError(file, "", f"cannot open: {getattr(error, 'strerror', None) or error}") from None
    try:
        _refuse_kind_or_size(os.fstat(fd), file)
        data = _read_at_most(fd, MAX_BYTES + 1)
    except OSError as error:
        raise SuiteError(file, "", f"cannot read: {error.strerror or errno.errorcode.get(error.errno)}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:  # it grew after the size check
        raise SuiteError(file, "", f"the file is over {MAX_BYTES} bytes; a suite file may be at most {MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise SuiteError(file, f"line {line}", f"not a UTF-8 text file (byte {data[error.start]:#04x})") from None


def _refuse_kind_or_size(info: os.stat_result, file: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise SuiteError(file, "", "is a directory, expected a YAML suite file")
    if not stat.S_ISREG(info.st_mode):
        raise SuiteError(file, "", "is not a regular file (a device, FIFO or socket); give a YAML suite file")
    if info.st_size > MAX_BYTES:
        raise SuiteError(file, "", f"the file is {info.st_size} bytes; a suite file may be at most {MAX_BYTES} bytes")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that measures every node as it is composed: its size once aliases are expanded
    (an alias counts its whole target again each time it is used) and its depth.

    Two YAML 1.1 quirks are fixed the YAML 1.2 way: ``5e-5`` is a float (1.1 wants ``5.0e-5`` and
    reads the rest as text, which the strict schema then refuses), and dates stay text (a suite has
    none, and ``2001-13-45`` would fail inside the constructor).
    """

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nesting = 0
        self._composed = 0
        self._measured: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, expanded depth)

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            if id(node) not in self._measured:
                raise LimitError("an alias refers to a node that contains it (a recursive structure)", mark)
            return node
        self._composed += 1
        if self._composed > MAX_NODES:  # checked early: a flat list of a million scalars stops here
            raise LimitError(_too_many_nodes(), self.peek_event().start_mark)
        if self._nesting >= MAX_DEPTH:
            raise LimitError(
                f"nested more than {MAX_DEPTH} levels deep (at most {MAX_DEPTH})", self.peek_event().start_mark
            )
        self._nesting += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._nesting -= 1
        self._measure(node)
        return node

    def _measure(self, node: Node) -> None:
        if isinstance(node, MappingNode):
            self._refuse_duplicate_keys(node)
            children = [child for pair in node.value for child in pair]
        else:
            children = node.value if isinstance(node, SequenceNode) else []
        sizes = [self._measured[id(child)] for child in children]
        size = 1 + sum(s for s, _ in sizes)
        depth = 1 + max((d for _, d in sizes), default=0)
        if size > MAX_NODES:
            raise LimitError(_too_many_nodes(), node.start_mark)
        if depth > MAX_DEPTH:
            raise LimitError(
                f"aliases nest the document more than {MAX_DEPTH} levels deep (at most {MAX_DEPTH})", node.start_mark
            )
        self._measured[id(node)] = (size, depth)

    def _refuse_duplicate_keys(self, node: MappingNode) -> None:
        """Checked on the node as written, before merge keys are flattened into it (a merged key may
        legitimately be overridden)."""
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            try:
                if key in first_line:
                    raise LimitError(
                        f"duplicate key {quote(key)} (first at line {first_line[key]})", key_node.start_mark
                    )
                first_line[key] = line
            except TypeError:  # unhashable; the constructor reports it
                continue

    def construct_yaml_int(self, node: ScalarNode) -> int:
        _refuse_long_numeral(node)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: ScalarNode) -> float:
        _refuse_long_numeral(node)
        return super().construct_yaml_float(node)


def _too_many_nodes() -> str:
    return (
        f"the document has more than {MAX_NODES} nodes once aliases and merge keys are expanded (at most {MAX_NODES})"
    )


def _refuse_long_numeral(node: ScalarNode) -> None:
    if len(node.value) > MAX_NUMBER_CHARS:
        raise LimitError(f"a number of {len(node.value)} characters (at most {MAX_NUMBER_CHARS})", node.start_mark)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)
_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _BoundedLoader.construct_yaml_float)


_BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)
