"""A passive party: owns a block of feature columns and a bottom model, never the labels."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from securevfl.protocols import ACTIVATION, EVAL_ACTIVATION, GRADIENT, Channel, Message, PhaseTimer, ProtocolError
from securevfl.protocols.audit import VisibilityLog
from securevfl.protocols.protection import PartyProtection
from securevfl.protocols.phases import Phase
from securevfl.attacks.base import PassiveAttack


class PassiveParty:
    """Computes activations H_k = f_k(x_k) and updates f_k from the gradients it receives.

    The autograd graph of the last training batch stays inside this object between sending
    the activations and receiving their gradient, so what crosses the boundary is only the
    serialized activation and gradient matrices.
    """

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
        protection: PartyProtection | None,
    ) -> None:
        self.name = name
        self._x_train = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
        self._eval = {"test": torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32))}
        self.model = model
        self.optimizer = optimizer
        self.channel = channel
        self.active_name = active_name
        self.timer = timer
        self.protection = protection
        self.audit = VisibilityLog(name)
        self._pending: torch.Tensor | None = None
        self._batch_ids: np.ndarray | None = None
        self.attack: PassiveAttack | None = None
        """The attack this party runs, if it is the attacker (hooks only; the protocol is unchanged)."""

    def add_eval_split(self, name: str, x: np.ndarray) -> None:
        """Another evaluation set (e.g. triggered test samples), this party's columns only."""
        self._eval[name] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    @property
    def n_features(self) -> int:
        return int(self._x_train.shape[1])

    def send_activations(self, step: int, sample_ids: np.ndarray) -> None:
        with self.timer.phase(Phase.BOTTOM_FORWARD):
            self.model.train()
            activations = self.model(self._x_train[sample_ids])
        self._pending = activations
        self._batch_ids = sample_ids
        self._send(ACTIVATION, step, self._outgoing(step, sample_ids, activations.detach().numpy()))

    def _outgoing(self, step: int, sample_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        return values if self.attack is None else self.attack.outgoing_activations(step, sample_ids, values)

    def apply_gradients(self, step: int) -> None:
        message = self.channel.receive(self.name, GRADIENT, sender=self.active_name)
        if self._pending is None:
            raise ProtocolError(f"{self.name} received a gradient without having sent activations")
        received = np.asarray(self._protection.open(message), dtype=np.float32)
        self.audit.saw(GRADIENT, tuple(received.shape), per_sample=True, masked=False, source=message.sender)
        if self.attack is not None and received.shape == tuple(self._pending.shape):
            received = np.asarray(self.attack.incoming_gradient(step, self._batch_ids, received), dtype=np.float32)
        gradient = torch.from_numpy(received)
        if gradient.shape != self._pending.shape:
            raise ProtocolError(
                f"{self.name} sent activations of shape {tuple(self._pending.shape)} but received "
                f"a gradient of shape {tuple(gradient.shape)} at step {message.step}"
            )
        with self.timer.phase(Phase.BOTTOM_BACKWARD):
            self.optimizer.zero_grad(set_to_none=True)
            self._pending.backward(gradient)
            self.optimizer.step()
        self._pending = None

    @torch.no_grad()
    def send_eval_activations(self, step: int, sample_ids: np.ndarray, split: str = "test") -> None:
        with self.timer.phase(Phase.EVALUATE):
            self.model.eval()
            activations = self.model(self._eval[split][sample_ids]).numpy()
        self._send(EVAL_ACTIVATION, step, activations)

    def _send(self, kind: str, step: int, values: np.ndarray) -> None:
        codec, payload = self._protection.seal(values, self.active_name)
        self.channel.send(Message(kind, self.name, self.active_name, step, payload, codec=codec))

    @property
    def _protection(self) -> PartyProtection:
        if self.protection is None:
            raise ProtocolError(f"{self.name} has no protection scheme configured")
        return self.protection

    def state_dict(self) -> dict[str, object]:
        state: dict[str, object] = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.attack is not None:
            state["attack"] = self.attack.state_dict()
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.model.load_state_dict(state["model"])  # type: ignore[arg-type]
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
        if self.attack is not None:
            self.attack.load_state_dict(state["attack"])  # type: ignore[arg-type]
