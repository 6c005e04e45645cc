"""Additive noise: Gaussian or Laplace, parameterised by the per-entry variance.

Adding a public plaintext to a CKKS ciphertext costs no multiplicative level, so noise can be
added by whoever holds the message: the sender before encrypting, any holder of the
ciphertext, or the receiver after decrypting. All three draw the noise the same way from the
defense's generator (same generator state, same noise, whatever the placement), so the
distribution does not depend on the placement; CKKS adds its own error of about 1e-7 on top.

Both families use the same ``variance`` so that Gaussian and Laplace settings are comparable
at equal noise power. For Laplace that means scale ``b = sqrt(variance / 2)``, since a
Laplace(0, b) variable has variance ``2 b^2``.

For an epsilon (see :mod:`securevfl.defenses.accounting` and docs/defenses.md) a noise defense
on the gradient rows needs a sensitivity bound and noise the passive cannot predict:

- ``clip_norm`` C: each sample's row is first scaled down to a norm of at most C (L2 before
  Gaussian noise, L1 before Laplace noise, :func:`~securevfl.defenses.base.clip_rows`), so
  replacing one sample's label moves its row by at most ``2 C`` in that norm. Clipping needs
  comparisons, so a clipped defense runs ``pre_encryption`` (on activations also
  ``post_decryption``). Unset (the default): no bound, and the run records ``epsilon = inf``.
- ``noise_source``: ``"run_seed"`` (default, today's behaviour) draws from the defense's
  generator, derived from ``train.seed``, which every party holds; reproducible, but the passive
  could regenerate the noise, so no epsilon is claimed. ``"csprng"`` draws fresh ``os.urandom``
  bytes, once per step, and every message of that step with the same shape (the other
  passives, a second packing) gets the same draw, as :class:`~securevfl.defenses.label_dp.LabelDP`
  does: under the sum top every passive receives the same rows, so the passives together hold
  one release per step.
- ``delta``: the delta at which the run reports its (epsilon, delta); accounting only.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from securevfl.crypto.randomness import csprng_normal, csprng_uniform
from securevfl.defenses.base import Defense, DefenseConfigBase, MessageContext, Placement, check_rows, clip_rows, embed_real

if TYPE_CHECKING:
    from securevfl.crypto import EncryptedTensor

__all__ = ["NOISE_KINDS", "AdditiveNoise", "GaussianNoise", "GaussianNoiseConfig", "LaplaceNoise", "LaplaceNoiseConfig", "NoiseConfigBase"]

NOISE_KINDS = ("gaussian_noise", "laplace_noise")
"""The ``kind`` of every additive noise defense (the accountant looks for these)."""

DEFAULT_DELTA = 1e-5
"""As :data:`securevfl.defenses.label_dp.DEFAULT_DELTA` (a defense module imports only ``base``)."""


class NoiseConfigBase(DefenseConfigBase):
    """Fields of both noise families: the noise power, the optional row clip, the accounting's delta, the noise source."""

    variance: float = Field(gt=0, description="per-entry variance of the added noise")
    clip_norm: float | None = Field(
        default=None,
        gt=0,
        description="clip each sample's row to this norm before the noise (L2 for Gaussian, L1 for Laplace); unset: epsilon = inf",
    )
    delta: float = Field(default=DEFAULT_DELTA, gt=0, lt=1, description="delta of the (epsilon, delta) the run reports")
    noise_source: Literal["run_seed", "csprng"] = Field(
        default="run_seed",
        description="run_seed: reproducible, but the passive could regenerate it (no epsilon claimed); csprng: os.urandom",
    )

    clip_order: ClassVar[int] = 2
    """The norm ``clip_norm`` bounds (and the sensitivity is measured in)."""

    label_knobs = ("variance",)

    def label(self) -> str:
        """``variance`` always; ``clip_norm`` and ``noise_source`` only when set away from their defaults.

        Runs without them keep the labels (and study table rows) they had before these fields existed.
        """
        knobs = [f"variance={self.variance:g}"]
        if self.clip_norm is not None:
            knobs.append(f"clip_norm={self.clip_norm:g}")
        if self.noise_source != "run_seed":
            knobs.append(f"noise_source={self.noise_source}")
        return f"{self.kind}({', '.join([*knobs, self.on, self.placement.value])})"

    @model_validator(mode="after")
    def _clip_needs_plaintext(self) -> NoiseConfigBase:
        if self.clip_norm is not None and self.placement is Placement.UNDER_ENCRYPTION:
            raise ValueError(
                "clip_norm clips each row before the noise, which needs comparisons CKKS cannot evaluate: "
                "use placement = 'pre_encryption' (the active party clips and adds the noise before encrypting)"
            )
        return self


