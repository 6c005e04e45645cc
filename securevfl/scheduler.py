"""The in-process scheduler: runs every party's phases of a protocol round in a valid order.

Each party's phases (:data:`TRAINING_ROUND`, :data:`EVALUATION_ROUND`) use only its channel and
its own state. In one process the scheduler runs them party after party; a key holder is a
server the channel lets answer whenever a party waits for a reply. In a deployment each
process runs the same schedule restricted to its own party, and blocking receives order the
rest, so the party code does not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from securevfl.parties import ActiveParty, KeyHolderParty, PassiveParty
from securevfl.protocols import InProcessChannel, PhaseTimer, ProtocolError
from securevfl.protocols.audit import VisibilityLog
from securevfl.roles import Role

if TYPE_CHECKING:
    from securevfl.attacks.setup import AttackSetup

__all__ = ["EVALUATION_ROUND", "Federation", "SETUP", "TRAINING_ROUND"]

#: Key set-up: every party announces its public material, then every party learns its peers'.
SETUP: tuple[tuple[tuple[Role, ...], str], ...] = (
    ((Role.KEY_HOLDER, Role.ACTIVE, Role.PASSIVE), "announce"),
    ((Role.KEY_HOLDER, Role.ACTIVE, Role.PASSIVE), "learn"),
)
#: One training round: which roles run which phase, in order (key holders answer on demand).
TRAINING_ROUND: tuple[tuple[Role, str], ...] = ((Role.PASSIVE, "forward"), (Role.ACTIVE, "train_step"), (Role.PASSIVE, "backward"))
#: One evaluation batch.
EVALUATION_ROUND: tuple[tuple[Role, str], ...] = ((Role.PASSIVE, "eval_forward"), (Role.ACTIVE, "predict"))


@dataclass
class Federation:
    """All parties of one simulated deployment, wired to one channel, and the order they run in.

    The channel signs every frame as its sender and checks it at its receiver
    (:mod:`securevfl.protocols.framing`); a frame it refuses fails the receive that waited for it
    with :class:`~securevfl.protocols.errors.FrameAuthenticationError`, which a run propagates
    like any other protocol error. ``channel.interceptor`` and ``channel.inject`` let a study
    play a network attacker (never a party: each holds only its endpoint).
    """

    passives: list[PassiveParty]
    active: ActiveParty
    channel: InProcessChannel
    timer: PhaseTimer = field(default_factory=PhaseTimer)
    key_holder: KeyHolderParty | None = None
    attack_setup: AttackSetup | None = None

    def __post_init__(self) -> None:
        if self.key_holder is not None:
            self.channel.attach_server(self.key_holder)

    def parties(self, role: Role) -> Sequence[PassiveParty | ActiveParty | KeyHolderParty]:
        if role is Role.PASSIVE:
            return self.passives
        if role is Role.ACTIVE:
            return [self.active]
        if role is Role.KEY_HOLDER:
            return [] if self.key_holder is None else [self.key_holder]
        return []

    def connect(self) -> None:
        """Exchange public keys over the channel (counted under ``public_key``).

        Each announcement is signed by its owner's identity key, so a substituted key is refused
        by its receiver and this raises instead of training under an attacker's key.
        """
        for roles, phase in SETUP:
            for role in roles:
                for party in self.parties(role):
                    getattr(party, phase)()

    def train_batch(self, step: int, sample_ids: np.ndarray) -> float:
        """One round of the protocol: activations up, gradients down, every party updates."""
        loss = 0.0
        for role, phase in TRAINING_ROUND:
            for party in self.parties(role):
                outcome = getattr(party, phase)(step, sample_ids)
                if role is Role.ACTIVE:
                    loss = outcome
        return loss

    def evaluate(self, n_test: int, batch_size: int, step: int) -> float:
        """Clean test accuracy, computed through the same message path as training.

        ``step`` labels the evaluation requests (the training loop passes the next training step's
        number; the last one's works too): a key holder refuses requests from a step behind one it
        already served.
        """
        predictions = self.predict_split("test", n_test, batch_size, step)
        return float((predictions == self.active.test_labels(np.arange(n_test))).double().mean())

    def predict_split(self, split: str, n_samples: int, batch_size: int, step: int) -> torch.Tensor:
        """The active party's predictions for every sample of an evaluation split, in order."""
        batches = []
        for start in range(0, n_samples, batch_size):
            ids = np.arange(start, min(start + batch_size, n_samples))
            for role, phase in EVALUATION_ROUND:
                for party in self.parties(role):
                    outcome = getattr(party, phase)(step, ids, split)
                    if role is Role.ACTIVE:
                        batches.append(outcome)
        return torch.cat(batches)

    def run_attack(self, setup: AttackSetup) -> None:
        """Attach a feasible attack to the party of its role (an observer taps the channel)."""
        self.attack_setup = setup
        attack = setup.attack
        if attack is None:
            return
        if setup.truth is not None and setup.truth.gradient_rows is not None:  # evaluation only: see attacks/truth.py
            self.active.gradient_taps.append(setup.truth.gradient_rows.record)
        if setup.truth is not None and setup.truth.activations is not None:  # evaluation only: see attacks/truth.py
            for passive in self.passives:
                passive.activation_taps.append(setup.truth.activations.record)
        if setup.role is Role.PASSIVE:
            next(party for party in self.passives if party.name == setup.party).attack = attack
        elif setup.role is Role.ACTIVE:
            self.active.attack = attack
        elif setup.role is Role.KEY_HOLDER and self.key_holder is not None:
            self.key_holder.run_attack(attack)
        elif setup.role is Role.OBSERVER:
            self.channel.taps.append(attack.observed_frame)
        else:
            raise ProtocolError(f"no party of role {setup.role} can run attack {setup.config.kind!r} in this federation")

    def attack_metrics(self, batch_size: int, step: int) -> dict[str, float]:
        """The attack's metrics: those of its evaluation splits (e.g. the backdoor), then its own."""
        setup = self.attack_setup
        if setup is None or not setup.config.active:
            return {}
        predictions = {
            split: self.predict_split(split, len(labels), batch_size, step).numpy()
            for split, (_, labels) in setup.plan.eval_splits.items()
        }
        metrics = setup.plan.evaluate(predictions)
        if setup.attack is not None and setup.truth is not None:
            metrics.update(setup.attack.epoch_metrics(setup.truth))
        return metrics

    def attack_read_at_stop(self) -> dict[str, float]:
        """What an attacker that reads private data holds when an honest party's check has stopped the run
        (:meth:`Attack.read_at_stop`); empty without an attack or a truth to score on."""
        setup = self.attack_setup
        if setup is None or setup.attack is None or setup.truth is None:
            return {}
        return setup.attack.read_at_stop(setup.truth)

    def audits(self) -> dict[str, VisibilityLog]:
        """Every party's record of the plaintext values it has held (a key holder's under its name)."""
        logs = {party.name: party.audit for party in self.passives}
        logs[self.active.name] = self.active.audit
        if self.key_holder is not None:
            logs.setdefault(self.key_holder.name, self.key_holder.audit)
        return logs

    def state_dict(self) -> dict[str, object]:
        """Every party's training state, and the attack's (whatever role it runs at)."""
        state: dict[str, object] = {
            "passives": {party.name: party.state_dict() for party in self.passives},
            "active": self.active.state_dict(),
        }
        attack = None if self.attack_setup is None else self.attack_setup.attack
        if attack is not None:
            state["attack"] = attack.state_dict()
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        passives: dict[str, dict[str, object]] = state["passives"]  # type: ignore[assignment]
        for party in self.passives:
            party.load_state_dict(passives[party.name])
        self.active.load_state_dict(state["active"])  # type: ignore[arg-type]
        attack = None if self.attack_setup is None else self.attack_setup.attack
        if attack is not None:
            # checkpoints of v0.1 kept a (passive) attack's state with its party
            saved = state.get("attack") or passives.get(str(self.attack_setup.party), {}).get("attack")  # type: ignore[union-attr]
            if saved is None:
                raise ProtocolError("the checkpoint holds no state for the run's attack")
            attack.load_state_dict(saved)  # type: ignore[arg-type]
