"""Data layer: loading labelled data sets and dividing their feature columns among parties.

Everything a training run needs from this package is re-exported here; the submodules hold the
individual loaders (``mnist``, ``builtin``, ``nuswide``), the preparation steps (``preprocess``),
the vertical split (``partition``) and the optional MNIST downloader (``download``).
"""

from __future__ import annotations

from securevfl.data.config import DataConfig, PartitionConfig, SyntheticConfig
from securevfl.data.dataset import VFLDataset
from securevfl.data.loader import load_dataset
from securevfl.data.mnist import MNIST_FILES, load_mnist
from securevfl.data.partition import partition_columns

__all__ = [
    "MNIST_FILES",
    "DataConfig",
    "PartitionConfig",
    "SyntheticConfig",
    "VFLDataset",
    "load_dataset",
    "load_mnist",
    "partition_columns",
]
