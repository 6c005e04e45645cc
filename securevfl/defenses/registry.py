"""Which class implements each defense ``kind``.

Adding a defense means adding its config to :data:`~securevfl.defenses.config.DefenseConfig`
and its class here; the training loop does not change.
"""

from __future__ import annotations

from securevfl.defenses.base import Defense
from securevfl.defenses.clipping import NormClipping
from securevfl.defenses.noise import GaussianNoise, LaplaceNoise
from securevfl.defenses.sparsification import Sparsification

__all__ = ["DEFENSES", "defense_class"]

DEFENSES: dict[str, type[Defense]] = {cls.name: cls for cls in (GaussianNoise, LaplaceNoise, Sparsification, NormClipping)}


def defense_class(kind: str) -> type[Defense]:
    """The class of defense ``kind``; ``KeyError`` naming the known kinds otherwise."""
    try:
        return DEFENSES[kind]
    except KeyError:
        raise KeyError(f"unknown defense kind {kind!r} (known: {', '.join(sorted(DEFENSES))})") from None
