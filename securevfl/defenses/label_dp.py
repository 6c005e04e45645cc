"""Label-DP Gaussian noise on the gradient rows the active party sends (option A1 of issue 12).

What it protects. Under every scheme, everything a passive party learns about the labels comes
from the gradient rows ``G = dL/dH`` the active party sends it (in the clear, under its own key,
or under the key holder's key; the label-private schemes reveal only the batch-summed ``dW``,
which the passive computes from ``G`` and its own data). Adding Gaussian noise to ``G`` before
it leaves the active party therefore makes the passive's whole view, and anything it computes
from it, post-processing of a Gaussian mechanism on the labels. The neighbouring relation is
*label-DP*: two training sets that differ in the label of one sample.

Calibration. With the sum top (no trainable active layer) and the run's loss,
``F.cross_entropy`` with its default mean over the batch's ``B_t`` real rows, row ``i`` of the
gradient is ``(softmax(s_i) - e_{y_i}) / B_t``. The logits ``s_i`` do not depend on ``y_i``, so
replacing one label moves only that row, by exactly ``||e_y - e_y'|| / B_t = sqrt(2) / B_t``.
This defense adds ``N(0, sigma_t^2)`` to every real entry with
``sigma_t = noise_multiplier * sqrt(2) / B_t``: each release has the noise multiplier ``z``
whatever the batch's size (the last, shorter batch of an epoch gets more noise). Padding rows
(the label-private schemes pad every batch) get none and stay zero.

One release per step. The noise is drawn once per step and the same draw is added to the
message of every passive (and to both packings ``G^T`` and ``G`` when a message travels in two).
Under the sum top every passive receives the same rows, so the step is one release of the
Gaussian mechanism, not one per passive. (With a trainable top the passives' rows differ; they
still get the same noise draw, but no epsilon is claimed there, see
:mod:`securevfl.defenses.accounting`.)

Where the noise comes from (``noise_source``):

- ``"csprng"`` (default): fresh ``os.urandom`` bytes per draw
  (:func:`securevfl.crypto.randomness.csprng_normal`). Every party knows ``train.seed`` (it fixes
  the shared batch order), so noise derived from it could be regenerated and subtracted by the
  passive; only unpredictable noise makes the epsilon mean anything in a deployment. The price:
  two runs with the same seed no longer give bit-identical histories, and a resumed run draws
  different noise than an uninterrupted one would have.
- ``"run_seed"``: derived from the defense's own generator (itself derived from ``train.seed``
  like every other defense's), so histories are reproducible bit for bit and a resumed run
  equals an uninterrupted one (tests, debugging, comparing code changes). The noise has the
  same distribution, so empirical attack numbers are comparable, but the accountant records the
  epsilon as not claimed, with that reason. The step's draw is a function of a key (drawn once
  from the defense's generator when it is built) and the step number, not the next values of a
  running stream: the pipeline rewinds a defense's generator between the packings of one
  message (:meth:`~securevfl.defenses.pipeline.DefensePipeline.encrypted`), which must not make
  two steps share a draw.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from securevfl.crypto.randomness import csprng_normal
from securevfl.defenses.base import Defense, DefenseConfigBase, MessageContext, Placement, check_rows, embed_real

if TYPE_CHECKING:
    from securevfl.crypto import EncryptedTensor

__all__ = ["DEFAULT_DELTA", "LABEL_SENSITIVITY_ROWS", "LabelDP", "LabelDPConfig", "label_dp_sigma"]

LABEL_SENSITIVITY_ROWS = math.sqrt(2.0)
"""``B_t`` times the L2 change of the gradient rows when one label is replaced (sum top, mean loss)."""

DEFAULT_DELTA = 1e-5
"""Below ``1 / n`` for MNIST's 60,000 training samples, as (epsilon, delta)-DP requires to mean anything."""


def label_dp_sigma(noise_multiplier: float, rows: int) -> float:
    """The per-entry standard deviation for a batch of ``rows`` real samples: ``z * sqrt(2) / rows``."""
    if rows < 1:
        raise ValueError(f"a batch needs at least one real row, got {rows}")
    return noise_multiplier * LABEL_SENSITIVITY_ROWS / rows


