"""Data sets that need no files: scikit-learn's bundled digits and breast cancer, and a generator.

They make examples and tests run anywhere, offline, in seconds. None has an official test split, so
each is split here with :func:`stratified_split`. Values are returned unstandardised; the tabular
ones are z-scored later by :func:`securevfl.data.load_dataset`, after any sample limit, so that the
statistics come from exactly the training rows used.
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets as skdatasets

from securevfl.data.config import SyntheticConfig
from securevfl.data.dataset import VFLDataset
from securevfl.data.preprocess import stratified_split
from securevfl.errors import DataError

__all__ = ["load_breast_cancer", "load_digits", "make_synthetic"]


def load_digits(test_fraction: float = 0.2, split_seed: int = 0) -> VFLDataset:
    """The 1,797 8x8 handwritten digits, pixel values 0..16 scaled to [0, 1].

    A small image task with the same structure as MNIST, so row-band partitioning and image
    backdoor triggers can be exercised without the MNIST files.
    """
    bunch = skdatasets.load_digits()
    x = np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = stratified_split("digits", x, y, test_fraction, split_seed)
    return VFLDataset(
        name="digits", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        num_classes=10, class_names=tuple(str(d) for d in range(10)),
        feature_groups={"pixels": tuple(range(x.shape[1]))}, image_shape=(8, 8),
    )


def load_breast_cancer(test_fraction: float = 0.2, split_seed: int = 0) -> VFLDataset:
    """Wisconsin breast cancer: 569 samples, 30 columns in three natural groups of ten.

    Each cell-nucleus measurement appears as a mean, a standard error and a worst value; those
    three families become the feature groups, a realistic vertical split by data source.
    """
    bunch = skdatasets.load_breast_cancer()
    names = [str(n) for n in bunch.feature_names]
    groups = {
        "mean": tuple(i for i, n in enumerate(names) if n.startswith("mean ")),
        "error": tuple(i for i, n in enumerate(names) if n.endswith(" error")),
        "worst": tuple(i for i, n in enumerate(names) if n.startswith("worst ")),
    }
    if sum(len(g) for g in groups.values()) != len(names):  # guards against a changed sklearn
        raise DataError(f"breast_cancer: unexpected feature names from scikit-learn: {names}")
    x = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = stratified_split("breast_cancer", x, y, test_fraction,
                                                        split_seed)
    return VFLDataset(
        name="breast_cancer", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        num_classes=2, class_names=tuple(str(n) for n in bunch.target_names),
        feature_groups=groups,
    )


def make_synthetic(cfg: SyntheticConfig, test_fraction: float = 0.2,
                   split_seed: int = 0) -> VFLDataset:
    """A Gaussian-cluster task from :func:`sklearn.datasets.make_classification`.

    Only informative and pure-noise columns are generated (no redundant or repeated ones), so
    ``n_informative`` alone controls how much signal a block of columns can carry.
    """
    x, y = skdatasets.make_classification(
        n_samples=cfg.n_samples, n_features=cfg.n_features, n_informative=cfg.n_informative,
        n_redundant=0, n_repeated=0, n_classes=cfg.n_classes, random_state=cfg.seed)
    x_train, x_test, y_train, y_test = stratified_split(
        "synthetic", x.astype(np.float32), y.astype(np.int64), test_fraction, split_seed)
    return VFLDataset(
        name="synthetic", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        num_classes=cfg.n_classes, class_names=tuple(str(c) for c in range(cfg.n_classes)),
        feature_groups={"features": tuple(range(cfg.n_features))},
    )
