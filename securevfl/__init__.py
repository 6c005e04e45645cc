"""securevfl: vertical federated learning whose cross-party messages can travel as CKKS ciphertexts.

The public Python API is everything listed in ``__all__`` below; docs/api.md is its guide and
examples/tutorial.py a runnable walk-through. In short::

    import securevfl

    data = securevfl.dataset_from_arrays(x, y, parties={"bank": [0, 1], "active": [2, 3]})
    result = securevfl.train(data, {"protection": {"scheme": "ckks"}, "train": {"epochs": 5}})
    print(result.main_accuracy, result.total_bytes)

- data: :func:`dataset_from_arrays`, :func:`dataset_from_dataframe` (dtype conversion, label
  encoding, the column-to-party assignment), or :func:`load_dataset` for the built-in data sets;
- configuration: a dict, or :class:`RunConfig` / :func:`load_config` (the command line's TOML);
- training: :func:`train` -> :class:`TrainingResult`; :func:`bottom_model_shapes` for sizing
  your own bottom models;
- errors: every refusal caused by input is a :class:`SecureVFLError` (:class:`ConfigError`,
  :class:`DataError`) with a one-line message.

Layers import downwards only: ``securevfl`` -> ``securevfl.protocols`` (folder ``protocols/``)
-> ``securevfl.crypto`` (folder ``crypto/``).
"""

from __future__ import annotations

from securevfl.api import EpochSummary, Timing, TrainingResult, bottom_model_shapes, resolve_config, train
from securevfl.config import RunConfig, load_config
from securevfl.data import PartitionedDataset, VFLDataset, dataset_from_arrays, dataset_from_dataframe, load_dataset
from securevfl.errors import ConfigError, DataError, SecureVFLError, TrainingDiverged
from securevfl.version import __version__ as _installed

__version__ = _installed
"""The installed version, recorded in every ``result.json`` (``version``)."""

__all__ = [
    "ConfigError",
    "DataError",
    "EpochSummary",
    "PartitionedDataset",
    "RunConfig",
    "SecureVFLError",
    "Timing",
    "TrainingDiverged",
    "TrainingResult",
    "VFLDataset",
    "__version__",
    "bottom_model_shapes",
    "dataset_from_arrays",
    "dataset_from_dataframe",
    "load_config",
    "load_dataset",
    "resolve_config",
    "train",
]
