"""Typed options of a stage's ``search:`` block: an Optuna study over the stage's own options.

Free of torch and optuna, so a suite validates instantly; ``validate_space`` checks every value a
study could try against the stage's options model before anything trains.
"""

from __future__ import annotations

import itertools
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, ValidationError, model_validator

from harness.errors import quote
from harness.suite_rules import MAX_SEED, STRICT, Text, fail, key_path, message, unknown

# options a study must not vary: the block itself, the seed the trials share (a search over seeds
# measures luck, not a recipe) and where the trials run
NOT_SEARCHABLE = frozenset({"search", "seed", "device", "student"})
MAX_COMBINATIONS = 256  # beyond, the candidates are checked one option at a time only
SPACE_WHERE = ("search", "space")

Number = Annotated[int | float, Field(ge=-1e12, le=1e12)]
Scalar = StrictBool | int | float | Text | None
# a choice may be a list, e.g. the teacher layers a student keeps: [[0, 2, 5], [1, 3, 5]]
Choice = Scalar | Annotated[list[Scalar], Field(max_length=1024)]
SpaceKey = Annotated[str, Field(min_length=1, max_length=64)]


def choice_key(value: Any) -> str:
    """A choice as text: what tells choices apart (``1``, ``1.0`` and ``true`` are three) and what a
    study stores (optuna's categorical values must be scalars)."""
    return json.dumps(value, sort_keys=True)


class ParamSpace(BaseModel):
    """Either a range ``{low, high, log, step}`` or ``{choices: [...]}``.

    A range whose ends and step are all integers tries integers; any float makes it a float range.
    """

    model_config = STRICT

    low: Number | None = None
    high: Number | None = None
    log: bool = False
    step: Annotated[int | float, Field(gt=0, le=1e12)] | None = None
    choices: Annotated[list[Choice], Field(min_length=1, max_length=1000)] | None = None

    @property
    def is_range(self) -> bool:
        return self.choices is None

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) for v in (self.low, self.high, self.step) if v is not None)

    def candidates(self) -> list[tuple[tuple[str | int, ...], Any]]:
        """``(loc, value)`` for every value that must be valid: both ends of a range, every choice."""
        if self.choices is not None:
            return [(("choices", i), value) for i, value in enumerate(self.choices)]
        return [(("low",), self.low), (("high",), self.high)]

    @model_validator(mode="after")
    def _one_kind(self) -> ParamSpace:
        if self.choices is not None:
            mixed = [(k,) for k in ("low", "high", "step") if getattr(self, k) is not None]
            mixed += [("log",)] if self.log else []
            fail("space", [(loc, "give either choices or a range (low, high), not both", None) for loc in mixed])
            fail("space", _duplicate_choices(self.choices))
            return self
        fail("space", _range_problems(self))
        return self


def _duplicate_choices(choices: list[Any]) -> list[tuple[tuple[str | int, ...], str, Any]]:
    first: dict[str, int] = {}
    found = []
    for index, value in enumerate(choices):
        key = choice_key(value)
        if key in first:
            found.append((("choices", index), f"{quote(value)} appears twice (first at [{first[key]}])", value))
        first.setdefault(key, index)
    return found


def _range_problems(space: ParamSpace) -> list[tuple[tuple[str, ...], str, Any]]:
    low, high, step = space.low, space.high, space.step
    absent = [k for k in ("low", "high") if getattr(space, k) is None]
    missing = [((k,), "required key is missing (or give choices)", None) for k in absent]
    if missing:
        return missing
    if low >= high:
        return [(("high",), f"must be greater than low ({low})", high)]
    problems = []
    if space.log and low <= 0:
        problems.append((("low",), "must be greater than 0 for a log range", low))
    if space.log and step is not None:
        problems.append((("step",), "a log range takes no step", step))
    elif step is not None and step > high - low:
        problems.append((("step",), f"is larger than the range ({high - low})", step))
    elif step is not None and abs(round((high - low) / step) * step - (high - low)) > 1e-9 * max(1.0, high - low):
        # optuna would silently lower high to the last step below it; the suite says what it means
        problems.append((("step",), f"high - low ({high - low}) must be a whole number of steps", step))
    return problems


class PrunerOptions(BaseModel):
    """Optuna's median pruner: stop a trial whose validation accuracy at a checkpoint is below the
    median of earlier trials at the same step."""

    model_config = STRICT

    # trials that always run to the end before any is pruned
    n_startup_trials: Annotated[int, Field(ge=0, le=10_000)] = 5
    # reported steps before which a trial is never pruned; a step is what the objective reports,
    # comparable across trials only if it means the same point of training in each
    n_warmup_steps: Annotated[int, Field(ge=0, le=100_000_000)] = 0


