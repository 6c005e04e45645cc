from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from securevfl.crypto import EncryptedTensor, KeystoreError, SecretKeyring, load_secret_keyring, save_secret_keyring
from securevfl.crypto.keystore import open_secret_keyring, seal_secret_keyring

FAST = 17  # lowest scrypt cost the keystore accepts (OWASP's minimum)


def test_round_trip_keeps_the_key_pair(tmp_path: Path, compute_secret: SecretKeyring) -> None:
    path = save_secret_keyring(compute_secret, tmp_path / "key.svk", "correct horse", log2_n=FAST)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = load_secret_keyring(path, "correct horse")
    assert loaded.is_private() and loaded.key_id == compute_secret.key_id
    assert loaded.rotation_steps == compute_secret.rotation_steps
    tensor = EncryptedTensor.encrypt(compute_secret.public_keyring(), np.array([1.5, -2.0]))
    np.testing.assert_allclose(tensor.decrypt(loaded), [1.5, -2.0], atol=1e-6)


def test_file_does_not_contain_the_secret_key_in_clear(compute_secret: SecretKeyring) -> None:
    data = seal_secret_keyring(compute_secret, "pw", log2_n=FAST)
    assert compute_secret._secret_key_bytes[16:80] not in data
    assert seal_secret_keyring(compute_secret, "pw", log2_n=FAST)[:40] != data[:40]  # fresh salt and nonce


def test_wrong_passphrase_is_refused(transport_secret: SecretKeyring) -> None:
    data = seal_secret_keyring(transport_secret, "right", log2_n=FAST)
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        open_secret_keyring(data, "wrong")


@pytest.mark.parametrize("position", [12, 20, 40, -1, -200])
def test_tampered_bytes_are_refused(transport_secret: SecretKeyring, position: int) -> None:
    data = bytearray(seal_secret_keyring(transport_secret, "pw", log2_n=FAST))
    data[position] ^= 0x01
    with pytest.raises(KeystoreError):
        open_secret_keyring(bytes(data), "pw")


def test_truncated_or_foreign_files_are_refused(tmp_path: Path, transport_secret: SecretKeyring) -> None:
    data = seal_secret_keyring(transport_secret, "pw", log2_n=FAST)
    with pytest.raises(KeystoreError):
        open_secret_keyring(data[: len(data) // 2], "pw")
    with pytest.raises(KeystoreError, match="truncated"):
        open_secret_keyring(data[:20], "pw")
    with pytest.raises(KeystoreError, match="not a securevfl keystore"):
        open_secret_keyring(b"PK\x03\x04" + data[4:], "pw")
    with pytest.raises(KeystoreError, match="version"):
        open_secret_keyring(data[:8] + b"\x09" + data[9:], "pw")
    with pytest.raises(KeystoreError, match="cannot read"):
        load_secret_keyring(tmp_path / "missing.svk", "pw")
    with pytest.raises(KeystoreError, match="empty"):
        seal_secret_keyring(transport_secret, "", log2_n=FAST)


@pytest.mark.parametrize(("offset", "value"), [(9, 30), (9, 13), (10, 255), (11, 16)], ids=["huge N", "weak N", "r", "p"])
def test_a_header_asking_for_other_costs_is_refused_before_any_derivation(
    transport_secret: SecretKeyring, monkeypatch: pytest.MonkeyPatch, offset: int, value: int
) -> None:
    data = bytearray(seal_secret_keyring(transport_secret, "pw", log2_n=FAST))
    data[offset] = value

    def no_derivation(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a key was derived for a refused header")

    monkeypatch.setattr("securevfl.crypto.keystore._derive_key", no_derivation)
    with pytest.raises(KeystoreError, match="refused before deriving anything"):
        open_secret_keyring(bytes(data), "pw")


def test_sealing_below_owasps_minimum_is_refused_and_memory_errors_are_the_keystores(
    transport_secret: SecretKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(KeystoreError, match="OWASP"):
        seal_secret_keyring(transport_secret, "pw", log2_n=15)

    def out_of_memory(self, passphrase):  # type: ignore[no-untyped-def]
        raise MemoryError

    monkeypatch.setattr("securevfl.crypto.keystore.Scrypt.derive", out_of_memory)
    with pytest.raises(KeystoreError, match="not enough memory"):
        seal_secret_keyring(transport_secret, "pw", log2_n=FAST)
