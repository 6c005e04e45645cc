"""Turn an ``[attack]`` section into a running attack, or into a recorded infeasibility."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from securevfl.attacks.base import AttackTruth, PassiveAttack
from securevfl.attacks.config import AttackConfig
from securevfl.attacks.gradient_replacement import GradientReplacement
from securevfl.attacks.label_inference import LabelInference
from securevfl.attacks.poison import BackdoorData, plan_backdoor
from securevfl.data import VFLDataset
from securevfl.errors import ConfigError
from securevfl.roles import Capability
from securevfl.seeding import derived_seed

__all__ = ["AttackSetup", "prepare_attack"]


@dataclass
class AttackSetup:
    """The attack of one run: who runs it, whether it can, and the data it poisons."""

    config: AttackConfig
    party: str | None = None
    attack: PassiveAttack | None = None
    feasible: bool = True
    infeasible_reason: str | None = None
    backdoor: BackdoorData | None = None
    dataset: VFLDataset | None = None
    truth: AttackTruth | None = field(default=None, repr=False)

    def summary(self) -> dict[str, object]:
        """The ``attack`` record of result.json."""
        record: dict[str, object] = {
            "kind": self.config.kind,
            "party": self.party,
            "feasible": self.feasible,
            "infeasible_reason": self.infeasible_reason,
        }
        if self.backdoor is not None:
            record.update(
                target_label=self.backdoor.target_label,
                poisoned_train=int(self.backdoor.poisoned_train.size),
                triggered_test=int(self.backdoor.triggered_test.size),
                known_target=self.backdoor.known_target.tolist(),
                trigger_columns=self.backdoor.trigger_columns.tolist(),
                trigger_values=self.backdoor.trigger_values.tolist(),
            )
        if isinstance(self.attack, GradientReplacement):
            record.update(gamma=self.attack.gamma, record=self.attack.record, blur_activations=self.attack.blur_std is not None, replaced_rows=self.attack.replaced_rows)
        return record


def prepare_attack(
    config: AttackConfig,
    dataset: VFLDataset,
    blocks: list[np.ndarray],
    passive_names: list[str],
    granted: frozenset[Capability],
    bottom_output: int,
    seed: int,
) -> AttackSetup:
    """Check feasibility, draw the backdoor samples and write the trigger into the attacker's block.

    ``AttackSetup.dataset`` is the data the parties are built from: the attacker's columns of
    the poisoned training samples carry the trigger (nothing else changes).
    """
    setup = AttackSetup(config=config, dataset=dataset, truth=AttackTruth(y_train=dataset.y_train))
    if not config.active:
        return setup
    party = config.party or passive_names[-1]
    if party not in passive_names:
        raise ConfigError(f"attack.party {party!r} is not a passive party (passives: {', '.join(passive_names)})")
    setup.party = party
    columns = blocks[passive_names.index(party)]
    attack_class = LabelInference if config.kind == "label_inference" else GradientReplacement
    reason = attack_class.infeasibility(granted)
    if config.kind == "label_inference" and reason is None and bottom_output != dataset.num_classes:
        reason = (
            f"the gradient rows have {bottom_output} entries, not one per class ({dataset.num_classes}): "
            "with a trainable top the sign pattern no longer names the label"
        )
    if config.kind == "gradient_replacement":
        rng = np.random.default_rng(derived_seed(seed, "attack", "samples"))
        setup.backdoor = plan_backdoor(dataset, columns, config.model_copy(update={"party": party}), rng)
        setup.dataset = _poisoned(dataset, setup.backdoor)
    if reason is not None:
        setup.feasible, setup.infeasible_reason = False, reason
        return setup
    if config.kind == "label_inference":
        setup.attack = LabelInference(party, len(dataset.y_train))
    else:
        assert setup.backdoor is not None
        blur = config.blur_variance if config.blur_activations else None
        rng = np.random.default_rng(derived_seed(seed, "attack", "blur"))
        setup.attack = GradientReplacement(party, setup.backdoor, config.gamma, blur, rng, record=config.record)
    return setup


def _poisoned(dataset: VFLDataset, backdoor: BackdoorData) -> VFLDataset:
    from dataclasses import replace

    x_train = backdoor.apply_trigger(dataset.x_train, backdoor.poisoned_train).astype(np.float32)
    return replace(dataset, x_train=x_train)
