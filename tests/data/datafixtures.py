"""Writers of tiny, valid copies of each on-disk data layout, shared by the data-layer tests.

The real files are large (MNIST) or unavailable (NUS-WIDE), so the loaders are tested on generated
files with the real structure and dimensionalities but a handful of rows. Tests that corrupt a
file start from these valid ones, so each test changes exactly one thing. The module has a
distinctive name because the test folders are not packages and share one import namespace.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from securevfl.data import MNIST_FILES
from securevfl.data.nuswide import FATE_FILES, NUSWIDE_LOW_LEVEL, NUSWIDE_TAGS

# --------------------------------------------------------------------------- MNIST (IDX)


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """Encode a uint8 array as IDX: big-endian magic, one big-endian size per dimension, data."""
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@dataclass
class MnistFixture:
    directory: Path
    x_train: np.ndarray  # uint8 images (n, 28, 28)
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def path(self, role: str) -> Path:
        return self.directory / MNIST_FILES[role]


def write_mnist(root: Path, n_train: int = 6, n_test: int = 4, seed: int = 0) -> MnistFixture:
    """Write valid gzip IDX files with few samples into ``root``; return the arrays written."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    arrays["train_images"][0, 0, 0], arrays["train_images"][0, 27, 27] = 0, 255
    for role, array in arrays.items():
        magic = 2051 if role.endswith("images") else 2049
        (root / MNIST_FILES[role]).write_bytes(gzip.compress(idx_bytes(array, magic)))
    return MnistFixture(root, arrays["train_images"], arrays["train_labels"],
                        arrays["test_images"], arrays["test_labels"])


# --------------------------------------------------------------------------- NUS-WIDE official


@dataclass
class NuswideFixture:
    directory: Path
    labels: list[str]
    indicators: dict[str, np.ndarray]  # split tag -> (rows, concepts) 0/1
    features: dict[str, np.ndarray]    # split tag -> (rows, 1634) as written


def _write_table(path: Path, values: np.ndarray, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, values, fmt=fmt, delimiter=" ")


def write_nuswide(root: Path) -> NuswideFixture:
    """The official directory layout with 30 train and 20 test rows at the real widths."""
    rng = np.random.default_rng(1)
    labels = ["buildings", "grass", "animal", "water", "person"]
    indicators, features = {}, {}
    for tag, n in (("Train", 30), ("Test", 20)):
        ind = np.zeros((n, len(labels)), dtype=np.int64)
        ind[np.arange(n), np.arange(n) % len(labels)] = 1  # every class present
        multi = np.arange(0, n, 7)
        ind[multi, (multi + 1) % len(labels)] = 1  # some rows with two of the concepts
        ind[3::9] = 0  # some rows with none of the concepts
        blocks = []
        for kind, width in NUSWIDE_LOW_LEVEL:
            block = rng.random((n, width)).round(6)
            path = root / "Low_Level_Features" / f"{tag}_Normalized_{kind}.dat"
            _write_table(path, block, "%.6f")
            blocks.append(block)
        tags = (rng.random((n, NUSWIDE_TAGS)) < 0.05).astype(np.int64)
        _write_table(root / "NUS_WID_Tags" / f"{tag}_Tags1k.dat", tags, "%d")
        blocks.append(tags)
        for j, concept in enumerate(labels):
            _write_table(root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{tag}.txt",
                         ind[:, j], "%d")
        indicators[tag], features[tag] = ind, np.concatenate(blocks, axis=1)
    return NuswideFixture(root, labels, indicators, features)


# --------------------------------------------------------------------------- NUS-WIDE FATE CSV


@dataclass
class FateFixture:
    directory: Path
    guest_ids: np.ndarray
    guest_x: np.ndarray
    y: np.ndarray
    host_ids: np.ndarray
    host_x: np.ndarray


def write_csv(path: Path, ids: np.ndarray, values: np.ndarray, header: list[str], fmt: str) -> None:
    table = np.column_stack([ids, values])
    np.savetxt(path, table, fmt=["%d"] + [fmt] * values.shape[1], delimiter=",",
               header=",".join(header), comments="")


def write_fate(root: Path) -> FateFixture:
    """FATE's CSV layout: 40 labelled guest rows (634 features), 50 host rows (1000 tags).

    Host ids 10..59 overlap guest ids 0..39 in 30 rows, and host rows are stored in another
    order, so a loader that joins by position instead of by id fails the tests.
    """
    rng = np.random.default_rng(2)
    root.mkdir(parents=True)
    guest_ids = np.arange(40)
    guest_x = rng.normal(size=(40, 634)).round(5)
    y = np.arange(40) % 2
    host_ids = rng.permutation(np.arange(10, 60))
    host_x = (rng.random((50, 1000)) < 0.1).astype(np.int64)
    write_csv(root / FATE_FILES["guest"], guest_ids, np.column_stack([guest_x, y]),
              ["id", *map(str, range(634)), "y"], "%.5f")
    write_csv(root / FATE_FILES["host"], host_ids, host_x, ["id", *map(str, range(1000))], "%d")
    write_csv(root / "nus_wide_validate_host.csv", np.arange(2000, 2010),
              np.zeros((10, 1000), dtype=np.int64), ["id", *map(str, range(1000))], "%d")
    return FateFixture(root, guest_ids, guest_x, y, host_ids, host_x)
