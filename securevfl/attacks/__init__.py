"""Attacks run by a passive party: label inference and the gradient-replacement backdoor.

An attack is a :class:`PassiveAttack` plug-in with hooks at the party's protocol round; the
training loop never changes for a new attack. See ``docs/attacks.md``.
"""

from __future__ import annotations

from securevfl.attacks.base import AttackTruth, Capability, PassiveAttack
from securevfl.attacks.config import AttackConfig
from securevfl.attacks.gradient_replacement import GradientReplacement
from securevfl.attacks.label_inference import LabelInference
from securevfl.attacks.poison import BackdoorData, default_image_trigger, plan_backdoor
from securevfl.attacks.setup import AttackSetup, prepare_attack

__all__ = [
    "AttackConfig",
    "AttackSetup",
    "AttackTruth",
    "BackdoorData",
    "Capability",
    "GradientReplacement",
    "LabelInference",
    "PassiveAttack",
    "default_image_trigger",
    "plan_backdoor",
    "prepare_attack",
]
