"""Placement checks: every impossible placement is refused with its reason, every possible one passes."""

from __future__ import annotations

import numpy as np
import pytest

from securevfl.crypto import ROWS, EncryptedTensor, SecretKeyring, get_preset
from securevfl.defenses import (
    Defense,
    GaussianNoiseConfig,
    LaplaceNoiseConfig,
    MessageContext,
    NormClipping,
    NormClippingConfig,
    Placement,
    PlacementError,
    SparsificationConfig,
    build_defense,
)
from securevfl.defenses.base import DefenseConfigBase

PRE, UNDER, POST = Placement.PRE_ENCRYPTION, Placement.UNDER_ENCRYPTION, Placement.POST_DECRYPTION

CONFIGS: dict[str, DefenseConfigBase] = {
    "gaussian": GaussianNoiseConfig(variance=0.1),
    "laplace": LaplaceNoiseConfig(variance=0.1),
    "top_k": SparsificationConfig(drop_rate=0.9),
    "top_k_momentum": SparsificationConfig(drop_rate=0.9, momentum_correction=True),
    "random": SparsificationConfig(drop_rate=0.9, selection="random"),
    "random_no_residual": SparsificationConfig(drop_rate=0.9, selection="random", accumulate=False),
    "clipping": NormClippingConfig(max_norm=1.0),
}

# (config, placement, available depth) -> None when possible, else fragments the reason must contain
CASES: list[tuple[str, Placement, int, tuple[str, ...] | None]] = [
    *[(name, placement, depth, None) for name in CONFIGS for placement in (PRE, POST) for depth in (0, 2)],
    ("gaussian", UNDER, 0, None),  # adding a plaintext costs no level
    ("laplace", UNDER, 0, None),
    ("random_no_residual", UNDER, 1, None),
    ("random_no_residual", UNDER, 0, ("needs one multiplicative level", "depth 0")),
    ("top_k", UNDER, 2, ("needs the plaintext values",)),
    ("top_k", UNDER, 0, ("needs the plaintext values", "depth 0")),
    ("top_k_momentum", UNDER, 2, ("needs the plaintext values",)),
    ("random", UNDER, 2, ("losing one multiplicative level per step", "accumulate = false")),
    ("random", UNDER, 0, ("losing one multiplicative level per step", "depth 0")),
    ("clipping", UNDER, 2, ("norm clipping needs comparisons, which CKKS cannot evaluate",)),
    ("clipping", UNDER, 0, ("norm clipping needs comparisons, which CKKS cannot evaluate",)),
]


def _defense(name: str) -> Defense:
    return build_defense(CONFIGS[name], np.random.default_rng(0))


@pytest.mark.parametrize(("name", "placement", "depth", "reason"), CASES)
def test_check_placement(name: str, placement: Placement, depth: int, reason: tuple[str, ...] | None) -> None:
    defense = _defense(name)
    if reason is None:
        defense.check_placement(placement, preset_depth=depth)
        defense.check_placement(placement.value, preset_depth=depth)  # the config's string form
        return
    with pytest.raises(PlacementError) as info:
        defense.check_placement(placement, preset_depth=depth)
    message = str(info.value)
    assert f"{defense.name!r} cannot run {placement.value}" in message
    for fragment in reason:
        assert fragment in message


def test_every_impossible_case_is_covered() -> None:
    """The table above exercises every (config, placement) pair at both depths."""
    covered = {(name, placement) for name, placement, _, _ in CASES}
    assert covered == {(name, placement) for name in CONFIGS for placement in Placement}


def test_declared_placements() -> None:
    assert NormClipping.placements == frozenset({PRE, POST})
    for name in ("gaussian", "laplace", "top_k"):
        assert _defense(name).placements == frozenset(Placement)


def test_preset_depth_must_be_non_negative() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        _defense("gaussian").check_placement(UNDER, preset_depth=-1)


@pytest.fixture(scope="module")
def keyring() -> SecretKeyring:
    return SecretKeyring.generate(get_preset("compute"))


def test_clipping_refuses_ciphertexts(keyring: SecretKeyring) -> None:
    tensor = EncryptedTensor.encrypt(keyring, np.ones((4, 4)), ROWS)
    ctx = MessageContext(kind="gradient", sender="active", receiver="passive_1", step=0, rows=4)
    with pytest.raises(PlacementError, match="norm clipping needs comparisons, which CKKS cannot evaluate"):
        _defense("clipping").apply_encrypted(tensor, ctx)
