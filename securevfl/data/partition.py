"""Vertical partitioning: which feature columns each party holds.

The whole security analysis assumes that every column belongs to exactly one party, so every mode
ends in the same check (no column lost, none duplicated) and any layout that would break it is a
:class:`~securevfl.errors.DataError` with a message that names the offending columns or groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from securevfl.data.config import PartitionConfig
from securevfl.data.dataset import VFLDataset
from securevfl.errors import DataError

__all__ = ["partition_columns", "resolve_split_mode"]

T = TypeVar("T")


def partition_columns(dataset: VFLDataset, cfg: PartitionConfig) -> list[np.ndarray]:
    """Return one sorted int64 array of column indices per block.

    Passive parties' blocks come first, in order; when ``cfg.active_block`` is set the active
    party's block is the last one. See :class:`PartitionConfig` for the modes.
    """
    n_blocks = cfg.n_blocks
    mode = resolve_split_mode(dataset, cfg)
    if mode == "rows":
        blocks = _by_rows(dataset, n_blocks)
    elif mode == "even":
        blocks = _even(dataset.n_features, n_blocks)
    elif mode == "groups":
        if cfg.split == "auto":
            names = _auto_group_blocks(dataset, n_blocks)
        elif cfg.groups is None:
            raise DataError('split = "groups" needs parties.groups: one list of names per block')
        else:
            names = cfg.groups
        blocks = _by_groups(dataset, names, cfg)
    else:
        if cfg.columns is None:
            raise DataError('split = "columns" needs parties.columns: one list per block')
        blocks = _explicit(cfg.columns, dataset.n_features, cfg, "parties.columns")
    _check_exact_cover(blocks, dataset.n_features, cfg)
    return [np.asarray(sorted(block), dtype=np.int64) for block in blocks]


def resolve_split_mode(dataset: VFLDataset, cfg: PartitionConfig) -> str:
    """Turn ``split="auto"`` into a concrete mode for this data set; other modes pass through."""
    if cfg.split != "auto":
        return cfg.split
    if dataset.image_shape is not None:
        return "rows"
    if len(dataset.feature_groups) >= cfg.n_blocks and _groups_partition(dataset):
        return "groups"
    return "even"


def _groups_partition(dataset: VFLDataset) -> bool:
    """Whether the named groups are disjoint and cover every column, so they can form blocks."""
    seen = [c for columns in dataset.feature_groups.values() for c in columns]
    return len(seen) == len(set(seen)) == dataset.n_features


def _auto_group_blocks(dataset: VFLDataset, n_blocks: int) -> list[list[str]]:
    # Consecutive groups stay together (e.g. NUS-WIDE image | text, breast cancer mean+error |
    # worst), mirroring how features of one source naturally sit with one organisation.
    names = list(dataset.feature_groups)
    return [list(chunk) for chunk in _balanced_chunks(names, n_blocks)]


def _by_rows(dataset: VFLDataset, n_blocks: int) -> list[list[int]]:
    if dataset.image_shape is None:
        raise DataError(f'split = "rows" needs an image data set, but {dataset.name!r} has no '
                        f'image_shape; use "even", "groups" or "columns"')
    rows, cols = dataset.image_shape
    if n_blocks > rows:
        raise DataError(f"cannot split {rows} image rows of {dataset.name!r} among {n_blocks} "
                        f"blocks")
    return [[r * cols + c for r in band for c in range(cols)]
            for band in _balanced_chunks(list(range(rows)), n_blocks)]


def _even(n_features: int, n_blocks: int) -> list[list[int]]:
    if n_blocks > n_features:
        raise DataError(f"cannot split {n_features} feature columns among {n_blocks} blocks")
    return _balanced_chunks(list(range(n_features)), n_blocks)


def _by_groups(dataset: VFLDataset, names: Sequence[Sequence[str]],
               cfg: PartitionConfig) -> list[list[int]]:
    known = dataset.feature_groups
    unknown = sorted({name for block in names for name in block if name not in known})
    if unknown:
        raise DataError(f"unknown feature group(s) {unknown} for data set {dataset.name!r}; "
                        f"known groups: {sorted(known)}")
    # Within one block groups are united (overlap there is harmless); across blocks the exact-cover
    # check below reports any column that two blocks would share.
    columns = [sorted({c for name in block for c in known[name]}) for block in names]
    return _explicit(columns, dataset.n_features, cfg, "parties.groups")


def _explicit(blocks: Sequence[Sequence[int]], n_features: int, cfg: PartitionConfig,
              source: str) -> list[list[int]]:
    if len(blocks) != cfg.n_blocks:
        raise DataError(f"{source} has {len(blocks)} lists but there are {cfg.n_blocks} blocks")
    for i, block in enumerate(blocks):
        if not block:
            raise DataError(f"{source}: {_block_label(i, cfg)} has no columns")
        outside = sorted({c for c in block if not 0 <= c < n_features})
        if outside:
            raise DataError(f"{source}: {_block_label(i, cfg)} uses columns outside "
                            f"0..{n_features - 1}: {_format_columns(outside)}")
    return [list(block) for block in blocks]


def _check_exact_cover(blocks: Sequence[Sequence[int]], n_features: int,
                       cfg: PartitionConfig) -> None:
    owner: dict[int, int] = {}
    for i, block in enumerate(blocks):
        for column in block:
            if column in owner:
                where = (f"twice in {_block_label(i, cfg)}" if owner[column] == i else
                         f"in both {_block_label(owner[column], cfg)} and {_block_label(i, cfg)}")
                raise DataError(f"feature column {column} appears {where}; blocks must be disjoint")
            owner[column] = i
    unused = [c for c in range(n_features) if c not in owner]
    if unused:
        raise DataError(f"{len(unused)} feature column(s) belong to no block: "
                        f"{_format_columns(unused)}; every column must be assigned")
    if len(owner) != n_features:  # pragma: no cover - out-of-range columns are rejected earlier
        raise DataError("partition refers to columns that do not exist")


def _balanced_chunks(items: list[T], n_chunks: int) -> list[list[T]]:
    """Split ``items`` into ``n_chunks`` contiguous runs whose lengths differ by at most one.

    Earlier chunks get the extra items, like :func:`numpy.array_split`.
    """
    size, extra = divmod(len(items), n_chunks)
    chunks: list[list[T]] = []
    start = 0
    for i in range(n_chunks):
        stop = start + size + (1 if i < extra else 0)
        chunks.append(items[start:stop])
        start = stop
    return chunks


def _block_label(index: int, cfg: PartitionConfig) -> str:
    if cfg.active_block and index == cfg.n_blocks - 1:
        return "the active party's block"
    return f"block {index + 1} (passive party {index + 1})"


def _format_columns(columns: Sequence[int], max_runs: int = 8) -> str:
    """Compact ``0-9, 12, 20-29`` form, cut after ``max_runs`` runs so messages stay one line."""
    runs: list[tuple[int, int]] = []
    for c in sorted(columns):
        if runs and c == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], c)
        else:
            runs.append((c, c))
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs[:max_runs])
    if len(runs) > max_runs:
        text += f", ... ({len(columns)} columns in all)"
    return text
