"""Digits, breast cancer and synthetic data via load_dataset: shapes, splits, limits, scaling."""

from __future__ import annotations

import numpy as np
import pytest

from securevfl.data import DataConfig, SyntheticConfig, VFLDataset, load_dataset
from securevfl.data.builtin import load_breast_cancer


def assert_well_formed(ds: VFLDataset, n_features: int, num_classes: int) -> None:
    assert ds.x_train.dtype == ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == ds.y_test.dtype == np.int64
    assert ds.n_features == n_features and ds.num_classes == num_classes
    for y in (ds.y_train, ds.y_test):
        assert set(np.unique(y)) == set(range(num_classes)), "every class in both splits"
    assert np.isfinite(ds.x_train).all() and np.isfinite(ds.x_test).all()


def assert_disjoint(ds: VFLDataset) -> None:
    """No test row duplicates a training row (the sources have no duplicate samples)."""
    train_rows = {row.tobytes() for row in ds.x_train}
    assert not any(row.tobytes() in train_rows for row in ds.x_test)


def test_digits() -> None:
    ds = load_dataset(DataConfig(name="digits"))
    assert_well_formed(ds, 64, 10)
    assert (ds.n_train, ds.n_test) == (1437, 360)
    assert ds.image_shape == (8, 8)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0, "pixels/16, never standardised"
    assert_disjoint(ds)


def test_breast_cancer_groups_and_standardisation() -> None:
    ds = load_dataset(DataConfig(name="breast_cancer"))
    assert_well_formed(ds, 30, 2)
    assert ds.class_names == ("malignant", "benign")
    assert ds.feature_groups == {"mean": tuple(range(10)), "error": tuple(range(10, 20)),
                                 "worst": tuple(range(20, 30))}
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1.0, atol=1e-4)
    assert np.abs(ds.x_test.mean(axis=0)).max() > 1e-3, "test set uses train statistics"
    assert_disjoint(ds)


def test_standardize_off_keeps_raw_values() -> None:
    ds = load_dataset(DataConfig(name="breast_cancer", standardize=False))
    raw = load_breast_cancer()
    np.testing.assert_array_equal(ds.x_train, raw.x_train)


def test_split_is_stratified() -> None:
    ds = load_dataset(DataConfig(name="breast_cancer", test_fraction=0.25))
    train_share = ds.y_train.mean()
    assert abs(ds.y_test.mean() - train_share) < 0.02
    assert ds.n_test == 143  # ceil(0.25 * 569)


def test_synthetic() -> None:
    cfg = DataConfig(name="synthetic", synthetic=SyntheticConfig(
        n_samples=300, n_features=12, n_classes=3, n_informative=4, seed=5))
    ds = load_dataset(cfg)
    assert_well_formed(ds, 12, 3)
    assert (ds.n_train, ds.n_test) == (240, 60)
    assert ds.feature_groups == {"features": tuple(range(12))}
    assert_disjoint(ds)


def test_synthetic_seed_changes_the_data() -> None:
    a = load_dataset(DataConfig(name="synthetic"))
    b = load_dataset(DataConfig(name="synthetic", synthetic=SyntheticConfig(seed=1)))
    assert not np.array_equal(a.y_train, b.y_train)


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "synthetic"])
def test_split_seed_is_deterministic(name: str) -> None:
    a = load_dataset(DataConfig(name=name, split_seed=3))
    b = load_dataset(DataConfig(name=name, split_seed=3))
    c = load_dataset(DataConfig(name=name, split_seed=4))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)


def test_limits_take_a_seeded_subset() -> None:
    full = load_dataset(DataConfig(name="digits", standardize=False))
    cfg = DataConfig(name="digits", train_limit=100, test_limit=30)
    small, again = load_dataset(cfg), load_dataset(cfg)
    assert (small.n_train, small.n_test) == (100, 30)
    np.testing.assert_array_equal(small.x_train, again.x_train)
    full_rows = {row.tobytes(): i for i, row in enumerate(full.x_train)}
    positions = [full_rows[row.tobytes()] for row in small.x_train]
    assert positions == sorted(positions), "subset keeps the original order"
    assert positions != list(range(100)), "a random subset, not the first rows"
    other = load_dataset(DataConfig(name="digits", train_limit=100, split_seed=1))
    assert not np.array_equal(small.y_train, other.y_train)


def test_limit_larger_than_split_keeps_everything() -> None:
    ds = load_dataset(DataConfig(name="breast_cancer", train_limit=10_000))
    assert ds.n_train == 455


def test_standardisation_uses_the_limited_training_rows() -> None:
    ds = load_dataset(DataConfig(name="synthetic", train_limit=50))
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)
