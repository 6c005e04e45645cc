"""The sealed source layer: a passive whose only layer exists encrypted under the key holder's key.

Under the open label-private protocol a passive learns its exact batch-summed ``[dW | db]`` by
masked decryption, and from those an honest-but-curious passive inverts per-sample gradient
rows and so the labels (attack ``gradient_inversion``). Here the passive's bottom is one
``Linear`` whose parameters ``[W | b]`` exist only as ``Enc([W | b])`` under the key holder's
key, so there is no gradient for it to learn (``protection.passive_layer = "sealed"``):

- setup: the passive encrypts its freshly seeded ``[W | b]`` (the same initial weights as the
  open variant) under the key holder's public keyring and forgets the plaintext;
- forward: ``Enc(H^T) = Enc([W|b]) @ [X|1]^T``, a ciphertext-by-plaintext product. Sum top: sent
  to the active party, which adds the passives' ``Enc(H_k^T)`` and decrypts only their sum (as
  today). Trainable top: first refreshed through the key holder (masked) into the ``Enc(H)`` and
  ``Enc(H^T)`` packings the open protocol sends, so the active party's first layer is unchanged;
- update: ``Enc([W|b]) += Enc(G^T) @ (-lr [X|1])`` with ``-lr`` folded into the plaintext, so
  the update costs the same single level as today's gradient product and is never decrypted;
- every step ends with a masked refresh of the weights through the key holder (it sees
  ``W + R`` only; the passive gets a fresh ciphertext, never plaintext). Levels alone would not
  need it (the weights could stay at one level), but the public worst-case bound of the
  weights grows with every update and the ciphertext noise accumulates; the key holder floods
  what it decrypts in proportion to that noise, so the noise must be small *and* refreshed
  often: the total flooding over T steps refreshed every R steps grows like sqrt(T R), least
  at R = 1 (see ``_update`` for how the update's own noise is kept small).

The key holder's policy gives a sealed passive only that refresh (no decryption at all), so
the passive never holds any plaintext from the protocol, even if it deviates from it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from securevfl.crypto import EncryptedTensor, Layout
from securevfl.errors import ConfigError
from securevfl.models import linear_stack
from securevfl.parties.active import ActiveParty
from securevfl.parties.passive import PassiveParty, check_same_batch
from securevfl.protocols import Message, MessageKind, Phase, ProtocolError
from securevfl.protocols.errors import PayloadRangeError
from securevfl.protocols.keyholder import KeyHolder, MaskedKeyHolderClient
from securevfl.protocols.pairwise_masks import PairwiseMasks
from securevfl.schemes.label_private.plan import SealedPlan, TopPlan
from securevfl.schemes.label_private.precision import AMPLIFICATION, received_gradient_scale
from securevfl.schemes.label_private.wires import (
    BlindActiveWire, Bounds, KeyHolderLink, _encrypt, _load, _pad_rows, unmasked_sum,
)

__all__ = [
    "EVAL_SEALED_ACTIVATION", "SEALED_ACTIVATION", "SEALED_WEIGHTS", "SealedActiveWire", "SealedLinear", "SealedPassiveWire",
    "sealed_layer_refusal",
]

#: What the key holder's policy and audit call a sealed passive's weight refresh.
SEALED_WEIGHTS = "sealed_weights"
#: ... and the refresh of its ``Enc(H^T)`` into the trainable top's packings (training, evaluation).
SEALED_ACTIVATION = "sealed_activation"
EVAL_SEALED_ACTIVATION = "eval_sealed_activation"

#: At most this many bits of amplification for the update product (see ``SealedPassiveWire._update``).
AMPLIFY_BITS = 16


def sealed_layer_refusal(stack: list[tuple[nn.Linear, bool]]) -> str | None:
    """Why a Linear/ReLU stack cannot be sealed, or None (one Linear without an activation).

    A nonlinearity needs the plaintext pre-activation ``X W^T``: shown to the passive it gives
    away ``W`` after a few batches (and with it every gradient); shown to the active party it
    breaks "the active party sees only the combination of the passives' activations".
    """
    if len(stack) == 1 and not stack[0][1]:
        return None
    shape = " -> ".join(f"Linear({linear.in_features}->{linear.out_features})" + (" + ReLU" if relu else "") for linear, relu in stack)
    return (
        f"passive_layer = 'sealed' needs a bottom of exactly one Linear layer without activation (got {shape}): a hidden "
        "layer or an activation needs the plaintext pre-activation X W^T, which reveals W (hence the gradients) to the "
        "passive or an individual H_k to the active party"
    )


class SealedLinear(nn.Module):
    """A sealed passive's bottom model: the ciphertext of ``[W | b]`` and no plaintext parameter.

    It replaces the plaintext ``Linear`` on the party (so nothing of the initial weights is left
    there). A checkpoint records the ciphertext; loading one is refused, because every run
    generates a new key pair and a ciphertext under the old key could not be refreshed or used.
    """

    def __init__(self, in_features: int, out_features: int, weights: EncryptedTensor) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weights = weights
        """``Enc([W | b])`` (out x in+1), ROWS in the plan's stride; replaced by every update."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: ARG002 - no plaintext forward exists
        raise ProtocolError("a sealed source layer has no plaintext weights; its forward runs under encryption")

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        destination[prefix + "sealed"] = torch.frombuffer(bytearray(self.weights.to_bytes()), dtype=torch.uint8)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        error_msgs = args[-1]
        error_msgs.append(
            "passive_layer = 'sealed' cannot resume: the sealed weights are encrypted under the key of the interrupted "
            "run, and a new run generates a new key pair"
        )

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, sealed"


