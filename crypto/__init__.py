"""CKKS homomorphic-encryption layer (SEAL through TenSEAL). Knows nothing about federated learning.

Typical use::

    from securevfl.crypto import EncryptedTensor, Layout, SecretKeyring, PublicKeyring, get_preset, rotations

    params = get_preset("compute")
    stride = rotations.matmul_stride(32, 32)                   # 64: room for the fast matmul path
    secret = SecretKeyring.generate(params, rotation_steps=rotations.matmul_steps(32, 32, stride=stride))
    public = PublicKeyring.from_bytes(secret.public_keyring().to_bytes())   # what others receive

    x = EncryptedTensor.encrypt(public, h, Layout.ROWS, stride=stride, levels=1)  # h: (64, 32)
    y = EncryptedTensor.from_bytes(public, x.to_bytes()) @ w  # w: (32, 32) plaintext
    out = EncryptedTensor.from_bytes(secret, y.to_bytes(mod_switch_to_last=True)).decrypt()

See ``docs/crypto.md`` for presets, layouts, the wire format and kernel costs.
"""

from __future__ import annotations

from . import kernels, rotations
from .errors import (
    ContextMismatchError,
    CryptoError,
    DepthError,
    KeyRoleError,
    KeystoreError,
    LayoutError,
    MissingRotationKeyError,
    PrecisionError,
    SecurityError,
    SerializationError,
)
from .kernels import MatmulPlan
from .keys import Keyring, PublicKeyring, SecretKeyring
from .keystore import load_secret_keyring, save_secret_keyring
from .layout import Layout, Packing
from .params import MAX_COEFF_MODULUS_BITS_128, PRESETS, CkksParameters, get_preset, preset_names
from .tensor import EncryptedTensor

FLAT = Layout.FLAT
ROWS = Layout.ROWS
COLUMNS = Layout.COLUMNS

__all__ = [
    "CkksParameters",
    "PRESETS",
    "MAX_COEFF_MODULUS_BITS_128",
    "get_preset",
    "preset_names",
    "Keyring",
    "PublicKeyring",
    "SecretKeyring",
    "save_secret_keyring",
    "load_secret_keyring",
    "EncryptedTensor",
    "MatmulPlan",
    "Layout",
    "Packing",
    "FLAT",
    "ROWS",
    "COLUMNS",
    "kernels",
    "rotations",
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