class GaussianNoiseConfig(NoiseConfigBase):
    """Add i.i.d. N(0, variance) noise to every entry of the message (after an L2 clip of each row, if ``clip_norm``)."""

    kind: Literal["gaussian_noise"] = "gaussian_noise"


class LaplaceNoiseConfig(NoiseConfigBase):
    """Add i.i.d. Laplace noise of the given variance (scale b = sqrt(variance / 2)) to every entry (after an L1 clip, if ``clip_norm``)."""

    kind: Literal["laplace_noise"] = "laplace_noise"
    variance: float = Field(gt=0, description="per-entry variance of the added noise (not the scale b)")

    clip_order: ClassVar[int] = 1


class AdditiveNoise(Defense):
    """Adds zero-mean i.i.d. noise of variance ``config.variance`` to every real entry.

    Possible at every placement (with ``clip_norm``, not under encryption: the config refuses it).
    Padding samples receive no noise (they stay zero). With ``noise_source = "csprng"`` the draw
    is kept for the step it was made for, keyed by ``(step, rows, width)``, like
    :class:`~securevfl.defenses.label_dp.LabelDP`; with ``"run_seed"`` every message gets the next
    values of the defense's generator, as before ``noise_source`` existed.
    """

    config: GaussianNoiseConfig | LaplaceNoiseConfig

    def __init__(self, config: DefenseConfigBase, rng: np.random.Generator) -> None:
        super().__init__(config, rng)
        self._shared: tuple[tuple[int, int, int], np.ndarray] | None = None

    @property
    def clip_order(self) -> int:
        """1 (L1, Laplace) or 2 (L2, Gaussian): the norm ``clip_norm`` bounds."""
        return self.config.clip_order

    @abstractmethod
    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        """Noise of the configured distribution (float64), drawn from the defense's generator."""

    @abstractmethod
    def draw_csprng(self, shape: tuple[int, ...]) -> np.ndarray:
        """Noise of the configured distribution (float64) from fresh ``os.urandom`` bytes."""

    def noise(self, ctx: MessageContext, width: int) -> np.ndarray:
        """The noise for the ``ctx.rows`` x ``width`` real block of one message (float64)."""
        shape = (ctx.rows, width)
        if self.config.noise_source == "run_seed":
            return self.draw(shape)
        key = (ctx.step, ctx.rows, width)
        if self._shared is None or self._shared[0] != key:
            self._shared = (key, self.draw_csprng(shape))
        return self._shared[1]

    def _transform(self, real: np.ndarray, ctx: MessageContext) -> np.ndarray:
        if self.config.clip_norm is not None:
            real = clip_rows(real, self.config.clip_norm, order=self.clip_order)
        return real + self.noise(ctx, real.shape[1]).astype(real.dtype, copy=False)

    def apply_encrypted(self, tensor: EncryptedTensor, ctx: MessageContext) -> EncryptedTensor:
        """``tensor + noise``, the noise drawn by the ciphertext holder; consumes no level."""
        check_rows(tensor.shape, ctx)
        width = tensor.shape[1 - ctx.sample_axis]
        noise = self.noise(ctx, width) * ctx.value_scale
        return tensor.add_plain(embed_real(noise, tensor.shape, ctx))

    def _placement_problems(self, placement: Placement, preset_depth: int) -> list[str]:
        problems = super()._placement_problems(placement, preset_depth)
        if placement is Placement.UNDER_ENCRYPTION and self.config.clip_norm is not None:
            problems.append("clip_norm needs comparisons, which CKKS cannot evaluate")
        return problems


class GaussianNoise(AdditiveNoise):
    """i.i.d. N(0, variance) noise on every entry of the message."""

    name: ClassVar[str] = "gaussian_noise"
    config_type = GaussianNoiseConfig

    def draw(self, shape: tuple[int, ...]) -> np.ndarray:
        return self._rng.normal(0.0, math.sqrt(self.config.variance), size=shape)

    def draw_csprng(self, shape: tuple[int, ...]) -> np.ndarray:
        return csprng_normal(math.sqrt(self.config.variance), shape)


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

    def draw_csprng(self, shape: tuple[int, ...]) -> np.ndarray:
        # the difference of two Exp(1) variables is Laplace(0, 1); -log(u) with u in (0, 1] is Exp(1)
        u1 = 1.0 - csprng_uniform(0.0, 1.0, shape)
        u2 = 1.0 - csprng_uniform(0.0, 1.0, shape)
        return self.scale * (np.log(u2) - np.log(u1))
