"""Additive noise: Gaussian or Laplace, parameterised by the per-entry variance.

Adding a public plaintext to a CKKS ciphertext costs no multiplicative level, so noise can be
added by whoever holds the message: the sender before encrypting, any holder of the
ciphertext, or the receiver after decrypting. All three draw the noise the same way from the
defense's generator (same generator state, same noise, whatever the placement), so the
distribution does not depend on the placement; CKKS adds its own error of about 1e-7 on top.

Both families use the same ``variance`` so that Gaussian and Laplace settings are comparable
at equal noise power. For Laplace that means scale ``b = sqrt(variance / 2)``, since a
Laplace(0, b) variable has variance ``2 b^2``.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import Field

from securevfl.defenses.base import Defense, DefenseConfigBase, MessageContext, check_rows, embed_real

if TYPE_CHECKING:
    from securevfl.crypto import EncryptedTensor

__all__ = ["AdditiveNoise", "GaussianNoise", "GaussianNoiseConfig", "LaplaceNoise", "LaplaceNoiseConfig"]


class GaussianNoiseConfig(DefenseConfigBase):
    """Add i.i.d. N(0, variance) noise to every entry of the message."""

    kind: Literal["gaussian_noise"] = "gaussian_noise"
    variance: float = Field(gt=0, description="per-entry variance of the added noise")

    label_knobs = ("variance",)


class LaplaceNoiseConfig(DefenseConfigBase):
    """Add i.i.d. Laplace noise of the given variance (scale b = sqrt(variance / 2)) to every entry."""

    kind: Literal["laplace_noise"] = "laplace_noise"
    variance: float = Field(gt=0, description="per-entry variance of the added noise (not the scale b)")

    label_knobs = ("variance",)


class AdditiveNoise(Defense):
    """Adds zero-mean i.i.d. noise of variance ``config.variance`` to every real entry.

    Possible at every placement. Padding samples receive no noise (they stay zero).
    """

    config: GaussianNoiseConfig | LaplaceNoiseConfig

    @abstractmethod
    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        """Noise of the configured distribution (float64), drawn from the defense's generator."""

    def _transform(self, real: np.ndarray, ctx: MessageContext) -> np.ndarray:
        return real + self.draw(real.shape).astype(real.dtype, copy=False)

    def apply_encrypted(self, tensor: EncryptedTensor, ctx: MessageContext) -> EncryptedTensor:
        """``tensor + noise``, the noise drawn by the ciphertext holder; consumes no level."""
        check_rows(tensor.shape, ctx)
        width = tensor.shape[1 - ctx.sample_axis]
        noise = self.draw((ctx.rows, width)) * ctx.value_scale
        return tensor.add_plain(embed_real(noise, tensor.shape, ctx))


class GaussianNoise(AdditiveNoise):
    """i.i.d. N(0, variance) noise on every entry of the message."""

    name: ClassVar[str] = "gaussian_noise"
    config_type = GaussianNoiseConfig

    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        return self._rng.normal(0.0, math.sqrt(self.config.variance), size=shape)


class LaplaceNoise(AdditiveNoise):
    """i.i.d. Laplace(0, b) noise with ``b = sqrt(variance / 2)``, so its variance is ``variance``."""

    name: ClassVar[str] = "laplace_noise"
    config_type = LaplaceNoiseConfig

    @property
    def scale(self) -> float:
        """The Laplace scale b that gives the configured variance."""
        return math.sqrt(self.config.variance / 2.0)

    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        return self._rng.laplace(0.0, self.scale, size=shape)
