"""Typed options of the model-pipeline stages.

Kept free of torch so suite files validate instantly; the stage modules consume them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]


class StageOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: PositiveFloat = 1.0
    learning_rate: PositiveFloat = 5e-5
    batch_size: PositiveInt = 32
    warmup_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.06
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    max_train_samples: PositiveInt | None = None
    max_length: Annotated[int, Field(gt=0, le=512)] = 128
    seed: int = 0
    bf16: bool = False
    device: Literal["cpu", "cuda"] = "cpu"


class FinetuneOptions(StageOptions):
    """Fine-tune a base encoder (fresh classification head) on the train split."""


class DistillOptions(StageOptions):
    """A student made of chosen teacher layers, trained on the teacher's soft labels."""

    layers: list[Annotated[int, Field(ge=0)]] = Field(default=[0, 2, 4], min_length=1)
    temperature: PositiveFloat = 2.0
    alpha: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    learning_rate: PositiveFloat = 1e-4
    hidden_loss_weight: Annotated[float, Field(ge=0.0)] = 0.0

    @field_validator("layers")
    @classmethod
    def _increasing(cls, layers: list[int]) -> list[int]:
        if layers != sorted(set(layers)):
            raise ValueError("layers must be distinct and increasing")
        return layers


class PruneOptions(StageOptions):
    """Structured pruning of attention heads and FFN neurons, then distillation recovery."""

    head_fraction: Fraction = 0.5
    ffn_fraction: Fraction = 0.5
    importance_samples: PositiveInt = 2048
    recovery_epochs: Annotated[float, Field(ge=0.0)] = 1.0
    learning_rate: PositiveFloat = 1e-4
    temperature: PositiveFloat = 2.0
    alpha: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5


class MagnitudeOptions(BaseModel):
    """Unstructured global magnitude pruning: zeros in dense tensors (no speed-up on dense kernels)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sparsity: Fraction = 0.5
