"""What produced each variant: its adapters' packages and options, and what its sessions said."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from harness.errors import one_line

CELL_LIMIT = 160


def variants_section(frame: pd.DataFrame) -> str:
    """``## Variants``: one line per model x exporter x backend that has versions, options or notes."""
    lines = []
    several_machines = "hardware" in frame and frame["hardware"].nunique() > 1
    keys = ["model", "exporter", "backend", "device"] + (["hardware"] if several_machines else [])
    for names, group in frame.groupby(keys, sort=False):
        first = group.iloc[0]
        versions = first.get("versions") if "versions" in group else None
        options = first.get("adapter_options") if "adapter_options" in group else None
        notes = next((n for n in group.get("backend_notes", []) if isinstance(n, list) and n), None)
        if not (_is_mapping(versions) or _is_mapping(options) or notes):
            continue
        cells = [
            " / ".join(str(n) for n in names),
            describe_versions(versions),
            describe_options(options),
            describe_notes(notes or []),
        ]
        lines.append("| " + " | ".join(_escape(c) for c in cells) + " |")
    if not lines:
        return ""
    header = "| variant | packages | options | session (per round) |\n|---|---|---|---|"
    return "## Variants\n\n" + header + "\n" + "\n".join(lines)


def describe_versions(versions: Any) -> str:
    """``openvino 2026.4.1, nncf 3.4.0``."""
    if not _is_mapping(versions):
        return "—"
    return ", ".join(f"{name} {version}" for name, version in versions.items()) or "—"


def describe_options(options: Any) -> str:
    """``exporter: method=minmax; backend: precision=f32`` (an adapter without options is left out)."""
    if not _is_mapping(options):
        return "—"
    parts = []
    for adapter in ("exporter", "backend"):
        values = options.get(adapter)
        if _is_mapping(values) and values:
            parts.append(f"{adapter}: " + ", ".join(f"{k}={_short(v)}" for k, v in values.items()))
    return "; ".join(parts) or "—"


def describe_notes(notes: Sequence[Mapping[str, Any]]) -> str:
    """Each key once, with its value per round when the rounds differ: ``compile_s 12.1 / 3.2 / 3.1``."""
    rounds = [n for n in notes if _is_mapping(n)]
    keys = [k for n in rounds for k in n if k != "round"]
    parts = []
    for key in dict.fromkeys(keys):
        values = [_short(n.get(key)) for n in rounds]
        shown = values[0] if len(set(values)) == 1 else " / ".join(values)
        parts.append(f"{key} {shown}")
    return ", ".join(parts) or "—"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    return one_line(str(value), 40)


def _is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping)


def _escape(text: str) -> str:
    return one_line(text, CELL_LIMIT).replace("|", "\\|")
