"""Checkpoint and resume: a restored defense continues exactly as the original would have."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from securevfl.defenses import (
    GaussianNoiseConfig,
    LaplaceNoiseConfig,
    MessageContext,
    NormClippingConfig,
    SparsificationConfig,
    build_defense,
)
from securevfl.defenses.base import DefenseConfigBase

CONFIGS: list[DefenseConfigBase] = [
    GaussianNoiseConfig(variance=0.1),
    LaplaceNoiseConfig(variance=0.1),
    SparsificationConfig(drop_rate=0.8),
    SparsificationConfig(drop_rate=0.8, selection="random"),
    SparsificationConfig(drop_rate=0.8, selection="random", accumulate=False),
    SparsificationConfig(drop_rate=0.8, momentum_correction=True, momentum=0.7),
    NormClippingConfig(max_norm=1.0),
]
ROWS_PER_STEP = [8, 8, 5, 8, 3, 8]  # short batches exercise the carried residual rows


def _messages(seed: int) -> list[tuple[np.ndarray, MessageContext]]:
    rng = np.random.default_rng(seed)
    out = []
    for step, rows in enumerate(ROWS_PER_STEP):
        for receiver in ("passive_1", "passive_2"):
            ctx = MessageContext(kind="gradient", sender="active", receiver=receiver, step=step, rows=rows)
            out.append((rng.normal(size=(rows, 4)).astype(np.float32), ctx))
    return out


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.kind + "-" + "-".join(f"{v}" for v in c.model_dump().values()))
def test_round_trip_reproduces_the_next_outputs(config: DefenseConfigBase) -> None:
    messages = _messages(1)
    half = len(messages) // 2
    original = build_defense(config, np.random.default_rng(2))
    for values, ctx in messages[:half]:
        original.apply(values, ctx)
    saved = pickle.loads(pickle.dumps(original.state_dict()))  # what torch.save / torch.load does
    expected = [original.apply(values, ctx) for values, ctx in messages[half:]]

    resumed = build_defense(config, np.random.default_rng(999))  # a different seed: the state must win
    resumed.load_state_dict(saved)
    for (values, ctx), want in zip(messages[half:], expected, strict=True):
        np.testing.assert_array_equal(resumed.apply(values, ctx), want)
    assert _same_state(resumed.state_dict(), original.state_dict())


def test_state_dict_is_a_snapshot() -> None:
    defense = build_defense(SparsificationConfig(drop_rate=0.5, momentum_correction=True), np.random.default_rng(0))
    values, ctx = _messages(3)[0]
    defense.apply(values, ctx)
    state = defense.state_dict()
    state["streams"][0]["residual"][:] = 123.0
    state["streams"][0]["velocity"][:] = 123.0
    assert not np.any(defense.residual("active", "passive_1") == 123.0), "a saved state must not alias live buffers"
    assert not np.any(defense.velocity("active", "passive_1") == 123.0)
    state = defense.state_dict()
    frozen = pickle.dumps(state)
    defense.apply(values, ctx)
    assert pickle.dumps(state) == frozen, "later steps must not change a saved state"


def test_mismatched_states_are_refused() -> None:
    noise_state = build_defense(GaussianNoiseConfig(variance=0.1), np.random.default_rng(0)).state_dict()
    with pytest.raises(ValueError, match="gaussian_noise"):
        build_defense(LaplaceNoiseConfig(variance=0.1), np.random.default_rng(0)).load_state_dict(noise_state)
    with pytest.raises(ValueError, match="generator"):
        build_defense(GaussianNoiseConfig(variance=0.1), np.random.Generator(np.random.MT19937(0))).load_state_dict(noise_state)
    plain = build_defense(SparsificationConfig(drop_rate=0.5), np.random.default_rng(0))
    values, ctx = _messages(4)[0]
    plain.apply(values, ctx)
    with pytest.raises(ValueError, match="momentum_correction"):
        build_defense(SparsificationConfig(drop_rate=0.5, momentum_correction=True), np.random.default_rng(0)).load_state_dict(
            plain.state_dict()
        )


def _same_state(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b, strict=True))
    return a == b
