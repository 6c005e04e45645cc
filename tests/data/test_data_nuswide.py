"""NUS-WIDE in the official layout and as FATE's CSV sample: generated fixtures, real files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from datafixtures import FateFixture, NuswideFixture, write_csv

from securevfl.data import DataConfig, PartitionConfig, load_dataset, partition_columns
from securevfl.data.nuswide import FATE_FILES, load_nuswide, load_nuswide_fate
from securevfl.errors import DataError

# --------------------------------------------------------------------------- official layout


def test_official_layout_keeps_single_label_rows(nuswide_dir: NuswideFixture) -> None:
    ds = load_nuswide(nuswide_dir.directory, nuswide_dir.labels)
    assert ds.n_features == 1634 and ds.class_names == tuple(nuswide_dir.labels)
    assert ds.feature_groups["image"] == tuple(range(634))
    assert ds.feature_groups["text"] == tuple(range(634, 1634))
    for tag, x, y in (("Train", ds.x_train, ds.y_train), ("Test", ds.x_test, ds.y_test)):
        ind = nuswide_dir.indicators[tag]
        keep = ind.sum(axis=1) == 1
        assert 0 < keep.sum() < len(ind), "the fixture has rows to drop"
        np.testing.assert_array_equal(y, ind[keep].argmax(axis=1))
        np.testing.assert_allclose(x, nuswide_dir.features[tag][keep], rtol=1e-6)
        assert x.dtype == np.float32 and y.dtype == np.int64


def test_label_order_defines_the_class_index(nuswide_dir: NuswideFixture) -> None:
    two = ["water", "buildings"]
    ds = load_nuswide(nuswide_dir.directory, two)
    ind = nuswide_dir.indicators["Train"][:, [3, 0]]
    np.testing.assert_array_equal(ds.y_train, ind[ind.sum(axis=1) == 1].argmax(axis=1))
    assert ds.num_classes == 2


def test_official_layout_through_config_and_groups(nuswide_dir: NuswideFixture) -> None:
    ds = load_dataset(DataConfig(name="nuswide", dir=nuswide_dir.directory, train_limit=10))
    assert ds.n_train == 10
    image, text = partition_columns(ds, PartitionConfig(passive=2))  # auto -> groups
    assert (len(image), len(text)) == (634, 1000)


def test_missing_files_are_listed(nuswide_dir: NuswideFixture) -> None:
    root = nuswide_dir.directory
    (root / "NUS_WID_Tags" / "Test_Tags1k.dat").unlink()
    with pytest.raises(DataError, match=r"missing from .*: NUS_WID_Tags/Test_Tags1k.dat"):
        load_nuswide(root, nuswide_dir.labels)
    with pytest.raises(DataError, match=r"Labels_sky_Train.txt"):
        load_nuswide(root, ["sky", "grass"])


def test_row_counts_must_agree(nuswide_dir: NuswideFixture) -> None:
    path = nuswide_dir.directory / "Low_Level_Features" / "Train_Normalized_EDH.dat"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(DataError, match=r"row counts disagree .*29 rows in "
                                        r"Low_Level_Features/Train_Normalized_EDH.dat; 30 rows in"):
        load_nuswide(nuswide_dir.directory, nuswide_dir.labels)


def test_wrong_width_is_refused(nuswide_dir: NuswideFixture) -> None:
    path = nuswide_dir.directory / "Low_Level_Features" / "Test_Normalized_CH.dat"
    np.savetxt(path, np.zeros((20, 63)))
    with pytest.raises(DataError, match=r"Test_Normalized_CH.dat: 63 values per row, expected 64"):
        load_nuswide(nuswide_dir.directory, nuswide_dir.labels)


def test_unparsable_file_is_refused(nuswide_dir: NuswideFixture) -> None:
    path = nuswide_dir.directory / "Groundtruth" / "TrainTestLabels" / "Labels_grass_Test.txt"
    path.write_text("0\n1\nyes\n" * 5)
    with pytest.raises(DataError, match="Labels_grass_Test.txt: cannot parse"):
        load_nuswide(nuswide_dir.directory, nuswide_dir.labels)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="NUS-WIDE directory .* does not exist"):
        load_nuswide(tmp_path / "absent", ["a", "b"])


# --------------------------------------------------------------------------- FATE CSV


def test_fate_joins_guest_and_host_by_id(fate_dir: FateFixture,
                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="securevfl.data.nuswide"):
        ds = load_nuswide_fate(fate_dir.directory, test_fraction=0.2, split_seed=0)
    assert "30 of 40 guest rows matched" in caplog.text
    assert (ds.n_train, ds.n_test, ds.n_features) == (24, 6, 1634)
    assert ds.feature_groups == {"guest": tuple(range(634)), "host": tuple(range(634, 1634))}
    assert ds.num_classes == 2
    # Every output row must be one guest row next to the host row with the same id.
    host_by_id = dict(zip(fate_dir.host_ids.tolist(), fate_dir.host_x))
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        for row, label in zip(x, y):
            gid = int(np.argmin(np.abs(fate_dir.guest_x - row[:634]).sum(axis=1)))
            np.testing.assert_allclose(row[:634], fate_dir.guest_x[gid], atol=1e-5)
            assert label == fate_dir.y[gid]
            np.testing.assert_array_equal(row[634:], host_by_id[gid])


def test_fate_split_is_stratified_disjoint_and_seeded(fate_dir: FateFixture) -> None:
    a = load_nuswide_fate(fate_dir.directory, 0.2, split_seed=1)
    b = load_nuswide_fate(fate_dir.directory, 0.2, split_seed=1)
    c = load_nuswide_fate(fate_dir.directory, 0.2, split_seed=2)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    assert sorted(np.bincount(a.y_test).tolist()) == [3, 3]
    train_rows = {r.tobytes() for r in a.x_train}
    assert not any(r.tobytes() in train_rows for r in a.x_test)


def test_fate_no_matching_ids(fate_dir: FateFixture) -> None:
    host = fate_dir.directory / FATE_FILES["host"]
    write_csv(host, fate_dir.host_ids + 1000, fate_dir.host_x, ["id", *map(str, range(1000))], "%d")
    with pytest.raises(DataError, match="no id of nus_wide_train_guest_600.csv occurs in"):
        load_nuswide_fate(fate_dir.directory)


def test_fate_header_checks(fate_dir: FateFixture) -> None:
    guest = fate_dir.directory / FATE_FILES["guest"]
    lines = guest.read_text().splitlines(keepends=True)
    guest.write_text(lines[0].replace(",y", ",label") + "".join(lines[1:]))
    with pytest.raises(DataError, match="last column must be the label 'y'"):
        load_nuswide_fate(fate_dir.directory)
    guest.write_text("key" + lines[0][2:] + "".join(lines[1:]))
    with pytest.raises(DataError, match="header starting with 'id'"):
        load_nuswide_fate(fate_dir.directory)


def test_fate_duplicate_ids(fate_dir: FateFixture) -> None:
    host = fate_dir.directory / FATE_FILES["host"]
    ids = fate_dir.host_ids.copy()
    ids[1] = ids[0]
    write_csv(host, ids, fate_dir.host_x, ["id", *map(str, range(1000))], "%d")
    with pytest.raises(DataError, match="nus_wide_train_host.csv: ids are not unique"):
        load_nuswide_fate(fate_dir.directory)


def test_fate_missing_file(fate_dir: FateFixture) -> None:
    (fate_dir.directory / FATE_FILES["host"]).unlink()
    with pytest.raises(DataError, match="missing from .*: nus_wide_train_host.csv"):
        load_nuswide_fate(fate_dir.directory)


@pytest.mark.shared_data
def test_real_fate_sample(shared_data: Path) -> None:
    cfg = DataConfig(name="nuswide_fate", dir=shared_data / "nus-wide-fate-subset")
    ds = load_dataset(cfg)
    assert ds.n_train + ds.n_test == 599  # every guest row has a host row
    assert ds.n_features == 634 + 1000 and ds.num_classes == 2
    assert ds.n_test == 120
    raw = load_nuswide_fate(shared_data / "nus-wide-fate-subset")
    assert set(np.unique(raw.x_train[:, 634:])) <= {0.0, 1.0}, "host columns are binary tags"
