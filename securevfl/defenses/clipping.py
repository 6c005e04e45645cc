"""Per-sample norm clipping: bound each sample's contribution to the message.

Clipping scales row ``x`` by ``min(1, max_norm / ||x||_2)``, which keeps its direction and
leaves rows already inside the ball bit-for-bit unchanged. It bounds how far one sample's row
can be amplified (the gradient-replacement backdoor multiplies a recorded row by gamma), and is
the usual first half of a differential-privacy step before noise is added.

It cannot run under encryption: deciding whether ``||x|| > max_norm`` is a comparison, and CKKS
evaluates only additions and multiplications. (Polynomial approximations of the comparison
exist, but they need many levels and a known range of norms; they are not offered.)
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from securevfl.defenses.base import Defense, DefenseConfigBase, MessageContext, Placement, clip_rows

__all__ = ["NormClipping", "NormClippingConfig"]


class NormClippingConfig(DefenseConfigBase):
    """Scale every sample's row down to an L2 norm of at most ``max_norm``."""

    kind: Literal["norm_clipping"] = "norm_clipping"
    max_norm: float = Field(gt=0, description="largest L2 norm a sample's row may keep")

    label_knobs = ("max_norm",)


class NormClipping(Defense):
    """Scale every sample's row to an L2 norm of at most ``max_norm``; plaintext placements only."""

    name: ClassVar[str] = "norm_clipping"
    config_type = NormClippingConfig
    config: NormClippingConfig
    impossible = {Placement.UNDER_ENCRYPTION: "norm clipping needs comparisons, which CKKS cannot evaluate"}

    def _transform(self, real: np.ndarray, ctx: MessageContext) -> np.ndarray:
        return clip_rows(real, self.config.max_norm)

