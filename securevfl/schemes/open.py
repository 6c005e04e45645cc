"""The open schemes: every receiver reads what is sent to it (``plain``; ``ckks`` with ``key_holder = receiver``).

Both run the same protocol; only the :class:`~securevfl.protocols.protection.PartyProtection`
differs (arrays as they are, or CKKS under the receiver's public key). The passive decrypts its
per-sample gradient rows and the active party each passive's activations, so label inference
from gradient signs and the plaintext gradient-replacement backdoor remain possible by design.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F

from securevfl.defenses.base import MessageContext, Placement
from securevfl.models import linear_stack
from securevfl.parties import ActiveOwn, LocalParties, PassiveOwn, RunShape, check_own, make_active, make_passive
from securevfl.parties.passive import check_same_batch
from securevfl.protocols import Channel, Message, MessageKind, Phase, PhaseTimer, ProtocolError
from securevfl.protocols.protection import PartyProtection, PlainProtection, ReceiverKeyProtection
from securevfl.schemes.base import Capability, Role, Scheme, SchemeCapabilities

if TYPE_CHECKING:
    from securevfl.sections import ModelConfig, TrainConfig
    from securevfl.crypto import EncryptedTensor
    from securevfl.parties import ActiveParty, PassiveParty

__all__ = ["OpenActiveWire", "OpenPassiveWire", "OpenScheme", "PlainScheme", "ReceiverKeyScheme"]

_OPEN_SEES = {
    Role.PASSIVE: ("gradient",),
    Role.ACTIVE: ("activation", "eval_activation"),
}
_OPEN_GRANTS = {
    Role.PASSIVE: frozenset(
        {Capability.PLAINTEXT_GRADIENT_ROWS, Capability.OWN_PLAINTEXT, Capability.BATCH_SUMMED_PARAMETER_GRADIENTS}
    ),
    Role.ACTIVE: frozenset({Capability.PLAINTEXT_ACTIVATION_ROWS}),
}


def _open_capabilities(ciphertexts: bool, observer: set[Capability]) -> SchemeCapabilities:
    """Every receiver reads its own mail; the schemes differ in ciphertexts and what a channel observer holds."""
    return SchemeCapabilities(
        ciphertexts=ciphertexts,
        key_holder=None,
        sees=_OPEN_SEES,
        grants={**_OPEN_GRANTS, Role.OBSERVER: frozenset(observer)},
    )


class OpenScheme(Scheme):
    """Both open schemes: one protocol, each party with its own :class:`PartyProtection`."""

    @abstractmethod
    def protection_for(self, party: str, timer: PhaseTimer) -> PartyProtection:
        """The protection party ``party`` seals and opens its messages with (made in its own process)."""

    def build_party(
        self,
        name: str,
        run: RunShape,
        model: ModelConfig,
        train: TrainConfig,
        own: PassiveOwn | ActiveOwn | None,
        channel: Channel,
        timer: PhaseTimer,
    ) -> LocalParties:
        role = run.role_of(name, self.key_holder_party)
        check_own(name, role, own)
        if isinstance(own, PassiveOwn):
            wire = OpenPassiveWire(self.protection_for(name, timer))
            return LocalParties(name, role, passive=make_passive(name, own, channel, run.active_name, timer, wire))
        assert isinstance(own, ActiveOwn)
        active_wire = OpenActiveWire(self.protection_for(name, timer))
        return LocalParties(name, role, active=make_active(name, own, run.passive_names, channel, timer, active_wire))


class PlainScheme(OpenScheme):
    """Arrays travel as they are (still framed and byte-counted like every other scheme)."""

    name = "plain"

    @property
    def capabilities(self) -> SchemeCapabilities:  # an observer reads every frame in the clear
        return _open_capabilities(
            ciphertexts=False,
            observer={Capability.FRAMES, Capability.PLAINTEXT_GRADIENT_ROWS, Capability.PLAINTEXT_ACTIVATION_ROWS},
        )

    def protection_for(self, party: str, timer: PhaseTimer) -> PartyProtection:
        return PlainProtection()


class ReceiverKeyScheme(OpenScheme):
    """Every party has its own CKKS key pair; each message is encrypted to its receiver."""

    name = "ckks/receiver"

    @property
    def capabilities(self) -> SchemeCapabilities:  # an observer sees only ciphertext frames
        return _open_capabilities(ciphertexts=True, observer={Capability.FRAMES})

    def protection_for(self, party: str, timer: PhaseTimer) -> PartyProtection:
        """A fresh CKKS key pair of ``party``'s own: its secret key never leaves this object."""
        return ReceiverKeyProtection(party, self.preset, timer)


