"""Typed options of the model-pipeline stages.

Kept free of torch so suite files validate instantly; the stage modules consume them. Strict like
the rest of the suite: no booleans as numbers, no NaN or infinity, and every size bounded.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_serializer, model_validator

from harness.compress.lightweight_options import LightweightOptions
from harness.compress.search_options import SearchOptions, validate_space
from harness.suite_rules import MAX_SEED, STRICT, duplicates, fail

# with bf16: auto, bf16 autocast must beat fp32 by this factor to be chosen: a close call is not
# worth the rounding
BF16_MARGIN = 1.2

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Epochs = Annotated[float, Field(gt=0, le=1000)]
LearningRate = Annotated[float, Field(gt=0, le=1.0)]
Temperature = Annotated[float, Field(gt=0, le=100)]
BatchSize = Annotated[int, Field(ge=1, le=4096)]
Samples = Annotated[int, Field(ge=1, le=10_000_000)]
LayerIndex = Annotated[int, Field(ge=0, le=1023)]


def _bool_or_auto(value: object) -> object:
    # one error for a bad value, not one per member of the union
    if value == "auto" or isinstance(value, bool):
        return value
    raise ValueError(f"must be true, false or 'auto' (got {value!r})")


TrainingPrecision = Annotated[bool | Literal["auto"], BeforeValidator(_bool_or_auto)]


class StageOptions(BaseModel):
    model_config = STRICT

    epochs: Epochs = 1.0
    learning_rate: LearningRate = 5e-5
    batch_size: BatchSize = 32
    warmup_ratio: Share = 0.06
    weight_decay: Share = 0.01
    max_train_samples: Samples | None = None
    max_length: Annotated[int, Field(gt=0, le=512)] = 128
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0
    # "auto": bf16 autocast where a short measurement on this machine finds it faster than fp32
    # (it halves training speed on CPUs that emulate it); the choice is recorded in the lineage
    bf16: TrainingPrecision = "auto"
    device: Literal["cpu", "cuda"] = "cpu"
    # the token-embedding table left as it is: its dense gradient and optimizer update over the whole
    # vocabulary cost a third of a small encoder's training step on CPU, for rows a batch barely uses
    freeze_embeddings: bool = False

    # options added after suites and models were published: at their defaults they are left out of
    # every dump, so suite hashes and model cache keys stay as they were
    LATER_DEFAULTS: ClassVar[dict[str, object]] = {"freeze_embeddings": False}

    @model_serializer(mode="wrap")
    def _without_later_defaults(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        for name, default in self.LATER_DEFAULTS.items():
            if name in data and data[name] == default:
                del data[name]
        return data


class AugmentOptions(BaseModel):
    """Tang et al. (2019) transfer-set augmentation: synthetic sentences labelled by the teacher."""

    model_config = STRICT

    copies: Annotated[int, Field(ge=0, le=100)] = 1
    mask_prob: Share = 0.1
    ngram_prob: Share = 0.25
    ngram_max: Annotated[int, Field(ge=1, le=64)] = 5


class SearchableStage(StageOptions):
    """A stage whose options an Optuna study may vary (``search:``), checked before anything trains."""

    augment: AugmentOptions | None = None
    search: SearchOptions | None = None

    @model_validator(mode="after")
    def _searchable_space(self) -> SearchableStage:
        if self.search is not None:
            validate_space(self.search.space, type(self), self)
        return self


class FinetuneOptions(StageOptions):
    """Fine-tune a base encoder (fresh classification head) on the train split."""


class DistillOptions(SearchableStage):
    """A student made of chosen teacher layers, trained on the teacher's soft labels; or, with
    ``student``, a non-transformer student (BiLSTM or CNN) over the teacher's token embeddings.

    Whether the layers exist in the teacher is checked against its config before a run (preflight).
    """

    # the options below that only a layer-subset transformer student has
    TRANSFORMER_ONLY: ClassVar[frozenset[str]] = frozenset(
        {"layers", "hidden_loss_weight", "attention_loss_weight", "freeze_embeddings"}
    )

    layers: list[LayerIndex] = Field(default=[0, 2, 4], min_length=1, max_length=128)
    temperature: Temperature = 2.0
    alpha: Share = 0.5
    learning_rate: LearningRate = 1e-4
    hidden_loss_weight: Annotated[float, Field(ge=0.0, le=1000)] = 0.0
    attention_loss_weight: Annotated[float, Field(ge=0.0, le=1000)] = 0.0
    student: LightweightOptions | None = None

    @model_validator(mode="after")
    def _lightweight_has_no_layers(self) -> DistillOptions:
        if self.student is None:
            return self
        stray = self.TRANSFORMER_ONLY & (self.model_fields_set | set(self.search.space if self.search else ()))
        if stray:
            raise ValueError(
                f"{', '.join(sorted(stray))} only apply to a transformer student, not to student kind "
                f"{self.student.kind!r} (it has no transformer layers"
                + ("; its own student.freeze_embeddings keeps its table" if "freeze_embeddings" in stray else "")
                + ")"
            )
        return self

    @field_validator("layers")
    @classmethod
    def _distinct_and_increasing(cls, layers: list[int]) -> list[int]:
        fail("layers", [((index,), text, value) for index, text, value in duplicates(layers)])
        if layers != sorted(layers):
            raise ValueError(f"layers must be in increasing order (as in the teacher), e.g. {sorted(layers)}")
        return layers


class PruneOptions(SearchableStage):
    """Structured pruning of attention heads and FFN neurons, then distillation recovery."""

    head_fraction: Fraction = 0.5
    ffn_fraction: Fraction = 0.5
    importance_samples: Samples = 2048
    recovery_epochs: Annotated[float, Field(ge=0.0, le=1000)] = 1.0
    learning_rate: LearningRate = 1e-4
    temperature: Temperature = 2.0
    alpha: Share = 0.5
    # matches each kept layer's output to the teacher layer it descends from
    hidden_loss_weight: Annotated[float, Field(ge=0.0, le=1000)] = 0.0

    @model_validator(mode="after")
    def _removes_something(self) -> PruneOptions:
        if self.head_fraction == 0 and self.ffn_fraction == 0:
            raise ValueError("head_fraction and ffn_fraction are both 0, so nothing would be pruned")
        return self


class MagnitudeOptions(BaseModel):
    """Unstructured global magnitude pruning: zeros in dense tensors (no speed-up on dense kernels)."""

    model_config = STRICT

    sparsity: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
