"""The active party: holds the labels and the top model, and answers activations with gradients."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from securevfl.protocols import ACTIVATION, EVAL_ACTIVATION, GRADIENT, Channel, Message, PhaseTimer, ProtocolError
from securevfl.protocols.audit import VisibilityLog
from securevfl.protocols.protection import PartyProtection
from securevfl.protocols.phases import Phase
from securevfl.defenses.base import MessageContext, Placement
from securevfl.defenses.pipeline import DefensePipeline


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
        self._eval_labels = {"test": torch.from_numpy(np.asarray(y_test, dtype=np.int64))}
        self.top = top
        self.top_optimizer = top_optimizer
        self.passive_names = list(passive_names)
        self.channel = channel
        self.timer = timer
        self.protection = protection
        self.audit = VisibilityLog(name)
        self.local_block = local_block
        self._local_eval = {} if local_block is None else {"test": local_block.x_test}
        self.defenses = DefensePipeline()
        """Defenses on the messages this party receives and sends (configured placements only)."""

    def add_eval_split(self, name: str, labels: np.ndarray, local_x: np.ndarray | None = None) -> None:
        """Another evaluation set: its labels, and this party's own columns when it holds a block."""
        self._eval_labels[name] = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        if self.local_block is not None:
            if local_x is None:
                raise ValueError(f"evaluation split {name!r} needs the active party's own columns")
            self._local_eval[name] = torch.from_numpy(np.ascontiguousarray(local_x, dtype=np.float32))

    def _context(self, kind: str, sender: str, receiver: str, step: int, rows: int) -> MessageContext:
        return MessageContext(kind=kind, sender=sender, receiver=receiver, step=step, rows=rows)  # type: ignore[arg-type]

    def train_step(self, step: int, sample_ids: np.ndarray) -> float:
        """One batch: receive activations, update the top (and own block), send gradients."""
        received = [
            self._receive_training_rows(sender, step, len(sample_ids)).requires_grad_(True)
            for sender in self.passive_names
        ]
        with self.timer.phase(Phase.TOP):
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
            ctx = self._context("gradient", self.name, sender, step, len(sample_ids))
            gradient = self.defenses.plaintext(Placement.PRE_ENCRYPTION, gradient, ctx)
            transform = self._under_encryption(ctx)
            codec, payload = self._protection.seal(gradient, sender, transform=transform)
            self.channel.send(Message(GRADIENT, self.name, sender, step, payload, codec=codec))
        return float(loss.detach())

    def _under_encryption(self, ctx: MessageContext):  # type: ignore[no-untyped-def]
        """The homomorphic transform of the under-encryption defenses for ``ctx``, if any."""
        if not self.defenses.wants_encrypted(ctx):
            return None
        return lambda tensor: self.defenses.encrypted([(tensor, ctx)])[0]

    def _receive_training_rows(self, sender: str, step: int, rows: int) -> torch.Tensor:
        ctx = self._context("activation", sender, self.name, step, rows)
        received = self._receive_rows(ACTIVATION, sender, rows, transform=self._under_encryption(ctx))
        if not self.defenses:
            return received
        defended = self.defenses.plaintext(Placement.POST_DECRYPTION, received.numpy(), ctx)
        return torch.from_numpy(np.asarray(defended, dtype=np.float32))

    @torch.no_grad()
    def predict(self, step: int, sample_ids: np.ndarray, split: str = "test") -> torch.Tensor:
        """Predicted labels of evaluation ``split`` for ``sample_ids`` from the passives' eval activations."""
        parts = [self._receive_rows(EVAL_ACTIVATION, sender, len(sample_ids)) for sender in self.passive_names]
        with self.timer.phase(Phase.EVALUATE):
            if self.local_block is not None:
                self.local_block.model.eval()
                parts.append(self.local_block.model(self._local_eval[split][sample_ids]))
            self.top.eval()
            return self.top(parts).argmax(dim=1)

    def test_labels(self, sample_ids: np.ndarray, split: str = "test") -> torch.Tensor:
        return self._eval_labels[split][sample_ids]

    def _receive_rows(self, kind: str, sender: str, rows: int, transform=None) -> torch.Tensor:  # type: ignore[no-untyped-def]
        message = self.channel.receive(self.name, kind, sender=sender)
        payload = np.asarray(self._protection.open(message, transform=transform), dtype=np.float32)
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
