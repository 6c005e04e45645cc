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

import importlib
import sys
from typing import TYPE_CHECKING, Any

from securevfl.version import __version__ as _installed

__version__ = _installed
"""The installed version, recorded in every ``result.json`` (``version``)."""

#: Public name -> the module that defines it, imported on first use (PEP 562): the command line,
#: ``import securevfl.crypto`` and study workers do not pay for torch and the whole training
#: stack before they need it.
_PUBLIC = {
    "ConfigError": "securevfl.errors",
    "DataError": "securevfl.errors",
    "EpochSummary": "securevfl.api",
    "PartitionedDataset": "securevfl.data",
    "RunConfig": "securevfl.config",
    "SecureVFLError": "securevfl.errors",
    "Timing": "securevfl.api",
    "TrainingDiverged": "securevfl.errors",
    "TrainingResult": "securevfl.api",
    "VFLDataset": "securevfl.data",
    "bottom_model_shapes": "securevfl.api",
    "dataset_from_arrays": "securevfl.data",
    "dataset_from_dataframe": "securevfl.data",
    "load_config": "securevfl.config",
    "load_dataset": "securevfl.data",
    "resolve_config": "securevfl.api",
    "train": "securevfl.api",
}

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

if TYPE_CHECKING:
    from securevfl.api import EpochSummary, Timing, TrainingResult, bottom_model_shapes, resolve_config, train
    from securevfl.config import RunConfig, load_config
    from securevfl.data import PartitionedDataset, VFLDataset, dataset_from_arrays, dataset_from_dataframe, load_dataset
    from securevfl.errors import ConfigError, DataError, SecureVFLError, TrainingDiverged


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'securevfl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


if "pdoc" in sys.modules:  # a documentation build reads the module's namespace, not __getattr__
    for _name in _PUBLIC:
        __getattr__(_name)
