"""Configuration sections for data loading (``[data]``) and vertical partitioning (``[parties]``).

Every model forbids unknown keys: a misspelt option in an experiment file must fail loudly instead
of silently running the default, which would make a study measure something other than intended.
Checks that need only the configuration live here; checks that need the data itself (column
counts, group names) happen in the loaders and in :func:`securevfl.data.partition_columns`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["DataConfig", "DatasetName", "PartitionConfig", "SplitMode", "SyntheticConfig"]

DatasetName = Literal["mnist", "digits", "breast_cancer", "nuswide", "nuswide_fate", "synthetic"]
SplitMode = Literal["auto", "rows", "even", "groups", "columns"]

#: Data sets read from files rather than generated or bundled with scikit-learn.
DATASETS_NEEDING_DIR: frozenset[str] = frozenset({"mnist", "nuswide", "nuswide_fate"})


class SyntheticConfig(BaseModel):
    """Parameters of :func:`sklearn.datasets.make_classification` for a controllable toy task."""

    model_config = ConfigDict(extra="forbid")

    # size caps: refused before anything is allocated (10^9 samples would exhaust memory silently)
    n_samples: int = Field(2000, gt=0, le=10_000_000)
    n_features: int = Field(20, gt=0, le=100_000)
    n_classes: int = Field(2, ge=2)
    n_informative: int = Field(10, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _feasible(self) -> SyntheticConfig:
        # make_classification places 2 clusters per class on the vertices of a hypercube in the
        # informative subspace; it fails with an opaque message when either bound is broken.
        if self.n_informative > self.n_features:
            raise ValueError(f"synthetic.n_informative ({self.n_informative}) cannot exceed "
                             f"synthetic.n_features ({self.n_features})")
        if 2 * self.n_classes > 2**self.n_informative:
            raise ValueError(f"synthetic.n_classes ({self.n_classes}) needs n_informative >= "
                             f"{(2 * self.n_classes - 1).bit_length()} (2 clusters per class must "
                             f"fit on a hypercube of 2**n_informative vertices)")
        if self.n_samples < 2 * self.n_classes:
            raise ValueError(f"synthetic.n_samples ({self.n_samples}) must be at least twice "
                             f"n_classes ({self.n_classes}) to give every class train and test "
                             f"rows")
        return self


#: Environment variable naming a folder that holds every data set's folder (see :data:`DATA_FOLDERS`).
DATA_DIR_ENV = "SECUREVFL_DATA_DIR"
#: The folder of each file-backed data set under ``$SECUREVFL_DATA_DIR``.
DATA_FOLDERS = {"mnist": "mnist", "nuswide": "nus-wide", "nuswide_fate": "nus-wide-fate-subset"}


class DataConfig(BaseModel):
    """Which data set to load and how to prepare it (the ``[data]`` section)."""

    model_config = ConfigDict(extra="forbid")

    name: DatasetName = "digits"
    dir: Path | None = None
    train_limit: int | None = Field(None, gt=0)
    test_limit: int | None = Field(None, gt=0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: int = 0
    standardize: bool = True
    nuswide_labels: list[str] = Field(
        default_factory=lambda: ["buildings", "grass", "animal", "water", "person"])
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)

    @field_validator("dir")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    @field_validator("nuswide_labels")
    @classmethod
    def _labels_usable(cls, value: list[str]) -> list[str]:
        if len(value) < 2:
            raise ValueError("nuswide_labels needs at least 2 concepts to form a classification "
                             "task")
        if any(not label.strip() for label in value):
            raise ValueError("nuswide_labels contains an empty concept name")
        duplicates = sorted({label for label in value if value.count(label) > 1})
        if duplicates:
            raise ValueError(f"nuswide_labels repeats {duplicates}")
        return value

    @model_validator(mode="after")
    def _dir_when_needed(self) -> DataConfig:
        """Files come from ``data.dir`` or, when it is unset, from ``$SECUREVFL_DATA_DIR/<folder>``.

        Configs stay machine-independent: a shared example names no path of anybody's machine.
        """
        if self.name not in DATASETS_NEEDING_DIR or self.dir is not None:
            return self
        root = os.environ.get(DATA_DIR_ENV)
        if not root:
            raise ValueError(f"data set {self.name!r} is read from files: set data.dir (--set data.dir=PATH) or "
                             f"{DATA_DIR_ENV} to a folder holding {DATA_FOLDERS[self.name]}/")
        self.dir = Path(root).expanduser() / DATA_FOLDERS[self.name]
        return self


class PartitionConfig(BaseModel):
    """How feature columns are divided among parties (the ``[parties]`` section).

    There are ``passive`` blocks, plus one final block for the active party when
    ``active_block`` is true. ``split="auto"`` picks ``rows`` for images, ``groups`` when the data
    set has enough disjoint named groups to give every block at least one, and ``even`` otherwise.
    """

    model_config = ConfigDict(extra="forbid")

    passive: int = Field(2, ge=1)
    split: SplitMode = "auto"
    groups: list[list[str]] | None = None
    columns: list[list[int]] | None = None
    active_block: bool = False

    @property
    def n_blocks(self) -> int:
        """Blocks to produce: one per passive party, plus one if the active party holds features."""
        return self.passive + (1 if self.active_block else 0)

    @model_validator(mode="after")
    def _explicit_blocks_match_mode(self) -> PartitionConfig:
        for mode, blocks in (("groups", self.groups), ("columns", self.columns)):
            if self.split == mode:
                if blocks is None:
                    raise ValueError(f'split = "{mode}" needs parties.{mode}: one list per block')
                if len(blocks) != self.n_blocks:
                    raise ValueError(
                        f"parties.{mode} has {len(blocks)} lists but there are {self.n_blocks} "
                        f"blocks ({self.passive} passive"
                        f"{' + 1 active' if self.active_block else ''})")
            elif blocks is not None:
                # Refuse rather than ignore: the user clearly meant an explicit layout.
                raise ValueError(f'parties.{mode} is only used with split = "{mode}" '
                                 f'(split is "{self.split}")')
        return self
