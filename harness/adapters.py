"""The contracts every exporter and backend adapter implements.

This module imports nothing heavy: adapters import torch or onnxruntime inside their methods, so
listing and validating stay fast and a missing runtime only disables the adapters that need it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict


class NotApplicable(Exception):  # noqa: N818 - a verdict, not a failure
    """Raised by ``Exporter.export`` when its variant does not apply to this model (a graph fusion
    for an architecture the runtime cannot fuse): the cells become ``n/a`` rows with this reason."""


class Options(BaseModel):
    """Typed options of an adapter; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Artifact:
    """A model variant on disk, as produced by an exporter."""

    path: Path
    format: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CalibrationData:
    """The train split, for exporters that calibrate (static quantization): never the eval split.

    ``sample`` draws seeded, disjoint parts of it: "calibration" for activation ranges and
    "validation" for accuracy-controlled quantization, so neither looks at the data it is judged on.
    """

    texts: tuple[str, ...]
    labels: tuple[int, ...]
    content_key: str  # hash of the texts and labels: part of the export's cache key
    max_length: int  # the suite's tokenisation limit
    seed: int = 0

    def sample(self, count: int, part: str = "calibration") -> tuple[list[str], list[int]]:
        """``count`` sentences of ``part`` ("calibration": the first half of a seeded permutation,
        "validation": the second half), at most the half's size."""
        if part not in ("calibration", "validation"):
            raise ValueError(f"unknown part {part!r}: 'calibration' or 'validation'")
        order = np.random.default_rng(self.seed).permutation(len(self.texts))
        half = len(order) // 2
        chosen = order[:half] if part == "calibration" else order[half:]
        chosen = chosen[: max(0, count)]
        return [self.texts[i] for i in chosen], [self.labels[i] for i in chosen]


def missing_modules(*modules: str) -> str | None:
    """Reason string naming the first missing module, or None when all are importable."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return f"python package '{module}' is not installed"
    return None


def distribution_versions(modules: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the distributions that provide ``modules`` (e.g. "openvino" ->
    {"openvino": "2026.4.1"}), so a new adapter reports its runtime without a fixed package list."""
    import importlib.metadata

    providers = _module_distributions()
    versions = {}
    for module in modules:
        for distribution in providers.get(module.split(".")[0], []):
            try:
                versions[distribution] = importlib.metadata.version(distribution)
            except importlib.metadata.PackageNotFoundError:
                continue
    return dict(sorted(versions.items()))


@functools.lru_cache(maxsize=1)
def _module_distributions() -> Mapping[str, list[str]]:
    import importlib.metadata

    return importlib.metadata.packages_distributions()  # scans every installed distribution: once


def code_version(adapter: object) -> str:
    """Hash of an adapter's module file and its folder's shared ``_*.py`` helpers, so a changed
    exporter rebuilds its cached artifacts instead of serving ones made by the old code."""
    module = sys.modules.get(type(adapter).__module__)
    source = Path(getattr(module, "__file__", "") or "")
    if not source.is_file():
        return "unknown"
    digest = hashlib.sha256()
    for file in [source, *sorted(source.parent.glob("_*.py"))]:
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


class Exporter(ABC):
    """Turns a Hugging Face model directory into one variant on disk."""

    name: ClassVar[str]
    format: ClassVar[str]
    Options: ClassVar[type[Options]] = Options
    requires: ClassVar[tuple[str, ...]] = ()
    # the arithmetic the artifact runs in (picks the peak it is measured against)
    precision: ClassVar[str] = "fp32"
    # True where the artifact quantizes the attention products (Q.K^T, probs.V) too, not only Linear layers
    int8_attention: ClassVar[bool] = False
    # True for exporters that calibrate on train data: ``export`` then gets a ``CalibrationData``
    needs_calibration: ClassVar[bool] = False
    # True only where predictions cannot depend on batch composition or padding (tests prove it);
    # then one scoring serves every shape. Dynamic INT8 takes activation ranges over the batch.
    batch_invariant: ClassVar[bool] = False

    def unavailable_reason(self) -> str | None:
        return missing_modules(*self.requires)

    def model_unavailable_reason(self, model_type: str) -> str | None:
        """Why this exporter cannot make a variant of a model of this architecture (config ``model_type``)."""
        return None

    def format_for(self, options: Mapping[str, Any]) -> str:
        """The format of the artifact these (suite-validated) options make: ``format`` unless an
        option changes what can load it (ORT's fused graph holds ops only ONNX Runtime runs)."""
        return self.format

    def versions(self) -> dict[str, str]:
        """Versions of the packages this exporter runs (its ``requires``), for the result row."""
        return distribution_versions(self.requires)

    def code_version(self) -> str:
        """The version of the code that was imported: taken once, when the registry loads the adapter,
        so an edit made while a run is under way cannot key old code's artifacts with the new version."""
        if "_code_version" not in self.__dict__:
            self.__dict__["_code_version"] = code_version(self)
        return self.__dict__["_code_version"]

    @abstractmethod
    def export(self, source: Path, out_dir: Path, options: Options) -> None:
        """Write the variant into ``out_dir`` (an empty directory the cache later renames into place).
        Exporters with ``needs_calibration`` take a fourth argument, ``calibration: CalibrationData``."""


