"""Secret randomness from the operating system's CSPRNG (``os.urandom``), and from a shared secret key.

Masks and flooding noise must be unpredictable to everybody but their owner: a value derivable
from a run seed, or from earlier outputs (a PCG64 state can be recovered from its outputs), would
be known to whoever sees enough of them. Every draw here reads fresh bytes from ``os.urandom``,
except :func:`keyed_uniform`: values two parties must draw *identically* (pairwise masks that
cancel in a sum) come from ChaCha20's keystream under a 256-bit key only they hold, so that they
are as unpredictable as the key to everybody else (``cryptography``'s ChaCha20, not a seeded PRNG).
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["KEY_BYTES", "NONCE_BYTES", "csprng_normal", "csprng_uniform", "keyed_uniform"]

#: A shared key for :func:`keyed_uniform`: 256 bits (ChaCha20).
KEY_BYTES = 32
#: A nonce for :func:`keyed_uniform`: 12 bytes (the other 4 of ChaCha20's 16 are its block counter, from 0).
NONCE_BYTES = 12


def _unit_interval(count: int, raw: bytes | None = None) -> np.ndarray:
    """``count`` uniform doubles on [0, 1): 53 random bits each (of ``raw``, or of fresh ``os.urandom`` bytes)."""
    bits = np.frombuffer(os.urandom(8 * count) if raw is None else raw, dtype=np.uint64) >> np.uint64(11)
    return bits.astype(np.float64) * (1.0 / (1 << 53))


def keyed_uniform(key: bytes, nonce: bytes, low: float, high: float, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform doubles on [low, high), 53 bits each, from ChaCha20's keystream under ``key`` and ``nonce``.

    The same key, nonce and shape give the same values on every machine; a nonce must never be reused
    under one key for different values (the caller numbers its draws).
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    if len(key) != KEY_BYTES or len(nonce) != NONCE_BYTES:
        raise ValueError(f"keyed_uniform needs a {KEY_BYTES}-byte key and a {NONCE_BYTES}-byte nonce, got {len(key)} and {len(nonce)}")
    count = math.prod(shape)
    stream = Cipher(algorithms.ChaCha20(key, bytes(4) + nonce), mode=None).encryptor().update(bytes(8 * count))
    return (low + (high - low) * _unit_interval(count, stream)).reshape(shape)


def csprng_uniform(low: float, high: float, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform doubles on [low, high) from ``os.urandom``: 53 random bits per value."""
    unit = _unit_interval(math.prod(shape))
    return (low + (high - low) * unit).reshape(shape)


def csprng_normal(sigma: float, shape: tuple[int, ...]) -> np.ndarray:
    """Gaussian doubles N(0, sigma^2) from ``os.urandom`` (Box-Muller on 53-bit uniforms)."""
    count = math.prod(shape)
    u1 = 1.0 - _unit_interval(count)  # (0, 1]: log is finite
    u2 = _unit_interval(count)
    return (sigma * np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)).reshape(shape)
