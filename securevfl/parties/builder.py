"""What every party is made of, whatever the scheme: its own columns, labels and models.

A scheme only decides the wires (how messages are protected); :class:`PartyBuilder` gives every
scheme the same parties around them, so a new scheme cannot hand a party another's data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from securevfl.data import VFLDataset
from securevfl.parties.active import ActiveParty, ActiveWire, LocalBlock
from securevfl.parties.passive import PassiveParty, PassiveWire
from securevfl.protocols import ChannelEndpoint, Identity, InProcessChannel, PhaseTimer, fresh_identities

__all__ = ["ACTIVE_NAME", "COORDINATOR_NAME", "PartyBuilder", "PartyModels", "passive_name"]

ACTIVE_NAME = "active"
COORDINATOR_NAME = "coordinator"


def passive_name(index: int) -> str:
    return f"passive_{index + 1}"


@dataclass
class PartyModels:
    """Freshly seeded models of every party, before they are handed to party objects."""

    bottoms: list[tuple[torch.nn.Module, torch.optim.Optimizer]]
    local_block: LocalBlock | None
    top: torch.nn.Module
    top_optimizer: torch.optim.Optimizer | None
    bottom_out: int


@dataclass
class PartyBuilder:
    """Builds the passive and active parties of one run around the wires a scheme chooses.

    ``channel`` is the federation's, with a fresh identity key for every party of the run and a
    fresh session id (:mod:`securevfl.protocols.framing`): every frame is signed by its sender
    and checked by its receiver. Each party gets only its own endpoint of it.
    """

    dataset: VFLDataset
    blocks: list[np.ndarray]
    models: PartyModels
    timer: PhaseTimer = field(default_factory=PhaseTimer)
    active_name: str = ACTIVE_NAME
    channel: InProcessChannel = field(init=False)

    def __post_init__(self) -> None:
        self.channel = InProcessChannel(identities=fresh_identities([*self.passive_names, self.active_name]))

    @property
    def passive_names(self) -> list[str]:
        return [passive_name(index) for index in range(len(self.models.bottoms))]

    def key_holder_endpoint(self, name: str) -> ChannelEndpoint:
        """The key holder's endpoint: the active party's own identity when it holds the key, else
        a coordinator's, enrolled with a fresh identity key (before any frame travels)."""
        if name not in self.channel.roster:
            self.channel.enrol(Identity.generate(name))
        return self.channel.endpoint(name)

    def passive(self, index: int, wire: PassiveWire) -> PassiveParty:
        """Passive ``index`` with only its own columns and bottom model."""
        model, optimizer = self.models.bottoms[index]
        return PassiveParty(
            name=passive_name(index),
            x_train=self.dataset.x_train[:, self.blocks[index]],
            x_test=self.dataset.x_test[:, self.blocks[index]],
            model=model,
            optimizer=optimizer,
            channel=self.channel.endpoint(passive_name(index)),
            active_name=self.active_name,
            timer=self.timer,
            wire=wire,
        )

    def active(self, wire: ActiveWire) -> ActiveParty:
        """The active party with the labels, the top model and its own block (if any)."""
        return ActiveParty(
            name=self.active_name,
            y_train=self.dataset.y_train,
            y_test=self.dataset.y_test,
            top=self.models.top,
            top_optimizer=self.models.top_optimizer,
            passive_names=self.passive_names,
            channel=self.channel.endpoint(self.active_name),
            timer=self.timer,
            wire=wire,
            local_block=self.models.local_block,
        )
