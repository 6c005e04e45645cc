"""Random additive masks for masked decryption.

A party that must learn f(x) from a key holder without letting the key holder learn f(x)
adds a fresh uniform mask R under encryption, has Enc(f(x) + R) decrypted, and subtracts R.
The key holder sees f(x) + R: when |f(x)| is far below the mask half-width r, that is
statistically close to a uniform draw on [-r, r] (total variation distance at most
|f(x)| / (2r) per value), and independent of f(x) for every practical purpose.

Masks are drawn from the operating system's CSPRNG (``os.urandom``) for every value, never from
a seeded pseudo-random stream: a mask derivable from the run seed, or from earlier masks (a
PCG64 state can be recovered from its outputs), would be known to whoever learns them. A seed
is accepted for tests only, and then the masks are reproducible and *not* secret.
"""

from __future__ import annotations

import numpy as np

from securevfl.crypto.randomness import csprng_uniform

__all__ = ["MaskSampler", "csprng_uniform"]


class MaskSampler:
    """Draws uniform masks on [-half_width, half_width] from the OS CSPRNG (or a test seed)."""

    def __init__(self, half_width: float, seed: int | None = None) -> None:
        if not half_width > 0:
            raise ValueError(f"mask half-width must be positive, got {half_width}")
        self.half_width = float(half_width)
        self._test_rng = None if seed is None else np.random.default_rng(seed)

    @property
    def secret(self) -> bool:
        """Whether the masks are secret (drawn from the OS CSPRNG, not from a test seed)."""
        return self._test_rng is None

    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        if self._test_rng is not None:
            return self._test_rng.uniform(-self.half_width, self.half_width, size=shape)
        return csprng_uniform(-self.half_width, self.half_width, shape)
