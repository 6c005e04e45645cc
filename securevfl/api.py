"""The public Python API: train on your own data and read a typed result.

The command line (``securevfl train --config ...``) and this API run the same engine
(:func:`securevfl.training.run_training`); the API adds what a script needs around it: data sets
built from arrays or DataFrames (:func:`~securevfl.data.dataset_from_arrays`), a configuration
given as a dict, a :class:`~securevfl.RunConfig` or nothing, bottom models of your own, and a
:class:`TrainingResult` whose fields are typed instead of a JSON dict to index by string.

A minimal run::

    import numpy as np
    import securevfl

    x = np.random.default_rng(0).normal(size=(400, 6))
    y = (x[:, 0] + x[:, 4] > 0).astype(int)
    data = securevfl.dataset_from_arrays(x, y, parties={"bank": [0, 1, 2], "active": [3, 4, 5]})
    result = securevfl.train(data, {"train": {"epochs": 3}})
    print(result.main_accuracy)

Everything refused because of the input (a bad column, an unknown config key, a bottom model
the chosen scheme cannot run) raises a :class:`~securevfl.errors.SecureVFLError` subclass with a
one-line message; anything else is a bug.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from torch import nn

from securevfl.config import RunConfig, validate_config
from securevfl.data import PartitionedDataset, VFLDataset, load_dataset, partition_columns
from securevfl.errors import ConfigError
from securevfl.training import EpochCallback, run_training

__all__ = [
    "ConfigLike",
    "DataLike",
    "EpochSummary",
    "Timing",
    "TrainingResult",
    "bottom_model_shapes",
    "resolve_config",
    "train",
]

ConfigLike = RunConfig | Mapping[str, Any] | None
"""What :func:`train` accepts as a configuration: nothing (all defaults), a dict shaped like the
TOML file (sections ``data``, ``parties``, ``model``, ``train``, ``protection``, ``attack``,
``defense``; keys left out keep their defaults), or a validated :class:`~securevfl.RunConfig`."""

DataLike = PartitionedDataset | VFLDataset | None
"""What :func:`train` accepts as data: a data set built by
:func:`~securevfl.data.dataset_from_arrays` / :func:`~securevfl.data.dataset_from_dataframe`,
any :class:`~securevfl.data.VFLDataset`, or ``None`` to load the configuration's ``data`` section
(a built-in data set, exactly as the command line does)."""


@dataclass(frozen=True)
class EpochSummary:
    """One epoch of the run's history (deterministic: the same seed gives the same entries)."""

    epoch: int
    """1-based epoch number."""
    main_accuracy: float
    """Clean test accuracy after this epoch, a fraction in [0, 1]."""
    loss: float
    """Mean training loss over the epoch's batches."""
    attack_metrics: Mapping[str, float]
    """The attack's metrics after this epoch (e.g. ``backdoor_accuracy``); empty without one."""


@dataclass(frozen=True)
class Timing:
    """Where the time went. Timings vary between runs; everything else in a result does not."""

    wall_seconds: float
    """Wall-clock seconds of the :func:`train` call (training, evaluation, checkpoints)."""
    epoch_seconds: tuple[float, ...]
    """Seconds of each epoch, training and evaluation together."""
    mean_epoch_seconds: float
    """Mean of :attr:`epoch_seconds`."""
    by_category: Mapping[str, float]
    """Seconds per cost category: ``compute``, ``encrypted_compute``, ``keygen``,
    ``encode_encrypt``, ``serialize``, ``deserialize``, ``decrypt``, ``transfer``."""
    by_phase: Mapping[str, float]
    """Seconds per raw phase (``bottom_forward``, ``encrypt``, ...), which the categories sum."""


