"""The in-memory form every loader returns, checked once so that later stages can trust it.

A vertical federated run splits the *columns* of one table among parties, so the dataset keeps the
features as a single matrix and describes meaningful column subsets (``feature_groups``) and, for
images, the pixel layout (``image_shape``). Partitioning (:mod:`securevfl.data.partition`) needs
only those two descriptions; it never needs to know which loader produced the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from securevfl.errors import DataError

__all__ = ["VFLDataset"]


@dataclass(frozen=True, eq=False)
class VFLDataset:
    """Train and test splits of one labelled data set, features already scaled.

    ``eq=False`` keeps identity comparison and hashing: field-wise ``==`` on numpy arrays is
    ambiguous, and two loads of the same data are not meant to be interchangeable keys.
    Construction validates shapes, dtypes, label range and group indices and raises
    :class:`~securevfl.errors.DataError` on any inconsistency, so a malformed loader fails here
    rather than deep inside training.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    feature_groups: dict[str, tuple[int, ...]]
    image_shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or x.ndim != 2 or x.dtype != np.float32:
                raise DataError(f"{self.name}: x_{split} must be a 2-D float32 array, got "
                                f"{_describe(x)}")
            if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype != np.int64:
                raise DataError(f"{self.name}: y_{split} must be a 1-D int64 array, got "
                                f"{_describe(y)}")
            if len(x) != len(y):
                raise DataError(f"{self.name}: x_{split} has {len(x)} rows but y_{split} has "
                                f"{len(y)} labels")
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise DataError(f"{self.name}: y_{split} holds labels outside "
                                f"0..{self.num_classes - 1} (min {y.min()}, max {y.max()})")
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise DataError(f"{self.name}: train has {self.x_train.shape[1]} feature columns but "
                            f"test has {self.x_test.shape[1]}")
        if self.num_classes < 2 or len(self.class_names) != self.num_classes:
            raise DataError(f"{self.name}: num_classes={self.num_classes} needs at least 2 classes "
                            f"and one name per class, got {len(self.class_names)} names")
        self._check_groups(self.feature_groups)
        if self.image_shape is not None:
            rows, cols = self.image_shape
            if rows < 1 or cols < 1 or rows * cols != self.n_features:
                raise DataError(f"{self.name}: image_shape {self.image_shape} does not cover "
                                f"{self.n_features} feature columns")

    def _check_groups(self, groups: Mapping[str, tuple[int, ...]]) -> None:
        if not groups:
            raise DataError(f"{self.name}: at least one feature group is required")
        for group, columns in groups.items():
            if not columns:
                raise DataError(f"{self.name}: feature group {group!r} is empty")
            if min(columns) < 0 or max(columns) >= self.n_features:
                raise DataError(f"{self.name}: feature group {group!r} has columns outside "
                                f"0..{self.n_features - 1}")

    @property
    def n_features(self) -> int:
        """Number of feature columns (the quantity vertical partitioning divides)."""
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        """Number of training samples."""
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test samples."""
        return int(self.x_test.shape[0])


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.ndim}-D {value.dtype} array of shape {value.shape}"
    return type(value).__name__
