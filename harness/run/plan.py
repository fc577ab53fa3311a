"""Every cell of a suite, decided up front: which variants run which shapes, and which cells cannot
run here (an ``n/a`` row with its reason). Planning loads nothing and runs nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from harness.registry import Registry
from harness.results.rows import cell_key
from harness.suite import BackendEntry, ExporterEntry, Suite

NO_BACKEND = BackendEntry.model_construct(name="(none)", label=None, options={})

# why a backend cannot run a format on a device: asked of this machine's adapters, unless a fleet's
# machines answer instead
BackendReason = Callable[[BackendEntry, str, str], "str | None"]


@dataclass(frozen=True)
class Shape:
    batch_size: int
    seq_len: int | str

    @property
    def label(self) -> str:
        length = "dynamic" if self.seq_len == "dynamic" else f"seq {self.seq_len}"
        return f"batch {self.batch_size}, {length}"


@dataclass(frozen=True)
class Variant:
    """One model x exporter x backend x device, and the shapes it still has to time."""

    model: str
    exporter: ExporterEntry
    backend: BackendEntry
    device: str
    shapes: tuple[Shape, ...]

    @property
    def name(self) -> str:
        return "/".join(self.names().values())

    def names(self) -> dict[str, str]:
        """Model, exporter, backend and device by display name: what ``exclude`` rules match."""
        return {
            "model": self.model,
            "exporter": self.exporter.display_name,
            "backend": self.backend.display_name,
            "device": self.device,
        }

    def base(self, shape: Shape) -> dict[str, Any]:
        return {
            **self.names(),
            "batch_size": shape.batch_size,
            "seq_len": shape.seq_len,
        }

    def cell(self, shape: Shape) -> tuple[str, ...]:
        return cell_key(self.base(shape))


@dataclass(frozen=True)
class Unavailable:
    """Cells that get a row without running: ``n/a`` with the reason."""

    base: dict[str, Any]
    reason: str


@dataclass
class Plan:
    variants: list[Variant] = field(default_factory=list)
    unavailable: list[Unavailable] = field(default_factory=list)
    already_done: int = 0

    @property
    def total_cells(self) -> int:
        return self.already_done + len(self.unavailable) + sum(len(v.shapes) for v in self.variants)


def suite_shapes(suite: Suite) -> list[Shape]:
    return [Shape(b, s) for b, s in product(suite.shapes.batch_sizes, suite.shapes.seq_lens)]


def count_cells(suite: Suite, exporters: Registry, backends: Registry) -> tuple[int, int]:
    """How many rows a run of ``suite`` writes (each compatible backend, or one ``(none)`` row set),
    less the cells its ``exclude`` rules leave out; and over how many variants."""
    cells = variants = 0
    for model, entry, device in product(suite.models, suite.exporters, suite.devices):
        artifact_format = exporters.get(entry.name).format_for(entry.options)
        compatible = [b for b in suite.backends if artifact_format in backends.get(b.name).formats]
        for variant in (Variant(model.name, entry, b, device, ()) for b in compatible or [NO_BACKEND]):
            kept = len(kept_shapes(suite, variant))
            cells, variants = cells + kept, variants + bool(kept)
    return cells, variants


def kept_shapes(suite: Suite, variant: Variant) -> list[Shape]:
    """The suite's shapes that its ``exclude`` and ``only`` rules leave this variant."""
    if suite.excluded(variant.names()):
        return []
    return [shape for shape in suite_shapes(suite) if not suite.excluded(variant.base(shape))]


def plan_cells(
    suite: Suite,
    exporters: Registry,
    backends: Registry,
    done: Iterable[tuple[str, ...]] = (),
    backend_reason: BackendReason | None = None,
) -> Plan:
    """Cells already finished (``done``, from a resumed run) are counted but not planned again."""
    finished = set(done)

    def here(entry: BackendEntry, artifact_format: str, device: str) -> str | None:
        return local_reason(backends.get(entry.name), entry.options, artifact_format, device)

    backend_reason = backend_reason or here
    plan = Plan()
    for model, entry in product(suite.models, suite.exporters):
        exporter = exporters.get(entry.name)
        artifact_format = exporter.format_for(entry.options)
        compatible = [b for b in suite.backends if artifact_format in backends.get(b.name).formats]
        if not compatible:  # one n/a row per shape says no backend can load this format
            reason = f"no backend in the suite loads format '{artifact_format}'"
            targets = [(Variant(model.name, entry, NO_BACKEND, d, ()), reason) for d in suite.devices]
        else:
            exporter_reason = exporter.unavailable_reason()
            targets = [
                (Variant(model.name, entry, b, d, ()), exporter_reason or backend_reason(b, artifact_format, d))
                for b, d in product(compatible, suite.devices)
            ]
        for variant, reason in targets:
            shapes = kept_shapes(suite, variant)
            todo = tuple(s for s in shapes if variant.cell(s) not in finished)
            plan.already_done += len(shapes) - len(todo)
            if reason:
                plan.unavailable += [Unavailable(variant.base(s), reason) for s in todo]
            elif todo:
                plan.variants.append(Variant(variant.model, entry, variant.backend, variant.device, todo))
    return plan


def local_reason(backend: Any, options: Mapping[str, Any], artifact_format: str | None, device: str) -> str | None:
    """Why this machine's ``backend`` cannot run ``artifact_format`` (None: any format) on ``device``
    with these options."""
    return (
        backend.unavailable_reason(device)
        or (backend.cell_unavailable_reason(artifact_format, device) if artifact_format else None)
        or backend.options_unavailable_reason(backend.Options.model_validate(options), device)
    )
