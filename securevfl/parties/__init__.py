"""Parties of a vertical federation: each holds only its own data and parameters."""

from securevfl.parties.active import ActiveParty, LocalBlock
from securevfl.parties.passive import PassiveParty

__all__ = ["ActiveParty", "LocalBlock", "PassiveParty"]
