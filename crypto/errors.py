"""Exception types raised by :mod:`crypto`.

Every failure a caller can provoke (unsafe parameters, a key used in the wrong role, bytes
that do not decode, values the scale cannot hold, mismatched operands) derives from
:class:`CryptoError`, so a caller can catch the whole family in one place while genuine bugs
still surface as ordinary exceptions. Most types also derive from the closest built-in
(``ValueError``, ``PermissionError``, ``LookupError``) so generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "CryptoError",
    "SecurityError",
    "KeyRoleError",
    "SerializationError",
    "PrecisionError",
    "LayoutError",
    "ContextMismatchError",
    "DepthError",
    "MissingRotationKeyError",
    "KeystoreError",
]


class CryptoError(Exception):
    """Base class of every error raised on purpose by :mod:`crypto`."""


class SecurityError(CryptoError, ValueError):
    """A parameter set would give less than 128-bit security, or is malformed."""


class KeyRoleError(CryptoError, PermissionError):
    """A keyring was asked for something its role does not allow (e.g. a public keyring decrypting)."""


class SerializationError(CryptoError, ValueError):
    """Bytes are truncated, tampered with, of an unknown format version, or from a foreign key or parameter set."""


class PrecisionError(CryptoError, ValueError):
    """A value is NaN/Inf, or its magnitude (or a result's worst-case magnitude) exceeds what the scale can hold."""


class LayoutError(CryptoError, ValueError):
    """Operands disagree in shape or packing layout, or a layout cannot express the requested operation."""


class ContextMismatchError(CryptoError, ValueError):
    """Operands were encrypted under different keys or parameter sets."""


class DepthError(CryptoError):
    """A multiplication was requested on a ciphertext with no multiplicative level left."""


class MissingRotationKeyError(CryptoError, LookupError):
    """A kernel needs a slot rotation whose Galois key the keyring was not given."""


class KeystoreError(CryptoError):
    """A keystore file cannot be opened: wrong passphrase, tampered or truncated file, unknown version."""
