"""Small builders shared by the engine tests (random data sets and configs)."""

from __future__ import annotations

import numpy as np

from securevfl.config import RunConfig, validate_config
from securevfl.data import VFLDataset


def random_dataset(n_train: int, n_test: int, n_features: int, num_classes: int, seed: int) -> VFLDataset:
    rng = np.random.default_rng(seed)
    return VFLDataset(
        name="random",
        x_train=rng.normal(size=(n_train, n_features)).astype(np.float32),
        y_train=rng.integers(0, num_classes, n_train).astype(np.int64),
        x_test=rng.normal(size=(n_test, n_features)).astype(np.float32),
        y_test=rng.integers(0, num_classes, n_test).astype(np.int64),
        num_classes=num_classes,
        class_names=tuple(str(c) for c in range(num_classes)),
        feature_groups={"features": tuple(range(n_features))},
    )


def config(**sections: dict) -> RunConfig:
    return validate_config({key: value for key, value in sections.items()})
