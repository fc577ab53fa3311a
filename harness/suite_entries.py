"""The suite's adapter entries (exporters and backends, with labels and typed options) and its
exclusion rules: validated against the registries passed in the validation context."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from harness.suite_rules import STRICT, SafeName, duplicates, fail, unknown


class Strict(BaseModel):
    model_config = STRICT


def _registered(kind: str) -> AfterValidator:
    """Checks a name against the registry passed in the validation context, when one is."""

    def check(value: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get(kind)
        if known is not None and value not in known:
            raise ValueError(unknown(kind, value, known))
        return value

    return AfterValidator(check)


class AdapterEntry(Strict):
    """An adapter by name, with an optional display label and its typed options."""

    kind: ClassVar[str]
    name: SafeName  # first, so the options validator sees it; subclasses check it against their registry
    label: SafeName | None = None
    options: dict[str, Any] = Field(default_factory=dict, max_length=64)

    @field_validator("options")
    @classmethod
    def _typed_options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Checked by the adapter's own ``Options`` model (from the context), strictly like the suite."""
        options_type = ((info.context or {}).get(f"{cls.kind}_options") or {}).get(info.data.get("name"))
        if options_type is not None:
            options_type.model_validate(options, strict=True)
        return options

    @property
    def display_name(self) -> str:
        return self.label or self.name  # type: ignore[attr-defined]


class ExporterEntry(AdapterEntry):
    kind: ClassVar[str] = "exporter"
    name: Annotated[SafeName, _registered("exporter")]


class BackendEntry(AdapterEntry):
    kind: ClassVar[str] = "backend"
    name: Annotated[SafeName, _registered("backend")]

    @model_serializer(mode="wrap")
    def _plain_name(self, handler: Any) -> Any:
        # a backend without label or options is its name, as suites wrote it before backends had
        # options: their content hashes (and so their results) stay valid
        return self.name if self.label is None and not self.options else handler(self)


def named_entries(value: Any) -> Any:
    """``- ort-int8`` is shorthand for ``- {name: ort-int8}``."""
    if isinstance(value, list):
        return [{"name": item} if isinstance(item, str) else item for item in value]
    return value


def distinct_entries(field: str, entries: list[AdapterEntry]) -> None:
    names = [e.display_name for e in entries]
    problems = [
        ((i, "label" if entries[i].label else "name"), f"{text}; give one a distinct label", value)
        for i, text, value in duplicates(names)
    ]
    fail(field, problems)


class ExcludeRule(Strict):
    """Cells to leave out of the run (no row): those matching every key given, by display name and,
    with ``batch_size`` or ``seq_len``, by shape."""

    model: SafeName | None = None
    exporter: SafeName | None = None
    backend: SafeName | None = None
    device: SafeName | None = None
    batch_size: Annotated[int, Field(ge=1, le=65536)] | None = None
    seq_len: Annotated[int, Field(ge=1, le=65536)] | Literal["dynamic"] | None = None

    @model_validator(mode="after")
    def _names_something(self) -> ExcludeRule:
        if not any(getattr(self, key) for key in (*EXCLUDE_KEYS, *SHAPE_KEYS)):
            keys = ", ".join((*EXCLUDE_KEYS, *SHAPE_KEYS))
            raise ValueError(f"an exclude rule needs at least one of {keys}")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_shape(self, handler: Any) -> dict[str, Any]:
        # shape keys came later: unset, they leave suite hashes as they were
        data = handler(self)
        return {k: v for k, v in data.items() if k not in SHAPE_KEYS or v is not None}

    def covers(self, cell: dict[str, Any]) -> bool:
        """Every key of the rule is in ``cell`` with the rule's value: a rule naming a shape never
        covers a whole variant (a cell without shape keys), only its cells at that shape."""
        keys = [key for key in (*EXCLUDE_KEYS, *SHAPE_KEYS) if getattr(self, key) is not None]
        return all(key in cell and cell[key] == getattr(self, key) for key in keys)

    def may_cover(self, cell: dict[str, Any]) -> bool:
        """``cell`` agrees with every key of the rule it has: some of its cells may be covered."""
        keys = [key for key in (*EXCLUDE_KEYS, *SHAPE_KEYS) if getattr(self, key) is not None and key in cell]
        return all(cell[key] == getattr(self, key) for key in keys)


EXCLUDE_KEYS = ("model", "exporter", "backend", "device")
SHAPE_KEYS = ("batch_size", "seq_len")
