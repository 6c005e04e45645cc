"""Secret randomness from the operating system's CSPRNG (``os.urandom``).

Masks and flooding noise must be unpredictable to everybody but their owner: a value derivable
from a run seed, or from earlier outputs (a PCG64 state can be recovered from its outputs), would
be known to whoever sees enough of them. Every draw here reads fresh bytes from ``os.urandom``.
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["csprng_normal", "csprng_uniform"]


def _unit_interval(count: int) -> np.ndarray:
    """``count`` uniform doubles on [0, 1): 53 random bits each."""
    bits = np.frombuffer(os.urandom(8 * count), dtype=np.uint64) >> np.uint64(11)
    return bits.astype(np.float64) * (1.0 / (1 << 53))


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