class SearchOptions(BaseModel):
    """A study over a stage's options, maximising accuracy on the train split's validation slice."""

    model_config = STRICT

    trials: Annotated[int, Field(ge=1, le=10_000)]
    # the summed duration of the study's finished trials, so a resumed study keeps the same budget;
    # the trial running when it is spent finishes
    timeout_minutes: Annotated[float, Field(gt=0, le=1_000_000)] | None = None
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0
    metric: Literal["validation_accuracy"] = "validation_accuracy"
    space: Annotated[dict[SpaceKey, ParamSpace], Field(min_length=1, max_length=64)]
    # null: every trial runs to the end
    pruner: PrunerOptions | None = PrunerOptions()


def validate_space(
    space: dict[str, ParamSpace],
    stage_options_model: type[BaseModel],
    base: BaseModel,
    where: tuple[str | int, ...] = SPACE_WHERE,
) -> None:
    """Raise a ``ValidationError`` naming every problem (at ``where + (key, ...)``) unless each key is
    a searchable field of ``stage_options_model`` and each candidate value is valid in ``base``."""
    fields = set(stage_options_model.model_fields)
    searchable = sorted(fields - NOT_SEARCHABLE)
    problems: list[tuple[tuple[str | int, ...], str, Any]] = []
    checked: dict[str, ParamSpace] = {}
    for key, param in space.items():
        if key in NOT_SEARCHABLE and key in fields:
            problems.append(((*where, key), f"{quote(key)} cannot be searched", key))
        elif key not in fields:
            problems.append(((*where, key), unknown("option", key, searchable), key))
        else:
            found = _value_problems(key, param, stage_options_model, base)
            problems += [((*where, key, *loc), text, value) for loc, text, value in found]
            if not found:
                checked[key] = param
    if not problems:
        problems += [(where, text, None) for text in _joint_problems(checked, stage_options_model, base)]
    fail("search space", problems)


def _value_problems(
    key: str, param: ParamSpace, model: type[BaseModel], base: BaseModel
) -> list[tuple[tuple[str | int, ...], str, Any]]:
    found = []
    for loc, value in param.candidates():
        rejected = rejection(model, base, {key: value})
        if rejected is not None:
            found.append((loc, rejected, value))
    if not found and param.is_range and param.integer and param.step is None:
        middle = (param.low + param.high) / 2
        if rejection(model, base, {key: middle}) is None:
            # whole-number ends would try whole numbers only, which a fractional option rarely means
            text = (
                f"{quote(key)} takes fractional values but the range ends are whole numbers, so only whole "
                f"numbers would be tried: write them as {float(param.low)} and {float(param.high)}, "
                "or add `step: 1` to mean it"
            )
            found.append(((), text, None))
    return found


def _joint_problems(space: dict[str, ParamSpace], model: type[BaseModel], base: BaseModel) -> list[str]:
    """The first combination of candidates the options reject together (e.g. both pruning
    fractions 0), when there are few enough combinations to try them all."""
    keys = list(space)
    values = [[value for _, value in space[key].candidates()] for key in keys]
    count = 1
    for options in values:
        count *= len(options)
    if len(keys) < 2 or count > MAX_COMBINATIONS:
        return []
    for combination in itertools.product(*values):
        update = dict(zip(keys, combination))
        rejected = rejection(model, base, update)
        if rejected is not None:
            shown = ", ".join(f"{key}={quote(value)}" for key, value in update.items())
            return [f"the values {shown} are rejected together: {rejected}"]
    return []


def rejection(model: type[BaseModel], base: BaseModel, update: dict[str, Any]) -> str | None:
    """Why ``model`` rejects ``base`` with ``update`` applied, or None when it accepts it.

    The search block is dropped: a trial is an ordinary stage, and validating it again would recurse.
    """
    data = {**base.model_dump(exclude_unset=True), **update}  # unset options keep their defaults
    if "search" in model.model_fields:
        data["search"] = None
    try:
        model.model_validate(data)
    except ValidationError as error:
        return "; ".join(dict.fromkeys(_described(e, update) for e in error.errors()))
    return None


def _described(error: dict[str, Any], update: dict[str, Any]) -> str:
    path, text = key_path(error["loc"], update), message(error)
    # one option updated: its own errors need no path (the caller names it), a nested part does
    if not error["loc"] or (len(update) == 1 and path in update):
        return text
    return f"{path}: {text}"