class Session(ABC):
    """A loaded variant on one device. Only ``run`` (plus ``synchronize``) is ever timed."""

    @abstractmethod
    def prepare(self, batch: Mapping[str, np.ndarray]) -> Any:
        """Convert and place inputs (device copies, dtype casts, IO bindings) outside the clock."""

    @abstractmethod
    def run(self, prepared: Any) -> Any:
        """The single timed call: one forward pass on prepared inputs."""

    def synchronize(self) -> None:
        """Block until queued device work is done, so the clock sees finished work."""

    @abstractmethod
    def logits(self, output: Any) -> np.ndarray:
        """Host float32 logits of ``run``'s output, used for scoring (never timed)."""

    def close(self) -> None:
        """Release the session's resources."""

    def describe(self) -> dict[str, Any]:
        """JSON-safe facts about how this session ran, for the result row (read after timing):
        e.g. compile seconds and recompiles, or the static shapes it was reshaped to."""
        return {}


class Backend(ABC):
    """A runtime that can load some artifact formats on some devices."""

    name: ClassVar[str]
    formats: ClassVar[frozenset[str]]
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    requires: ClassVar[tuple[str, ...]] = ()
    # modules a cell's fork server imports before forking (only this backend's runtime)
    preload: ClassVar[tuple[str, ...]] = ()
    # the runtime whose GEMM peak bounds this backend ("torch", "onnxruntime"), if any
    runtime: ClassVar[str | None] = None
    # whether a batch-invariant exporter's artifact stays batch-invariant here (tests prove it per
    # backend); otherwise its accuracy is measured at every shape, like dynamic INT8's
    keeps_batch_invariance: ClassVar[bool] = False
    # typed options a suite may give (``backends: [{name: ..., label: ..., options: {...}}]``)
    Options: ClassVar[type[Options]] = Options

    def versions(self) -> dict[str, str]:
        """Versions of the packages this backend runs (its ``requires``), for the result row."""
        return distribution_versions(self.requires)

    def precision(self, exporter_precision: str, options: Options) -> str:
        """The arithmetic a cell really runs in (it picks the peak): the exporter's, unless this
        backend's options lower it (e.g. an inference-precision hint of bf16)."""
        return exporter_precision

    def gemm_peak(self, threads: int, size: int, repeats: int) -> dict[str, tuple[float, str]]:
        """Best seconds of a ``size``-square GEMM per precision in this runtime, with the kernel's
        name: {"fp32": (seconds, "MatMul")}. The harness measures torch and ONNX Runtime for a backend
        that declares that ``runtime`` without a method of its own; other runtimes give none."""
        from harness.measure import peak

        kernels = {"torch": peak.torch_kernels, "onnxruntime": peak.onnxruntime_kernels}.get(self.runtime or "")
        return kernels(threads, size, repeats) if kernels else {}

    def unavailable_reason(self, device: str | None = None) -> str | None:
        """Why this backend cannot run at all (or on ``device``); None when it can."""
        missing = missing_modules(*self.requires)
        if missing:
            return missing
        if device is not None and device not in self.devices:
            return f"backend '{self.name}' does not support device '{device}'"
        return None

    def cell_unavailable_reason(self, artifact_format: str, device: str) -> str | None:
        """Why this format cannot run on ``device`` with this backend (e.g. CPU-only kernels)."""
        return None

    def model_unavailable_reason(self, model_type: str) -> str | None:
        """Why a model of this architecture (config ``model_type``) cannot run here; asked once the
        model is built, before its variants are exported."""
        return None

    def options_unavailable_reason(self, options: Options, device: str) -> str | None:
        """Why these options cannot run on ``device`` here (e.g. a BF16 hint on a CPU without BF16)."""
        return None

    @abstractmethod
    def load(self, artifact: Artifact, device: str, threads: int, options: Options | None = None) -> Session:
        """Load ``artifact`` for inference on ``device`` using ``threads`` CPU threads; ``options``
        is an instance of ``self.Options`` (None: its defaults)."""
