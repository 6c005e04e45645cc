"""The backdoor's data: which samples carry the trigger, and the triggered test set.

The attacker owns a block of feature columns; the trigger lives in that block only, so
writing it changes nothing another party holds. Poisoned training samples and triggered test
samples are drawn at random among samples *not* of the target class (a triggered target-class
sample would count as a backdoor success for free); the known target samples are drawn among
the target class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from securevfl.attacks.config import AttackConfig
from securevfl.data import VFLDataset
from securevfl.errors import DataError

__all__ = ["BackdoorData", "default_image_trigger", "plan_backdoor"]


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
    dataset: VFLDataset, attacker_columns: np.ndarray, config: AttackConfig, rng: np.random.Generator
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


def _trigger_columns(dataset: VFLDataset, config: AttackConfig) -> np.ndarray:
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
