"""Attacks as plug-ins at any party: label inference, the gradient-replacement backdoor, and yours.

An attack is an :class:`Attack` subclass with its own config model, the role it runs at, the
capabilities it needs and the metrics it reports; its party calls the hooks of
:mod:`securevfl.attacks.hooks` and never branches on the kind of attack. See ``docs/attacks.md``.
"""

from __future__ import annotations

from securevfl.attacks.base import Attack, AttackConfigBase, AttackPlan, AttackSetting, AttackTruth, NoAttackConfig
from securevfl.attacks.gradient_replacement import GradientReplacement, GradientReplacementConfig
from securevfl.attacks.hooks import EncryptedBackprop, EncryptedGradientRows
from securevfl.attacks.label_inference import LabelInference, LabelInferenceConfig
from securevfl.attacks.metrics import MAIN_ACCURACY, MetricSpec
from securevfl.attacks.poison import BackdoorData, BackdoorPlan, default_image_trigger, plan_backdoor
from securevfl.attacks.registry import (
    ATTACKS,
    attack_class,
    attack_keys,
    attack_metrics,
    parse_attack_config,
    register_attack,
    success_metric,
    unregister_attack,
)
from securevfl.attacks.setup import AttackSetup, prepare_attack
from securevfl.roles import Capability, Role

__all__ = [
    "ATTACKS",
    "MAIN_ACCURACY",
    "Attack",
    "AttackConfigBase",
    "AttackPlan",
    "AttackSetting",
    "AttackSetup",
    "AttackTruth",
    "BackdoorData",
    "BackdoorPlan",
    "Capability",
    "EncryptedBackprop",
    "EncryptedGradientRows",
    "GradientReplacement",
    "GradientReplacementConfig",
    "LabelInference",
    "LabelInferenceConfig",
    "MetricSpec",
    "NoAttackConfig",
    "Role",
    "attack_class",
    "attack_keys",
    "attack_metrics",
    "default_image_trigger",
    "parse_attack_config",
    "plan_backdoor",
    "prepare_attack",
    "register_attack",
    "success_metric",
    "unregister_attack",
]
