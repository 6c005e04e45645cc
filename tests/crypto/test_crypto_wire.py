"""Serialization: both wire forms, and every way bytes can be wrong."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securevfl.crypto import ROWS, EncryptedTensor, PublicKeyring, SecretKeyring, SerializationError, get_preset
from securevfl.crypto.wire import _FIXED, FORMAT_VERSION, MAGIC

VALUES = np.random.default_rng(7).uniform(-1, 1, (64, 32))


def _redigest(body: bytes) -> bytes:
    """Recompute the envelope digest, as a forger would, so SEAL's own validation is what is tested."""
    return body + hashlib.blake2b(body, digest_size=16).digest()


def test_seeded_form_is_half_the_size(transport_secret: SecretKeyring, transport_public: PublicKeyring) -> None:
    seeded = EncryptedTensor.encrypt(transport_secret, VALUES).to_bytes()
    public = EncryptedTensor.encrypt(transport_public, VALUES).to_bytes()
    assert len(seeded) < 0.55 * len(public)
    assert len(public) < 70_000
    for data in (seeded, public):
        out = EncryptedTensor.from_bytes(transport_public, data).decrypt(transport_secret)
        assert np.max(np.abs(out - VALUES)) <= transport_secret.params.expected_precision


def test_mod_switch_to_last_shrinks_and_round_trips(compute_secret: SecretKeyring, compute_public: PublicKeyring) -> None:
    tensor = EncryptedTensor.encrypt(compute_public, VALUES, ROWS)
    full, last = tensor.to_bytes(), tensor.to_bytes(mod_switch_to_last=True)
    assert len(last) < 0.45 * len(full)
    loaded = EncryptedTensor.from_bytes(compute_public, last)
    assert loaded.levels_left == 0
    np.testing.assert_allclose(loaded.decrypt(compute_secret), VALUES, atol=compute_secret.params.expected_precision)
    # the smallest form of all: seeded, encrypted directly at the last level
    smallest = EncryptedTensor.encrypt(compute_secret, VALUES, ROWS, levels=0).to_bytes(mod_switch_to_last=True)
    assert len(smallest) < 0.55 * len(last)
    np.testing.assert_allclose(EncryptedTensor.from_bytes(compute_secret, smallest).decrypt(), VALUES, atol=1e-6)


def test_seeded_tensor_still_computes(compute_secret: SecretKeyring) -> None:
    tensor = EncryptedTensor.encrypt(compute_secret, VALUES, ROWS)
    np.testing.assert_allclose((tensor * 2.0).decrypt(), 2 * VALUES, atol=1e-5)
    restored = EncryptedTensor.from_bytes(compute_secret, (tensor + 1.0).to_bytes())
    np.testing.assert_allclose(restored.decrypt(), VALUES + 1.0, atol=1e-5)


def test_header_fields_survive(compute_secret: SecretKeyring) -> None:
    tensor = EncryptedTensor.encrypt(compute_secret, VALUES.astype(np.float32), ROWS, stride=64, bound=2.0)
    loaded = EncryptedTensor.from_bytes(compute_secret, tensor.to_bytes())
    assert (loaded.shape, loaded.layout, loaded.packing.stride) == ((64, 32), ROWS, 64)
    assert loaded.value_bound == 2.0 and loaded.dtype == np.float32 and loaded.levels_left == 2


def test_truncated_bytes_are_refused(transport_secret: SecretKeyring) -> None:
    data = EncryptedTensor.encrypt(transport_secret, VALUES).to_bytes()
    for cut in (0, 3, 20, 60, len(data) // 2, len(data) - 1):
        with pytest.raises(SerializationError):
            EncryptedTensor.from_bytes(transport_secret, data[:cut])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10**9), flip=st.integers(1, 255))
def test_any_flipped_byte_is_refused(transport_secret: SecretKeyring, position: int, flip: int) -> None:
    data = bytearray(EncryptedTensor.encrypt(transport_secret, VALUES[:8]).to_bytes())
    data[position % len(data)] ^= flip
    with pytest.raises(SerializationError):
        EncryptedTensor.from_bytes(transport_secret, bytes(data))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 10**9), flip=st.integers(1, 255), seeded=st.booleans())
