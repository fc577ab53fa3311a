"""Suite files: plain typed data, validated before any work starts.

Building a ``Suite`` touches no files, network or environment; paths and hub ids are only resolved
when a run starts. Every problem becomes a ``SuiteError`` naming the file and the key path.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from harness.compress.options import DistillOptions, FinetuneOptions, MagnitudeOptions, PruneOptions
from harness.errors import SuiteError, SuiteErrors, quote
from harness.suite_entries import (
    EXCLUDE_KEYS,
    AdapterEntry,
    BackendEntry,
    ExcludeRule,
    ExporterEntry,
    Strict,
    distinct_entries,
    named_entries,
)
from harness.suite_fleet import FleetFields
from harness.suite_models import classes_inherited, lightweight_parents
from harness.suite_rules import (
    MAX_SEED,
    NAME_PATTERN,
    PathText,
    SafeName,
    Text,
    duplicates,
    fail,
    key_path,
    message,
    parent_problems,
    unknown,
)
from harness.suite_scenarios import Scenario, distinct_scenarios
from harness.suite_yaml import read_yaml

DEVICES = ("cpu", "cuda")
COMPRESSION_STAGES = ("distill", "prune", "magnitude")

PositiveInt = Annotated[int, Field(gt=0)]
BatchSize = Annotated[int, Field(ge=1, le=4096)]


def _dynamic_or_length(value: Any) -> int | str:
    if value != "dynamic" and (isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 512):
        raise ValueError("a seq len must be 'dynamic' or an integer from 1 to 512")
    return value


_HUB_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")


def _hub_id(value: str) -> str:
    # the hub's own rules for repo ids, kept here: importing huggingface_hub would slow `validate`
    parts = value.split("/")
    if len(parts) > 2 or not all(_HUB_PART.fullmatch(p) and "--" not in p and ".." not in p for p in parts):
        raise ValueError(
            "must be a hub dataset id such as 'nyu-mll/glue' or 'imdb': letters, digits, '-', '_' and '.', "
            "no '--' or '..', at most 96 characters a part"
        )
    return value


def _known_device(value: str) -> str:
    if value not in DEVICES:
        raise ValueError(unknown("device", value, DEVICES))
    return value


SeqLen = Annotated[Any, AfterValidator(_dynamic_or_length)]
SplitName = SafeName  # a file name under the local data folder, and a hub split
HubId = Annotated[str, AfterValidator(_hub_id)]


ClassId = Annotated[int, Field(ge=0, le=100_000)]
LATER_OPTIONAL_KEYS = ("label_map",)  # task keys
LATER_TOP_LEVEL_KEYS = ("exclude", "only", "scenarios", "hardware", "cluster")


class TaskConfig(Strict):
    """Where the eval (and train) sentences come from."""

    dataset: HubId | None = None
    dataset_config: Annotated[str, Field(pattern=NAME_PATTERN, max_length=128)] | None = None
    local: PathText | None = None
    source: Literal["auto", "hub", "local"] = "auto"
    split: SplitName = "validation"
    train_split: SplitName = "train"
    text_column: Text = "sentence"
    label_column: Text = "label"
    max_samples: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    # string labels in the data ("positive") as class ids; integer labels need none
    label_map: Annotated[dict[Text, ClassId], Field(min_length=1, max_length=1000)] | None = None
    # whole train sentences held out to judge trained models by (a search, a recipe), at most a
    # tenth of the train rows; the eval split is looked at only for the report
    validation_sentences: Annotated[int, Field(ge=0, le=1_000_000)] = 500
    validation_seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0

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
    source: PathText | None = None
    parent: SafeName | None = None
    num_labels: Annotated[int, Field(ge=1, le=10_000)] = 2
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


class ShapesConfig(Strict):
    batch_sizes: list[BatchSize] = Field(default=[1], min_length=1, max_length=32)
    seq_lens: list[SeqLen] = Field(default=["dynamic"], min_length=1, max_length=32)

    @field_validator("batch_sizes", "seq_lens")
    @classmethod
    def _distinct(cls, values: list[Any], info: ValidationInfo) -> list[Any]:
        fail(str(info.field_name), [((index,), text, value) for index, text, value in duplicates(values)])
        return values


class TimingConfig(Strict):
    """The same inputs, warm-up and time share for every cell.

    A run plans every cell, then runs ``rounds`` rounds; in each, every variant is loaded in a fresh
    process (in a seeded, shuffled order) and each of its cells gets ``seconds_per_cell``: whole
    passes over the cell's inputs, at least ``min_passes``, after ``warmup_passes`` untimed passes
    over one input of every distinct shape.
    """

    rounds: Annotated[int, Field(ge=1, le=1000)] = 3
    seconds_per_cell: Annotated[float, Field(gt=0, le=3600)] = 0.5
    warmup_passes: Annotated[int, Field(ge=1, le=1000)] = 1
    min_passes: Annotated[int, Field(ge=1, le=100_000)] = 1
    max_passes: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    single_inputs: Annotated[int, Field(ge=1, le=100_000)] = 256
    min_batches: Annotated[int, Field(ge=1, le=10_000)] = 8
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0
    # the side of the square GEMMs that measure each runtime's peak (smaller is quicker, and lower)
    peak_gemm_size: Annotated[int, Field(ge=64, le=8192)] = 2048

    @model_validator(mode="after")
    def _max_covers_min(self) -> TimingConfig:
        if self.max_passes < self.min_passes:
            raise ValueError("max_passes must be at least min_passes")
        return self


class IsolationConfig(Strict):
    """``process`` runs every cell in its own child process; ``none`` runs in-process (debugging)."""

    mode: Literal["process", "none"] = "process"
    timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 900.0


class OutputConfig(Strict):
    """Where results go. ``name`` may contain ``{hardware}``: ``cuda`` when a GPU ran, else ``cpu``."""

    dir: PathText = "reports"
    name: (
        Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*(\{hardware\}[A-Za-z0-9_.+-]*)?$", max_length=128)]
        | None
    ) = None
    cache_dir: PathText = ".harness-cache"


class BaselineConfig(Strict):
    model: SafeName | None = None
    exporter: SafeName = "eager-fp32"
    backend: SafeName = "pytorch"  # a backend's display name (its label, or its name)


class Suite(FleetFields):
    # and from FleetFields: ``hardware`` selectors and the ``cluster`` they are on (harness.suite_fleet)

    name: SafeName
    description: Annotated[str, Field(max_length=2000)] = ""
    task: TaskConfig
    models: list[ModelConfig] = Field(min_length=1, max_length=256)
    exporters: list[ExporterEntry] = Field(min_length=1, max_length=64)
    backends: list[BackendEntry] = Field(min_length=1, max_length=32)
    devices: list[Annotated[str, AfterValidator(_known_device)]] = Field(default=["cpu"], min_length=1, max_length=8)
    required_devices: list[str] = Field(default_factory=list, max_length=8)
    shapes: ShapesConfig = ShapesConfig()
    threads: Annotated[int, Field(ge=1, le=1024)] = 2
    accuracy_batch_size: BatchSize = 32
    max_length: Annotated[int, Field(gt=0, le=512)] = 128
    timing: TimingConfig = TimingConfig()
    isolation: IsolationConfig = IsolationConfig()
    accuracy_gate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.99
    output: OutputConfig = OutputConfig()
    # model x exporter x backend x device combinations the suite does not run (to keep a run in budget)
    exclude: list[ExcludeRule] = Field(default_factory=list, max_length=256)
    # when given, only the combinations matching one of these rules run (then ``exclude`` applies)
    only: list[ExcludeRule] = Field(default_factory=list, max_length=256)
    # MLPerf LoadGen serving scenarios, run on every variant the suite times (harness.suite_scenarios)
    scenarios: list[Scenario] = Field(default_factory=list, max_length=32)
    # validated when omitted too: the default baseline must be a cell of the suite
    baseline: BaselineConfig = Field(default_factory=BaselineConfig, validate_default=True)

    @field_validator("exporters", "backends", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return named_entries(value)

    @field_validator("models")
    @classmethod
    def _names_and_parents(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        names = [m.name for m in models]
        problems = [((i, "name"), text, name) for i, text, name in duplicates(names)]
        problems += [((i, "parent"), text, p) for i, text, p in parent_problems(names, [m.parent for m in models])]
        fail("models", problems)
        lightweight_parents(models)
        return classes_inherited(models)

    @field_validator("exporters", "backends")
    @classmethod
    def _distinct_adapters(cls, entries: list[AdapterEntry], info: ValidationInfo) -> list[AdapterEntry]:
        distinct_entries(str(info.field_name), entries)
        return entries

    @field_validator("devices")
    @classmethod
    def _distinct(cls, values: list[str], info: ValidationInfo) -> list[str]:
        fail(str(info.field_name), [((i,), text, value) for i, text, value in duplicates(values)])
        return values

    @field_validator("required_devices")
    @classmethod
    def _required_are_listed(cls, required: list[str], info: ValidationInfo) -> list[str]:
        devices = info.data.get("devices")
        if devices is not None:
            fail(
                "required_devices",
                [((i,), f"{quote(d)} is not in devices", d) for i, d in enumerate(required) if d not in devices],
            )
        return required

    @field_validator("scenarios")
    @classmethod
    def _distinct_scenarios(cls, scenarios: list[Any]) -> list[Any]:
        return distinct_scenarios(scenarios)

    @field_validator("exclude", "only")
    @classmethod
    def _exclude_known_names(cls, rules: list[ExcludeRule], info: ValidationInfo) -> list[ExcludeRule]:
        known = {
            "model": [m.name for m in info.data.get("models") or []],
            "exporter": [e.display_name for e in info.data.get("exporters") or []],
            "backend": [b.display_name for b in info.data.get("backends") or []],
            "device": info.data.get("devices") or [],
        }
        problems = [
            ((i, key), unknown(key, getattr(rule, key), known[key]), getattr(rule, key))
            for i, rule in enumerate(rules)
            for key in EXCLUDE_KEYS
            if getattr(rule, key) is not None and known[key] and getattr(rule, key) not in known[key]
        ]
        fail(str(info.field_name), problems)
        return rules

    @field_validator("baseline")
    @classmethod
    def _baseline_is_a_cell(cls, baseline: BaselineConfig, info: ValidationInfo) -> BaselineConfig:
        models, exporters = info.data.get("models"), info.data.get("exporters")
        backends = info.data.get("backends")
        checks = (
            ("model", baseline.model, [m.name for m in models] if models else None),
            ("exporter", baseline.exporter, [e.display_name for e in exporters] if exporters else None),
            ("backend", baseline.backend, [b.display_name for b in backends] if backends else None),
        )
        problems = [
            ((kind,), unknown(kind, value, names), value)
            for kind, value, names in checks
            if value is not None and names is not None and value not in names
        ]
        fail("baseline", problems)
        rules, only = info.data.get("exclude") or [], info.data.get("only") or []
        devices = info.data.get("devices") or []
        cell = {**baseline.model_dump(), "model": baseline.model or (models[0].name if models else None)}
        if devices and all(_left_out({**cell, "device": d}, rules, only) for d in devices):
            fail("baseline", [((), "the baseline cell is excluded on every device", baseline.backend)])
        return baseline

    def excluded(self, cell: dict[str, Any]) -> bool:
        """Whether a cell (model, exporter, backend and device by display name, and its shape where
        given) is left out; without shape keys, whether the whole variant is."""
        return _left_out(cell, self.exclude, self.only)

    def output_name(self, hardware: str = "cpu") -> str:
        return (self.output.name or self.name).replace("{hardware}", hardware)

    @property
    def baseline_model(self) -> str:
        return self.baseline.model or self.models[0].name

    def content_hash(self) -> str:
        """Stable hash of the validated content, independent of key order and comments."""
        content = self.model_dump(mode="json")
        for key in LATER_OPTIONAL_KEYS:  # absent, a key added later leaves older suites' hashes as they were
            if content["task"].get(key) is None:
                content["task"].pop(key, None)
        for key in LATER_TOP_LEVEL_KEYS:
            if not content.get(key):
                content.pop(key, None)
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _left_out(cell: dict[str, Any], exclude: list[ExcludeRule], only: list[ExcludeRule]) -> bool:
    """Excluded, or outside every ``only`` rule. A cell without shape keys stands for a whole variant:
    it is left out only when all its shapes would be."""
    excluded = any(rule.covers(cell) for rule in exclude)
    return excluded or bool(only) and not any(rule.may_cover(cell) for rule in only)


def load_suite(path: str | Path, exporter_registry: Any = None, backend_registry: Any = None) -> Suite:
    """Read (within the reader's bounds), parse and validate a suite file.

    One problem raises ``SuiteError``; several raise ``SuiteErrors`` holding every one of them.
    """
    raw = read_yaml(Path(path), str(path))
    return parse_suite(raw, str(path), exporter_registry, backend_registry)


def parse_suite(raw: Any, file: str, exporter_registry: Any = None, backend_registry: Any = None) -> Suite:
    """Validate a parsed document, collecting every problem: types, bounds, names and cross-field rules."""
    if raw is None:
        raise SuiteError(file, "", "the file is empty")
    if not isinstance(raw, dict):
        raise SuiteError(file, "", f"the top level must be a mapping of keys, not a {type(raw).__name__}")
    try:
        return Suite.model_validate(raw, context=_registry_context(exporter_registry, backend_registry))
    except ValidationError as error:
        problems = [SuiteError(file, key_path(e["loc"], raw), message(e)) for e in error.errors()]
    raise problems[0] if len(problems) == 1 else SuiteErrors(problems)


def _registry_context(exporter_registry: Any, backend_registry: Any) -> dict[str, Any]:
    """Known names, and each adapter's options model; a registry not given is not checked."""
    context: dict[str, Any] = {}
    if backend_registry is not None:
        entries = backend_registry.entries()
        context["backend"] = list(entries)
        context["backend_options"] = {name: getattr(a, "Options", None) for name, a in entries.items()}
    if exporter_registry is not None:
        entries = exporter_registry.entries()
        context["exporter"] = list(entries)
        # a broken adapter has no Options; its cells become n/a rows with the reason
        context["exporter_options"] = {name: getattr(a, "Options", None) for name, a in entries.items()}
    return context
