"""Secret keyrings encrypted at rest with a passphrase.

File format (little endian)::

    magic     8s  b"SVKSTORE"
    version   u8  KEYSTORE_VERSION
    log2_n    u8  scrypt cost parameter N = 2**log2_n
    r         u8  scrypt block size
    p         u8  scrypt parallelism
    salt      16s random per file
    nonce     12s random per file
    sealed    AES-256-GCM(key = scrypt(passphrase, salt), nonce, plaintext = secret keyring bytes,
                          associated data = all header bytes above)

Every header byte is authenticated, so a tampered cost parameter, salt or version fails just
like a wrong passphrase: AES-GCM cannot tell the two apart, and the error says so. The file is
written atomically with mode 0600.

scrypt costs follow OWASP's minimum (N = 2^17, r = 8, p = 1; 128 MiB, a fraction of a second).
A header asking for more than the documented cap (N = 2^18, 256 MiB) or for other r or p is
refused *before* any derivation, so a tampered file cannot make a party spend gigabytes or
minutes; running out of memory anyway surfaces as :class:`KeystoreError`.
"""

from __future__ import annotations

import os
import secrets
import struct
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .errors import KeystoreError, SerializationError
from .keys import SecretKeyring, _secret_keyring_from_bytes, _secret_keyring_to_bytes

__all__ = ["KEYSTORE_VERSION", "save_secret_keyring", "load_secret_keyring", "seal_secret_keyring", "open_secret_keyring"]

KEYSTORE_MAGIC = b"SVKSTORE"
KEYSTORE_VERSION = 1
_HEADER = struct.Struct("<8sBBBB16s12s")
DEFAULT_LOG2_N = 17  # OWASP's minimum for scrypt: N = 2^17, r = 8, p = 1 (128 MiB per derivation)
MIN_LOG2_N = 17
MAX_LOG2_N = 18  # the cap a header may ask for: 256 MiB
SCRYPT_R, SCRYPT_P = 8, 1


def _derive_key(passphrase: str | bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    if isinstance(passphrase, str):
        passphrase = passphrase.encode("utf-8")
    if not passphrase:
        raise KeystoreError("the passphrase must not be empty")
    try:
        return Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p).derive(passphrase)
    except MemoryError:
        raise KeystoreError(f"not enough memory for the keystore's key derivation (scrypt N = 2^{log2_n}, r = {r})") from None


def seal_secret_keyring(keyring: SecretKeyring, passphrase: str | bytes, *, log2_n: int = DEFAULT_LOG2_N) -> bytes:
    """The encrypted keystore bytes for ``keyring``."""
    if not isinstance(keyring, SecretKeyring):
        raise KeystoreError("only a SecretKeyring is stored in a keystore; share a PublicKeyring with to_bytes()")
    if not MIN_LOG2_N <= log2_n <= MAX_LOG2_N:
        raise KeystoreError(f"log2_n must be between {MIN_LOG2_N} (OWASP's minimum) and {MAX_LOG2_N} (the cap)")
    r, p = SCRYPT_R, SCRYPT_P
    salt, nonce = os.urandom(16), os.urandom(12)
    header = _HEADER.pack(KEYSTORE_MAGIC, KEYSTORE_VERSION, log2_n, r, p, salt, nonce)
    key = _derive_key(passphrase, salt, log2_n, r, p)
    return header + AESGCM(key).encrypt(nonce, _secret_keyring_to_bytes(keyring), header)


def open_secret_keyring(data: bytes, passphrase: str | bytes) -> SecretKeyring:
    """Inverse of :func:`seal_secret_keyring`.

    Raises:
        KeystoreError: not a keystore, unknown version, truncated, wrong passphrase or tampered.
    """
    if len(data) < _HEADER.size + 16:
        raise KeystoreError("keystore is truncated or not a securevfl keystore")
    magic, version, log2_n, r, p, salt, nonce = _HEADER.unpack_from(data)
    if magic != KEYSTORE_MAGIC:
        raise KeystoreError(f"not a securevfl keystore (magic {magic!r})")
    if version != KEYSTORE_VERSION:
        raise KeystoreError(f"unsupported keystore version {version} (this library reads {KEYSTORE_VERSION})")
    if not (MIN_LOG2_N <= log2_n <= MAX_LOG2_N and r == SCRYPT_R and p == SCRYPT_P):
        raise KeystoreError(
            f"keystore header asks for scrypt N = 2^{log2_n}, r = {r}, p = {p}; accepted: N between 2^{MIN_LOG2_N} and "
            f"2^{MAX_LOG2_N}, r = {SCRYPT_R}, p = {SCRYPT_P} (refused before deriving anything; tampered or foreign file?)"
        )
    header = data[: _HEADER.size]
    key = _derive_key(passphrase, salt, log2_n, r, p)
    try:
        plaintext = AESGCM(key).decrypt(nonce, data[_HEADER.size :], header)
    except InvalidTag:
        raise KeystoreError("cannot open keystore: wrong passphrase, or the file was tampered with or truncated") from None
    try:
        return _secret_keyring_from_bytes(plaintext)
    except SerializationError as exc:  # authenticated but unreadable: written by an incompatible build
        raise KeystoreError(f"keystore decrypted but its keyring is unreadable: {exc}") from exc


def save_secret_keyring(
    keyring: SecretKeyring, path: str | os.PathLike[str], passphrase: str | bytes, *, log2_n: int = DEFAULT_LOG2_N
) -> Path:
    """Write ``keyring`` to ``path`` encrypted under ``passphrase`` (mode 0600).

    Atomic and durable: an exclusive new temporary file in the same directory (no existing file
    or symlink is opened), flushed to disk, then renamed over ``path``.
    """
    path = Path(path)
    data = seal_secret_keyring(keyring, passphrase, log2_n=log2_n)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_secret_keyring(path: str | os.PathLike[str], passphrase: str | bytes) -> SecretKeyring:
    """Read a keystore written by :func:`save_secret_keyring`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeystoreError(f"cannot read keystore {path}: {exc.strerror}") from exc
    return open_secret_keyring(data, passphrase)
