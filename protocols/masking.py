"""Random additive masks for masked decryption.

A party that must learn f(x) from a key holder without letting the key holder learn f(x)
adds a fresh uniform mask R under encryption, has Enc(f(x) + R) decrypted, and subtracts R.
The key holder sees f(x) + R: when |f(x)| is far below the mask half-width r, that is
statistically close to a uniform draw on [-r, r] (total variation distance at most
|f(x)| / (2r) per value), and independent of f(x) for every practical purpose.

Masks come from the operating system's entropy unless a seed is given (tests only): a mask
derivable from the run seed would be known to everybody who knows the config.
"""

from __future__ import annotations

import secrets

import numpy as np


class MaskSampler:
    """Draws uniform masks on [-half_width, half_width]."""

    def __init__(self, half_width: float, seed: int | None = None) -> None:
        if not half_width > 0:
            raise ValueError(f"mask half-width must be positive, got {half_width}")
        self.half_width = float(half_width)
        self._rng = np.random.default_rng(secrets.randbits(128) if seed is None else seed)

    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        return self._rng.uniform(-self.half_width, self.half_width, size=shape)
