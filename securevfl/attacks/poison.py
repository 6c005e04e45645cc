"""The backdoor's data: which samples carry the trigger, and the triggered test set.

The attacker owns a block of feature columns; the trigger lives in that block only, so
writing it changes nothing another party holds. Poisoned training samples and triggered test
samples are drawn at random among samples *not* of the target class (a triggered target-class
sample would count as a backdoor success for free); the known target samples are drawn among
the target class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from pydantic import Field, model_validator

from securevfl.attacks.base import AttackConfigBase, AttackPlan
from securevfl.attacks.metrics import MetricSpec
from securevfl.data import VFLDataset
from securevfl.errors import DataError

__all__ = ["BACKDOOR_ACCURACY", "BACKDOOR_SPLIT", "BackdoorConfig", "BackdoorData", "BackdoorPlan", "default_image_trigger", "plan_backdoor"]

BACKDOOR_SPLIT = "backdoor"
BACKDOOR_ACCURACY = MetricSpec(
    "backdoor_accuracy",
    "fraction of the triggered test samples (none of the target class) classified as the target label",
    "higher",
    "backdoor",
    peak_column="backdoor_peak",
)


class BackdoorConfig(AttackConfigBase):
    """The fields of any backdoor: target, samples, trigger (a backdoor attack's config extends it)."""

    target_label: int = Field(default=0, ge=0, description="label the backdoor makes triggered samples take")
    known_target_samples: int = Field(default=1, ge=1, description="clean target-class samples the attacker knows")
    poison_train: int = Field(default=600, ge=1, description="poisoned training samples (none of the target class)")
    poison_test: int = Field(default=100, ge=1, description="triggered test samples the backdoor is measured on")
    trigger_features: list[int] | None = Field(
        default=None, description="global column indices of the trigger; default for images: the paper's 4 corner pixels"
    )
    trigger_values: list[float] | None = Field(
        default=None, description="values written into trigger_features; default: the data's maximum value"
    )

    @model_validator(mode="after")
    def _check_trigger(self) -> BackdoorConfig:
        if self.trigger_values is not None and self.trigger_features is None:
            raise ValueError("attack.trigger_values needs attack.trigger_features")
        if self.trigger_features is not None:
            if not self.trigger_features:
                raise ValueError("attack.trigger_features is empty")
            if len(set(self.trigger_features)) != len(self.trigger_features):
                raise ValueError("attack.trigger_features repeats a column")
            if self.trigger_values is not None and len(self.trigger_values) != len(self.trigger_features):
                raise ValueError(
                    f"attack.trigger_values has {len(self.trigger_values)} values for "
                    f"{len(self.trigger_features)} trigger_features"
                )
        return self


@dataclass(frozen=True)
class BackdoorData:
    """Sample ids and trigger of one backdoor run (ids index the train or test split)."""

    target_label: int
    poisoned_train: np.ndarray
    triggered_test: np.ndarray
    known_target: np.ndarray
    trigger_columns: np.ndarray
    trigger_values: np.ndarray

    def apply_trigger(self, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """A copy of ``x`` (global columns) with the trigger written into ``rows``."""
        out = np.array(x, copy=True)
        out[np.ix_(rows, self.trigger_columns)] = self.trigger_values.astype(out.dtype)
        return out


def default_image_trigger(image_shape: tuple[int, int]) -> list[int]:
    """The paper's pattern in the bottom-right corner: pixels (R-3,C-1), (R-1,C-3), (R-2,C-2), (R-1,C-1).

    For 28 x 28 MNIST these are (25,27), (27,25), (26,26), (27,27).
    """
    rows, cols = image_shape
    if rows < 3 or cols < 3:
        raise DataError(f"images of shape {image_shape} are too small for the 3 x 3 corner trigger")
    pixels = [(rows - 3, cols - 1), (rows - 1, cols - 3), (rows - 2, cols - 2), (rows - 1, cols - 1)]
    return [r * cols + c for r, c in pixels]


def plan_backdoor(
    dataset: VFLDataset, attacker_columns: np.ndarray, config: BackdoorConfig, rng: np.random.Generator
) -> BackdoorData:
    """Draw the poisoned, triggered and known-target samples and resolve the trigger."""
    target = config.target_label
    if target >= dataset.num_classes:
        raise DataError(f"attack.target_label {target} is not a class of {dataset.name} (0..{dataset.num_classes - 1})")
    columns = _trigger_columns(dataset, config)
    outside = sorted(set(columns.tolist()) - set(np.asarray(attacker_columns).tolist()))
    if outside:
        raise DataError(
            f"trigger columns {outside} are not held by the attacking party {config.party!r}; "
            "a passive party can only write a trigger into its own features"
        )
    if config.trigger_values is None:
        values = np.full(len(columns), float(dataset.x_train.max()))
    else:
        values = np.asarray(config.trigger_values, dtype=np.float64)
    poisoned = _draw(rng, np.flatnonzero(dataset.y_train != target), config.poison_train, "attack.poison_train", "non-target training")
    triggered = _draw(rng, np.flatnonzero(dataset.y_test != target), config.poison_test, "attack.poison_test", "non-target test")
    known = _draw(
        rng, np.flatnonzero(dataset.y_train == target), config.known_target_samples, "attack.known_target_samples", "target-class training"
    )
    return BackdoorData(target, poisoned, triggered, known, columns, values)


def _trigger_columns(dataset: VFLDataset, config: BackdoorConfig) -> np.ndarray:
    if config.trigger_features is not None:
        columns = np.asarray(config.trigger_features, dtype=np.int64)
        bad = columns[(columns < 0) | (columns >= dataset.n_features)]
        if bad.size:
            raise DataError(f"attack.trigger_features {bad.tolist()} are outside 0..{dataset.n_features - 1}")
        return columns
    if dataset.image_shape is None:
        raise DataError(f"{dataset.name} is not an image data set: set attack.trigger_features (and trigger_values)")
    return np.asarray(default_image_trigger(dataset.image_shape), dtype=np.int64)


def _draw(rng: np.random.Generator, pool: np.ndarray, count: int, key: str, what: str) -> np.ndarray:
    if count > len(pool):
        raise DataError(f"{key} = {count} but there are only {len(pool)} {what} samples")
    return np.sort(rng.choice(pool, size=count, replace=False))


@dataclass
class BackdoorPlan(AttackPlan):
    """A backdoor's changes: the trigger in the attacker's columns of the poisoned training samples,
    and the triggered test samples as an evaluation split measured by :data:`BACKDOOR_ACCURACY`."""

    backdoor: BackdoorData | None = None

    @classmethod
    def of(cls, dataset: VFLDataset, backdoor: BackdoorData) -> BackdoorPlan:
        rows = backdoor.triggered_test
        x_train = backdoor.apply_trigger(dataset.x_train, backdoor.poisoned_train).astype(np.float32)
        triggered = backdoor.apply_trigger(dataset.x_test, rows)[rows]
        summary = {
            "target_label": backdoor.target_label,
            "poisoned_train": int(backdoor.poisoned_train.size),
            "triggered_test": int(rows.size),
            "known_target": backdoor.known_target.tolist(),
            "trigger_columns": backdoor.trigger_columns.tolist(),
            "trigger_values": backdoor.trigger_values.tolist(),
        }
        return cls(
            dataset=replace(dataset, x_train=x_train),
            eval_splits={BACKDOOR_SPLIT: (triggered, dataset.y_test[rows])},
            summary=summary,
            backdoor=backdoor,
        )

    def evaluate(self, predictions: Mapping[str, np.ndarray]) -> dict[str, float]:
        assert self.backdoor is not None
        hits = np.asarray(predictions[BACKDOOR_SPLIT]) == self.backdoor.target_label
        return {BACKDOOR_ACCURACY.name: float(hits.astype(np.float64).mean())}
