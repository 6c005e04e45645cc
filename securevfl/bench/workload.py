"""What the benchmark trains on: MNIST-shaped data and the geometry of one MNIST epoch.

The cost of a protection scheme depends on the *shapes* of the messages (batch x width) and on
how many of them an epoch sends, not on the pixel values. So the benchmark needs no download:
by default it trains on random MNIST-shaped rows (784 pixels in [0, 1], mostly zero like MNIST,
28x28 so the two passive parties split the image by rows exactly as with real MNIST) and scales
its measurements to the epoch geometry of real MNIST (60,000 training and 10,000 test samples).
With a data directory, real MNIST is used instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from securevfl.data import DataConfig, VFLDataset, load_dataset

__all__ = ["MNIST_EPOCH", "EpochShape", "load_workload", "mnist_shaped_dataset"]

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
#: Fraction of non-zero pixels in MNIST's training images (about 19 %).
NONZERO_FRACTION = 0.19


@dataclass(frozen=True)
class EpochShape:
    """How many training steps and evaluation samples make one epoch.

    ``run_training`` counts an epoch as every training batch plus one evaluation of the test
    set, so the benchmark does the same: its epoch seconds compare directly with the
    ``s/epoch`` that ``securevfl train`` prints.
    """

    n_train: int = 60_000
    n_test: int = 10_000
    batch_size: int = 64
    eval_batch_size: int = 1024

    @property
    def steps(self) -> int:
        return -(-self.n_train // self.batch_size)

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "steps": self.steps}


MNIST_EPOCH = EpochShape()


def mnist_shaped_dataset(n_train: int, n_test: int, seed: int = 0) -> VFLDataset:
    """Random 28x28 images with MNIST's sparsity and random labels (cost, not accuracy)."""
    rng = np.random.default_rng(seed)

    def images(n: int) -> np.ndarray:
        # one draw per pixel: keep the ~19 % below the threshold, stretched back to (0, 1]
        pixels = rng.random((n, IMAGE_SHAPE[0] * IMAGE_SHAPE[1]), dtype=np.float32)
        pixels[pixels >= NONZERO_FRACTION] = 0.0
        pixels /= np.float32(NONZERO_FRACTION)
        return pixels

    return VFLDataset(
        name="mnist_shaped_random",
        x_train=images(n_train),
        y_train=rng.integers(0, NUM_CLASSES, n_train, dtype=np.int64),
        x_test=images(n_test),
        y_test=rng.integers(0, NUM_CLASSES, n_test, dtype=np.int64),
        num_classes=NUM_CLASSES,
        class_names=tuple(str(d) for d in range(NUM_CLASSES)),
        feature_groups={"pixels": tuple(range(IMAGE_SHAPE[0] * IMAGE_SHAPE[1]))},
        image_shape=IMAGE_SHAPE,
    )


def load_workload(data_dir: Path | None, n_train: int, n_test: int) -> VFLDataset:
    """Real MNIST from ``data_dir`` (at most the rows asked for), else random MNIST-shaped rows.

    Every scheme of one benchmark run loads the same number of rows, whatever part of the epoch
    it then runs, so that their peak memory can be compared.
    """
    if data_dir is None:
        return mnist_shaped_dataset(n_train, n_test)
    return load_dataset(DataConfig(name="mnist", dir=data_dir, train_limit=n_train, test_limit=n_test))
