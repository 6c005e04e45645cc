"""Small builders shared by the engine tests (random data sets and configs)."""

from __future__ import annotations

import numpy as np

from securevfl.config import RunConfig, validate_config
from securevfl.data import VFLDataset


def random_dataset(n_train: int, n_test: int, n_features: int, num_classes: int, seed: int) -> VFLDataset:
    rng = np.random.default_rng(seed)
    return VFLDataset(
        name="random",
        x_train=rng.normal(size=(n_train, n_features)).astype(np.float32),
        y_train=rng.integers(0, num_classes, n_train).astype(np.int64),
        x_test=rng.normal(size=(n_test, n_features)).astype(np.float32),
        y_test=rng.integers(0, num_classes, n_test).astype(np.int64),
        num_classes=num_classes,
        class_names=tuple(str(c) for c in range(num_classes)),
        feature_groups={"features": tuple(range(n_features))},
    )


def config(**sections: dict) -> RunConfig:
    return validate_config({key: value for key, value in sections.items()})


def assert_passives_updated_alike(encrypted, reference, baseline) -> None:  # type: ignore[no-untyped-def]
    """Every passive parameter of ``encrypted`` equals ``reference``'s (CKKS tolerance), and the
    reference moved away from ``baseline`` (the run without the noise): otherwise the comparison
    would prove nothing."""
    moved = False
    for party_e, party_r, party_b in zip(encrypted.passives, reference.passives, baseline.passives, strict=True):
        for e, r, b in zip(party_e.model.parameters(), party_r.model.parameters(), party_b.model.parameters(), strict=True):
            np.testing.assert_allclose(e.detach().numpy(), r.detach().numpy(), atol=1e-4)
            moved |= not np.allclose(r.detach().numpy(), b.detach().numpy(), atol=1e-3)
    assert moved, "the noise had no effect; the comparison would prove nothing"


def signed_session(parties: tuple[str, ...] = ("passive_1", "passive_2", "active", "coordinator")):  # type: ignore[no-untyped-def]
    """Codecs, fresh Ed25519 identities, their roster and a session id: what framed-channel tests share."""
    from securevfl.protocols import CodecRegistry, Roster, fresh_identities, new_session_id

    identities = fresh_identities(list(parties))
    return CodecRegistry(), identities, Roster.of(identities.values()), new_session_id()


#: A tiny digits study (one gamma grid, 2 cells x 2 seeds) that the study tests share.
TINY_STUDY = """
[study]
name = "tiny"
seeds = [0, 1]
schemes = ["plain"]
[study.set]
"data.name" = "digits"
"data.train_limit" = 300
"data.test_limit" = 100
"train.epochs" = 2
"train.lr" = 0.05
"attack.kind" = "gradient_replacement"
"attack.poison_train" = 10
"attack.poison_test" = 10
[[grid]]
name = "gamma"
x = "attack.gamma"
[grid.axes]
"attack.gamma" = [1, 3]
"""
