"""Suite files: plain typed data, validated before any work starts.

Building a ``Suite`` touches no files, network or environment; paths and hub ids are only resolved
when a run starts. Every problem becomes a ``SuiteError`` naming the file and the key path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.compress.options import DistillOptions, FinetuneOptions, MagnitudeOptions, PruneOptions
from harness.errors import SuiteError
from harness.registry import UnknownNameError

DEVICES = ("cpu", "cuda")
COMPRESSION_STAGES = ("distill", "prune", "magnitude")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"

# strict: YAML's `true` must not pass as the count 1
PositiveInt = Annotated[int, Field(gt=0, strict=True)]
NonNegativeInt = Annotated[int, Field(ge=0, strict=True)]
UNION_TAGS = ("function-after", "function-before", "function-wrap", "int", "str", "float", "bool", "list", "dict")
PositiveFloat = Annotated[float, Field(gt=0)]
SafeName = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]


def _dynamic_or_length(value: Any) -> int | str:
    if value != "dynamic" and (isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 512):
        raise ValueError("a seq len must be 'dynamic' or an integer from 1 to 512")
    return value


SeqLen = Annotated[Any, AfterValidator(_dynamic_or_length)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class TaskConfig(Strict):
    """Where the eval (and train) sentences come from."""

    dataset: str | None = None
    dataset_config: str | None = None
    local: str | None = None
    source: Literal["auto", "hub", "local"] = "auto"
    split: str = "validation"
    train_split: str = "train"
    text_column: str = "sentence"
    label_column: str = "label"
    max_samples: PositiveInt | None = None

    @model_validator(mode="after")
    def _needs_a_source(self) -> TaskConfig:
        if self.dataset is None and self.local is None:
            raise ValueError("give 'dataset' (a hub id such as glue/sst2) or 'local' (a data directory)")
        if self.source == "hub" and self.dataset is None:
            raise ValueError("source is 'hub' but no 'dataset' hub id is given")
        if self.source == "local" and self.local is None:
            raise ValueError("source is 'local' but no 'local' directory is given")
        return self


class ModelConfig(Strict):
    """A model to benchmark.

    Either a ``source`` (a local directory, a hub id, ``package:<module>`` or ``builtin:<name>``),
    optionally fine-tuned on the train split first, or a ``parent`` model (an earlier entry) that
    one compression stage turns into this one.
    """

    name: SafeName
    source: str | None = Field(default=None, min_length=1)
    parent: str | None = None
    num_labels: PositiveInt = 2
    finetune: FinetuneOptions | None = None
    distill: DistillOptions | None = None
    prune: PruneOptions | None = None
    magnitude: MagnitudeOptions | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> ModelConfig:
        stages = [s for s in COMPRESSION_STAGES if getattr(self, s) is not None]
        if (self.source is None) == (self.parent is None):
            raise ValueError("give exactly one of 'source' (a model to load) or 'parent' (a model to compress)")
        if self.source is not None and stages:
            raise ValueError(f"'{stages[0]}' needs a 'parent' model, not a 'source'")
        if self.parent is not None and len(stages) != 1:
            raise ValueError(f"a model with a 'parent' needs exactly one of {', '.join(COMPRESSION_STAGES)}")
        if self.parent is not None and self.finetune is not None:
            raise ValueError("'finetune' applies to a 'source' model; compress with distill or prune")
        return self

    @property
    def stage(self) -> str | None:
        if self.finetune is not None:
            return "finetune"
        return next((s for s in COMPRESSION_STAGES if getattr(self, s) is not None), None)


class ExporterEntry(Strict):
    name: str
    label: SafeName | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def display_name(self) -> str:
        return self.label or self.name


class ShapesConfig(Strict):
    batch_sizes: list[PositiveInt] = Field(default=[1], min_length=1)
    seq_lens: list[SeqLen] = Field(default=["dynamic"], min_length=1)


class TimingConfig(Strict):
    """The same inputs, warm-up and time share for every cell.

    A run plans every cell, then runs ``rounds`` rounds; in each, every variant is loaded in a fresh
    process (in a seeded, shuffled order) and each of its cells gets ``seconds_per_cell``: whole
    passes over the cell's inputs, at least ``min_passes``, after ``warmup_passes`` untimed passes
    over one input of every distinct shape.
    """

    rounds: PositiveInt = 3
    seconds_per_cell: PositiveFloat = 0.5
    warmup_passes: PositiveInt = 1
    min_passes: PositiveInt = 1
    max_passes: PositiveInt = 1000
    single_inputs: PositiveInt = 256
    min_batches: PositiveInt = 8
    seed: NonNegativeInt = 0
    # the side of the square GEMMs that measure each runtime's peak (smaller is quicker, and lower)
    peak_gemm_size: Annotated[int, Field(ge=64, le=8192, strict=True)] = 2048

    @model_validator(mode="after")
    def _max_covers_min(self) -> TimingConfig:
        if self.max_passes < self.min_passes:
            raise ValueError("max_passes must be at least min_passes")
        return self


class IsolationConfig(Strict):
    """``process`` runs every cell in its own child process; ``none`` runs in-process (debugging)."""

    mode: Literal["process", "none"] = "process"
    timeout_s: PositiveFloat = 900.0


class OutputConfig(Strict):
    """Where results go. ``name`` may contain ``{hardware}``: ``cuda`` when a GPU ran, else ``cpu``."""

    dir: str = "reports"
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*(\{hardware\}[A-Za-z0-9_.+-]*)?$")] | None = None
    cache_dir: str = ".harness-cache"


class BaselineConfig(Strict):
    model: str | None = None
    exporter: str = "eager-fp32"
    backend: str = "pytorch"


class Suite(Strict):
    name: SafeName
    description: str = ""
    task: TaskConfig
    models: list[ModelConfig] = Field(min_length=1)
    exporters: list[ExporterEntry] = Field(min_length=1)
    backends: list[str] = Field(min_length=1)
    devices: list[str] = Field(default=["cpu"], min_length=1)
    required_devices: list[str] = Field(default_factory=list)
    shapes: ShapesConfig = ShapesConfig()
    threads: PositiveInt = 2
    accuracy_batch_size: PositiveInt = 32
    max_length: Annotated[int, Field(gt=0, le=512)] = 128
    timing: TimingConfig = TimingConfig()
    isolation: IsolationConfig = IsolationConfig()
    accuracy_gate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.99
    output: OutputConfig = OutputConfig()
    baseline: BaselineConfig = BaselineConfig()

    @field_validator("exporters", mode="before")
    @classmethod
    def _exporter_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> Suite:
        for key, names in (
            ("models", [m.name for m in self.models]),
            ("exporters", [e.display_name for e in self.exporters]),
            ("backends", self.backends),
            ("devices", self.devices),
        ):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{key}: '{duplicates[0]}' appears twice (give exporters a distinct label)")
        missing = [d for d in self.required_devices if d not in self.devices]
        if missing:
            raise ValueError(f"required_devices: '{missing[0]}' is not in devices")
        return self

    def output_name(self, hardware: str = "cpu") -> str:
        return (self.output.name or self.name).replace("{hardware}", hardware)

    @property
    def baseline_model(self) -> str:
        return self.baseline.model or self.models[0].name

    def content_hash(self) -> str:
        """Stable hash of the validated content, independent of key order and comments."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_suite(path: str | Path, exporter_registry: Any = None, backend_registry: Any = None) -> Suite:
    """Read, parse and validate a suite file; any problem raises ``SuiteError``."""
    path = Path(path)
    file = str(path)
    if not path.exists():
        raise SuiteError(file, "", "no such file")
    if path.is_dir():
        raise SuiteError(file, "", "is a directory, expected a YAML suite file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SuiteError(file, where, f"malformed YAML: {problem}") from None
    except UnicodeDecodeError:
        raise SuiteError(file, "", "not a UTF-8 text file") from None
    return parse_suite(raw, file, exporter_registry, backend_registry)


def parse_suite(raw: Any, file: str, exporter_registry: Any = None, backend_registry: Any = None) -> Suite:
    if raw is None:
        raise SuiteError(file, "", "the file is empty")
    if not isinstance(raw, dict):
        raise SuiteError(file, "", f"the top level must be a mapping of keys, not a {type(raw).__name__}")
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        raise SuiteError(file, _key_path(first["loc"]), _message(first)) from None
    _check_names(suite, file, exporter_registry, backend_registry)
    return suite


def _check_names(suite: Suite, file: str, exporter_registry: Any, backend_registry: Any) -> None:
    _check_each(file, "devices", suite.devices, DEVICES, "device")
    if backend_registry is not None:
        _check_each(file, "backends", suite.backends, backend_registry.names(), "backend")
    if exporter_registry is not None:
        known = exporter_registry.names()
        for index, entry in enumerate(suite.exporters):
            _check_one(file, f"exporters[{index}].name", entry.name, known, "exporter")
            _check_options(file, f"exporters[{index}].options", entry, exporter_registry)
    model_names = [m.name for m in suite.models]
    for index, model in enumerate(suite.models):
        if model.parent is not None:
            _check_one(file, f"models[{index}].parent", model.parent, model_names[:index], "parent model")
    _check_one(file, "baseline.model", suite.baseline_model, model_names, "model")
    _check_one(
        file, "baseline.exporter", suite.baseline.exporter, [e.display_name for e in suite.exporters], "exporter"
    )
    _check_one(file, "baseline.backend", suite.baseline.backend, suite.backends, "backend")


def _check_options(file: str, key: str, entry: ExporterEntry, registry: Any) -> None:
    adapter = registry.get(entry.name)
    options_type = getattr(adapter, "Options", None)
    if options_type is None:
        return
    try:
        options_type.model_validate(entry.options)
    except ValidationError as error:
        first = error.errors()[0]
        raise SuiteError(file, _key_path((*key.split("."), *first["loc"])), _message(first)) from None


def _check_each(file: str, key: str, values: list[str], known: Collection[str], kind: str) -> None:
    for index, value in enumerate(values):
        _check_one(file, f"{key}[{index}]", value, known, kind)


def _check_one(file: str, key: str, value: str, known: Collection[str], kind: str) -> None:
    if value not in known:
        raise SuiteError(file, key, str(UnknownNameError(kind, value, known)))


def _key_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in UNION_TAGS or str(part).startswith(("literal[", "constrained-")):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if error["type"] not in ("model_type", "dict_type") and isinstance(value, str | int | float | bool):
        message += f" (got {value!r})"
    return message
