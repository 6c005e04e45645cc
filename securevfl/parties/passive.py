"""A passive party: owns a block of feature columns and a bottom model, never the labels.

The party is its state (columns, model, optimizer, attack hooks, audit) plus the scheme's
:class:`PassiveWire`, the strategy that decides how its activations leave and how the answer
comes back (plain arrays, ciphertexts it decrypts, or ciphertexts it backpropagates blind).
Its phases depend only on its channel and its own state, so the same object runs in one
process with every other party or alone in its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from torch import nn

from securevfl.attacks.base import Attack
from securevfl.protocols import Channel, PhaseTimer, ProtocolError
from securevfl.protocols.audit import VisibilityLog

__all__ = ["PassiveParty", "PassiveWire", "check_same_batch"]


def check_same_batch(party: str, sent: np.ndarray, answered: np.ndarray) -> None:
    """A backward step answers the batch of the forward step before it (the schedule guarantees it)."""
    if not np.array_equal(sent, answered):
        raise ProtocolError(f"{party} is asked to update for another batch than the one it sent activations for")


class PassiveWire(Protocol):
    """A scheme's protocol at a passive party: key set-up, the training round, evaluation."""

    def announce(self, party: PassiveParty) -> None:
        """Send the public material peers need before they can send to ``party`` (if any)."""

    def learn(self, party: PassiveParty) -> None:
        """Receive the public material ``party`` needs before it can send (if any)."""

    def forward(self, party: PassiveParty, step: int, sample_ids: np.ndarray) -> None:
        """Compute H_k for a training batch and send it."""

    def backward(self, party: PassiveParty, step: int, sample_ids: np.ndarray) -> None:
        """Receive the answer to this round's forward (of ``sample_ids``) and update the bottom model."""

    def eval_forward(self, party: PassiveParty, step: int, sample_ids: np.ndarray, split: str) -> None:
        """Compute and send H_k of an evaluation batch."""


class PassiveParty:
    """Computes activations H_k = f_k(x_k) and updates f_k from what the active party answers."""

    def __init__(
        self,
        name: str,
        x_train: np.ndarray,
        x_test: np.ndarray,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        channel: Channel,
        active_name: str,
        timer: PhaseTimer,
        wire: PassiveWire,
    ) -> None:
        self.name = name
        self.x_train = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
        self.eval_x = {"test": torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32))}
        self.model = model
        self.optimizer = optimizer
        self.channel = channel
        self.active_name = active_name
        self.timer = timer
        self.wire = wire
        self.audit = VisibilityLog(name)
        self.attack: Attack | None = None
        """The attack this party runs, if it is the attacker (hooks only; the protocol is unchanged)."""
        self.activation_taps: list[Callable[[int, np.ndarray, str, np.ndarray], None]] = []
        """Evaluation only: called with ``(step, ids, this party, H_k)`` as a training batch's rows leave, so an
        attack's reconstructed activations can be scored (``attacks.truth``); no message, no party sees them."""

    def add_eval_split(self, name: str, x: np.ndarray) -> None:
        """Another evaluation set (e.g. triggered test samples), this party's columns only."""
        self.eval_x[name] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    # ------------------------------------------------------------------ phases
    def announce(self) -> None:
        self.wire.announce(self)

    def learn(self) -> None:
        self.wire.learn(self)

    def forward(self, step: int, sample_ids: np.ndarray) -> None:
        self.wire.forward(self, step, sample_ids)

    def backward(self, step: int, sample_ids: np.ndarray) -> None:
        """Receive the answer to this round's forward (of the same ``sample_ids``) and update."""
        self.wire.backward(self, step, sample_ids)

    def eval_forward(self, step: int, sample_ids: np.ndarray, split: str = "test") -> None:
        self.wire.eval_forward(self, step, sample_ids, split)

    # ------------------------------------------------------------------ attack hooks
    def outgoing(self, step: int, sample_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The activation rows to send for a training batch: the attack's, if this party attacks."""
        if self.attack is not None:
            values = self.attack.outgoing_activations(step, sample_ids, values)
        for tap in self.activation_taps:
            tap(step, sample_ids, self.name, values)
        return values

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, object]:
        """Model and optimizer (an attack's state is the federation's: it may run at any role)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.model.load_state_dict(state["model"])  # type: ignore[arg-type]
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
