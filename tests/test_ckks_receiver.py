"""key_holder = receiver: every cross-party message is a CKKS ciphertext only its receiver opens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from securevfl.protocols import Message, ProtocolError
from securevfl.protocols.accounting import PhaseTimer
from securevfl.protocols.errors import PayloadRangeError
from securevfl.protocols.protection import PlainProtection, ReceiverKeyProtection
from securevfl.config import load_config
from securevfl.errors import ConfigError
from securevfl.federation import build_federation
from securevfl.training import run_training
from tests.helpers import config, random_dataset

DIGITS_CKKS = Path(__file__).resolve().parents[1] / "examples" / "digits_ckks.toml"
QUICK = ["train.epochs=3", "train.progress=false"]


@pytest.fixture(scope="module")
def pair() -> tuple[ReceiverKeyProtection, ReceiverKeyProtection]:
    alice = ReceiverKeyProtection("alice", "transport", PhaseTimer())
    bob = ReceiverKeyProtection("bob", "transport", PhaseTimer())
    alice.learn_peer("bob", bob.announcement())
    bob.learn_peer("alice", alice.announcement())
    return alice, bob


def test_only_the_receiver_can_open_a_sealed_message(pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    values = np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32)
    codec, payload = alice.seal(values, "bob")
    assert codec == "ckks" and isinstance(payload, bytes)
    message = Message("activation", "alice", "bob", 0, payload, codec=codec)
    np.testing.assert_allclose(bob.open(message), values, atol=1e-5)
    with pytest.raises(ProtocolError, match="could not decrypt"):
        alice.open(message)  # encrypted under bob's key, not alice's
    with pytest.raises(ProtocolError, match="no public key of carol"):
        alice.seal(values, "carol")


def test_tampered_or_mislabelled_ciphertexts_are_refused(pair) -> None:  # type: ignore[no-untyped-def]
    alice, bob = pair
    _, payload = alice.seal(np.ones((4, 4), np.float32), "bob")
    tampered = bytearray(payload)
    tampered[len(tampered) // 2] ^= 0x5A
    with pytest.raises(ProtocolError, match="could not decrypt"):
        bob.open(Message("gradient", "alice", "bob", 0, bytes(tampered), codec="ckks"))
    with pytest.raises(ProtocolError, match="expected CKKS ciphertexts"):
        bob.open(Message("gradient", "alice", "bob", 0, np.ones(3, np.float32)))
    with pytest.raises(ProtocolError, match="plain scheme received"):
        PlainProtection().open(Message("gradient", "alice", "bob", 0, payload, codec="ckks"))


def test_out_of_range_and_non_finite_values_are_refused_before_encryption(pair) -> None:  # type: ignore[no-untyped-def]
    alice, _ = pair
    with pytest.raises(PayloadRangeError, match="exceeds the bound 262144;.*half the decryptable ceiling 2\\^19 of preset 'transport'"):
        alice.seal(np.full((2, 2), 3e5, np.float32), "bob")
    with pytest.raises(ProtocolError, match="NaN/Inf"):
        alice.seal(np.array([[np.nan]], np.float32), "bob")


def test_a_message_nobody_multiplies_is_carried_up_to_half_the_ceiling_at_full_precision(pair) -> None:  # type: ignore[no-untyped-def]
    """A receiver's message is encrypted at the last level and only decrypted: the preset's product headroom (max_magnitude,
    2^9 under transport) does not apply, and values up to 2^18 = 2^(60 - 40 - 1 - 1) come back as precisely as small ones."""
    alice, bob = pair
    from securevfl.crypto.params import get_preset

    transport = get_preset("transport")
    assert (transport.max_magnitude, transport.transport_bound) == (2.0**9, 2.0**18)
    assert get_preset("transport_wide").transport_bound == 2.0**21  # 60 - 37 - 1 - 1
    values = np.random.default_rng(3).uniform(-(2.0**18), 2.0**18, size=(32, 8)).astype(np.float32)
    values[0, 0] = 2.0**18
    codec, payload = alice.seal(values, "bob")
    opened = bob.open(Message("activation", "alice", "bob", 0, payload, codec=codec))
    assert np.abs(opened.astype(np.float64) - values).max() <= 2.0**18 * 2.0**-23  # float32 rounding of the values, nothing more


def test_every_training_message_travels_encrypted_and_keys_are_announced() -> None:
    cfg = config(parties={"passive": 2, "split": "even"}, protection={"scheme": "ckks"}, train={"lr": 0.1})
    federation = build_federation(cfg, random_dataset(40, 10, 6, 3, seed=1), [np.arange(3), np.arange(3, 6)])
    assert federation.channel.stats.messages_by_kind["public_key"] == 4  # active <-> each of 2 passives
    sent: list[Message] = []
    original_send = federation.channel.send

    def spy(message: Message) -> None:
        sent.append(message)
        original_send(message)

    federation.channel.send = spy  # type: ignore[method-assign]
    federation.train_batch(0, np.arange(8))
    federation.evaluate(10, 5, step=0)
    assert {m.kind for m in sent} == {"activation", "gradient", "eval_activation"}
    assert all(m.codec == "ckks" and isinstance(m.payload, bytes) for m in sent)


def test_encrypted_training_tracks_plaintext_training() -> None:
    encrypted = run_training(load_config(DIGITS_CKKS, QUICK))
    plain = run_training(load_config(DIGITS_CKKS, [*QUICK, "protection.scheme=plain"]))
    for enc, ref in zip(encrypted["history"], plain["history"], strict=True):
        assert abs(enc["loss"] - ref["loss"]) < 1e-4
        assert abs(enc["main_accuracy"] - ref["main_accuracy"]) <= 0.01
    for phase in ("encrypt", "decrypt", "ciphertext_serialize", "ciphertext_deserialize"):
        assert encrypted["timing"][phase] > 0
    assert "encrypt" not in plain["timing"]
    summary = encrypted["timing"]["summary"]
    assert set(summary) == {"compute", "encrypted_compute", "keygen", "encode_encrypt", "serialize", "deserialize", "decrypt", "transfer"}
    assert summary["encode_encrypt"] == encrypted["timing"]["encrypt"]
    assert plain["timing"]["summary"]["encode_encrypt"] == 0.0
    # a 64 x 10 float32 activation is 2.6 KB in plaintext; one N=4096 ciphertext is ~66 KB
    per_message = encrypted["bytes_sent"]["activation"] / encrypted["messages_sent"]["activation"]
    assert 50_000 < per_message < 80_000


def test_protection_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="unknown CKKS preset 'huge'"):
        load_config(DIGITS_CKKS, ["protection.preset=huge"])
    with pytest.raises(ConfigError, match="protection.key_holder"):
        load_config(DIGITS_CKKS, ["protection.key_holder=nobody"])


def test_the_header_of_a_transformed_message_declares_the_ceiling_not_the_noise_it_carries(pair) -> None:  # type: ignore[no-untyped-def]
    """Review of the receiver bound: after noise drawn under encryption the tracked bound is 2^18 + max |noise|, and a
    header carrying it told the receiver the noise's size (measured: header - 2^18 = max |noise| to 7 digits). The
    header now declares the preset's public ceiling whenever a transform ran, and the bare bound otherwise."""
    from securevfl.crypto import EncryptedTensor

    alice, bob = pair
    noise = np.random.default_rng(5).normal(scale=1e-3, size=(4, 4))
    _, plain = alice.seal(np.ones((4, 4), np.float32), "bob")
    _, noisy = alice.seal(np.ones((4, 4), np.float32), "bob", transform=lambda tensor: tensor.add_plain(noise))
    secret = bob._secret  # the receiver's own keyring reads the header
    assert EncryptedTensor.from_bytes(secret, plain).value_bound == 2.0**18
    assert EncryptedTensor.from_bytes(secret, noisy).value_bound == 2.0**19 * (1 - 2.0**-10)  # the public ceiling, not 2^18 + max |noise|
    opened = bob.open(Message("gradient", "alice", "bob", 0, noisy, codec="ckks"))
    np.testing.assert_allclose(opened, 1 + noise, atol=1e-5)


