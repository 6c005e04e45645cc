"""A study plugin for tests: registers an attack from outside securevfl when imported (in the study and its workers)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from securevfl.attacks import ATTACKS, Attack, AttackConfigBase, AttackSetting, AttackTruth, MetricSpec, register_attack
from securevfl.roles import Capability, Role

ROWS = MetricSpec("plugin_rows_seen", "fraction of training samples whose activation rows the active party read")


class PluginRowsConfig(AttackConfigBase):
    kind: Literal["test_plugin_rows"] = "test_plugin_rows"


class PluginRows(Attack):
    name: ClassVar[str] = "test_plugin_rows"
    config_type = PluginRowsConfig
    role = Role.ACTIVE
    requires = (frozenset({Capability.PLAINTEXT_ACTIVATION_ROWS}),)
    infeasible_because = "the active party only decrypts a combination of the activations"
    metrics = (ROWS,)
    success_metric = ROWS.name

    def __init__(self, party: str, n_train: int) -> None:
        super().__init__(party)
        self.seen = np.zeros(n_train, dtype=bool)

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: Any) -> PluginRows:
        return cls(setting.party, len(setting.dataset.y_train))

    def received_activations(self, step: int, sample_ids: np.ndarray, sender: str, values: np.ndarray) -> None:
        self.seen[sample_ids] = True

    def epoch_metrics(self, truth: AttackTruth) -> dict[str, float]:
        return {ROWS.name: float(self.seen.mean())}


if PluginRows.name not in ATTACKS:
    register_attack(PluginRows)
