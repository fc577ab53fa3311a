"""Which cells each machine of a fleet can run, decided on the machine itself: a GPU node has CUDA
where the driver may have none, and a CPU without BF16 has no BF16 cells however the driver's CPU is.

The driver lists the suite's kinds of cell (backend x artifact format x device, with the backend's
options); each lane's probe answers, per kind, why its node cannot run it, or nothing. The driver
plans a cell when some machine can run it, and each machine that cannot gets an ``n/a`` row with its
own reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

from harness.suite import BackendEntry, Suite

# the reason a cell gets in the plan when no machine can run it; each machine's row says its own
NOWHERE = "no machine of the fleet can run this cell"


@dataclass(frozen=True)
class CellKind:
    """A kind of cell as a node can judge it; ``artifact_format`` None asks only about the device."""

    backend: str  # the backend's display name in the suite
    backend_name: str  # its registered adapter
    options: Mapping[str, Any]
    artifact_format: str | None
    device: str

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.backend, self.artifact_format, self.device)

    def to_json(self) -> dict[str, Any]:
        kind = {"backend": self.backend_name, "options": dict(self.options)}
        return {**kind, "format": self.artifact_format, "device": self.device}


def cell_kinds(suite: Suite, exporters: Any, backends: Any) -> list[CellKind]:
    """Every backend x device of the suite, and every backend x format x device its exporters make."""
    kinds: dict[tuple[str, str | None, str], CellKind] = {}
    formats = [None, *(exporters.get(entry.name).format_for(entry.options) for entry in suite.exporters)]
    for entry, artifact_format, device in product(suite.backends, formats, suite.devices):
        if artifact_format is None or artifact_format in backends.get(entry.name).formats:
            kind = CellKind(entry.display_name, entry.name, entry.options, artifact_format, device)
            kinds.setdefault(kind.key, kind)
    return list(kinds.values())


def node_reasons(kinds: Iterable[Mapping[str, Any]], backends: Any) -> list[str | None]:
    """On the node: why each kind of cell cannot run here (None where it can)."""
    from harness.run.plan import local_reason

    reasons = []
    for kind in kinds:
        try:
            reason = local_reason(backends.get(kind["backend"]), kind["options"], kind["format"], kind["device"])
        except Exception as error:  # a probe that cannot tell is a machine that cannot run the cell
            reason = f"could not tell whether it runs here: {type(error).__name__}: {error}"
        reasons.append(reason or None)
    return reasons


class FleetAvailability:
    """Each lane's verdict on each kind of cell, as the driver asks it."""

    def __init__(self, kinds: Sequence[CellKind], lane_reasons: Mapping[str, Sequence[str | None]]) -> None:
        self.lanes = {
            lane: {kind.key: reason for kind, reason in zip(kinds, reasons, strict=True)}
            for lane, reasons in lane_reasons.items()
        }

    def reason(self, lane: str, backend: str, artifact_format: str | None, device: str) -> str | None:
        """Why ``lane`` cannot run the cell (the device first, then the format on it)."""
        verdicts = self.lanes[lane]
        return verdicts.get((backend, None, device)) or verdicts.get((backend, artifact_format, device))

    def plan_reason(self, backend: BackendEntry, artifact_format: str, device: str) -> str | None:
        """The driver's plan runs a cell that some machine can run."""
        if any(self.reason(lane, backend.display_name, artifact_format, device) is None for lane in self.lanes):
            return None
        return NOWHERE

    def device_reasons(self, backend: str, device: str) -> dict[str, str]:
        """Why each machine cannot use ``device`` with ``backend`` (empty when one of them can)."""
        reasons = {lane: self.reason(lane, backend, None, device) for lane in self.lanes}
        return {} if any(reason is None for reason in reasons.values()) else reasons
