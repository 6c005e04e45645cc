"""Attacks defined outside securevfl, shared by the registry tests and the study-plugin test (not registered here)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from securevfl.attacks import Attack, AttackConfigBase, AttackSetting, AttackTruth, MetricSpec
from securevfl.roles import Capability, Role

ROWS_SEEN = MetricSpec("activation_rows_seen", "fraction of training samples whose H_k rows the active party read", "higher")


class RowsSeenConfig(AttackConfigBase):
    kind: Literal["test_rows_seen"] = "test_rows_seen"


class RowsSeen(Attack):
    """A curious active party that records which samples' individual activation rows it read."""

    name: ClassVar[str] = "test_rows_seen"
    config_type = RowsSeenConfig
    role = Role.ACTIVE
    requires = (frozenset({Capability.PLAINTEXT_ACTIVATION_ROWS}),)
    infeasible_because = "the active party only decrypts a combination of the activations"
    metrics = (ROWS_SEEN,)
    success_metric = ROWS_SEEN.name

    def __init__(self, party: str, n_train: int) -> None:
        super().__init__(party)
        self.seen = np.zeros(n_train, dtype=bool)

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: Any) -> RowsSeen:
        return cls(setting.party, len(setting.dataset.y_train))

    def received_activations(self, step: int, sample_ids: np.ndarray, sender: str, values: np.ndarray) -> None:
        assert values.shape[0] == len(sample_ids)
        self.seen[sample_ids] = True

    def epoch_metrics(self, truth: AttackTruth) -> dict[str, float]:
        return {ROWS_SEEN.name: float(self.seen.mean())}