def _announce(protection: PartyProtection, sender: str, receivers: list[str], channel: Channel) -> None:
    if not protection.announces:
        return
    announcement = protection.announcement()
    assert announcement is not None
    for receiver in receivers:
        channel.send(Message(MessageKind.PUBLIC_KEY, sender, receiver, 0, announcement, codec="key"))


def _learn(protection: PartyProtection, receiver: str, senders: list[str], channel: Channel) -> None:
    if not protection.announces:  # open schemes are symmetric: no key of mine, none of theirs
        return
    for sender in senders:
        message = channel.receive(receiver, MessageKind.PUBLIC_KEY, sender=sender)
        protection.learn_peer(sender, message.payload)


class OpenPassiveWire:
    """Send H_k (sealed for the active party), open g_k, backpropagate it through the kept graph.

    The autograd graph of the last training batch stays with the party between sending the
    activations and receiving their gradient, so what crosses the boundary is only the
    serialized activation and gradient matrices.
    """

    def __init__(self, protection: PartyProtection) -> None:
        self.protection = protection
        self._pending: torch.Tensor | None = None
        self._batch_ids: np.ndarray | None = None

    def announce(self, party: PassiveParty) -> None:
        _announce(self.protection, party.name, [party.active_name], party.channel)

    def learn(self, party: PassiveParty) -> None:
        _learn(self.protection, party.name, [party.active_name], party.channel)

    def forward(self, party: PassiveParty, step: int, sample_ids: np.ndarray) -> None:
        with party.timer.phase(Phase.BOTTOM_FORWARD):
            party.model.train()
            activations = party.model(party.x_train[sample_ids])
        self._pending, self._batch_ids = activations, sample_ids
        self._send(party, MessageKind.ACTIVATION, step, party.outgoing(step, sample_ids, activations.detach().numpy()))

    def backward(self, party: PassiveParty, step: int, sample_ids: np.ndarray) -> None:
        message = party.channel.receive(party.name, MessageKind.GRADIENT, sender=party.active_name)
        if self._pending is None or self._batch_ids is None:
            raise ProtocolError(f"{party.name} received a gradient without having sent activations")
        check_same_batch(party.name, self._batch_ids, sample_ids)
        received = np.asarray(self.protection.open(message), dtype=np.float32)
        party.audit.saw(MessageKind.GRADIENT, tuple(received.shape), per_sample=True, masked=False, source=message.sender)
        if party.attack is not None and received.shape == tuple(self._pending.shape):
            received = np.asarray(party.attack.incoming_gradient(step, sample_ids, received), dtype=np.float32)
        gradient = torch.from_numpy(received)
        if gradient.shape != self._pending.shape:
            raise ProtocolError(
                f"{party.name} sent activations of shape {tuple(self._pending.shape)} but received "
                f"a gradient of shape {tuple(gradient.shape)} at step {message.step}"
            )
        with party.timer.phase(Phase.BOTTOM_BACKWARD):
            party.optimizer.zero_grad(set_to_none=True)
            self._pending.backward(gradient)
        if party.attack is not None:
            _reveal_parameter_gradients(party, step, sample_ids)
        with party.timer.phase(Phase.BOTTOM_BACKWARD):
            party.optimizer.step()
        self._pending = None

    @torch.no_grad()
    def eval_forward(self, party: PassiveParty, step: int, sample_ids: np.ndarray, split: str) -> None:
        with party.timer.phase(Phase.EVALUATE):
            party.model.eval()
            activations = party.model(party.eval_x[split][sample_ids]).numpy()
        self._send(party, MessageKind.EVAL_ACTIVATION, step, activations)

    def _send(self, party: PassiveParty, kind: MessageKind, step: int, values: np.ndarray) -> None:
        codec, payload = self.protection.seal(values, party.active_name)
        party.channel.send(Message(kind, party.name, party.active_name, step, payload, codec=codec))


