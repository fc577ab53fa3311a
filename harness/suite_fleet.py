"""The suite's fleet: the machines its cells run on (``hardware:``) and the Ray cluster that has them
(``cluster:``). Plain typed data: nothing here imports Ray or connects anywhere.

A hardware selector names one kind of machine by what its Ray nodes carry: custom resources given
at ``ray start --resources`` and labels given at ``ray start --labels``. Every node it matches runs
that selector's cells, one cell at a time per node. Without a cluster (no ``--cluster`` and no
``cluster:`` block), a run is local and ``hardware:`` is not used.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator

from harness.suite_entries import Strict
from harness.suite_rules import SafeName, duplicates, fail

# Ray resource names and label keys/values: letters, digits and a few separators (no spaces, no
# quotes), as ``ray start --resources`` and ``--labels`` take them
RayName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$", max_length=128)]
LabelValue = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:/-]*$", max_length=128)]
Amount = Annotated[float, Field(gt=0, le=1e9)]
# auto (the cluster this machine belongs to), host:port of a head node, or a Ray client address
ADDRESS_PATTERN = r"^(auto|(ray://)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?:[0-9]{1,5})$"
ClusterAddress = Annotated[str, Field(pattern=ADDRESS_PATTERN, max_length=300)]
# the custom resource every benchmarking node offers once: a cell holds it while it runs
DEFAULT_SLOT = "harness-slot"


class HardwareSelector(Strict):
    """One kind of machine: the nodes that carry every resource (at least the amount given) and every
    label listed. ``optional``: a selector that matches no node skips its cells with a warning
    instead of stopping the run before it starts."""

    name: SafeName
    resources: dict[RayName, Amount] = Field(default_factory=dict, max_length=32)
    labels: dict[RayName, LabelValue] = Field(default_factory=dict, max_length=32)
    optional: bool = False

    @model_validator(mode="after")
    def _selects_something(self) -> HardwareSelector:
        if not self.resources and not self.labels:
            raise ValueError("a hardware selector needs resources or labels to match nodes by")
        return self


class ClusterConfig(Strict):
    """The Ray cluster a suite runs on when no ``--cluster`` is given."""

    address: ClusterAddress
    slot_resource: RayName = DEFAULT_SLOT


def check_hardware(selectors: list[HardwareSelector]) -> list[HardwareSelector]:
    """Distinct names: a row's hardware column tells its machine by name."""
    names = [selector.name for selector in selectors]
    fail("hardware", [((index, "name"), text, name) for index, text, name in duplicates(names)])
    return selectors


class FleetFields(Strict):
    """Mixed into ``Suite``: the two later keys, absent from older suites' hashes when empty."""

    hardware: list[HardwareSelector] = Field(default_factory=list, max_length=64)
    cluster: ClusterConfig | None = None

    @field_validator("hardware")
    @classmethod
    def _distinct_hardware(cls, selectors: list[HardwareSelector]) -> list[HardwareSelector]:
        return check_hardware(selectors)
