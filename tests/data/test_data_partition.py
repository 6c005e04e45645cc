"""Vertical partitioning: every column is owned by exactly one block; bad layouts are refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securevfl.data import PartitionConfig, VFLDataset, partition_columns
from securevfl.errors import DataError


def make_dataset(n_features: int, image_shape: tuple[int, int] | None = None,
                 groups: dict[str, tuple[int, ...]] | None = None) -> VFLDataset:
    """Two train and two test rows are enough: partitioning looks only at the columns."""
    x = np.zeros((2, n_features), dtype=np.float32)
    y = np.array([0, 1], dtype=np.int64)
    return VFLDataset(
        name="toy", x_train=x, y_train=y, x_test=x.copy(), y_test=y.copy(), num_classes=2,
        class_names=("a", "b"), feature_groups=groups or {"all": tuple(range(n_features))},
        image_shape=image_shape)


def assert_exact_cover(blocks: list[np.ndarray], n_features: int, n_blocks: int) -> None:
    assert len(blocks) == n_blocks
    for block in blocks:
        assert block.dtype == np.int64
        assert block.size > 0
        assert np.all(np.diff(block) > 0), "blocks are sorted without repeats"
    merged = np.sort(np.concatenate(blocks))
    np.testing.assert_array_equal(merged, np.arange(n_features))


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(n_features=st.integers(1, 60), passive=st.integers(1, 8), active=st.booleans())
def test_even_split_is_balanced_and_contiguous(n_features: int, passive: int, active: bool) -> None:
    cfg = PartitionConfig(passive=passive, split="even", active_block=active)
    dataset = make_dataset(n_features)
    if cfg.n_blocks > n_features:
        with pytest.raises(DataError, match=f"cannot split {n_features} feature columns among "
                                            f"{cfg.n_blocks} blocks"):
            partition_columns(dataset, cfg)
        return
    blocks = partition_columns(dataset, cfg)
    assert_exact_cover(blocks, n_features, cfg.n_blocks)
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1
    assert all(b[-1] - b[0] + 1 == len(b) for b in blocks), "each block is a contiguous run"


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 30), cols=st.integers(1, 8), passive=st.integers(1, 6),
       active=st.booleans())
def test_row_split_gives_whole_contiguous_bands(rows: int, cols: int, passive: int,
                                                active: bool) -> None:
    cfg = PartitionConfig(passive=passive, split="rows", active_block=active)
    dataset = make_dataset(rows * cols, image_shape=(rows, cols))
    if cfg.n_blocks > rows:
        with pytest.raises(DataError, match=f"cannot split {rows} image rows"):
            partition_columns(dataset, cfg)
        return
    blocks = partition_columns(dataset, cfg)
    assert_exact_cover(blocks, rows * cols, cfg.n_blocks)
    band_heights = []
    for block in blocks:
        assert len(block) % cols == 0 and block[0] % cols == 0, "only whole image rows"
        band_heights.append(len(block) // cols)
    assert max(band_heights) - min(band_heights) <= 1


@st.composite
def explicit_layouts(draw: st.DrawFn) -> tuple[int, int, bool, list[list[int]]]:
    """A random exact cover: a permutation of the columns cut into non-empty pieces."""
    passive = draw(st.integers(1, 5))
    active = draw(st.booleans())
    n_blocks = passive + int(active)
    n_features = draw(st.integers(n_blocks, 40))
    order = draw(st.permutations(range(n_features)))
    cuts = sorted(draw(st.lists(st.integers(1, n_features - 1), min_size=n_blocks - 1,
                                max_size=n_blocks - 1, unique=True))) if n_blocks > 1 else []
    bounds = [0, *cuts, n_features]
    return n_features, passive, active, [list(order[a:b]) for a, b in zip(bounds, bounds[1:])]


@settings(max_examples=60, deadline=None)
@given(explicit_layouts())
def test_explicit_columns_are_kept_as_given(layout: tuple[int, int, bool, list[list[int]]]) -> None:
    n_features, passive, active, columns = layout
    cfg = PartitionConfig(passive=passive, split="columns", columns=columns, active_block=active)
    blocks = partition_columns(make_dataset(n_features), cfg)
    assert_exact_cover(blocks, n_features, cfg.n_blocks)
    for got, wanted in zip(blocks, columns):
        np.testing.assert_array_equal(got, sorted(wanted))


@settings(max_examples=40, deadline=None)
@given(explicit_layouts())
def test_groups_become_the_union_of_their_columns(
        layout: tuple[int, int, bool, list[list[int]]]) -> None:
    n_features, passive, active, columns = layout
    # Each block's columns are split into two named groups, which the config then reunites.
    groups: dict[str, tuple[int, ...]] = {}
    names: list[list[str]] = []
    for i, block in enumerate(columns):
        half = max(1, len(block) // 2)
        parts = [p for p in (block[:half], block[half:]) if p]
        for j, part in enumerate(parts):
            groups[f"g{i}_{j}"] = tuple(part)
        names.append([f"g{i}_{j}" for j in range(len(parts))])
    cfg = PartitionConfig(passive=passive, split="groups", groups=names, active_block=active)
    blocks = partition_columns(make_dataset(n_features, groups=groups), cfg)
    for got, wanted in zip(blocks, columns):
        np.testing.assert_array_equal(got, sorted(wanted))


# --------------------------------------------------------------------------- auto mode


def test_auto_uses_row_bands_for_images() -> None:
    blocks = partition_columns(make_dataset(784, image_shape=(28, 28)), PartitionConfig())
    np.testing.assert_array_equal(blocks[0], np.arange(392))  # rows 0-13
    np.testing.assert_array_equal(blocks[1], np.arange(392, 784))  # rows 14-27


def test_auto_uses_groups_when_there_are_enough() -> None:
    groups = {"mean": tuple(range(0, 10)), "error": tuple(range(10, 20)),
              "worst": tuple(range(20, 30))}
    dataset = make_dataset(30, groups=groups)
    two = partition_columns(dataset, PartitionConfig(passive=2))
    np.testing.assert_array_equal(two[0], np.arange(20))  # consecutive groups stay together
    np.testing.assert_array_equal(two[1], np.arange(20, 30))
    three = partition_columns(dataset, PartitionConfig(passive=2, active_block=True))
    assert [b.tolist() for b in three] == [list(g) for g in groups.values()]


def test_auto_falls_back_to_even_with_too_few_or_overlapping_groups() -> None:
    few = partition_columns(make_dataset(9), PartitionConfig(passive=3))
    assert [len(b) for b in few] == [3, 3, 3]
    overlapping = make_dataset(6, groups={"a": (0, 1, 2, 3), "b": (3, 4, 5)})
    assert [b.tolist() for b in partition_columns(overlapping, PartitionConfig())] == \
        [[0, 1, 2], [3, 4, 5]]


# --------------------------------------------------------------------------- refusals


def test_more_blocks_than_columns_is_refused() -> None:
    with pytest.raises(DataError, match="cannot split 5 feature columns among 8 blocks"):
        partition_columns(make_dataset(5), PartitionConfig(passive=7, split="even",
                                                           active_block=True))


def test_rows_needs_an_image() -> None:
    with pytest.raises(DataError, match="needs an image data set"):
        partition_columns(make_dataset(10), PartitionConfig(split="rows"))


@pytest.mark.parametrize(("columns", "message"), [
    ([[0, 1, 2], [2, 3, 4, 5]], r"column 2 appears in both block 1 .* and block 2"),
    ([[0, 1, 1], [2, 3, 4, 5]], r"column 1 appears twice in block 1"),
    ([[0, 1, 2], [3, 4, 5, 6]], r"block 2 \(passive party 2\) uses columns outside 0\.\.5: 6"),
    ([[0, 1, 2], [-1, 3, 4, 5]], r"outside 0\.\.5: -1"),
    ([[0, 1], [4, 5]], r"2 feature column\(s\) belong to no block: 2-3"),
    ([[], [0, 1, 2, 3, 4, 5]], r"block 1 \(passive party 1\) has no columns"),
])
def test_bad_explicit_columns_are_refused(columns: list[list[int]], message: str) -> None:
    cfg = PartitionConfig(passive=2, split="columns", columns=columns)
    with pytest.raises(DataError, match=message):
        partition_columns(make_dataset(6), cfg)


def test_many_unused_columns_are_abbreviated() -> None:
    cols = list(range(0, 200, 2))  # leaves 100 isolated odd columns unused
    cfg = PartitionConfig(passive=1, split="columns", columns=[cols])
    message = r"100 feature column\(s\) .*: 1, 3, .*\(100 columns in all\)"
    with pytest.raises(DataError, match=message):
        partition_columns(make_dataset(200), cfg)


def test_active_block_is_named_in_errors() -> None:
    cfg = PartitionConfig(passive=1, split="columns", columns=[[0, 1], [1, 2]], active_block=True)
    with pytest.raises(DataError, match="the active party's block"):
        partition_columns(make_dataset(3), cfg)


def test_unknown_group_lists_the_known_ones() -> None:
    dataset = make_dataset(4, groups={"image": (0, 1), "text": (2, 3)})
    cfg = PartitionConfig(passive=2, split="groups", groups=[["image"], ["tags"]])
    with pytest.raises(DataError, match=r"unknown feature group\(s\) \['tags'\].*"
                                        r"known groups: \['image', 'text'\]"):
        partition_columns(dataset, cfg)


def test_groups_must_not_share_columns_across_blocks() -> None:
    dataset = make_dataset(4, groups={"a": (0, 1, 2), "b": (2, 3)})
    cfg = PartitionConfig(passive=2, split="groups", groups=[["a"], ["b"]])
    with pytest.raises(DataError, match="column 2 appears in both"):
        partition_columns(dataset, cfg)


def test_groups_must_cover_every_column() -> None:
    dataset = make_dataset(5, groups={"a": (0, 1), "b": (2, 3)})
    cfg = PartitionConfig(passive=2, split="groups", groups=[["a"], ["b"]])
    with pytest.raises(DataError, match=r"belong to no block: 4"):
        partition_columns(dataset, cfg)
