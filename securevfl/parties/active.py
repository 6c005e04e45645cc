"""The active party: holds the labels and the top model, and answers activations with gradients."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from protocols import ACTIVATION, EVAL_ACTIVATION, GRADIENT, Channel, Message, PhaseTimer, ProtocolError
from protocols.audit import VisibilityLog
from protocols.protection import PartyProtection


@dataclass
class LocalBlock:
    """A block of feature columns the active party owns itself (no message crosses for it)."""

    x_train: torch.Tensor
    x_test: torch.Tensor
    model: nn.Module
    optimizer: torch.optim.Optimizer


class ActiveParty:
    """Receives H_k from every passive party, computes the loss and returns g_k = dL/dH_k.

    The passive activations arrive as plain arrays (a fresh leaf tensor each), so the
    gradient sent back is exactly dL/dH_k and nothing else of the active party's graph.
    """

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
        protection: PartyProtection | None,
        local_block: LocalBlock | None = None,
    ) -> None:
        self.name = name
        self._y_train = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
        self._y_test = torch.from_numpy(np.asarray(y_test, dtype=np.int64))
        self.top = top
        self.top_optimizer = top_optimizer
        self.passive_names = list(passive_names)
        self.channel = channel
        self.timer = timer
        self.protection = protection
        self.audit = VisibilityLog(name)
        self.local_block = local_block

    def train_step(self, step: int, sample_ids: np.ndarray) -> float:
        """One batch: receive activations, update the top (and own block), send gradients."""
        received = [
            self._receive_rows(ACTIVATION, sender, len(sample_ids)).requires_grad_(True)
            for sender in self.passive_names
        ]
        with self.timer.phase("top"):
            parts = list(received)
            if self.local_block is not None:
                self.local_block.model.train()
                parts.append(self.local_block.model(self.local_block.x_train[sample_ids]))
            self.top.train()
            loss = F.cross_entropy(self.top(parts), self._y_train[sample_ids])
            for optimizer in self._optimizers():
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer in self._optimizers():
                optimizer.step()
        for sender, activations in zip(self.passive_names, received, strict=True):
            gradient = activations.grad.numpy()  # type: ignore[union-attr]
            codec, payload = self._protection.seal(gradient, sender)
            self.channel.send(Message(GRADIENT, self.name, sender, step, payload, codec=codec))
        return float(loss.detach())

    @torch.no_grad()
    def predict(self, step: int, sample_ids: np.ndarray) -> torch.Tensor:
        """Predicted test labels for ``sample_ids`` from the passives' eval activations."""
        parts = [self._receive_rows(EVAL_ACTIVATION, sender, len(sample_ids)) for sender in self.passive_names]
        with self.timer.phase("evaluate"):
            if self.local_block is not None:
                self.local_block.model.eval()
                parts.append(self.local_block.model(self.local_block.x_test[sample_ids]))
            self.top.eval()
            return self.top(parts).argmax(dim=1)

    def test_labels(self, sample_ids: np.ndarray) -> torch.Tensor:
        return self._y_test[sample_ids]

    def _receive_rows(self, kind: str, sender: str, rows: int) -> torch.Tensor:
        message = self.channel.receive(self.name, kind, sender=sender)
        payload = np.asarray(self._protection.open(message), dtype=np.float32)
        self.audit.saw(kind, payload.shape, per_sample=True, masked=False, source=sender)
        if payload.ndim != 2 or payload.shape[0] != rows:
            raise ProtocolError(
                f"{self.name} expected {rows} activation rows from {sender}, got shape {payload.shape}"
            )
        return torch.from_numpy(payload)

    @property
    def _protection(self) -> PartyProtection:
        if self.protection is None:
            raise ProtocolError(f"{self.name} has no protection scheme configured")
        return self.protection

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        optimizers = [] if self.top_optimizer is None else [self.top_optimizer]
        if self.local_block is not None:
            optimizers.append(self.local_block.optimizer)
        return optimizers

    def state_dict(self) -> dict[str, object]:
        state: dict[str, object] = {"top": self.top.state_dict()}
        if self.top_optimizer is not None:
            state["top_optimizer"] = self.top_optimizer.state_dict()
        if self.local_block is not None:
            state["local_model"] = self.local_block.model.state_dict()
            state["local_optimizer"] = self.local_block.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.top.load_state_dict(state["top"])  # type: ignore[arg-type]
        if self.top_optimizer is not None:
            self.top_optimizer.load_state_dict(state["top_optimizer"])  # type: ignore[arg-type]
        if self.local_block is not None:
            self.local_block.model.load_state_dict(state["local_model"])  # type: ignore[arg-type]
            self.local_block.optimizer.load_state_dict(state["local_optimizer"])  # type: ignore[arg-type]
