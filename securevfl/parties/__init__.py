"""Parties of a vertical federation: each holds only its own data and parameters.

A party is its state plus the wire (protocol strategy) its scheme gives it; its phases use
nothing but its channel, so the same objects run together in one process or one per process.
"""

from securevfl.parties.active import ActiveParty, ActiveWire, LocalBlock
from securevfl.parties.builder import (
    ACTIVE_NAME,
    COORDINATOR_NAME,
    ActiveOwn,
    BottomShape,
    LocalParties,
    PartyModels,
    PassiveOwn,
    RunShape,
    check_own,
    make_active,
    make_passive,
    passive_name,
)
from securevfl.parties.key_holder import KeyHolderParty
from securevfl.parties.passive import PassiveParty, PassiveWire

__all__ = [
    "ACTIVE_NAME",
    "COORDINATOR_NAME",
    "ActiveOwn",
    "ActiveParty",
    "ActiveWire",
    "BottomShape",
    "KeyHolderParty",
    "LocalBlock",
    "LocalParties",
    "PartyModels",
    "PassiveOwn",
    "PassiveParty",
    "PassiveWire",
    "RunShape",
    "check_own",
    "make_active",
    "make_passive",
    "passive_name",
]
