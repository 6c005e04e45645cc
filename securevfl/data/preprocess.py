"""Dataset-independent preparation steps: splitting, subsampling and standardisation.

They are kept apart from the loaders so that every data set is prepared the same way and in the
same order (split, then limit, then standardise with statistics of the rows actually trained on).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.model_selection import train_test_split

from securevfl.data.dataset import VFLDataset
from securevfl.errors import DataError

__all__ = ["limit_samples", "standardize", "stratified_split"]


def stratified_split(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split a data set without an official test set, keeping class proportions in both parts.

    Stratification matters for small or imbalanced sets (breast cancer, the FATE sample): an
    unlucky plain split can leave a class almost absent from the test set.
    """
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=test_fraction, random_state=seed, stratify=y)
    except ValueError as exc:  # too few samples of some class for the requested fraction
        raise DataError(f"{name}: cannot make a stratified split with test_fraction="
                        f"{test_fraction} of {len(y)} samples: {exc}") from exc
    return x_train, x_test, y_train, y_test


def limit_samples(dataset: VFLDataset, train_limit: int | None, test_limit: int | None,
                  seed: int) -> VFLDataset:
    """Keep a seeded random subset of at most ``*_limit`` rows of each split, in original order.

    A limit larger than the split keeps everything, so one quick-run configuration works for every
    data set. Rows keep their original relative order so that a subset of a subset is predictable.
    """
    rng = np.random.default_rng(seed)
    x_train, y_train = _subset(dataset.x_train, dataset.y_train, train_limit, rng)
    x_test, y_test = _subset(dataset.x_test, dataset.y_test, test_limit, rng)
    return dataclasses.replace(dataset, x_train=x_train, y_train=y_train,
                               x_test=x_test, y_test=y_test)


def _subset(x: np.ndarray, y: np.ndarray, limit: int | None,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if limit is None or limit >= len(y):
        return x, y
    keep = np.sort(rng.choice(len(y), size=limit, replace=False))
    return x[keep], y[keep]


def standardize(dataset: VFLDataset) -> VFLDataset:
    """Z-score every column with the *training* mean and standard deviation.

    Test statistics must not leak into preprocessing. Constant columns (common among sparse tag
    features) are only centred, because dividing by a zero deviation would create NaNs.
    """
    mean = dataset.x_train.mean(axis=0, dtype=np.float64)
    std = dataset.x_train.std(axis=0, dtype=np.float64)
    std[std == 0.0] = 1.0

    def scale(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std).astype(np.float32)

    return dataclasses.replace(dataset, x_train=scale(dataset.x_train),
                               x_test=scale(dataset.x_test))
