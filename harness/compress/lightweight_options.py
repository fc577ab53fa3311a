"""Options of a non-transformer student (Tang et al. 2019): a BiLSTM or a 1-D CNN over an embedding
initialised from the teacher's token embeddings.

Kept free of torch, like ``harness.compress.options``, so suite files validate instantly.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from harness.suite_rules import STRICT, duplicates, fail

# config.json ``model_type`` of each kind: how exporters and loaders recognise these students
MODEL_TYPES = {"bilstm": "harness-bilstm", "cnn": "harness-cnn"}

Width = Annotated[int, Field(ge=1, le=4096)]
KernelSize = Annotated[int, Field(ge=1, le=15)]


class LightweightOptions(BaseModel):
    """The student's shape. Defaults follow Tang et al.'s BiLSTM (150 hidden units per direction)
    and a Kim-style CNN (128 filters for each of the odd widths 3 and 5, which "same" padding pads
    symmetrically): about a million weights besides the embedding table for a 768-wide teacher, and
    about a millisecond per SST-2 sentence in eager PyTorch on one CPU core."""

    model_config = STRICT

    kind: Literal["bilstm", "cnn"]
    # None: the teacher's hidden size (its table copied as-is); smaller: the table's top principal
    # directions (SVD), so no projection runs at inference. A lookup costs no arithmetic, so this
    # trades size, not speed.
    embedding_dim: Width | None = None
    # bilstm: LSTM units per direction and the MLP's width; cnn: the MLP's width
    hidden: Width = 150
    kernel_sizes: list[KernelSize] = Field(default=[3, 5], min_length=1, max_length=8)
    filters: Width = 128  # cnn: output channels per kernel width
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    freeze_embeddings: bool = False

    @field_validator("kernel_sizes")
    @classmethod
    def _distinct(cls, sizes: list[int]) -> list[int]:
        fail("kernel_sizes", [((index,), text, value) for index, text, value in duplicates(sizes)])
        return sizes

    @model_validator(mode="after")
    def _cnn_only(self) -> LightweightOptions:
        stray = {"kernel_sizes", "filters"} & self.model_fields_set
        if stray and self.kind != "cnn":
            raise ValueError(f"{', '.join(sorted(stray))} only apply to kind: cnn")
        return self
