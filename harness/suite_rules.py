"""The pieces of the suite schema shared with the stage options: strict base config, bounded text
types, cross-field checks that report every problem with its own key path, and the rendering of
pydantic errors as ``key.path: what`` lines.

Everything here is pure: no files, no network, no imports of the adapters.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Hashable, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from harness.errors import one_line, quote
from harness.registry import closest

# extra keys are typos; strict: YAML's `true` is no count, '3' no number; NaN and infinity are no sizes
STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
MAX_SEED = 2**32 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_TAGS = ("[key]", "int", "str", "float", "bool", "list", "dict", "none")
_RULE = "suite_rule"  # the error type of the checks below: their message already says everything


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (newlines, tabs, NUL)")
    return value


SafeName = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
Text = Annotated[str, Field(max_length=256), AfterValidator(_printable)]
PathText = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_printable)]


def fail(title: str, problems: Sequence[tuple[tuple[int | str, ...], str, Any]]) -> None:
    """Raise every ``(loc, message, input)`` at once; pydantic prefixes each loc with the field's path."""
    if problems:
        raise ValidationError.from_exception_data(
            title,
            [
                {"type": PydanticCustomError(_RULE, "{message}", {"message": message}), "loc": loc, "input": value}
                for loc, message, value in problems
            ],
        )


def duplicates(values: Sequence[Hashable]) -> list[tuple[int, str, Any]]:
    """``(index, message, value)`` for each value seen before, naming the index it was first seen at."""
    first: dict[Any, int] = {}
    found = []
    for index, value in enumerate(values):
        key = (type(value), value)  # 1 and True (or 1.0) are different entries
        if key in first:
            found.append((index, f"{quote(value)} appears twice (first at [{first[key]}])", value))
        else:
            first[key] = index
    return found


def unknown(kind: str, value: str, known: Collection[str]) -> str:
    suggestion = closest(value, known)
    hint = f" (did you mean {quote(suggestion)}?)" if suggestion else ""
    return f"unknown {kind} {quote(value)}{hint}"


def parent_problems(names: list[str], parents: list[str | None]) -> list[tuple[int, str, str]]:
    """``(index, message, parent)`` for each model whose parent is unknown, later in the list, or
    part of a cycle (named once, at its first model)."""
    first = {name: index for index, name in reversed(list(enumerate(names)))}
    parent_of = {name: parents[index] for name, index in first.items()}
    found, cycles = [], set()
    for index, parent in enumerate(parents):
        if parent is None or (parent in first and first[parent] < index):
            continue
        if parent not in first:
            found.append((index, unknown("parent model", parent, names), parent))
            continue
        chain = [names[index], parent]
        while chain[-1] is not None and chain[-1] not in chain[:-1]:
            chain.append(parent_of.get(chain[-1]))
        if chain[-1] != names[index]:
            where = f"models[{first[parent]}]"
            found.append(
                (index, f"parent {quote(parent)} is declared after this model (at {where}); move it earlier", parent)
            )
        elif frozenset(chain) not in cycles:
            cycles.add(frozenset(chain))
            found.append((index, f"the parents form a cycle: {' -> '.join(chain)}", parent))
    return found


def key_path(loc: tuple[Any, ...], raw: Any) -> str:
    """``models[0].finetune.epochs`` for a pydantic ``loc``; the raw document tells a list index
    from an integer mapping key, and pydantic's own union and validator tags are dropped."""
    path, node = "", raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            path += f".{_key(part)}" if path else _key(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path += f"[{part}]"
            node = node[part]
        elif isinstance(part, int):
            path, node = path + f"[{part}]", None
        elif _is_tag(part) or (isinstance(node, dict) and part == node.get("type")):
            continue  # a discriminated union's tag is the entry's own ``type``
        else:
            path, node = (f"{path}.{_key(part)}" if path else _key(part)), None
    return one_line(path) or "(top level)"


def _is_tag(part: str) -> bool:
    """Parts pydantic adds to a loc for unions, validators and dict keys, never a key of ours."""
    return part in _TAGS or part.startswith(("function-", "literal[", "constrained-", "json-or-python"))


def _key(part: Any) -> str:
    if isinstance(part, str) and len(part) <= 64 and _PLAIN_KEY.match(part):
        return part
    return str(part) if isinstance(part, int | float) else quote(part)


_BOUNDS = {
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "finite_number": "must be a finite number",
}


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def message(error: dict[str, Any]) -> str:
    """One line saying what is wrong, with the offending value quoted and cut short."""
    kind = error["type"]
    if kind == _RULE:
        return one_line(error["msg"])
    if kind in ("extra_forbidden", "invalid_key"):  # invalid_key: a key that is not even a string
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind in _BOUNDS:
        ctx = {key: _number(value) for key, value in error.get("ctx", {}).items()}
        text = _BOUNDS[kind].format(**ctx)
    elif kind == "string_type" and error["loc"] and error["loc"][-1] == "[key]":
        text = "keys here must be strings"
    else:
        text = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    shown = isinstance(value, str | int | float) and quote(value) in text  # e.g. "unknown exporter 'x'"
    if kind not in ("model_type", "dict_type") and isinstance(value, str | int | float) and not shown:
        text += f" (got {quote(value)})"
    return one_line(text)
