"""The only module that imports Ray: connect, read the nodes, probe each machine, and run variant
rounds on chosen nodes, at most one per node at a time.

Each round is a Ray task pinned to its node (``NodeAffinitySchedulingStrategy``, not soft) that also
holds the node's one benchmarking slot, so a second harness run on the same cluster cannot put a
cell beside it either. Answers come back as JSON text (``harness.fleet.codec``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.errors import one_line
from harness.fleet.nodes import FleetError, Node, match_hardware
from harness.suite_fleet import ClusterConfig, HardwareSelector

log = logging.getLogger("harness")


@dataclass(frozen=True)
class Finished:
    """One task's end: the answer text, or why there is none (``lost``: its node or worker died)."""

    token: Any
    node: Node
    answer: str | None
    failure: str | None = None
    lost: bool = False


class Fleet:
    def __init__(self, config: ClusterConfig, selectors: Iterable[HardwareSelector]) -> None:
        import ray

        self.ray = ray
        self.config = config
        if not ray.is_initialized():
            ray.init(address=config.address, namespace="harness", log_to_driver=False, configure_logging=False)
        nodes = [Node.from_ray(record) for record in ray.nodes()]
        self.matched, self.warnings = match_hardware(selectors, nodes, config.slot_resource)
        for warning in self.warnings:
            log.warning("%s", warning)
        self.busy: set[str] = set()
        self.lost: set[str] = set()
        self.in_flight: dict[Any, tuple[Any, Node]] = {}
        self.blobs: dict[str, Any] = {}
        self.remotes: dict[Any, Any] = {}

    def nodes_of(self, hardware: str) -> list[Node]:
        return [node for node in self.matched.get(hardware, []) if node.node_id not in self.lost]

    def free(self, hardware: str) -> list[Node]:
        return [node for node in self.nodes_of(hardware) if node.node_id not in self.busy]

    def put_blob(self, key: str, blob_factory: Any) -> Any:
        """The packed artifact's object reference, made once per content key."""
        if key not in self.blobs:
            self.blobs[key] = self.ray.put(blob_factory())
        return self.blobs[key]

    def probe(self, node: Node, *args: Any) -> str:
        """The node's answer to ``probe_node(*args)``, run on the node while it holds its slot."""
        from harness.fleet.worker import probe_node

        try:
            return self.ray.get(self._remote(probe_node, node).remote(*args))
        except Exception as error:
            raise FleetError(f"probing node {node.short} failed: {type(error).__name__}: {error}") from error

    def submit(self, node: Node, token: Any, function: Any, *args: Any) -> None:
        """Run ``function(*args)`` on ``node``; ``wait`` hands back ``token`` with its answer."""
        if node.node_id in self.busy:
            raise RuntimeError(f"node {node.short} already runs a cell")
        reference = self._remote(function, node).remote(*args)
        self.busy.add(node.node_id)
        self.in_flight[reference] = (token, node)

    def wait(self) -> Finished:
        """The next task to end (in any order)."""
        ready, _ = self.ray.wait(list(self.in_flight), num_returns=1)
        reference = ready[0]
        token, node = self.in_flight.pop(reference)
        self.busy.discard(node.node_id)
        try:
            return Finished(token, node, self.ray.get(reference))
        except Exception as error:  # the task raised, its worker died, or its node is gone
            if isinstance(error, self._loss_errors()) or not self._alive(node):
                self.lost.add(node.node_id)
                return Finished(token, node, None, f"node {node.short} was lost ({type(error).__name__})", lost=True)
            return Finished(token, node, None, f"on node {node.short}: {type(error).__name__}: {one_line(str(error))}")

    def _loss_errors(self) -> tuple[type[BaseException], ...]:
        # the node died under the task, or died before a task pinned to it could start; the cluster
        # may still count it alive for a few heartbeats after either
        names = ("NodeDiedError", "TaskUnschedulableError")
        return tuple(getattr(self.ray.exceptions, name) for name in names if hasattr(self.ray.exceptions, name))

    def _alive(self, node: Node) -> bool:
        """Whether the cluster still counts the node alive (a dead worker process is not a lost node)."""
        return any(record.get("NodeID") == node.node_id and record.get("Alive") for record in self.ray.nodes())

    def _remote(self, function: Any, node: Node) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if function not in self.remotes:
            self.remotes[function] = self.ray.remote(function)
        return self.remotes[function].options(
            num_cpus=0,  # the slot, not Ray's CPU count, decides what runs: the cell uses the suite's threads
            resources={self.config.slot_resource: 1},
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
            max_retries=0,  # a lost round is re-queued by the runner, on another node where there is one
        )

    def close(self) -> None:
        for reference in list(self.in_flight):
            self.ray.cancel(reference, force=True)
        self.in_flight.clear()
