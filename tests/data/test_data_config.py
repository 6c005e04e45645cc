"""Configuration validation and the VFLDataset invariants that loaders rely on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from securevfl.data import DataConfig, PartitionConfig, SyntheticConfig, VFLDataset, load_dataset
from securevfl.errors import DataError


def test_defaults() -> None:
    cfg = DataConfig()
    assert cfg.name == "digits" and cfg.dir is None and cfg.test_fraction == 0.2
    assert cfg.nuswide_labels == ["buildings", "grass", "animal", "water", "person"]
    assert cfg.synthetic == SyntheticConfig(n_samples=2000, n_features=20, n_classes=2,
                                            n_informative=10, seed=0)
    part = PartitionConfig()
    assert (part.passive, part.split, part.active_block, part.n_blocks) == (2, "auto", False, 2)


@pytest.mark.parametrize("model", [DataConfig, PartitionConfig, SyntheticConfig])
def test_unknown_keys_are_rejected(model: type) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model(unknown_option=1)


def test_nested_unknown_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="synthetic.n_sample"):
        DataConfig.model_validate({"name": "synthetic", "synthetic": {"n_sample": 10}})


@pytest.mark.parametrize("name", ["mnist", "nuswide", "nuswide_fate"])
def test_file_datasets_need_a_dir(name: str) -> None:
    with pytest.raises(ValidationError, match=f"data set '{name}' is read from files"):
        DataConfig(name=name)
    assert DataConfig(name=name, dir="~/data").dir == Path.home() / "data"


@pytest.mark.parametrize("kwargs", [
    {"name": "cifar"}, {"train_limit": 0}, {"test_limit": -3}, {"test_fraction": 0.0},
    {"test_fraction": 1.0}, {"nuswide_labels": ["water"]}, {"nuswide_labels": ["a", "a"]},
])
def test_invalid_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        DataConfig(**kwargs)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_features": 5, "n_informative": 6},
     r"n_informative \(6\) cannot exceed .*n_features \(5\)"),
    ({"n_classes": 5, "n_informative": 2}, r"n_classes \(5\) needs n_informative >= 4"),
    ({"n_samples": 3}, r"n_samples \(3\) must be at least twice n_classes"),
])
def test_impossible_synthetic_settings(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SyntheticConfig(**kwargs)


def test_feasible_synthetic_edge_case_loads() -> None:
    # 4 classes x 2 clusters = 8 = 2**3 hypercube vertices: the tightest legal setting.
    cfg = SyntheticConfig(n_samples=80, n_features=3, n_classes=4, n_informative=3)
    assert load_dataset(DataConfig(name="synthetic", synthetic=cfg)).num_classes == 4


def test_too_small_split_is_a_data_error() -> None:
    cfg = DataConfig(name="synthetic", test_fraction=0.01,
                     synthetic=SyntheticConfig(n_samples=40, n_classes=3, n_informative=3))
    with pytest.raises(DataError, match="cannot make a stratified split with test_fraction=0.01"):
        load_dataset(cfg)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"split": "groups"}, "needs parties.groups"),
    ({"split": "columns", "columns": [[0]]}, r"has 1 lists but there are 2 blocks \(2 passive\)"),
    ({"split": "groups", "groups": [["a"], ["b"]], "active_block": True},
     r"3 blocks \(2 passive \+ 1 active\)"),
    ({"split": "even", "columns": [[0], [1]]}, 'only used with split = "columns"'),
    ({"passive": 0}, "greater than or equal to 1"),
])
def test_partition_config_checks(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PartitionConfig(**kwargs)


# --------------------------------------------------------------------------- VFLDataset


def _dataset(**overrides: object) -> VFLDataset:
    fields: dict[str, object] = dict(
        name="toy", x_train=np.zeros((4, 6), np.float32), y_train=np.array([0, 1, 0, 1]),
        x_test=np.zeros((2, 6), np.float32), y_test=np.array([1, 0]), num_classes=2,
        class_names=("a", "b"), feature_groups={"all": tuple(range(6))})
    fields.update(overrides)
    return VFLDataset(**fields)  # type: ignore[arg-type]


def test_dataset_properties() -> None:
    ds = _dataset(image_shape=(2, 3))
    assert (ds.n_features, ds.n_train, ds.n_test) == (6, 4, 2)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"x_train": np.zeros((4, 6))}, "x_train must be a 2-D float32 array"),
    ({"y_test": np.array([1, 0], np.int32)}, "y_test must be a 1-D int64 array"),
    ({"y_train": np.array([0, 1, 0])}, "x_train has 4 rows but y_train has 3 labels"),
    ({"y_train": np.array([0, 1, 2, 1])}, r"labels outside 0\.\.1"),
    ({"x_test": np.zeros((2, 5), np.float32)}, "test has 5"),
    ({"class_names": ("a",)}, "one name per class"),
    ({"feature_groups": {}}, "at least one feature group"),
    ({"feature_groups": {"g": (0, 6)}}, r"group 'g' has columns outside 0\.\.5"),
    ({"image_shape": (2, 2)}, r"image_shape \(2, 2\) does not cover 6"),
])
def test_dataset_rejects_inconsistencies(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        _dataset(**overrides)
