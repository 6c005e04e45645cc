"""Defenses: transforms applied to the messages between parties (noise, sparsification, clipping, label-DP).

Each defense is configured by one ``[defense]`` table whose ``kind`` selects it, declares where
in the message pipeline it can run (:class:`Placement`), and refuses an impossible placement
with a :class:`PlacementError` that says why::

    import numpy as np
    from securevfl.defenses import MessageContext, build_defense, parse_defense_config

    config = parse_defense_config({"kind": "sparsification", "drop_rate": 0.99})
    defense = build_defense(config, np.random.default_rng(0), preset_depth=0)
    ctx = MessageContext(kind="gradient", sender="active", receiver="passive_1", step=0, rows=64)
    sparse = defense.apply(gradient, ctx)

Each defense module holds a defense's config and class; ``registry.py`` lists the defenses
once and derives the rest. See ``docs/defenses.md``.
"""

from __future__ import annotations

from securevfl.defenses.base import Defense, DefenseConfigBase, MessageContext, Placement, PlacementError
from securevfl.defenses.clipping import NormClipping, NormClippingConfig
from securevfl.defenses.label_dp import LabelDP, LabelDPConfig
from securevfl.defenses.noise import AdditiveNoise, GaussianNoise, GaussianNoiseConfig, LaplaceNoise, LaplaceNoiseConfig
from securevfl.defenses.registry import (
    DEFENSES,
    DefenseConfig,
    build_defense,
    defense_class,
    parse_defense_config,
    register_defense,
)
from securevfl.defenses.sparsification import Sparsification, SparsificationConfig, kept_entries

__all__ = [
    "DEFENSES",
    "AdditiveNoise",
    "Defense",
    "DefenseConfig",
    "DefenseConfigBase",
    "GaussianNoise",
    "GaussianNoiseConfig",
    "LabelDP",
    "LabelDPConfig",
    "LaplaceNoise",
    "LaplaceNoiseConfig",
    "MessageContext",
    "NormClipping",
    "NormClippingConfig",
    "Placement",
    "PlacementError",
    "Sparsification",
    "SparsificationConfig",
    "build_defense",
    "defense_class",
    "kept_entries",
    "parse_defense_config",
    "register_defense",
]
