"""Defense configurations: every kind parses, round-trips, and rejects what it should."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from securevfl.defenses import (
    DEFENSES,
    GaussianNoise,
    GaussianNoiseConfig,
    LaplaceNoise,
    LaplaceNoiseConfig,
    MessageContext,
    NormClipping,
    NormClippingConfig,
    Placement,
    PlacementError,
    Sparsification,
    SparsificationConfig,
    build_defense,
    defense_class,
    parse_defense_config,
)
from securevfl.errors import ConfigError

VALID: list[tuple[dict[str, Any], type, type]] = [
    ({"kind": "gaussian_noise", "variance": 0.05}, GaussianNoiseConfig, GaussianNoise),
    ({"kind": "laplace_noise", "variance": 0.05, "on": "activation"}, LaplaceNoiseConfig, LaplaceNoise),
    ({"kind": "sparsification", "drop_rate": 0.9}, SparsificationConfig, Sparsification),
    (
        {"kind": "sparsification", "drop_rate": 0.5, "selection": "random", "momentum_correction": True, "momentum": 0.5},
        SparsificationConfig,
        Sparsification,
    ),
    ({"kind": "norm_clipping", "max_norm": 1.0, "placement": "post_decryption"}, NormClippingConfig, NormClipping),
]


@pytest.mark.parametrize(("raw", "config_type", "defense_type"), VALID)
def test_each_kind_parses_builds_and_round_trips(raw: dict[str, Any], config_type: type, defense_type: type) -> None:
    config = parse_defense_config(raw)
    assert type(config) is config_type
    assert parse_defense_config(config.model_dump(mode="json")) == config
    defense = build_defense(config, np.random.default_rng(0))
    assert type(defense) is defense_type
    assert defense.name == config.kind
    assert defense.placement is config.placement
    assert defense.on == config.on


def test_defaults_are_gradients_before_encryption() -> None:
    config = parse_defense_config({"kind": "gaussian_noise", "variance": 1.0})
    assert config.on == "gradient"
    assert config.placement is Placement.PRE_ENCRYPTION
    sparse = SparsificationConfig(drop_rate=0.5)
    assert (sparse.selection, sparse.accumulate, sparse.momentum_correction, sparse.momentum) == ("top_k", True, False, 0.9)


@pytest.mark.parametrize(
    "raw",
    [
        {"kind": "gaussian_noise", "variance": 1.0, "sigma": 1.0},  # unknown key
        {"kind": "laplace_noise", "variance": 1.0, "scale": 0.7},
        {"kind": "sparsification", "drop_rate": 0.5, "droprate": 0.5},
        {"kind": "norm_clipping", "max_norm": 1.0, "clip": 2.0},
        {"kind": "dropout", "rate": 0.5},  # unknown kind
        {"variance": 1.0},  # no kind
        {"kind": "gaussian_noise"},  # missing required field
        {"kind": "gaussian_noise", "variance": 0.0},
        {"kind": "gaussian_noise", "variance": -1.0},
        {"kind": "gaussian_noise", "variance": float("nan")},
        {"kind": "laplace_noise", "variance": float("inf")},
        {"kind": "sparsification", "drop_rate": 1.0},
        {"kind": "sparsification", "drop_rate": -0.1},
        {"kind": "sparsification", "drop_rate": 0.5, "selection": "bottom_k"},
        {"kind": "sparsification", "drop_rate": 0.5, "momentum_correction": True, "momentum": 1.0},
        {"kind": "sparsification", "drop_rate": 0.5, "momentum_correction": True, "accumulate": False},
        {"kind": "norm_clipping", "max_norm": 0.0},
        {"kind": "norm_clipping", "max_norm": 1.0, "placement": "in_transit"},
        {"kind": "norm_clipping", "max_norm": 1.0, "on": "labels"},
    ],
)
def test_invalid_configs_are_rejected(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_defense_config(raw)


def test_a_model_refuses_another_kind() -> None:
    with pytest.raises(ValidationError):
        GaussianNoiseConfig.model_validate({"kind": "laplace_noise", "variance": 1.0})


def test_configs_are_immutable() -> None:
    config = GaussianNoiseConfig(variance=1.0)
    with pytest.raises(ValidationError):
        config.variance = 2.0  # type: ignore[misc]


def test_registry_matches_config_kinds() -> None:
    assert set(DEFENSES) == {"gaussian_noise", "laplace_noise", "sparsification", "norm_clipping", "label_dp"}
    with pytest.raises(KeyError, match="known: gaussian_noise"):
        defense_class("dropout")


def test_a_defense_refuses_a_foreign_config_or_rng() -> None:
    with pytest.raises(TypeError, match="GaussianNoiseConfig"):
        GaussianNoise(LaplaceNoiseConfig(variance=1.0), np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Generator"):
        GaussianNoise(GaussianNoiseConfig(variance=1.0), np.random.RandomState(0))  # type: ignore[arg-type]


def test_build_defense_checks_the_placement_when_given_the_depth() -> None:
    config = NormClippingConfig(max_norm=1.0, placement=Placement.UNDER_ENCRYPTION)
    build_defense(config, np.random.default_rng(0))  # no depth given: the caller checks later
    with pytest.raises(PlacementError, match="comparisons"):
        build_defense(config, np.random.default_rng(0), preset_depth=2)


def test_placement_error_is_a_config_error() -> None:
    assert issubclass(PlacementError, ConfigError)
    assert issubclass(PlacementError, ValueError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "weights", "sender": "a", "receiver": "p", "step": 0, "rows": 1},
        {"kind": "gradient", "sender": "a", "receiver": "p", "step": 0, "rows": -1},
        {"kind": "gradient", "sender": "a", "receiver": "p", "step": -1, "rows": 1},
        {"kind": "gradient", "sender": "a", "receiver": "p", "step": 0, "rows": 1, "sample_axis": 2},
    ],
)
def test_message_context_is_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MessageContext(**kwargs)


def test_messages_must_fit_their_context() -> None:
    defense = build_defense(GaussianNoiseConfig(variance=1.0), np.random.default_rng(0))
    ctx = MessageContext(kind="gradient", sender="a", receiver="p", step=0, rows=4)
    with pytest.raises(ValueError, match="fewer than the 4 real rows"):
        defense.apply(np.zeros((3, 2)), ctx)
    with pytest.raises(ValueError, match="2-D"):
        defense.apply(np.zeros(4), ctx)
    with pytest.raises(ValueError, match="NaN"):
        defense.apply(np.full((4, 2), np.nan), ctx)
    with pytest.raises(TypeError, match="floating-point"):
        defense.apply(np.zeros((4, 2), dtype=np.int64), ctx)
    assert defense.applies_to(ctx)
    assert not defense.applies_to(MessageContext(kind="activation", sender="p", receiver="a", step=0, rows=4))
