"""Defenses wired into training: placements refused per scheme with the reason, noise added
under encryption equals noise added before it, and what a passive receives is the defended
message (sparse, noisy) in every scheme."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from securevfl.crypto import EncryptedTensor, Layout, SecretKeyring, get_preset
from securevfl.protocols import GRADIENT
from securevfl.config import validate_config
from securevfl.defenses import MessageContext, kept_entries
from securevfl.defenses.registry import parse_defense_config
from securevfl.defenses.pipeline import DefensePipeline
from securevfl.errors import ConfigError
from securevfl.config import ProtectionConfig
from securevfl.federation import build_federation
from securevfl.schemes import scheme_for
from tests.helpers import assert_passives_updated_alike, config, random_dataset

PLAIN = {"scheme": "plain"}
RECEIVER = {"scheme": "ckks", "key_holder": "receiver"}
ACTIVE = {"scheme": "ckks", "key_holder": "active", "preset": "compute", "flooding_bits": 0}  # mechanics, without the deliberate flooding noise
COORDINATOR = {"scheme": "ckks", "key_holder": "coordinator", "preset": "compute", "flooding_bits": 0}


@pytest.mark.parametrize(
    ("protection", "defense", "reason"),
    [
        (PLAIN, {"kind": "gaussian_noise", "variance": 1.0, "placement": "post_decryption"}, "the party the defense guards against"),
        (RECEIVER, {"kind": "norm_clipping", "max_norm": 1.0, "placement": "post_decryption"}, "use pre_encryption or under_encryption"),
        (PLAIN, {"kind": "gaussian_noise", "variance": 1.0, "on": "activation", "placement": "pre_encryption"}, "encrypted by the passive party"),
        (PLAIN, {"kind": "gaussian_noise", "variance": 1.0, "placement": "under_encryption"}, "plain scheme has no ciphertexts"),
        (ACTIVE, {"kind": "gaussian_noise", "variance": 1.0, "on": "activation", "placement": "post_decryption"}, "never decrypts an individual"),
        (RECEIVER, {"kind": "sparsification", "drop_rate": 0.9, "placement": "under_encryption"}, "cannot run under_encryption"),
        (COORDINATOR, {"kind": "norm_clipping", "max_norm": 1.0, "placement": "under_encryption"}, "comparisons"),
        (ACTIVE, {"kind": "sparsification", "drop_rate": 0.9, "selection": "random", "accumulate": False, "placement": "under_encryption"}, "level"),
    ],
)
def test_impossible_placements_are_refused_at_load(protection: dict, defense: dict, reason: str) -> None:
    with pytest.raises(ConfigError, match="defense\\[0\\]") as info:
        validate_config({"protection": protection, "defense": [defense]})
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("protection", "defense"),
    [
        (PLAIN, {"kind": "sparsification", "drop_rate": 0.99}),
        (PLAIN, {"kind": "laplace_noise", "variance": 0.1, "on": "activation", "placement": "post_decryption"}),
        (RECEIVER, {"kind": "gaussian_noise", "variance": 0.1, "placement": "under_encryption"}),
        (RECEIVER, {"kind": "gaussian_noise", "variance": 0.1, "on": "activation", "placement": "under_encryption"}),
        (ACTIVE, {"kind": "norm_clipping", "max_norm": 0.5}),
        (COORDINATOR, {"kind": "laplace_noise", "variance": 0.1, "on": "activation", "placement": "under_encryption"}),
    ],
)
def test_possible_placements_load(protection: dict, defense: dict) -> None:
    assert validate_config({"protection": protection, "defense": [defense, defense]}).defense[1].kind == defense["kind"]


def _pair(protection: dict, defense: list[dict], seed: int = 3, batch: int = 8, hidden: list[int] | None = None):  # type: ignore[no-untyped-def]
    dataset = random_dataset(16, 4, 6, 3, seed)
    blocks = [np.arange(0, 3), np.arange(3, 6)]
    common = {"parties": {"passive": 2, "split": "even"}, "model": {"top": "sum", "bottom_hidden": hidden or []}, "train": {"lr": 0.5, "seed": seed, "batch_size": batch}}
    return build_federation(config(**common, protection=protection, defense=defense), dataset, blocks)


def _gradient_sent(federation, ids: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """What the active party sends passive_1 in one step (read off the channel, plain scheme)."""
    for party in federation.passives:
        party.forward(0, ids)
    federation.active.train_step(0, ids)
    return np.asarray(federation.channel.receive("passive_1", GRADIENT, sender="active").payload)


def test_sparsification_reaches_the_passive() -> None:
    ids = np.arange(8)
    sent = _gradient_sent(_pair(PLAIN, [{"kind": "sparsification", "drop_rate": 0.75}]), ids)
    raw = _gradient_sent(_pair(PLAIN, []), ids)
    assert np.count_nonzero(sent) == kept_entries(raw.size, 0.75)
    kept = sent != 0
    np.testing.assert_array_equal(sent[kept], raw[kept])  # first message: no residual yet
    assert np.abs(raw[kept]).min() >= np.abs(raw[~kept]).max()


def test_gradient_noise_reaches_the_passive_with_the_configured_variance() -> None:
    ids = np.arange(16)
    variance = 0.04
    dataset_noise = _pair(PLAIN, [{"kind": "gaussian_noise", "variance": variance}], batch=16)
    noise = _gradient_sent(dataset_noise, ids) - _gradient_sent(_pair(PLAIN, [], batch=16), ids)
    assert noise.shape == (16, 3)
    assert stats.kstest(noise.ravel() / np.sqrt(variance), "norm").pvalue > 0.01


#: without pairwise activation masks: with them every passive receives one gradient ciphertext, so the active party's
#: gradient defenses draw once for all passives (test_with_pairwise_masks_every_passive_gets_the_same_noisy_gradient)
COORDINATOR_PER_PASSIVE = {**COORDINATOR, "activation_masks": "none"}


@pytest.mark.parametrize("protection", [RECEIVER, ACTIVE, COORDINATOR_PER_PASSIVE])
@pytest.mark.parametrize("on", ["gradient", "activation"])
def test_noise_under_encryption_equals_noise_before_it(protection: dict, on: str) -> None:
    """Same defense stream, same draws: the parties end the step with the same parameters."""
    placement_plain = "pre_encryption" if on == "gradient" else ("post_decryption" if protection is RECEIVER else None)
    under = [{"kind": "gaussian_noise", "variance": 0.01, "on": on, "placement": "under_encryption"}]
    hidden = [3] if protection is not RECEIVER else []
    encrypted = _pair(protection, under, hidden=hidden)
    if placement_plain is None:  # blind activations: compare with the plaintext run of the same noise
        reference = _pair(RECEIVER, [{**under[0], "placement": "post_decryption"}], hidden=hidden)
    else:
        reference = _pair(PLAIN, [{**under[0], "placement": placement_plain}], hidden=hidden)
    baseline = _pair(PLAIN, [], hidden=hidden)
    ids = np.arange(8)
    for federation in (encrypted, reference, baseline):
        federation.train_batch(0, ids)
    assert_passives_updated_alike(encrypted, reference, baseline)


def test_with_pairwise_masks_every_passive_gets_the_same_noisy_gradient() -> None:
    """Gradient agreement (protocols/gradient_agreement.py): one ciphertext for every passive, noise drawn once."""
    under = [{"kind": "gaussian_noise", "variance": 0.01, "on": "gradient", "placement": "under_encryption"}]
    federation = _pair(COORDINATOR, under, hidden=[3])
    assert all(party.wire.link.gradient_agreement for party in federation.passives)
    sent: dict[str, bytes] = {}
    original = federation.channel.send

    def spy(message):  # type: ignore[no-untyped-def]
        if message.kind == GRADIENT:
            sent[message.receiver] = bytes(message.payload)
        original(message)

    federation.channel.send = spy
    federation.train_batch(0, np.arange(8))
    assert len(sent) == 2 and len(set(sent.values())) == 1


def test_one_noise_draw_serves_every_packing_of_a_message() -> None:
    keyring = SecretKeyring.generate(get_preset("compute"))
    pipeline = DefensePipeline.build(
        [parse_defense_config({"kind": "laplace_noise", "variance": 0.25, "placement": "under_encryption"})],
        scheme_for(ProtectionConfig(scheme="ckks", key_holder="active")),
        seed=1,
    )
    values = np.zeros((8, 40))
    ctx = MessageContext(kind="gradient", sender="active", receiver="passive_1", step=0, rows=6)
    batch_major = EncryptedTensor.encrypt(keyring, values, Layout.ROWS)
    feature_major = EncryptedTensor.encrypt(keyring, values.T, Layout.ROWS)
    out_bm, out_fm = pipeline.encrypted([(batch_major, ctx), (feature_major, MessageContext(**{**ctx.__dict__, "sample_axis": 1}))])
    noise_bm, noise_fm = out_bm.decrypt(), out_fm.decrypt()
    np.testing.assert_allclose(noise_fm.T, noise_bm, atol=1e-5)
    assert np.all(noise_bm[6:] == pytest.approx(0.0, abs=1e-5))  # padding rows stay zero
    scale = np.sqrt(0.25 / 2)
    assert stats.kstest(noise_bm[:6].ravel(), "laplace", args=(0, scale)).pvalue > 0.01
