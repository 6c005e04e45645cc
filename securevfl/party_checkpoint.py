"""One party's own checkpoints at its epoch ends, so every party of a planned run can ``--resume``.

Each party process keeps only its own state (its models and optimizers, its defenses, the
attack it runs, its traffic and timing, and for the active party the history) in its output
folder as ``checkpoint-epoch<k>.pt``, written atomically and read without running code from the
file (:func:`securevfl.checkpoint.read_checkpoint_file`). It keeps the last :data:`KEEP` of them:
parties write their checkpoints one after another, so a crash between two writes leaves them at
most one epoch apart, and the attempt handshake (:mod:`securevfl.protocols.attempt`) then
continues after the latest epoch every party still has.

A checkpoint belongs to one party of one planned run: it records the party's name, the plan's
session id and the run's configuration, and loading refuses (one line) a checkpoint of another
party, another plan or another configuration. No secret key is ever written: CKKS keys are made
afresh by every attempt.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from securevfl.checkpoint import CHECKPOINT_FORMAT, RESUMABLE_DIFFERENCES, config_differences, encode_state, read_checkpoint_file
from securevfl.errors import ConfigError
from securevfl.files import atomic_write

__all__ = ["KEEP", "PartyCheckpoints"]

#: Epoch checkpoints a party keeps (the newest ones).
KEEP = 2
_NAME = re.compile(r"checkpoint-epoch(\d{1,9})\.pt")


class PartyCheckpoints:
    """The epoch checkpoints of party ``party`` of the plan with session ``plan_session``, in ``directory``."""

    def __init__(self, directory: Path, party: str, plan_session: str, resolved_config: dict[str, Any]) -> None:
        self.directory = directory
        self.party = party
        self.plan_session = plan_session
        self.config = resolved_config

    def path(self, epoch: int) -> Path:
        return self.directory / f"checkpoint-epoch{epoch}.pt"

    def epochs(self) -> list[int]:
        """The epochs this party has a checkpoint of, oldest first."""
        if not self.directory.is_dir():
            return []
        found = (_NAME.fullmatch(entry.name) for entry in self.directory.iterdir())
        return sorted(int(match[1]) for match in found if match is not None)

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        """Write the state at the end of ``epoch`` and drop checkpoints older than the newest :data:`KEEP`."""
        record = {"format": CHECKPOINT_FORMAT, "party": self.party, "plan_session": self.plan_session, "config": self.config, "epoch": epoch, **state}
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path(epoch), encode_state(record))
        for old in self.epochs()[:-KEEP]:
            self.path(old).unlink(missing_ok=True)

    def load(self, epoch: int) -> dict[str, Any]:
        """The state saved at the end of ``epoch``, checked to be this party's, of this plan and configuration."""
        path = self.path(epoch)
        if not path.is_file():
            raise ConfigError(f"--resume: {self.party} has no checkpoint of epoch {epoch} in {self.directory}")
        state = read_checkpoint_file(path)
        if state.get("party") != self.party:
            raise ConfigError(f"--resume: {path} is the checkpoint of {state.get('party')!r}, not of {self.party}")
        if state.get("plan_session") != self.plan_session:
            raise ConfigError(f"--resume: {path} belongs to another plan (session {str(state.get('plan_session'))[:12]}...)")
        blocking = [key for key in config_differences(state["config"], self.config) if key not in RESUMABLE_DIFFERENCES]
        if blocking:
            raise ConfigError(f"--resume: {path} was made with a different config ({', '.join('.'.join(key) for key in blocking)})")
        if state.get("epoch") != epoch:
            raise ConfigError(f"--resume: {path} holds epoch {state.get('epoch')!r}, not {epoch}")
        return state