@dataclass(frozen=True)
class TrainingResult:
    """The outcome of :func:`train`: the typed view of ``result.json``.

    Every field is read from the raw record, which stays available unchanged as :attr:`raw` (a
    read-only mapping) and :meth:`to_dict` (a copy, JSON-ready), so keys this class does not
    surface (``visibility``, the attack's full record) are never lost.
    """

    main_accuracy: float
    """Clean test accuracy after the last epoch, a fraction in [0, 1]."""
    history: tuple[EpochSummary, ...]
    """One entry per epoch, in order."""
    attack_metrics: Mapping[str, float]
    """The last epoch's attack metrics (``backdoor_accuracy``, ``label_inference_accuracy``, ...);
    empty when no attack was configured."""
    attack: Mapping[str, Any]
    """The attack record: ``kind`` (``"none"`` without an attack), ``feasible``, ``party``, ..."""
    bytes_sent: Mapping[str, int]
    """Bytes on the wire per message kind (``activation``, ``gradient``, ``public_key``, ...)."""
    messages_sent: Mapping[str, int]
    """Messages sent per message kind."""
    timing: Timing
    """Where the time went (the only part of a result that varies between identical runs)."""
    scheme: str
    """``"plain"`` or ``"ckks"``."""
    key_holder: str | None
    """Who holds the CKKS secret key (``receiver``, ``active``, ``coordinator``); ``None`` when plain."""
    seed: int
    """The run's seed (``train.seed``): the same seed and data give the same history."""
    dataset: Mapping[str, Any]
    """What was trained on: ``name``, ``n_train``, ``n_test``, ``n_features``, ``num_classes``,
    ``block_columns`` (columns per feature block)."""
    config: RunConfig
    """The fully resolved configuration the run used."""
    raw: Mapping[str, Any]
    """The raw record, as written to ``result.json`` (read-only)."""
    out_dir: Path | None = None
    """Where ``result.json`` and checkpoints were written, if anywhere."""

    @property
    def epochs_completed(self) -> int:
        """Number of epochs in :attr:`history`."""
        return len(self.history)

    @property
    def total_bytes(self) -> int:
        """Bytes of every message kind together: the run's communication cost."""
        return sum(self.bytes_sent.values())

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the raw record, safe to modify or ``json.dump``."""
        return copy.deepcopy(dict(self.raw))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, config: RunConfig | None = None,
                  out_dir: Path | None = None) -> TrainingResult:
        """Build the typed view of a result record (e.g. a ``result.json`` read back from disk).

        ``config`` is the run's configuration object when the caller still has it; otherwise it
        is rebuilt from the record's resolved ``config``.
        """
        record = copy.deepcopy(dict(raw))
        history = tuple(
            EpochSummary(
                epoch=int(entry["epoch"]),
                main_accuracy=float(entry["main_accuracy"]),
                loss=float(entry["loss"]),
                attack_metrics=_frozen({k: float(v) for k, v in entry.items()
                                        if k not in _HISTORY_BASE_KEYS}),
            )
            for entry in record["history"]
        )
        timing = record["timing"]
        return cls(
            main_accuracy=float(record["main_accuracy"]),
            history=history,
            attack_metrics=history[-1].attack_metrics if history else _frozen({}),
            attack=_frozen(record["attack"]),
            bytes_sent=_frozen({k: int(v) for k, v in record["bytes_sent"].items()}),
            messages_sent=_frozen({k: int(v) for k, v in record["messages_sent"].items()}),
            timing=Timing(
                wall_seconds=float(timing.get("wall_this_invocation", 0.0)),
                epoch_seconds=tuple(float(s) for s in timing["epoch_seconds"]),
                mean_epoch_seconds=float(timing["mean_epoch_seconds"]),
                by_category=_frozen({k: float(v) for k, v in timing["summary"].items()}),
                by_phase=_frozen({k: float(v) for k, v in timing.items()
                                  if isinstance(v, int | float) and k not in _TIMING_TOTAL_KEYS}),
            ),
            scheme=str(record["scheme"]),
            key_holder=record["key_holder"],
            seed=int(record["seed"]),
            dataset=_frozen(record["dataset"]),
            config=config if config is not None else _config_from_resolved(record["config"]),
            raw=_frozen(record),
            out_dir=out_dir,
        )


_HISTORY_BASE_KEYS = frozenset({"epoch", "main_accuracy", "loss"})
_TIMING_TOTAL_KEYS = frozenset({"mean_epoch_seconds", "wall_this_invocation"})


def train(
    data: DataLike,
    config: ConfigLike = None,
    *,
    bottom_models: Sequence[nn.Module] | None = None,
    out_dir: str | Path | None = None,
    on_epoch_end: Sequence[EpochCallback] = (),
) -> TrainingResult:
    """Train a vertical federated model on ``data`` and return its result.

    Args:
        data: the data set (see :data:`DataLike`). A
            :class:`~securevfl.data.PartitionedDataset` with a party assignment decides the
            vertical split itself, so ``config`` must then have no ``parties`` section.
        config: the run configuration (see :data:`ConfigLike`). Its ``data`` section is only
            used when ``data`` is ``None``; given together with a data set it is refused, so that
            a result never claims to come from data it did not see.
        bottom_models: your own ``torch.nn.Module`` per feature block (passive parties in order,
            then the active party's block when it holds columns), each mapping its block's
            columns to the configured bottom output width (:func:`bottom_model_shapes` lists
            both numbers). Any module works under ``scheme = "plain"`` and under CKKS with
            ``key_holder = "receiver"``. The label-private schemes (``key_holder = "active"``
            or ``"coordinator"``) backpropagate through the bottom model under encryption, so
            they accept only stacks of ``Linear`` and ``ReLU`` and refuse other layers by name.
            Modules are trained in place: their parameters after the call are the trained ones.
        out_dir: if given, ``result.json``, per-epoch checkpoints and attack outputs are written
            there (the same files as ``securevfl train --out``).
        on_epoch_end: callables receiving an :class:`~securevfl.training.EpochRecord` after each
            epoch (progress reports, early inspection).

    Raises:
        ConfigError: an invalid configuration or bottom model.
        DataError: a data set that cannot be partitioned as configured.
        securevfl.training.TrainingDiverged: training produced NaN/Inf (try a smaller lr).
    """
    run_config = resolve_config(data, config)
    dataset = data.dataset if isinstance(data, PartitionedDataset) else data
    directory = None if out_dir is None else Path(out_dir)
    raw = run_training(run_config, directory, on_epoch_end=on_epoch_end, dataset=dataset,
                       bottom_models=bottom_models)
    return TrainingResult.from_dict(raw, config=run_config, out_dir=directory)


def resolve_config(data: DataLike, config: ConfigLike = None) -> RunConfig:
    """The :class:`~securevfl.RunConfig` that :func:`train` would run ``data`` with.

    A dict is validated onto the defaults (sections and keys left out keep them); a data set's
    party assignment becomes the ``parties`` section.

    Raises:
        ConfigError: an invalid configuration, or a ``data`` / ``parties`` section that
            conflicts with the data set given.
    """
    if config is None:
        run_config = validate_config({})
        given: set[str] = set()
    elif isinstance(config, RunConfig):
        run_config, given = config, set(config.model_fields_set)
    elif isinstance(config, Mapping):
        raw = copy.deepcopy(dict(config))
        given = set(raw)
        run_config = validate_config(raw)
    else:
        raise ConfigError(f"config must be a dict, a RunConfig or None, got "
                          f"{type(config).__name__}")
    if data is not None and not isinstance(data, PartitionedDataset | VFLDataset):
        raise ConfigError(f"data must be a data set from securevfl.dataset_from_arrays / "
                          f"dataset_from_dataframe, a VFLDataset or None, got "
                          f"{type(data).__name__}")
    if data is not None and "data" in given:
        raise ConfigError("config has a 'data' section but a data set was given; remove the "
                          "section (it describes a built-in data set to load)")
    if isinstance(data, PartitionedDataset) and data.parties is not None:
        if "parties" in given:
            raise ConfigError(f"config has a 'parties' section but the data set already assigns "
                              f"its columns to parties {list(data.party_names)}; remove the "
                              f"section or build the data set without parties=")
        run_config = run_config.model_copy(update={"parties": data.parties})
    return run_config


def bottom_model_shapes(data: DataLike, config: ConfigLike = None) -> list[tuple[int, int]]:
    """``(input columns, output width)`` of each bottom model :func:`train` expects.

    One pair per feature block, in the order ``bottom_models`` must follow: passive parties,
    then the active party's own block. The output width is ``model.bottom_output``; with the
    default ``top = "sum"`` that is the number of classes.
    """
    run_config = resolve_config(data, config)
    if isinstance(data, PartitionedDataset):
        dataset = data.dataset
    elif data is None:
        dataset = load_dataset(run_config.data)
    else:
        dataset = data
    blocks = partition_columns(dataset, run_config.parties)
    width = run_config.model.resolved_bottom_output(dataset.num_classes)
    return [(len(block), width) for block in blocks]


def _config_from_resolved(resolved: Mapping[str, Any]) -> RunConfig:
    """Validate a resolved configuration (``result.json``'s ``config``) back into a RunConfig."""
    return validate_config(copy.deepcopy(dict(resolved)))


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))