def _forget(linear: nn.Linear) -> None:
    """Drop the plaintext parameters in place (the optimizer holds the same tensors)."""
    with torch.no_grad():
        for parameter in linear.parameters():
            parameter.data = torch.empty(0, dtype=parameter.dtype)
            parameter.grad = None


#: Rows per chunk when the initial activations are checked (float64 copies of a chunk only).
_CHECK_ROWS = 4096


class SealedPassiveWire:
    """A passive with a sealed source layer: it computes only on ciphertexts and decrypts nothing."""

    def __init__(
        self, model: nn.Module, plan: SealedPlan, top_plan: TopPlan | None, bounds: Bounds, link: KeyHolderLink, lr: float
    ) -> None:
        stack = linear_stack(model)
        refusal = sealed_layer_refusal(stack)
        if refusal is not None:
            raise ProtocolError(refusal)
        self._linear: nn.Linear | None = stack[0][0]
        self.plan = plan
        self.top_plan = top_plan
        self.bounds = bounds
        self.link = link
        self.lr = float(lr)
        self.refreshes = 0
        """How many times the weights went through the key holder (the price of keeping them usable)."""
        self.client: MaskedKeyHolderClient | None = None
        self.masks: PairwiseMasks | None = None
        self._inputs: np.ndarray | None = None
        self._batch_ids: np.ndarray | None = None

    @property
    def weight_bound(self) -> float:
        """Public bound on every entry of ``[W | b]``: the activation bound (a unit input must not exceed it)."""
        return self.bounds.activation

    def announce(self, party: PassiveParty) -> None:
        """Nothing: only the key holder announces a key in this scheme."""

    def learn(self, party: PassiveParty) -> None:
        """Connect to the key holder, seal the initial weights under its key, forget the plaintext."""
        self.client = self.link.connect(party.name, party.channel, party.timer)
        self.masks = self.link.pairwise_masks(party.name, party.channel)
        linear = self._linear
        if linear is None:
            raise ProtocolError(f"{party.name}'s weights are sealed already")
        plain = np.hstack([linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy()[:, None]])
        self._check_initial_activations(party, plain)
        with party.timer.phase(Phase.ENCRYPT):  # kept amplified (see .precision): its products' rotations add less
            sealed = _encrypt(
                self.client.public, plain * AMPLIFICATION, f"{party.name} sealed weights", self.weight_bound * AMPLIFICATION,
                layout=Layout.ROWS, stride=self.plan.stride, levels=1,
            )
        del plain
        party.model = SealedLinear(linear.in_features, linear.out_features, sealed)
        _forget(linear)
        self._linear = None

    def _check_initial_activations(self, party: PassiveParty, plain: np.ndarray) -> None:
        """Refuse, clearly and at once, features whose activations already exceed the public activation bound.

        An open passive checks every ``H`` before encrypting it; a sealed one never sees ``H``, and the
        key holder re-encrypts a refreshed ``H + R`` only within the bound, so an ``H`` past it is refused
        only when its mask lands near the edge: a run stopping at random (review F1, 2026-11-27). The
        initial weights are the last plaintext the passive holds: checked on every sample it has, this
        catches features of the wrong scale. Growth during training is not checked (docs/threat-model.md,
        "Where an honest run can still be refused").
        """
        largest = max(
            (float(np.max(np.abs(self._augmented_rows(x[start : start + _CHECK_ROWS]) @ plain.T)))
             for x in (party.x_train, *party.eval_x.values()) for start in range(0, len(x), _CHECK_ROWS)),
            default=0.0,
        )
        if largest > self.bounds.activation:
            raise PayloadRangeError(
                f"{party.name} sealed activations: the initial weights give max |H| = {largest:.4g} on its own samples, beyond "
                f"protection.activation_bound = {self.bounds.activation:g}; rescale the features or raise the bound"
            )

    @staticmethod
    def _augmented_rows(x: torch.Tensor) -> np.ndarray:
        values = x.double().numpy()
        return np.hstack([values, np.ones((values.shape[0], 1))])

    def _weights(self, party: PassiveParty) -> SealedLinear:
        model = party.model
        if not isinstance(model, SealedLinear) or self.client is None:
            raise ProtocolError(f"{party.name} has no sealed weights yet (no key holder connection)")
        return model

    def _augmented(self, x: torch.Tensor) -> np.ndarray:
        """``[X | 1]`` padded to the plan's batch with zero rows (padding contributes nothing, not even bias)."""
        return _pad_rows(self._augmented_rows(x), self.plan.batch)

    def _send(self, party: PassiveParty, kind: MessageKind, step: int, inputs: np.ndarray) -> None:
        """Sum top: ``Enc(H^T)`` as computed. Trainable top: refreshed into the packings the top's product needs.

        The trainable top multiplies ``Enc(H)`` (and ``Enc(H^T)`` for its weight gradient) by
        plaintext blocks, which needs a level and other strides than the product leaves; a
        masked refresh provides both (the key holder sees ``H + R`` only, as for every refresh).
        """
        weights = self._weights(party).weights
        with party.timer.phase(Phase.BOTTOM_FORWARD):
            activations_t = weights @ (np.ascontiguousarray(inputs.T) / AMPLIFICATION)
        tensors = [(kind, activations_t)]
        if self.top_plan is not None:
            training = kind is MessageKind.ACTIVATION
            layouts = [("rows_t", self.top_plan.activation_stride())]
            if training:
                layouts.append(("rows", self.top_plan.transposed_activation_stride()))
            what = SEALED_ACTIVATION if training else EVAL_SEALED_ACTIVATION
            with party.timer.phase(Phase.BOTTOM_FORWARD):
                fresh = self.client.refresh(activations_t, step, what, layouts, bound=self.bounds.activation)  # type: ignore[union-attr]
            kinds = [kind, MessageKind.ACTIVATION_T][: len(fresh)]
            tensors = [(k, tensor.mod_switch_to(1)) for k, tensor in zip(kinds, fresh, strict=True)]
        for message_kind, tensor in tensors:
            with party.timer.phase(Phase.CIPHERTEXT_SERIALIZE):
                # sum top: only added and decrypted. Its header declares the public activation bound: the tracked
                # one (the weight bound x the batch's largest feature l1 norm) would tell the receiver about the
                # features. Its worst case is still checked against the decryptable ceiling here (to_bytes), and
                # the values against the bound at setup and by the key holder's content check.
                sum_top = self.top_plan is None
                declared = None
                if sum_top:  # pairwise masks, when the run has them, cancel in the active party's sum
                    declared = self.bounds.activation
                    if self.masks is not None:
                        tensor = tensor.add_plain(self.masks.next(message_kind, tensor.shape))
                        declared += self.masks.bound
                payload = tensor.to_bytes(mod_switch_to_last=sum_top, declared_bound=declared)
            party.channel.send(Message(message_kind, party.name, party.active_name, step, payload, codec="ckks"))

    def forward(self, party: PassiveParty, step: int, sample_ids: np.ndarray) -> None:
        if party.attack is not None or party.activation_taps:
            raise ConfigError(
                f"protection.passive_layer = 'sealed': {party.name} never holds its activations in plaintext, so no "
                "attack that hooks or scores them (e.g. activation_inversion's truth) can run"
            )
        self._inputs = self._augmented(party.x_train[sample_ids])
        self._batch_ids = sample_ids
        self._send(party, MessageKind.ACTIVATION, step, self._inputs)

    def eval_forward(self, party: PassiveParty, step: int, sample_ids: np.ndarray, split: str) -> None:
        """``Enc(H^T)`` in chunks of the training batch (the weights' stride fixes the product's width)."""
        x = party.eval_x[split]
        for start in range(0, len(sample_ids), self.plan.batch):
            self._send(party, MessageKind.EVAL_ACTIVATION, step, self._augmented(x[sample_ids[start : start + self.plan.batch]]))

    def backward(self, party: PassiveParty, step: int, sample_ids: np.ndarray) -> None:
        """``Enc([W|b]) += Enc(G^T) @ (-lr [X|1])``, refreshed through the key holder when needed."""
        if self._inputs is None or self._batch_ids is None:
            raise ProtocolError(f"{party.name} received a gradient without having sent activations")
        check_same_batch(party.name, self._batch_ids, sample_ids)
        sealed = self._weights(party)
        message = party.channel.receive(party.name, MessageKind.GRADIENT, sender=party.active_name)
        scale = received_gradient_scale(message.meta, len(sample_ids), party.active_name)
        gradient_t = _load(self.client.public, message, party.name)  # type: ignore[union-attr]
        self.link.report_gradient(party.name, party.channel, step, [message])  # before the refresh that uses it
        with party.timer.phase(Phase.HOMOMORPHIC_BACKPROP):
            current = sealed.weights.scale(1.0 / AMPLIFICATION)  # the key holder sees W + R at its true scale
            weights = self._refresh(current + self._update(gradient_t, scale * AMPLIFICATION), step)
        sealed.weights = weights
        self._inputs = None

    def _update(self, gradient_t: EncryptedTensor, scale: float) -> EncryptedTensor:
        """``Enc(G^T) @ (-lr / scale [X|1])``, computed ``amplify`` times larger and scaled back under encryption.

        ``G`` arrives ``scale`` times the mean-loss gradient (per-sample and amplified, see
        :mod:`.precision`); the public ``1 / scale`` goes into the plaintext factor.

        The product's key-switching noise is absolute (rotations after the rescale), and the key
        holder floods a refresh in proportion to the noise it measures: unamplified, every
        refresh would add ~2^15 x 2.5e-7 = 8e-3 of noise to every weight, every step. Computing
        the product with the plaintext amplified by a power of two (as far as the public bounds
        allow) and scaling the result back divides that noise by the same factor, for one
        scalar product per ciphertext and the level the refresh restores anyway.
        """
        plain = -(self.lr / scale) * self._inputs  # type: ignore[operator]
        if gradient_t.levels_left < 2:
            return gradient_t @ plain
        worst = gradient_t.value_bound * float(np.abs(plain).sum(axis=0).max())
        ceiling = gradient_t.keyring.params.decrypt_ceiling
        amplify = 2.0 ** min(AMPLIFY_BITS, max(0, math.floor(math.log2(ceiling / (4.0 * worst))))) if worst > 0 else 1.0
        return (gradient_t @ (amplify * plain)).scale(1.0 / amplify)

    def _refresh(self, weights: EncryptedTensor, step: int) -> EncryptedTensor:
        """Fresh ``Enc([W|b])`` at one level, its bound re-asserted; the key holder sees only ``W + R``."""
        client = self.client
        if client is None:
            raise ProtocolError("no key holder connection")
        fresh = client.refresh(
            weights, step, SEALED_WEIGHTS, [("rows", self.plan.stride)], bound=self.weight_bound, amplification=AMPLIFICATION
        )[0]
        self.refreshes += 1
        return fresh.mod_switch_to(1)


