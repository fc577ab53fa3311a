"""Which nodes of a cluster each hardware selector names: pure functions over node records, so the
rules are tested without a cluster. ``Node.from_ray`` reads one entry of ``ray.nodes()``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError
from harness.suite_fleet import HardwareSelector


class FleetError(HarnessError):
    """The cluster cannot run the suite as asked (no matching node, no benchmarking slot, ...)."""


@dataclass(frozen=True)
class Node:
    node_id: str
    address: str
    resources: Mapping[str, float] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    alive: bool = True

    @classmethod
    def from_ray(cls, record: Mapping[str, Any]) -> Node:
        """One entry of ``ray.nodes()``; anything malformed is a ``FleetError``, not a crash later."""
        try:
            resources = {str(k): float(v) for k, v in dict(record.get("Resources") or {}).items()}
            labels = {str(k): str(v) for k, v in dict(record.get("Labels") or {}).items()}
            return cls(
                node_id=str(record["NodeID"]),
                address=str(record.get("NodeManagerAddress") or "?"),
                resources=resources,
                labels=labels,
                alive=bool(record.get("Alive", False)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise FleetError(f"the cluster reported a node record this harness cannot read: {error}") from error

    @property
    def short(self) -> str:
        return f"{self.address} ({self.node_id[:8]})"


def selects(selector: HardwareSelector, node: Node) -> bool:
    """Every resource of the selector (at least its amount) and every label (exactly) is on the node."""
    has_resources = all(node.resources.get(name, 0.0) >= amount for name, amount in selector.resources.items())
    return has_resources and all(node.labels.get(key) == value for key, value in selector.labels.items())


def match_hardware(
    selectors: Iterable[HardwareSelector], nodes: Iterable[Node], slot: str
) -> tuple[dict[str, list[Node]], list[str]]:
    """The live nodes of each selector, and warnings for optional selectors that match none.

    Raises ``FleetError`` before anything runs when a required selector matches no live node, or
    when a node it matches offers no benchmarking slot (``slot``, a custom resource): such a node
    could never take a cell, and the run would wait for it forever.
    """
    live = [node for node in nodes if node.alive]
    matched: dict[str, list[Node]] = {}
    warnings: list[str] = []
    problems: list[str] = []
    for selector in selectors:
        chosen = [node for node in live if selects(selector, node)]
        slotless = [node.short for node in chosen if node.resources.get(slot, 0.0) < 1]
        if slotless:
            problems.append(
                f"hardware '{selector.name}': node(s) {', '.join(slotless)} offer no '{slot}' resource; "
                f"start each benchmarking node with --resources '{{\"{slot}\": 1, ...}}'"
            )
        if not chosen and selector.optional:
            warnings.append(f"hardware '{selector.name}' matches no live node: its cells are skipped")
        elif not chosen:
            problems.append(f"hardware '{selector.name}' matches no live node ({describe(selector)}); {_seen(live)}")
        matched[selector.name] = chosen
    if problems:
        raise FleetError("; ".join(problems))
    return matched, warnings


def describe(selector: HardwareSelector) -> str:
    parts = [f"resource {name} >= {amount:g}" for name, amount in selector.resources.items()]
    parts += [f"label {key}={value}" for key, value in selector.labels.items()]
    return ", ".join(parts)


def _seen(nodes: list[Node]) -> str:
    if not nodes:
        return "the cluster has no live node"
    custom = sorted({name for node in nodes for name in node.resources if not _builtin(name)})
    labels = sorted({f"{k}={v}" for node in nodes for k, v in node.labels.items() if not k.startswith("ray.io/")})
    return f"live nodes offer resources [{', '.join(custom)}] and labels [{', '.join(labels)}]"


def _builtin(resource: str) -> bool:
    # Ray's own accounting: CPU, GPU, memory, object_store_memory, node:<ip>, accelerator_type:...
    return resource in ("CPU", "GPU", "memory", "object_store_memory") or resource.startswith(("node:", "accelerator"))
