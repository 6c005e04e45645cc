"""Turn an ``[attack]`` section into a running attack at its party, or into a recorded infeasibility."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from securevfl.attacks.base import Attack, AttackConfigBase, AttackPlan, AttackSetting, AttackTruth
from securevfl.attacks.registry import attack_class
from securevfl.attacks.truth import RowTruth
from securevfl.data import VFLDataset
from securevfl.errors import ConfigError
from securevfl.roles import Capability, Role

__all__ = ["AttackSetup", "prepare_attack"]


@dataclass
class AttackSetup:
    """The attack of one run: who runs it, whether it can, and what it changed before training."""

    config: AttackConfigBase
    party: str | None = None
    role: Role | None = None
    attack: Attack | None = None
    feasible: bool = True
    infeasible_reason: str | None = None
    plan: AttackPlan = field(default_factory=AttackPlan)
    dataset: VFLDataset | None = None
    truth: AttackTruth | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """The ``attack`` record of result.json."""
        record: dict[str, Any] = {
            "kind": self.config.kind,
            "party": self.party,
            "feasible": self.feasible,
            "infeasible_reason": self.infeasible_reason,
        }
        record.update(self.plan.summary)
        if self.attack is not None:
            record.update(self.attack.summary())
        return record


def prepare_attack(
    config: AttackConfigBase,
    dataset: VFLDataset,
    blocks: list[np.ndarray],
    parties: dict[Role, list[str]],
    granted: dict[Role, frozenset[Capability]],
    bottom_output: int,
    seed: int,
    top: str = "sum",
) -> AttackSetup:
    """Resolve the attacking party, plan the attack's data changes, check feasibility, create it.

    ``parties`` names the parties of each role (passives in block order); ``granted`` is what
    the scheme grants each role. ``AttackSetup.dataset`` is the data the parties are built from
    (e.g. the attacker's columns of the poisoned samples carry a trigger; nothing else changes).
    """
    setup = AttackSetup(config=config, dataset=dataset, truth=AttackTruth(y_train=dataset.y_train))
    if not config.active:
        return setup
    cls = attack_class(config.kind)
    candidates = parties.get(cls.role, [])
    if not candidates:  # e.g. a key holder's attack under a scheme without a single key holder
        setup.feasible = False
        setup.infeasible_reason = f"the attack runs at the {cls.role.value} role, which this scheme has no party for"
        return setup
    party = config.party or candidates[-1]
    if party not in candidates:
        raise ConfigError(
            f"attack.party {party!r} is not a {cls.role.value} party (candidates: {', '.join(candidates)})"
        )
    setup.party, setup.role = party, cls.role
    passives = parties.get(Role.PASSIVE, [])
    columns = blocks[passives.index(party)] if cls.role is Role.PASSIVE else None
    setting = AttackSetting(
        dataset=dataset, party=party, columns=columns, bottom_output=bottom_output, seed=seed, top=top, passives=tuple(passives)
    )
    setup.plan = cls.plan(config, setting)
    if setup.plan.dataset is not None:
        setup.dataset = setup.plan.dataset
    reason = cls.infeasibility(granted.get(cls.role, frozenset()), setting)
    if reason is not None:
        setup.feasible, setup.infeasible_reason = False, reason
        return setup
    setup.attack = cls.create(config, setting, setup.plan)
    if cls.scores_gradient_rows and cls.role is Role.PASSIVE:
        setup.truth = replace(setup.truth, gradient_rows=RowTruth((party,), len(setup.dataset.y_train)))  # type: ignore[arg-type]
    passives_hold_activations = Capability.OWN_PLAINTEXT in granted.get(Role.PASSIVE, frozenset())
    if cls.scores_activations and (passives_hold_activations or not cls.activation_truth_optional):
        setup.truth = replace(setup.truth, activations=RowTruth(tuple(passives), len(setup.dataset.y_train)))  # type: ignore[arg-type]
    if cls.scores_passive_inputs:
        inputs = {name: setup.dataset.x_train[:, block] for name, block in zip(passives, blocks, strict=True)}
        setup.truth = replace(setup.truth, passive_inputs=inputs)  # type: ignore[arg-type]
    return setup