class SealedActiveWire(BlindActiveWire):
    """The active party when every passive's source layer is sealed.

    Sum top: the passives send ``Enc(H_k^T)`` (out x padded batch, ROWS in the shared sealed
    stride) instead of ``Enc(H_k)``; the active party adds them and decrypts (or has decrypted)
    only ``S^T``, as with open passives. Trainable top: the passives send ``Enc(H_k)`` and
    ``Enc(H_k^T)`` as open passives do, padded to the batch. Either way the gradient goes back
    as ``Enc(G^T)`` in the sealed stride (the base class's feature-major form, which the plan
    sets), and evaluation arrives in chunks of one training batch.
    """

    def __init__(
        self,
        passive_plans: dict[str, SealedPlan],
        top_plan: TopPlan | None,
        bounds: Bounds,
        key_holder: KeyHolder | None = None,
        link: KeyHolderLink | None = None,
    ) -> None:
        super().__init__(dict(passive_plans), top_plan, bounds, key_holder=key_holder, link=link)
        self._rows = 0

    @property
    def batch(self) -> int:
        return next(iter(self.passive_plans.values())).batch

    def _received_activations(self, party: ActiveParty, step: int, rows: int) -> tuple[list[EncryptedTensor], list[EncryptedTensor]]:
        self._rows = rows
        if self.top_plan is not None:
            return super()._received_activations(party, step, rows)
        received = []
        for sender in party.passive_names:
            ctx = replace(party.context("activation", sender, step, rows), sample_axis=1)
            tensor = self._receive(party, MessageKind.ACTIVATION, sender)
            if party.attack is not None:
                party.attack.encrypted_activations(step, sender, tensor)
            with party.timer.phase(Phase.DEFENSE_ENCRYPTED):
                received.append(party.defenses.encrypted([(tensor, ctx)])[0])
        return received, []

    def _combined(self, party: ActiveParty, received: list[EncryptedTensor], step: int, what: str) -> torch.Tensor:
        """Only the combination is decrypted (``S^T``, or the first layer's pre-activation), cut to the real rows."""
        if self.top_plan is not None:
            return super()._combined(party, received, step, what)[: self._rows]
        with party.timer.phase(Phase.TOP_ENCRYPTED):
            combined = unmasked_sum(received, self.mask_bound)
        values = self._reveal(party, combined, step, what, per_sample=True)
        self._check_masks_cancelled(values, combined.value_bound, party.name)
        return torch.from_numpy(np.ascontiguousarray(values.T[: self._rows], dtype=np.float32))

    def predict(self, party: ActiveParty, step: int, sample_ids: np.ndarray, split: str) -> torch.Tensor:
        what = "eval_activation_sum" if self.top_plan is None else "eval_first_layer_preactivation"
        parts = []
        for start in range(0, len(sample_ids), self.batch):
            received = [self._receive(party, MessageKind.EVAL_ACTIVATION, sender) for sender in party.passive_names]
            self._rows = min(self.batch, len(sample_ids) - start)
            parts.append(self._combined(party, received, step, what))
        with party.timer.phase(Phase.EVALUATE):
            local_x = party.local_input(sample_ids, split)
            party.top.eval()
            return self._logits(party, torch.cat(parts), local_x).argmax(dim=1)
