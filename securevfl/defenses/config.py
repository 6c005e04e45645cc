"""Validated configurations of the defenses, one pydantic model per ``kind``.

Unknown keys and out-of-range values are rejected when the configuration is read, so a typo
never silently turns a defense off. Placement checks that depend on the CKKS parameter set
(levels) happen in :meth:`~securevfl.defenses.base.Defense.check_placement`, or in
:func:`build_defense` when it is given ``preset_depth``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from securevfl.defenses.base import Placement

if TYPE_CHECKING:
    from securevfl.defenses.base import Defense

__all__ = [
    "DefenseConfig",
    "DefenseConfigBase",
    "GaussianNoiseConfig",
    "LaplaceNoiseConfig",
    "NormClippingConfig",
    "SparsificationConfig",
    "build_defense",
    "parse_defense_config",
]


class DefenseConfigBase(BaseModel):
    """Fields every defense has: which messages it transforms and where."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    on: Literal["gradient", "activation"] = Field(
        default="gradient", description="which messages: per-sample gradients dL/dH or activations H"
    )
    placement: Placement = Field(
        default=Placement.PRE_ENCRYPTION,
        description="pre_encryption (sender), under_encryption (ciphertext holder), post_decryption (receiver)",
    )


class GaussianNoiseConfig(DefenseConfigBase):
    """Add i.i.d. N(0, variance) noise to every entry of the message."""

    kind: Literal["gaussian_noise"] = "gaussian_noise"
    variance: float = Field(gt=0, description="per-entry variance of the added noise")


class LaplaceNoiseConfig(DefenseConfigBase):
    """Add i.i.d. Laplace noise of the given variance (scale b = sqrt(variance / 2)) to every entry."""

    kind: Literal["laplace_noise"] = "laplace_noise"
    variance: float = Field(gt=0, description="per-entry variance of the added noise (not the scale b)")


class SparsificationConfig(DefenseConfigBase):
    """Send only a fraction of the entries; keep the rest locally for later messages (DGC)."""

    kind: Literal["sparsification"] = "sparsification"
    drop_rate: float = Field(ge=0, lt=1, description="fraction s of the entries withheld from each message")
    selection: Literal["top_k", "random"] = Field(
        default="top_k", description="top_k: largest magnitudes; random: a uniformly random subset of the same size"
    )
    accumulate: bool = Field(
        default=True,
        description="add the withheld entries back into the next message (DGC); false: drop them for good",
    )
    momentum_correction: bool = Field(default=False, description="accumulate velocity, not gradients (Lin et al.)")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="momentum m of the correction (ignored without it)")

    @model_validator(mode="after")
    def _check_momentum(self) -> SparsificationConfig:
        if self.momentum_correction and not self.accumulate:
            raise ValueError("momentum_correction accumulates velocity locally; it needs accumulate = true")
        return self


class NormClippingConfig(DefenseConfigBase):
    """Scale every sample's row down to an L2 norm of at most ``max_norm``."""

    kind: Literal["norm_clipping"] = "norm_clipping"
    max_norm: float = Field(gt=0, description="largest L2 norm a sample's row may keep")


DefenseConfig = Annotated[
    Union[GaussianNoiseConfig, LaplaceNoiseConfig, SparsificationConfig, NormClippingConfig],
    Field(discriminator="kind"),
]
"""Any defense configuration; the ``kind`` key selects the model."""

_ADAPTER: TypeAdapter[Any] = TypeAdapter(DefenseConfig)


def parse_defense_config(data: Any) -> DefenseConfigBase:
    """Validate a mapping (e.g. a TOML table) into the configuration its ``kind`` names.

    Raises:
        pydantic.ValidationError: unknown ``kind``, unknown keys, or invalid values.
    """
    return _ADAPTER.validate_python(data)


def build_defense(config: DefenseConfigBase, rng: np.random.Generator, *, preset_depth: int | None = None) -> Defense:
    """Instantiate the defense ``config`` describes.

    Args:
        config: a validated configuration.
        rng: the defense's own random generator.
        preset_depth: when given, also check ``config.placement`` against it (multiplicative
            levels available to the defense), raising
            :class:`~securevfl.defenses.base.PlacementError` at build time.
    """
    from securevfl.defenses.registry import defense_class  # the defense modules import this one

    defense = defense_class(config.kind)(config, rng)  # type: ignore[attr-defined]
    if preset_depth is not None:
        defense.check_placement(config.placement, preset_depth=preset_depth)
    return defense