class LabelDPConfig(DefenseConfigBase):
    """Gaussian noise on the gradient rows, calibrated to one label's sensitivity (label-DP).

    ``noise_multiplier`` is ``z = sigma_t / Delta_t`` with ``Delta_t = sqrt(2) / B_t``; ``delta``
    is the delta at which the run reports its epsilon (it changes only the accounting).
    """

    kind: Literal["label_dp"] = "label_dp"
    noise_multiplier: float = Field(gt=0, description="z: per-entry std sigma_t = z * sqrt(2) / B_t")
    delta: float = Field(default=DEFAULT_DELTA, gt=0, lt=1, description="delta of the (epsilon, delta) the run reports")
    noise_source: Literal["csprng", "run_seed"] = Field(
        default="csprng",
        description="csprng: os.urandom, unpredictable to the passive; run_seed: reproducible, but then no epsilon is claimed",
    )

    label_knobs = ("noise_multiplier", "noise_source")

    @model_validator(mode="after")
    def _gradients_only(self) -> LabelDPConfig:
        # The calibration is the sensitivity of the gradient rows to one label; activations do
        # not depend on labels at all, so noise on them would protect nothing this accounts for.
        if self.on != "gradient":
            raise ValueError("label_dp calibrates its noise to the gradient rows' label sensitivity: `on` must be 'gradient'")
        return self


class LabelDP(Defense):
    """Adds ``N(0, (z sqrt(2) / B_t)^2)`` to every real entry of the gradient rows, one draw per step.

    The draw is kept for the step it was made for, keyed by ``(step, rows, width)``: every later
    message of that step with the same shape (the other passives, the second packing) gets the
    same noise, so the passives hold one common release. State saving is the base class's (the
    generator); the kept draw is not saved, since a checkpoint falls between steps.
    """

    name: ClassVar[str] = "label_dp"
    config_type = LabelDPConfig
    config: LabelDPConfig
    impossible = {
        Placement.POST_DECRYPTION: (
            "the gradient rows are decrypted (if at all) by the passive party, the one label-DP guards against; "
            "noise must be added before the rows reach it"
        )
    }

    def __init__(self, config: LabelDPConfig, rng: np.random.Generator) -> None:
        super().__init__(config, rng)
        # run_seed only: the key of the per-step streams (a fresh defense built from the same
        # seed draws the same key, so resuming needs nothing beyond the base state)
        self._key = int(rng.integers(0, 2**63))
        self._shared: tuple[tuple[int, int, int], np.ndarray] | None = None

    def sigma(self, rows: int) -> float:
        """The noise standard deviation for a batch of ``rows`` real samples."""
        return label_dp_sigma(self.config.noise_multiplier, rows)

    def step_noise(self, ctx: MessageContext, width: int) -> np.ndarray:
        """The step's noise (``ctx.rows`` x ``width``, float64): drawn at the step's first message, then reused."""
        key = (ctx.step, ctx.rows, width)
        if self._shared is None or self._shared[0] != key:
            sigma, shape = self.sigma(ctx.rows), (ctx.rows, width)
            if self.config.noise_source == "csprng":
                noise = csprng_normal(sigma, shape)
            else:
                noise = np.random.default_rng([self._key, ctx.step, ctx.rows, width]).normal(0.0, sigma, size=shape)
            self._shared = (key, noise)
        return self._shared[1]

    def _transform(self, real: np.ndarray, ctx: MessageContext) -> np.ndarray:
        if ctx.rows == 0:
            return real
        return real + self.step_noise(ctx, real.shape[1]).astype(real.dtype, copy=False)

    def apply_encrypted(self, tensor: EncryptedTensor, ctx: MessageContext) -> EncryptedTensor:
        """``tensor + noise`` with the step's shared draw; consumes no level (like :class:`GaussianNoise`)."""
        check_rows(tensor.shape, ctx)
        if ctx.rows == 0:
            return tensor
        width = tensor.shape[1 - ctx.sample_axis]
        return tensor.add_plain(embed_real(self.step_noise(ctx, width) * ctx.value_scale, tensor.shape, ctx))