def test_a_receivers_own_transform_past_the_ceiling_is_a_range_stop_and_a_shape_seal_cannot_encode_is_too() -> None:
    """A PrecisionError in the receiver's own under-encryption transform was reported as a protocol fault (a crash of the
    run); it is a range stop now. And SEAL's encoder, which refuses a coefficient above 2^58 (a constant slot vector
    just above 2^18 under transport), raised a bare ValueError: it is a PrecisionError now."""
    from securevfl.crypto import EncryptedTensor, Layout, PrecisionError, SecretKeyring, get_preset

    alice = ReceiverKeyProtection("alice", "transport", PhaseTimer())
    bob = ReceiverKeyProtection("bob", "transport", PhaseTimer())
    alice.learn_peer("bob", bob.announcement())
    _, payload = alice.seal(np.full((4, 4), 2.0**18, np.float32), "bob")
    with pytest.raises(PayloadRangeError, match="bob <- alice: .*exceed"):
        bob.open(Message("activation", "alice", "bob", 0, payload, codec="ckks"), transform=lambda tensor: tensor.add_plain(np.full((4, 4), 3e5)))

    keyring = SecretKeyring.generate(get_preset("transport"))
    constant = np.full(keyring.params.slots, 1.01 * 2.0**18)
    with pytest.raises(PrecisionError, match="encoder refused"):
        EncryptedTensor.encrypt(keyring.public_keyring(), constant, Layout.FLAT, bound=keyring.params.decrypt_ceiling, levels=0)
    spread = np.full(keyring.params.slots, 0.999 * 2.0**18)  # just under the transport bound: encodes and decrypts precisely
    encrypted = EncryptedTensor.encrypt(keyring.public_keyring(), spread, Layout.FLAT, bound=2.0**18, levels=0)
    assert np.abs(EncryptedTensor.from_bytes(keyring, encrypted.to_bytes()).decrypt() - spread).max() < 1e-6


def test_a_message_whose_values_exceed_the_bound_its_header_declares_is_refused_not_used(pair) -> None:  # type: ignore[no-untyped-def]
    """Review: the receiver used to trust the header's bound; a ciphertext of 2^17 declared as bounded by 1.0 (a forged
    header, or a value that wrapped around the modulus) decrypted and was used. Now it is refused with one line."""
    from securevfl.crypto import EncryptedTensor, Layout

    alice, bob = pair
    public = alice._peers["bob"]
    honest = EncryptedTensor.encrypt(public, np.full((4, 4), 2.0**17), Layout.FLAT, bound=2.0**18, levels=0)
    forged = honest.to_bytes(declared_bound=1.0)
    with pytest.raises(PayloadRangeError, match=r"bob <- alice: a decrypted value of magnitude 131072 exceeds the bound 1 its sender declared"):
        bob.open(Message("activation", "alice", "bob", 0, forged, codec="ckks"))
    np.testing.assert_allclose(bob.open(Message("activation", "alice", "bob", 0, honest.to_bytes(), codec="ckks")), 2.0**17, atol=1e-5)
