"""The active party: holds the labels and the top model, and answers activations with gradients.

As with the passive party, the object is the party's state (labels, top model, own block,
defenses, audit) and the scheme's :class:`ActiveWire` runs its protocol: receiving each H_k
and returning g_k in the open schemes, or combining ciphertexts and answering blind in the
label-private ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
from torch import nn

from securevfl.attacks.base import Attack
from securevfl.defenses.base import MessageContext
from securevfl.defenses.pipeline import DefensePipeline
from securevfl.protocols import Channel, PhaseTimer
from securevfl.protocols.audit import VisibilityLog

__all__ = ["ActiveParty", "ActiveWire", "LocalBlock"]


@dataclass
class LocalBlock:
    """A block of feature columns the active party owns itself (no message crosses for it)."""

    x_train: torch.Tensor
    x_test: torch.Tensor
    model: nn.Module
    optimizer: torch.optim.Optimizer


class ActiveWire(Protocol):
    """A scheme's protocol at the active party: key set-up, the training round, prediction."""

    def announce(self, party: ActiveParty) -> None:
        """Send the public material peers need before they can send to ``party`` (if any)."""

    def learn(self, party: ActiveParty) -> None:
        """Receive the public material ``party`` needs before it can send (if any)."""

    def train_step(self, party: ActiveParty, step: int, sample_ids: np.ndarray) -> float:
        """One batch: receive activations, update the top (and own block), send gradients; the loss."""

    def predict(self, party: ActiveParty, step: int, sample_ids: np.ndarray, split: str) -> torch.Tensor:
        """Predicted labels of evaluation ``split`` for ``sample_ids``."""


class ActiveParty:
    """Receives the passives' activations, computes the loss and answers with dL/dH_k."""

    def __init__(
        self,
        name: str,
        y_train: np.ndarray,
        y_test: np.ndarray,
        top: nn.Module,
        top_optimizer: torch.optim.Optimizer | None,
        passive_names: Sequence[str],
        channel: Channel,
        timer: PhaseTimer,
        wire: ActiveWire,
        local_block: LocalBlock | None = None,
    ) -> None:
        self.name = name
        self.y_train = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
        self.eval_labels = {"test": torch.from_numpy(np.asarray(y_test, dtype=np.int64))}
        self.top = top
        self.top_optimizer = top_optimizer
        self.passive_names = list(passive_names)
        self.channel = channel
        self.timer = timer
        self.wire = wire
        self.audit = VisibilityLog(name)
        self.local_block = local_block
        self.local_eval = {} if local_block is None else {"test": local_block.x_test}
        self.defenses = DefensePipeline()
        """Defenses on the messages this party receives and sends (configured placements only)."""
        self.attack: Attack | None = None
        """The attack this party runs, if it is the attacker (hooks only; the protocol is unchanged)."""
        self.gradient_taps: list[Callable[[int, np.ndarray, str, np.ndarray], None]] = []
        """Evaluation only: called with ``(step, ids, passive, dL/dH_k)`` before defenses and encryption, so an
        attack's reconstructed rows can be scored (``attacks.truth``); no message, no party sees them."""

    def add_eval_split(self, name: str, labels: np.ndarray, local_x: np.ndarray | None = None) -> None:
        """Another evaluation set: its labels, and this party's own columns when it holds a block."""
        self.eval_labels[name] = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        if self.local_block is not None:
            if local_x is None:
                raise ValueError(f"evaluation split {name!r} needs the active party's own columns")
            self.local_eval[name] = torch.from_numpy(np.ascontiguousarray(local_x, dtype=np.float32))

    # ------------------------------------------------------------------ phases
    def announce(self) -> None:
        self.wire.announce(self)

    def learn(self) -> None:
        self.wire.learn(self)

    def train_step(self, step: int, sample_ids: np.ndarray) -> float:
        return self.wire.train_step(self, step, sample_ids)

    @torch.no_grad()
    def predict(self, step: int, sample_ids: np.ndarray, split: str = "test") -> torch.Tensor:
        return self.wire.predict(self, step, sample_ids, split)

    def test_labels(self, sample_ids: np.ndarray, split: str = "test") -> torch.Tensor:
        return self.eval_labels[split][sample_ids]

    # ------------------------------------------------------------------ helpers for wires
    def computed_gradient(self, step: int, sample_ids: np.ndarray, passive: str, rows: np.ndarray) -> None:
        """Show the gradient taps ``dL/dH`` computed for ``passive`` (evaluation only)."""
        for tap in self.gradient_taps:
            tap(step, sample_ids, passive, rows)

    def context(
        self, kind: Literal["gradient", "activation"], peer: str, step: int, rows: int, sample_ids: np.ndarray | None = None
    ) -> MessageContext:
        """The defense context of a message between this party and ``peer`` (direction from ``kind``).

        ``sample_ids``: the batch's training-set indices, for defenses that keep state per sample.
        """
        sender, receiver = (self.name, peer) if kind == "gradient" else (peer, self.name)
        ids = None if sample_ids is None else tuple(int(i) for i in sample_ids)
        return MessageContext(kind=kind, sender=sender, receiver=receiver, step=step, rows=rows, sample_ids=ids)

    def local_input(self, sample_ids: np.ndarray, split: str | None) -> torch.Tensor | None:
        """This party's own columns of a batch (None without a block); ``split`` None = training."""
        if self.local_block is None:
            return None
        if split is None:
            self.local_block.model.train()
            return self.local_block.x_train[sample_ids]
        self.local_block.model.eval()
        return self.local_eval[split][sample_ids]

    def optimizers(self) -> list[torch.optim.Optimizer]:
        optimizers = [] if self.top_optimizer is None else [self.top_optimizer]
        if self.local_block is not None:
            optimizers.append(self.local_block.optimizer)
        return optimizers

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, object]:
        state: dict[str, object] = {"top": self.top.state_dict()}
        if self.top_optimizer is not None:
            state["top_optimizer"] = self.top_optimizer.state_dict()
        if self.local_block is not None:
            state["local_model"] = self.local_block.model.state_dict()
            state["local_optimizer"] = self.local_block.optimizer.state_dict()
        if self.defenses:
            state["defenses"] = self.defenses.state_dict()
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.top.load_state_dict(state["top"])  # type: ignore[arg-type]
        if self.top_optimizer is not None:
            self.top_optimizer.load_state_dict(state["top_optimizer"])  # type: ignore[arg-type]
        if self.local_block is not None:
            self.local_block.model.load_state_dict(state["local_model"])  # type: ignore[arg-type]
            self.local_block.optimizer.load_state_dict(state["local_optimizer"])  # type: ignore[arg-type]
        if self.defenses:
            self.defenses.load_state_dict(state["defenses"])  # type: ignore[arg-type]
