"""The backdoor's control: an honest run measured on the triggered test inputs of a backdoor.

A backdoor accuracy of 13 % means little until one knows how often a model trained *without*
the attack already sends the same triggered inputs to the target label (a trigger in four
corner pixels can by itself push a weak model towards some class). ``kind = "backdoor_control"``
trains exactly like ``kind = "none"`` — no party deviates, the training data are untouched —
and evaluates the triggered test set a backdoor with the same settings and seed would be
measured on (the same samples: drawn by :func:`~securevfl.attacks.poison.plan_backdoor` with
the same derived seed and in the same order), reporting :data:`CONTROL_TARGET_RATE`.

A study puts it in the clean variant of a grid
(``clean = { "attack.kind" = "backdoor_control" }``) with the backdoor's fields
(``target_label``, ``poison_train``, ``poison_test``, trigger, ``party``) left as the attacked
cells have them; the report then shows each backdoor next to its control.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from securevfl.attacks.base import Attack, AttackConfigBase, AttackSetting
from securevfl.attacks.metrics import MetricSpec
from securevfl.attacks.poison import BACKDOOR_SPLIT, BackdoorConfig, BackdoorPlan, plan_backdoor
from securevfl.seeding import derived_seed

__all__ = ["CONTROL_TARGET_RATE", "BackdoorControl", "BackdoorControlConfig"]

CONTROL_TARGET_RATE = MetricSpec(
    "control_target_rate",
    "fraction of a backdoor's triggered test samples (none of the target class) that a model trained without any attack "
    "classifies as the target label (the backdoor's control)",
    "higher",
    "control",
)


class BackdoorControlConfig(BackdoorConfig):
    """No attack; the triggered test set of the backdoor with these settings is evaluated as a control."""

    kind: Literal["backdoor_control"] = "backdoor_control"

    def label(self) -> str:
        return "none (backdoor control)"


@dataclass
class BackdoorControlPlan(BackdoorPlan):
    """The backdoor's triggered test split only: the training data stay as they are."""

    def evaluate(self, predictions: Mapping[str, np.ndarray]) -> dict[str, float]:
        assert self.backdoor is not None
        hits = np.asarray(predictions[BACKDOOR_SPLIT]) == self.backdoor.target_label
        return {CONTROL_TARGET_RATE.name: float(hits.astype(np.float64).mean())}


class BackdoorControl(Attack):
    """An honest party: every hook keeps its default; only the control split is evaluated."""

    name: ClassVar[str] = "backdoor_control"
    deviates = False  # an honest party's plug-in
    config_type = BackdoorControlConfig
    requires = (frozenset(),)  # it does nothing, so every scheme can carry it
    infeasible_because = "never infeasible"
    metrics = (CONTROL_TARGET_RATE,)
    success_metric = None  # not an attack: the survival table treats it as a clean baseline

    @classmethod
    def plan(cls, config: AttackConfigBase, setting: AttackSetting) -> BackdoorControlPlan:
        assert isinstance(config, BackdoorControlConfig) and setting.columns is not None
        # the same derived seed and draw order as GradientReplacement.plan: the same triggered samples
        rng = np.random.default_rng(derived_seed(setting.seed, "attack", "samples"))
        backdoor = plan_backdoor(setting.dataset, setting.columns, config.model_copy(update={"party": setting.party}), rng)
        full = BackdoorPlan.of(setting.dataset, backdoor)
        return BackdoorControlPlan(dataset=None, eval_splits=full.eval_splits, summary=full.summary, backdoor=backdoor)

    def summary(self) -> dict[str, Any]:
        return {"control": True}
