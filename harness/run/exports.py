"""Export one variant (through the artifact cache) and gather what its cells are judged against."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.adapters import Artifact, CalibrationData, NotApplicable
from harness.cache import ArtifactCache
from harness.environment import PACKAGES, package_versions
from harness.results.build import CellContext, artifact_size_mb
from harness.run.models import PreparedModel
from harness.run.plan import Variant

log = logging.getLogger("harness")


@dataclass(frozen=True)
class Ready:
    """An exported variant and what its cells are judged against."""

    variant: Variant
    artifact: Artifact
    model: PreparedModel
    context: CellContext
    base: dict[str, Any]
    batch_invariant: bool


@dataclass(frozen=True)
class Judging:
    """The run-wide part of a variant's ``CellContext``."""

    labels: Any
    teacher_logits: Any
    accuracy_gate: float
    peaks: dict[str, Any]


def export_variant(
    variant: Variant,
    model: PreparedModel,
    exporter: Any,
    backend: Any,
    cache: ArtifactCache,
    calibration: Callable[[], CalibrationData],
    judging: Judging,
    on_build: Callable[[str], None] = lambda label: None,
) -> Ready:
    """Export ``variant`` (cached by exporter, code version, options, model and calibration data) and
    build its ``Ready``; raises what the exporter raised."""
    label = f"{variant.model}/{variant.exporter.display_name}"
    model_type = str(model.lineage.get("model_type"))
    reason = exporter.model_unavailable_reason(model_type) or backend.model_unavailable_reason(model_type)
    if reason:
        raise NotApplicable(reason)
    options = exporter.Options.model_validate(variant.exporter.options)
    backend_options = backend.Options.model_validate(variant.backend.options)
    data = calibration() if exporter.needs_calibration else None
    key = cache.key(
        exporter.name,
        exporter.code_version(),
        options.model_dump(),
        model.content_key,
        package_versions(),
        *([data.content_key, data.seed, data.max_length] if data else []),
        # the exporter's packages beyond the fixed list (nncf, openvino): absent for older exporters,
        # so their keys, and their cached artifacts, stay as they were
        *([extra] if (extra := {k: v for k, v in exporter.versions().items() if k not in PACKAGES}) else []),
    )
    if cache.lookup("exports", key) is None:
        on_build(label)
        log.info("exporting %s", label)

    def build(out: Any) -> None:
        if data is None:
            exporter.export(model.path, out, options)
        else:
            exporter.export(model.path, out, options, data)

    path = cache.get_or_build("exports", key, build, {"label": label})
    context = CellContext(
        labels=judging.labels,
        teacher_logits=judging.teacher_logits,
        reference_logits=model.reference_logits,
        accuracy_gate=judging.accuracy_gate,
        # the measured peaks are the CPU's: a GPU cell has no limit to be a fraction of
        peaks=judging.peaks if variant.device == "cpu" else {},
        lineage=model.lineage,
        precision=backend.precision(exporter.precision, backend_options),
        int8_attention=exporter.int8_attention,
    )
    base = {
        "model": variant.model,
        "exporter": variant.exporter.display_name,
        "params": model.params,
        "size_mb": artifact_size_mb(path),
        "lineage": model.lineage,
        "versions": {**exporter.versions(), **backend.versions()},
        "adapter_options": {
            "exporter": options.model_dump(mode="json"),
            "backend": backend_options.model_dump(mode="json"),
        },
    }
    invariant = exporter.batch_invariant and backend.keeps_batch_invariance
    return Ready(
        variant,
        Artifact(path, exporter.format_for(variant.exporter.options), {"key": key}),
        model,
        context,
        base,
        invariant,
    )
