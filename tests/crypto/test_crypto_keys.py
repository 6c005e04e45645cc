from __future__ import annotations

import numpy as np
import pytest

from securevfl.crypto import (
    EncryptedTensor,
    KeyRoleError,
    MissingRotationKeyError,
    PublicKeyring,
    SecretKeyring,
    SecurityError,
    SerializationError,
    get_preset,
    kernels,
)
from securevfl.crypto.keys import _secret_keyring_to_bytes


def test_public_keyring_cannot_decrypt(compute_secret: SecretKeyring, compute_public: PublicKeyring) -> None:
    tensor = EncryptedTensor.encrypt(compute_public, np.ones(4))
    assert not compute_public.is_private()
    with pytest.raises(KeyRoleError, match="cannot decrypt"):
        compute_public.decrypt_vector(tensor.ciphertexts[0])
    with pytest.raises(KeyRoleError):
        tensor.decrypt()
    np.testing.assert_allclose(tensor.decrypt(compute_secret), np.ones(4), atol=1e-6)


def test_serialized_public_keyring_holds_no_secret_key(compute_secret: SecretKeyring) -> None:
    data = compute_secret.public_keyring().to_bytes()
    secret_key_bytes = compute_secret._secret_key_bytes
    # The secret key's SEAL payload (past its 16-byte SEAL header) appears nowhere in the public bytes.
    assert secret_key_bytes[16:80] not in data
    loaded = PublicKeyring.from_bytes(data)
    assert not loaded.is_private()
    assert not hasattr(loaded, "_secret_key")
    assert loaded.key_id == compute_secret.key_id
    with pytest.raises(KeyRoleError):
        loaded.decrypt_vector(loaded.encrypt_vector(np.zeros(4)))


def test_secret_keyring_bytes_are_refused_on_the_public_path(compute_secret: SecretKeyring) -> None:
    with pytest.raises(SerializationError, match="secret keyring"):
        PublicKeyring.from_bytes(_secret_keyring_to_bytes(compute_secret))


def test_public_encryption_seeded_form_needs_the_secret_key(compute_public: PublicKeyring) -> None:
    with pytest.raises(KeyRoleError):
        EncryptedTensor.encrypt(compute_public, np.ones(3), seeded=True)


def test_keyring_bytes_tampered_or_truncated_are_refused(transport_secret: SecretKeyring) -> None:
    data = bytearray(transport_secret.public_keyring().to_bytes())
    with pytest.raises(SerializationError, match="truncated"):
        PublicKeyring.from_bytes(bytes(data[:10]))
    with pytest.raises(SerializationError, match="integrity"):
        PublicKeyring.from_bytes(bytes(data[:-100]) + bytes(data[-16:]))
    data[len(data) // 2] ^= 0x40
    with pytest.raises(SerializationError, match="integrity"):
        PublicKeyring.from_bytes(bytes(data))
    with pytest.raises(SerializationError, match="magic"):
        PublicKeyring.from_bytes(b"XXXX" + bytes(data[4:]))


def test_only_the_requested_rotation_keys_exist(compute_secret: SecretKeyring) -> None:
    bare = SecretKeyring.generate(get_preset("compute"))
    assert bare.rotation_steps == frozenset()
    assert len(bare.public_keyring().to_bytes()) < 600_000  # public key only, no Galois keys
    with pytest.raises(MissingRotationKeyError, match="rotation by 3"):
        kernels.rotate(bare, bare.encrypt_vector(np.zeros(4)), 3)
    extended = bare.with_rotation_steps([3, -5])
    assert extended.rotation_steps == frozenset({3, 4096 - 5})
    assert extended.key_id == bare.key_id


def test_rotation_composes_power_of_two_keys(compute_secret: SecretKeyring) -> None:
    values = np.arange(4096, dtype=float) / 4096
    ct = compute_secret.encrypt_vector(values)
    for step in (1, 7, -13, 1000):
        rotated = compute_secret.decrypt_vector(kernels.rotate(compute_secret, ct, step))
        np.testing.assert_allclose(rotated, np.roll(values, -step), atol=1e-5)


def test_transport_preset_cannot_have_rotation_keys() -> None:
    with pytest.raises(SecurityError, match="no key switching"):
        SecretKeyring.generate(get_preset("transport"), [1])