def test_forged_payloads_never_crash_or_return_garbage(
    transport_secret: SecretKeyring, position: int, flip: int, seeded: bool
) -> None:
    """A forger who recomputes the digest reaches SEAL: it must raise or yield the exact same ciphertext."""
    tensor = EncryptedTensor.encrypt(transport_secret, VALUES[:8], seeded=seeded)
    data = tensor.to_bytes()[:-16]
    header_size = _FIXED.size + 4 * 2 + 4  # fixed fields, two dims, one ciphertext length
    target = header_size + position % (len(data) - header_size)
    forged = bytearray(data)
    forged[target] ^= flip
    try:
        loaded = EncryptedTensor.from_bytes(transport_secret, _redigest(bytes(forged)))
    except SerializationError:
        return
    # SEAL accepted a modified payload (e.g. a flipped bit in a coefficient): still a valid ciphertext
    out = loaded.decrypt()
    assert out.shape == (8, 32) and np.all(np.isfinite(out))


def test_wrong_magic_and_version_are_refused(transport_secret: SecretKeyring) -> None:
    data = EncryptedTensor.encrypt(transport_secret, VALUES).to_bytes()
    with pytest.raises(SerializationError, match="magic"):
        EncryptedTensor.from_bytes(transport_secret, b"NOPE" + data[4:])
    body = data[:-16]
    future = body[:4] + bytes([FORMAT_VERSION + 1]) + body[5:]
    with pytest.raises(SerializationError, match="version"):
        EncryptedTensor.from_bytes(transport_secret, _redigest(future))
    assert data[:4] == MAGIC
    with pytest.raises(SerializationError, match="bytes"):
        EncryptedTensor.from_bytes(transport_secret, "not bytes")  # type: ignore[arg-type]


def test_foreign_key_or_parameter_set_is_refused(
    compute_secret: SecretKeyring, other_compute_secret: SecretKeyring, transport_secret: SecretKeyring
) -> None:
    data = EncryptedTensor.encrypt(compute_secret, VALUES).to_bytes()
    with pytest.raises(SerializationError, match="different key pair"):
        EncryptedTensor.from_bytes(other_compute_secret, data)
    with pytest.raises(SerializationError, match="different parameter set"):
        EncryptedTensor.from_bytes(transport_secret, data)


def test_lying_header_is_caught_by_seal_validation(compute_secret: SecretKeyring, transport_secret: SecretKeyring) -> None:
    """Transplant transport ciphertexts under a compute header (digest recomputed): SEAL refuses them."""
    compute_bytes = EncryptedTensor.encrypt(compute_secret, VALUES[:2]).to_bytes()[:-16]
    transport_bytes = EncryptedTensor.encrypt(transport_secret, VALUES[:2]).to_bytes()[:-16]
    header_size = _FIXED.size + 4 * 2  # fixed fields and a (2, 32) shape; then one u32 length
    payload = transport_bytes[header_size + 4 :]
    forged = compute_bytes[:header_size] + struct.pack("<I", len(payload)) + payload
    with pytest.raises(SerializationError):
        EncryptedTensor.from_bytes(compute_secret, _redigest(forged))


def test_keyring_from_bytes_refuses_weak_parameters(transport_secret: SecretKeyring) -> None:
    from securevfl.crypto import SecurityError

    data = transport_secret.public_keyring().to_bytes()[:-16]
    head = 4 + 1 + 1 + 16  # magic, version, part count, key id; then the u64-prefixed metadata
    (length,) = struct.unpack_from("<Q", data, head)
    meta = data[head + 8 : head + 8 + length]
    weak_meta = meta.replace(b'"coeff_modulus_bits": [60]', b'"coeff_modulus_bits": [60, 60]')
    assert weak_meta != meta
    forged = data[:head] + struct.pack("<Q", len(weak_meta)) + weak_meta + data[head + 8 + length :]
    with pytest.raises(SecurityError, match="109"):
        PublicKeyring.from_bytes(_redigest(forged))
    assert get_preset("transport").total_coeff_modulus_bits == 60
