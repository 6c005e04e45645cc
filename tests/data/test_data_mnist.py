"""MNIST IDX loading on generated files, every corruption refused, and checks of the real data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from datafixtures import idx_bytes, write_mnist

from securevfl.data import MNIST_FILES, DataConfig, load_dataset, load_mnist
from securevfl.errors import DataError


def test_loads_generated_files(tmp_path: Path) -> None:
    fx = write_mnist(tmp_path / "mnist", n_train=6, n_test=4)
    ds = load_mnist(fx.directory, expect_counts=False)
    assert ds.x_train.shape == (6, 784) and ds.x_test.shape == (4, 784)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    np.testing.assert_allclose(ds.x_train, fx.x_train.reshape(6, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, fx.y_test)
    assert ds.x_train[0, 0] == 0.0 and ds.x_train[0, 783] == 1.0  # row-major, scaled to [0, 1]
    assert ds.image_shape == (28, 28) and ds.num_classes == 10
    assert ds.class_names == tuple("0123456789")
    assert ds.feature_groups == {"pixels": tuple(range(784))}


def test_official_counts_are_checked_by_default(tmp_path: Path) -> None:
    fx = write_mnist(tmp_path / "mnist")
    with pytest.raises(DataError, match="6 samples, the official train split has 60000"):
        load_mnist(fx.directory)


def test_uncompressed_copies_are_accepted(tmp_path: Path) -> None:
    fx = write_mnist(tmp_path / "mnist")
    for role in MNIST_FILES:
        gz = fx.path(role)
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    ds = load_mnist(fx.directory, expect_counts=False)
    np.testing.assert_array_equal(ds.y_train, fx.y_train)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"MNIST directory {tmp_path / 'nope'} does not exist"):
        load_mnist(tmp_path / "nope")


def test_missing_files_are_listed(tmp_path: Path) -> None:
    fx = write_mnist(tmp_path / "mnist")
    fx.path("train_labels").unlink()
    fx.path("test_images").unlink()
    with pytest.raises(DataError, match=f"missing from {fx.directory}: train-labels-idx1-ubyte.gz, "
                                        f"t10k-images-idx3-ubyte.gz"):
        load_mnist(fx.directory, expect_counts=False)


def test_not_gzip(tmp_path: Path) -> None:
    fx = write_mnist(tmp_path / "mnist")
    fx.path("test_labels").write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz is not a gzip file"):
        load_mnist(fx.directory, expect_counts=False)


def test_truncated_gzip(tmp_path: Path) -> None:
    fx = write_mnist(tmp_path / "mnist")
    path = fx.path("train_images")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: gzip data is corrupt"):
        load_mnist(fx.directory, expect_counts=False)


def test_bad_magic(tmp_path: Path) -> None:
    fx = write_mnist(tmp_path / "mnist")
    # Labels where images should be: a plausible mix-up, caught by the magic number.
    fx.path("train_images").write_bytes(gzip.compress(idx_bytes(fx.y_train, 2049)))
    with pytest.raises(DataError, match="magic number is 2049, expected 2051"):
        load_mnist(fx.directory, expect_counts=False)


def test_truncated_payload(tmp_path: Path) -> None:
    fx = write_mnist(tmp_path / "mnist", n_train=6)
    full = idx_bytes(fx.x_train, 2051)
    fx.path("train_images").write_bytes(gzip.compress(full[:-10]))
    with pytest.raises(DataError, match=r"header promises 4704 bytes .* holds 4694; .*truncated"):
        load_mnist(fx.directory, expect_counts=False)


def test_header_too_short(tmp_path: Path) -> None:
    fx = write_mnist(tmp_path / "mnist")
    fx.path("test_labels").write_bytes(gzip.compress(b"\x00\x00"))
    with pytest.raises(DataError, match="too short for an IDX header"):
        load_mnist(fx.directory, expect_counts=False)


def test_wrong_image_size(tmp_path: Path) -> None:
    fx = write_mnist(tmp_path / "mnist")
    fx.path("test_images").write_bytes(gzip.compress(idx_bytes(np.zeros((4, 8, 8)), 2051)))
    with pytest.raises(DataError, match="images are 8x8, MNIST images are 28x28"):
        load_mnist(fx.directory, expect_counts=False)


def test_image_and_label_counts_must_agree(tmp_path: Path) -> None:
    fx = write_mnist(tmp_path / "mnist", n_train=6)
    fx.path("train_labels").write_bytes(gzip.compress(idx_bytes(fx.y_train[:5], 2049)))
    with pytest.raises(DataError, match="holds 6 images but .*train-labels.* holds 5 labels"):
        load_mnist(fx.directory, expect_counts=False)


def test_labels_must_be_digits(tmp_path: Path) -> None:
    fx = write_mnist(tmp_path / "mnist")
    bad = fx.y_test.copy()
    bad[1] = 12
    fx.path("test_labels").write_bytes(gzip.compress(idx_bytes(bad, 2049)))
    with pytest.raises(DataError, match="label 12 is not a digit"):
        load_mnist(fx.directory, expect_counts=False)


@pytest.mark.shared_data
def test_real_mnist(shared_data: Path) -> None:
    ds = load_mnist(shared_data / "mnist")
    assert (ds.n_train, ds.n_test, ds.n_features) == (60000, 10000, 784)
    assert ds.y_train[0] == 5
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert np.bincount(ds.y_test, minlength=10).min() > 800  # every digit well represented


@pytest.mark.shared_data
def test_load_dataset_limits_real_mnist(shared_data: Path) -> None:
    cfg = DataConfig(name="mnist", dir=shared_data / "mnist", train_limit=500, test_limit=100)
    ds = load_dataset(cfg)
    assert (ds.n_train, ds.n_test) == (500, 100)
    assert ds.x_train.max() <= 1.0  # images are never standardised
