"""What every party is made of, whatever the scheme: its own columns, labels and models.

A scheme only decides the wires (how messages are protected); the functions here give every
scheme the same parties around them, built from one party's own inputs (:class:`PassiveOwn`,
:class:`ActiveOwn`) and the public facts every party of the run agrees on (:class:`RunShape`),
so a new scheme cannot hand a party another's data, and one process can build its own party
alone (:meth:`securevfl.schemes.base.Scheme.build_party`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from securevfl.parties.active import ActiveParty, ActiveWire, LocalBlock
from securevfl.parties.key_holder import KeyHolderParty
from securevfl.parties.passive import PassiveParty, PassiveWire
from securevfl.protocols import Channel, PhaseTimer, ProtocolError
from securevfl.roles import Role

__all__ = [
    "ACTIVE_NAME",
    "COORDINATOR_NAME",
    "ActiveOwn",
    "BottomShape",
    "LocalParties",
    "PartyModels",
    "PassiveOwn",
    "RunShape",
    "check_own",
    "make_active",
    "make_passive",
    "passive_name",
]

ACTIVE_NAME = "active"
COORDINATOR_NAME = "coordinator"


def passive_name(index: int) -> str:
    return f"passive_{index + 1}"


@dataclass(frozen=True)
class BottomShape:
    """A passive's bottom model as the run agrees on it: layer widths ``[in, hidden..., out]`` and
    whether a ReLU follows each layer. Public (the plan's architecture), so a label-private active
    party or key holder can plan the passive's encrypted backpropagation without its model."""

    widths: tuple[int, ...]
    relu_after: tuple[bool, ...]


@dataclass(frozen=True)
class RunShape:
    """The public facts of a run that every party holds before training, besides its config.

    Sizes and widths only, never values: how many samples each split has, how many columns each
    block has (passives in order, then the active party's own block when it has one), and the
    passives' bottom architectures (None for a model that is not a Linear/ReLU stack, which only
    the open schemes accept).
    """

    passive_names: tuple[str, ...]
    block_widths: tuple[int, ...]
    bottoms: tuple[BottomShape | None, ...]
    bottom_out: int
    num_classes: int
    n_train: int
    n_test: int
    active_name: str = ACTIVE_NAME

    @property
    def active_block(self) -> bool:
        """Whether the active party holds a feature block of its own (it is the last block)."""
        return len(self.block_widths) > len(self.passive_names)

    def role_of(self, name: str, key_holder: str | None) -> Role:
        """The role of party ``name`` (the active party stays ``ACTIVE`` when it also holds the key)."""
        if name in self.passive_names:
            return Role.PASSIVE
        if name == self.active_name:
            return Role.ACTIVE
        if name == key_holder:
            return Role.KEY_HOLDER
        known = [*self.passive_names, self.active_name, *([key_holder] if key_holder else [])]
        raise ProtocolError(f"{name!r} is not a party of this run (parties: {', '.join(known)})")

    def party_names(self, key_holder: str | None) -> list[str]:
        """Every party of the run: passives, the active party, then a separate key holder (if any)."""
        names = [*self.passive_names, self.active_name]
        return names + [key_holder] if key_holder is not None and key_holder not in names else names


@dataclass
class PassiveOwn:
    """Everything a passive party holds of its own: its columns of every split and its bottom model."""

    x_train: np.ndarray
    x_test: np.ndarray
    model: nn.Module
    optimizer: torch.optim.Optimizer
    eval_x: dict[str, np.ndarray] = field(default_factory=dict)
    """Extra evaluation sets (e.g. triggered test samples): this party's columns of their rows."""


@dataclass
class ActiveOwn:
    """Everything the active party holds of its own: the labels, the top model and its own block."""

    y_train: np.ndarray
    y_test: np.ndarray
    top: nn.Module
    top_optimizer: torch.optim.Optimizer | None
    local_block: LocalBlock | None = None
    eval_labels: dict[str, np.ndarray] = field(default_factory=dict)
    """Labels of the extra evaluation sets."""
    eval_local_x: dict[str, np.ndarray] = field(default_factory=dict)
    """Its own columns of the extra evaluation sets (only with a local block)."""


@dataclass
class PartyModels:
    """Freshly seeded models of every party of an in-process run, before they are handed to party objects."""

    bottoms: list[tuple[torch.nn.Module, torch.optim.Optimizer]]
    local_block: LocalBlock | None
    top: torch.nn.Module
    top_optimizer: torch.optim.Optimizer | None
    bottom_out: int


@dataclass
class LocalParties:
    """The party objects one process runs for party ``name``.

    A passive; the active party (with the key holder's service under its own name when it holds
    the key); or a coordinator, which is only a key holder.
    """

    name: str
    role: Role
    passive: PassiveParty | None = None
    active: ActiveParty | None = None
    key_holder: KeyHolderParty | None = None

    def objects(self) -> list[PassiveParty | ActiveParty | KeyHolderParty]:
        return [party for party in (self.key_holder, self.active, self.passive) if party is not None]


def make_passive(name: str, own: PassiveOwn, channel: Channel, active_name: str, timer: PhaseTimer, wire: PassiveWire) -> PassiveParty:
    """Passive ``name`` with only its own columns and bottom model."""
    party = PassiveParty(
        name=name,
        x_train=own.x_train,
        x_test=own.x_test,
        model=own.model,
        optimizer=own.optimizer,
        channel=channel,
        active_name=active_name,
        timer=timer,
        wire=wire,
    )
    for split, x in own.eval_x.items():
        party.add_eval_split(split, x)
    return party


def make_active(
    name: str, own: ActiveOwn, passive_names: Sequence[str], channel: Channel, timer: PhaseTimer, wire: ActiveWire
) -> ActiveParty:
    """The active party with the labels, the top model and its own block (if any)."""
    party = ActiveParty(
        name=name,
        y_train=own.y_train,
        y_test=own.y_test,
        top=own.top,
        top_optimizer=own.top_optimizer,
        passive_names=passive_names,
        channel=channel,
        timer=timer,
        wire=wire,
        local_block=own.local_block,
    )
    for split, labels in own.eval_labels.items():
        party.add_eval_split(split, labels, own.eval_local_x.get(split))
    return party


def check_own(name: str, role: Role, own: object) -> None:
    """A party is built from its own kind of inputs only (a passive from columns, the active from labels)."""
    expected = {Role.PASSIVE: PassiveOwn, Role.ACTIVE: ActiveOwn}.get(role)
    if expected is None and own is not None:
        raise ProtocolError(f"{name} is a {role.value} and holds no data, but was given {type(own).__name__}")
    if expected is not None and not isinstance(own, expected):
        raise ProtocolError(f"{name} is a {role.value} party and is built from {expected.__name__}, not {type(own).__name__}")
