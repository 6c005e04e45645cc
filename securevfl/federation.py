"""Assemble parties from a configuration and drive one protocol round at a time."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from protocols import InProcessChannel, Message, PhaseTimer
from protocols.protection import PartyProtection, PlainProtection, ReceiverKeyProtection
from securevfl.config import RunConfig
from securevfl.data import VFLDataset
from securevfl.models import build_bottom_model, build_top_model
from securevfl.parties import ActiveParty, LocalBlock, PassiveParty
from securevfl.seeding import seed_torch

ACTIVE_NAME = "active"
PUBLIC_KEY = "public_key"


def passive_name(index: int) -> str:
    return f"passive_{index + 1}"


@dataclass
class Federation:
    """All parties of one simulated deployment, wired to one channel."""

    passives: list[PassiveParty]
    active: ActiveParty
    channel: InProcessChannel
    timer: PhaseTimer = field(default_factory=PhaseTimer)

    def train_batch(self, step: int, sample_ids: np.ndarray) -> float:
        """One round of the protocol: activations up, gradients down, every party updates."""
        for party in self.passives:
            party.send_activations(step, sample_ids)
        loss = self.active.train_step(step, sample_ids)
        for party in self.passives:
            party.apply_gradients(step)
        return loss

    def evaluate(self, n_test: int, batch_size: int, step: int = 0) -> float:
        """Clean test accuracy, computed through the same message path as training."""
        correct = 0
        for start in range(0, n_test, batch_size):
            ids = np.arange(start, min(start + batch_size, n_test))
            for party in self.passives:
                party.send_eval_activations(step, ids)
            predictions = self.active.predict(step, ids)
            correct += int((predictions == self.active.test_labels(ids)).sum())
        return correct / n_test

    def state_dict(self) -> dict[str, object]:
        return {
            "passives": {party.name: party.state_dict() for party in self.passives},
            "active": self.active.state_dict(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        passives = state["passives"]
        for party in self.passives:
            party.load_state_dict(passives[party.name])  # type: ignore[index]
        self.active.load_state_dict(state["active"])  # type: ignore[arg-type]


def build_federation(config: RunConfig, dataset: VFLDataset, blocks: list[np.ndarray]) -> Federation:
    """Create every party with only its own columns, labels and freshly seeded parameters.

    ``blocks`` are column-index arrays, passive blocks first, then the active party's own
    block when ``parties.active_block`` is set.
    """
    model_cfg, train_cfg = config.model, config.train
    n_passive = config.parties.passive
    bottom_out = model_cfg.resolved_bottom_output(dataset.num_classes)
    activation = model_cfg.resolved_output_activation()
    channel = InProcessChannel()
    timer = PhaseTimer()

    def protection(party: str) -> PartyProtection:
        if config.protection.scheme == "plain":
            return PlainProtection()
        return ReceiverKeyProtection(party, config.protection.preset, timer)

    def make_bottom(index: int, columns: np.ndarray) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        seed_torch(train_cfg.seed, "bottom", index)
        model = build_bottom_model(len(columns), model_cfg.bottom_hidden, bottom_out, activation)
        return model, _sgd(model.parameters(), config)

    passives = []
    for index in range(n_passive):
        columns = blocks[index]
        model, optimizer = make_bottom(index, columns)
        passives.append(
            PassiveParty(
                name=passive_name(index),
                x_train=dataset.x_train[:, columns],
                x_test=dataset.x_test[:, columns],
                model=model,
                optimizer=optimizer,
                channel=channel,
                active_name=ACTIVE_NAME,
                timer=timer,
                protection=protection(passive_name(index)),
            )
        )

    local_block = None
    if config.parties.active_block:
        columns = blocks[n_passive]
        model, optimizer = make_bottom(n_passive, columns)
        local_block = LocalBlock(
            x_train=torch.from_numpy(np.ascontiguousarray(dataset.x_train[:, columns], dtype=np.float32)),
            x_test=torch.from_numpy(np.ascontiguousarray(dataset.x_test[:, columns], dtype=np.float32)),
            model=model,
            optimizer=optimizer,
        )

    n_parts = len(blocks)
    seed_torch(train_cfg.seed, "top")
    top = build_top_model(model_cfg.top, [bottom_out] * n_parts, model_cfg.top_hidden, dataset.num_classes)
    top_params = list(top.parameters())
    active = ActiveParty(
        name=ACTIVE_NAME,
        y_train=dataset.y_train,
        y_test=dataset.y_test,
        top=top,
        top_optimizer=_sgd(top_params, config) if top_params else None,
        passive_names=[party.name for party in passives],
        channel=channel,
        timer=timer,
        protection=protection(ACTIVE_NAME),
        local_block=local_block,
    )
    _exchange_keys(channel, active.name, active.protection, {p.name: p.protection for p in passives})
    return Federation(passives=passives, active=active, channel=channel, timer=timer)


def _exchange_keys(
    channel: InProcessChannel, active: str, active_protection: PartyProtection, passives: dict[str, PartyProtection]
) -> None:
    """Each party announces its public material to the peers that send to it, over the channel.

    Passives send to the active party and the active party sends to every passive, so the
    active party's announcement goes to all passives and each passive's to the active party.
    The bytes are accounted under the ``public_key`` message kind.
    """
    routes = [(active, active_protection, name, protection) for name, protection in passives.items()]
    routes += [(name, protection, active, active_protection) for name, protection in passives.items()]
    for sender, sender_protection, receiver, receiver_protection in routes:
        announcement = sender_protection.announcement()
        if announcement is None:
            continue
        channel.send(Message(PUBLIC_KEY, sender, receiver, 0, announcement, codec="key"))
        message = channel.receive(receiver, PUBLIC_KEY, sender=sender)
        receiver_protection.learn_peer(sender, message.payload)


def _sgd(params, config: RunConfig) -> torch.optim.Optimizer:  # type: ignore[no-untyped-def]
    train = config.train
    return torch.optim.SGD(params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
