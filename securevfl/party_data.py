"""One party's own data, as its process holds it: its block of columns (or the labels) and the sample ids.

A passive holds its columns of the training and test rows (and of any extra evaluation set);
the active party holds the labels and, with a block of its own, its columns; a coordinator holds
nothing. Rows are in the agreed sample order (row ``i`` of every party is the same sample), and
``train_ids`` / ``test_ids`` name those samples, so a party can check that it trains on the
order the plan agrees on. :func:`cut_party_data` cuts them from a whole data set (what the
exporter and in-process tests do); :func:`save_party_data` / :func:`load_party_data` keep them in
an ``.npz`` file read with ``allow_pickle=False``, so a data file can never run code.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from securevfl.data import VFLDataset
from securevfl.errors import ConfigError
from securevfl.files import atomic_write

__all__ = ["ActiveData", "PassiveData", "cut_party_data", "load_party_data", "save_party_data"]


@dataclass
class PassiveData:
    """A passive party's columns: training rows, test rows, and extra evaluation sets by name."""

    x_train: np.ndarray
    x_test: np.ndarray
    train_ids: np.ndarray
    test_ids: np.ndarray
    eval_x: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ActiveData:
    """The active party's labels (and its own columns when it holds a block), per split."""

    y_train: np.ndarray
    y_test: np.ndarray
    train_ids: np.ndarray
    test_ids: np.ndarray
    x_train: np.ndarray | None = None
    x_test: np.ndarray | None = None
    eval_labels: dict[str, np.ndarray] = field(default_factory=dict)
    eval_x: dict[str, np.ndarray] = field(default_factory=dict)


def cut_party_data(
    dataset: VFLDataset,
    blocks: list[np.ndarray],
    passive_names: list[str] | tuple[str, ...],
    name: str,
    eval_splits: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> PassiveData | ActiveData:
    """Party ``name``'s own part of ``dataset`` (``blocks``: passives' columns, then the active party's own).

    ``eval_splits`` are extra evaluation sets (global feature rows, labels): each passive gets its
    columns of the rows, the active party the labels (and its columns).
    """
    splits = dict(eval_splits or {})
    ids = {"train_ids": np.arange(len(dataset.y_train)), "test_ids": np.arange(len(dataset.y_test))}
    if name in passive_names:
        columns = np.asarray(blocks[list(passive_names).index(name)])
        return PassiveData(
            x_train=dataset.x_train[:, columns], x_test=dataset.x_test[:, columns],
            eval_x={split: x[:, columns] for split, (x, _) in splits.items()}, **ids,
        )
    own = np.asarray(blocks[len(passive_names)]) if len(blocks) > len(passive_names) else None
    return ActiveData(
        y_train=dataset.y_train, y_test=dataset.y_test,
        x_train=None if own is None else dataset.x_train[:, own], x_test=None if own is None else dataset.x_test[:, own],
        eval_labels={split: labels for split, (_, labels) in splits.items()},
        eval_x={} if own is None else {split: x[:, own] for split, (x, _) in splits.items()}, **ids,
    )


def save_party_data(path: Path, data: PassiveData | ActiveData, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` (``.npz``, atomically); an existing file is replaced only with ``overwrite``."""
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it")
    arrays: dict[str, np.ndarray] = {"kind": np.array("passive" if isinstance(data, PassiveData) else "active")}
    for key, value in vars(data).items():
        if isinstance(value, dict):
            arrays.update({f"{key}/{split}": np.asarray(array) for split, array in value.items()})
        elif value is not None:
            arrays[key] = np.asarray(value)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())


def load_party_data(path: Path) -> PassiveData | ActiveData:
    """Read a party's data file (no pickled objects: a crafted file cannot run code)."""
    if not path.is_file():
        raise ConfigError(f"party data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as exc:  # zipfile/numpy raise many types for a corrupt or foreign file
        raise ConfigError(f"{path} is not a party data file ({type(exc).__name__}: {str(exc)[:120]})") from None
    kind = str(arrays.pop("kind", ""))
    cls = {"passive": PassiveData, "active": ActiveData}.get(kind)
    if cls is None:
        raise ConfigError(f"{path} is not a party data file (kind {kind!r}, expected 'passive' or 'active')")
    fields: dict[str, object] = {}
    for key, array in arrays.items():
        head, _, split = key.partition("/")
        if split:
            fields.setdefault(head, {})[split] = array  # type: ignore[index]
        else:
            fields[head] = array
    try:
        return cls(**fields)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ConfigError(f"{path}: {kind} party data with unexpected or missing arrays ({exc})") from None