class OpenActiveWire:
    """Receive each H_k as a fresh leaf tensor, compute the top and the loss, send each g_k.

    The passive activations arrive as plain arrays (a fresh leaf tensor each), so the
    gradient sent back is exactly dL/dH_k and nothing else of the active party's graph.
    """

    def __init__(self, protection: PartyProtection) -> None:
        self.protection = protection

    def announce(self, party: ActiveParty) -> None:
        _announce(self.protection, party.name, party.passive_names, party.channel)

    def learn(self, party: ActiveParty) -> None:
        _learn(self.protection, party.name, party.passive_names, party.channel)

    def train_step(self, party: ActiveParty, step: int, sample_ids: np.ndarray) -> float:
        received = [self._receive_training_rows(party, sender, step, sample_ids).requires_grad_(True) for sender in party.passive_names]
        rows = len(sample_ids)
        with party.timer.phase(Phase.TOP):
            parts = list(received)
            local_x = party.local_input(sample_ids, split=None)
            if local_x is not None:
                parts.append(party.local_block.model(local_x))  # type: ignore[union-attr]
            party.top.train()
            loss = F.cross_entropy(party.top(parts), party.y_train[sample_ids])
            for optimizer in party.optimizers():
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer in party.optimizers():
                optimizer.step()
        for sender, activations in zip(party.passive_names, received, strict=True):
            ctx = party.context("gradient", sender, step, rows, sample_ids)
            party.computed_gradient(step, sample_ids, sender, activations.grad.numpy())  # type: ignore[union-attr]
            gradient = party.defenses.plaintext(Placement.PRE_ENCRYPTION, activations.grad.numpy(), ctx)  # type: ignore[union-attr]
            codec, payload = self.protection.seal(gradient, sender, transform=_under_encryption(party, ctx))
            party.channel.send(Message(MessageKind.GRADIENT, party.name, sender, step, payload, codec=codec))
        return float(loss.detach())

    def predict(self, party: ActiveParty, step: int, sample_ids: np.ndarray, split: str) -> torch.Tensor:
        parts = [self._receive_rows(party, MessageKind.EVAL_ACTIVATION, sender, len(sample_ids)) for sender in party.passive_names]
        with party.timer.phase(Phase.EVALUATE):
            local_x = party.local_input(sample_ids, split)
            if local_x is not None:
                parts.append(party.local_block.model(local_x))  # type: ignore[union-attr]
            party.top.eval()
            return party.top(parts).argmax(dim=1)

    def _receive_training_rows(self, party: ActiveParty, sender: str, step: int, sample_ids: np.ndarray) -> torch.Tensor:
        ctx = party.context("activation", sender, step, len(sample_ids), sample_ids)
        received = self._receive_rows(party, MessageKind.ACTIVATION, sender, len(sample_ids), transform=_under_encryption(party, ctx))
        if party.attack is not None:
            party.attack.received_activations(step, sample_ids, sender, received.numpy().copy())
        if not party.defenses:
            return received
        defended = party.defenses.plaintext(Placement.POST_DECRYPTION, received.numpy(), ctx)
        return torch.from_numpy(np.asarray(defended, dtype=np.float32))

    def _receive_rows(
        self,
        party: ActiveParty,
        kind: MessageKind,
        sender: str,
        rows: int,
        transform: Callable[[EncryptedTensor], EncryptedTensor] | None = None,
    ) -> torch.Tensor:
        message = party.channel.receive(party.name, kind, sender=sender)
        payload = np.asarray(self.protection.open(message, transform=transform), dtype=np.float32)
        party.audit.saw(kind, payload.shape, per_sample=True, masked=False, source=sender)
        if payload.ndim != 2 or payload.shape[0] != rows:
            raise ProtocolError(f"{party.name} expected {rows} activation rows from {sender}, got shape {payload.shape}")
        return torch.from_numpy(payload)


def _reveal_parameter_gradients(party: PassiveParty, step: int, sample_ids: np.ndarray) -> None:
    """Show the attack the ``[dW | db]`` the passive just computed, as the label-private wire does.

    Only for Linear/ReLU bottom models (what the hook speaks of); any other model shows nothing.
    """
    try:
        stack = linear_stack(party.model)
    except ValueError:
        return
    gradients = [
        torch.cat([linear.weight.grad, linear.bias.grad[:, None]], dim=1).double().numpy()  # type: ignore[index]
        for linear, _ in stack
    ]
    party.attack.revealed_parameter_gradients(step, sample_ids, gradients, party.model)  # type: ignore[union-attr]


def _under_encryption(party: ActiveParty, ctx: MessageContext) -> Callable[[EncryptedTensor], EncryptedTensor] | None:
    """The homomorphic transform of the under-encryption defenses for ``ctx``, if any."""
    if not party.defenses.wants_encrypted(ctx):
        return None
    return lambda tensor: party.defenses.encrypted([(tensor, ctx)])[0]
