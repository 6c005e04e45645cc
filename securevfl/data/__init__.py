"""Data layer: loading labelled data sets and dividing their feature columns among parties.

Everything a training run needs from this package is re-exported here; the submodules hold the
individual loaders (``mnist``, ``builtin``, ``nuswide``), the builders for a user's own arrays and
DataFrames with their party assignment (``arrays``), the preparation steps (``preprocess``), the
vertical split (``partition``) and the optional MNIST downloader (``download``).
"""

from __future__ import annotations

from securevfl.data.arrays import (
    ACTIVE_PARTY,
    PartitionedDataset,
    PartyAssignment,
    dataset_from_arrays,
    dataset_from_dataframe,
)
from securevfl.data.config import DataConfig, PartitionConfig, SyntheticConfig
from securevfl.data.dataset import VFLDataset
from securevfl.data.loader import load_dataset
from securevfl.data.mnist import MNIST_FILES, load_mnist
from securevfl.data.partition import partition_columns

__all__ = [
    "ACTIVE_PARTY",
    "MNIST_FILES",
    "DataConfig",
    "PartitionConfig",
    "PartitionedDataset",
    "PartyAssignment",
    "SyntheticConfig",
    "VFLDataset",
    "dataset_from_arrays",
    "dataset_from_dataframe",
    "load_dataset",
    "load_mnist",
    "partition_columns",
]
