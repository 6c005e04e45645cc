"""The label-private protocol at each party (``key_holder = "active"`` or ``"coordinator"``).

- :class:`BlindPassiveWire` encrypts the passive's activations under the key holder's public key
  and trains from encrypted gradients (see :mod:`.backprop`): the passive never *receives* a
  plaintext per-sample gradient (what it can derive is the threat model's question).
- :class:`BlindActiveWire` combines the encrypted activations before anything is decrypted
  (their sum, or the trainable top's first dense layer), so the active party never decrypts an
  individual H_k.

Both learn values only through :class:`~securevfl.protocols.keyholder.MaskedKeyHolderClient`
(masked decryption by the key holder party), except the active party when it holds the key
itself, which decrypts its combined values directly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from securevfl.attacks.hooks import EncryptedGradientRows
from securevfl.crypto import CryptoError, EncryptedTensor, Keyring, Layout, PrecisionError, PublicKeyring
from securevfl.defenses.base import MessageContext, Placement
from securevfl.parties.active import ActiveParty
from securevfl.parties.passive import PassiveParty, check_same_batch
from securevfl.protocols import Channel, Message, MessageKind, Phase, PhaseTimer, ProtocolError
from securevfl.protocols.errors import PayloadRangeError, RequestRefusedError
from securevfl.protocols.keyholder import KeyHolder, MaskedKeyHolderClient
from securevfl.protocols.masking import MaskSampler
from securevfl.protocols.gradient_agreement import gradient_digest
from securevfl.protocols.pairwise_masks import PairwiseMasks, read_pair_keys
from securevfl.models import linear_stack
from securevfl.schemes.label_private.backprop import ForwardCache, cached_forward, carried_shrinks, encrypted_parameter_gradients
from securevfl.schemes.label_private.plan import BottomPlan, TopPlan
from securevfl.schemes.label_private.precision import AMPLIFICATION, SCALE_META, gradient_scale, received_gradient_scale

__all__ = ["BlindActiveWire", "BlindPassiveWire", "Bounds", "KeyHolderLink"]


@dataclass(frozen=True)
class Bounds:
    """Public magnitude bounds values must respect before encryption (CKKS precision)."""

    activation: float
    gradient: float


@dataclass(frozen=True)
class KeyHolderLink:
    """How a party without the key reaches the key holder: its name and the mask width."""

    key_holder: str
    mask_half_width: float
    pairwise_passives: tuple[str, ...] = ()
    """Every passive, when the run masks activations pairwise (:mod:`securevfl.protocols.pairwise_masks`); else empty."""
    gradient_agreement: bool = False
    """Every passive gets the same gradient bytes and tells the key holder their digest
    (:mod:`securevfl.protocols.gradient_agreement`): with pairwise masks, where the passives' gradient packings agree."""

    def report_gradient(self, party: str, channel: Channel, step: int, messages: list[Message]) -> None:
        """Refuse a gradient labelled with another step than this passive's own; when the run checks gradients, send
        the key holder the digest of what it received (the active party writes the labels: red-team pass, 2026-11-27)."""
        for message in messages:
            if message.step != step:
                raise ProtocolError(f"{party} got a {message.kind} for step {message.step} at step {step}")
        if self.gradient_agreement:
            channel.send(Message(MessageKind.GRADIENT_DIGEST, party, self.key_holder, step, gradient_digest(messages), codec="key"))

    def connect(self, party: str, channel: Channel, timer: PhaseTimer) -> MaskedKeyHolderClient:
        """Receive the key holder's public keyring over ``channel`` and make the request client."""
        message = channel.receive(party, MessageKind.PUBLIC_KEY, sender=self.key_holder)
        try:
            public = PublicKeyring.from_bytes(message.payload)
        except CryptoError as exc:
            raise ProtocolError(f"{party} rejected the public keyring announced by {self.key_holder}: {exc}") from exc
        return MaskedKeyHolderClient(party, self.key_holder, public, channel, MaskSampler(self.mask_half_width), timer)

    def pairwise_masks(self, party: str, channel: Channel) -> PairwiseMasks | None:
        """A passive's pairwise activation masks, from the key holder's ``MASK_KEYS`` (None when the run has none)."""
        if not self.pairwise_passives:
            return None
        message = channel.receive(party, MessageKind.MASK_KEYS, sender=self.key_holder)
        keys = read_pair_keys(message.payload, party, self.pairwise_passives, self.key_holder)
        return PairwiseMasks(party, keys, self.mask_half_width)

    @property
    def pairwise_mask_bound(self) -> float:
        """The largest magnitude of one passive's pairwise mask, ``(n - 1) w`` (0 without pairwise masks)."""
        return max(len(self.pairwise_passives) - 1, 0) * self.mask_half_width


def masked_activations(masks: PairwiseMasks | None, kind: MessageKind, values: np.ndarray, bound: float, what: str) -> tuple[np.ndarray, float]:
    """``values + M`` and its public bound ``bound + (n - 1) w`` (``values`` and ``bound`` unchanged without masks).

    The values are checked against ``bound`` first: once masked, the encryption's own range check
    could no longer tell an activation past its public bound from a large mask.
    """
    if masks is None:
        return values, bound
    largest = float(np.max(np.abs(values))) if values.size else 0.0
    if not largest <= bound:
        raise PayloadRangeError(f"{what}: max |value| {largest:.6g} exceeds the bound {bound:g}; raise the matching protection.*_bound")
    return values + masks.next(kind, values.shape), bound + masks.bound


def unmasked_sum(received: list[EncryptedTensor], mask_bound: float) -> EncryptedTensor:
    """The sum of the passives' activations; with pairwise masks, bounded by the values alone (the masks cancel)."""
    if not mask_bound:
        return EncryptedTensor.sum_of(received)
    return EncryptedTensor.sum_of(received, result_bound=sum(t.value_bound for t in received) - len(received) * mask_bound)


def check_masks_cancelled(values: np.ndarray, bound: float, mask_bound: float, half_width: float, party: str) -> None:
    """One error line when a decrypted sum holds mask-sized values: the pairwise masks did not cancel.

    That happens only when a passive is out of step (a different message count) or deviates; the
    active party must not train on such values. Masks that do not cancel leave values of the order of
    the mask half-width ``w``; an honest sum stays within its public ``bound``, or a little beyond it
    when sealed activations outgrow ``protection.activation_bound`` during training (not checked, as
    without masks: docs/threat-model.md), so the line is drawn at ``bound + w / 4``.
    """
    if not mask_bound or not values.size:
        return
    largest = float(np.max(np.abs(values)))
    if largest > bound + half_width / 4:
        raise ProtocolError(
            f"{party}: the decrypted sum of the passives' activations reaches {largest:.6g}, beyond its bound {bound:g}: "
            "their pairwise masks did not cancel (a passive out of step or deviating)"
        )


def _encrypt(keyring: Keyring, values: np.ndarray, what: str, bound: float, **kwargs: object) -> EncryptedTensor:
    try:
        return EncryptedTensor.encrypt(keyring, values, bound=bound, **kwargs)  # type: ignore[arg-type]
    except PrecisionError as exc:
        raise PayloadRangeError(f"{what}: {exc}; raise the matching protection.*_bound") from exc


def _load(keyring: Keyring, message: Message, party: str) -> EncryptedTensor:
    if message.codec != "ckks":
        raise ProtocolError(f"{party} expected CKKS ciphertexts from {message.sender}, got {message.codec!r}")
    try:
        return EncryptedTensor.from_bytes(keyring, message.payload)
    except CryptoError as exc:
        raise ProtocolError(f"{party} rejected a {message.kind} from {message.sender}: {exc}") from exc


def _pad_rows(values: np.ndarray, rows: int) -> np.ndarray:
    padded = np.zeros((rows, *values.shape[1:]))
    padded[: values.shape[0]] = values
    return padded


class BlindPassiveWire:
    """A passive party that cannot decrypt: it learns only batch-summed parameter gradients."""

    def __init__(self, model: nn.Module, plan: BottomPlan, top_plan: TopPlan | None, bounds: Bounds, link: KeyHolderLink) -> None:
        self.plan = plan
        self.top_plan = top_plan
        self.bounds = bounds
        self.link = link
        self.client: MaskedKeyHolderClient | None = None
        self.masks: PairwiseMasks | None = None
        self._stack = linear_stack(model)
        self._cache: ForwardCache | None = None
        self._batch_ids: np.ndarray | None = None

    def announce(self, party: PassiveParty) -> None:
        """Nothing: only the key holder announces a key in this scheme."""

    def learn(self, party: PassiveParty) -> None:
        self.client = self.link.connect(party.name, party.channel, party.timer)
        self.masks = self.link.pairwise_masks(party.name, party.channel)

    @property
    def _public(self) -> Keyring:
        if self.client is None:
            raise ProtocolError("the passive party has no key holder connection yet")
        return self.client.public

    def forward(self, party: PassiveParty, step: int, sample_ids: np.ndarray) -> None:
        with party.timer.phase(Phase.BOTTOM_FORWARD):
            output, self._cache = cached_forward(self._stack, party.x_train[sample_ids], self.plan.batch)
        self._batch_ids = sample_ids
        values = party.outgoing(step, sample_ids, output.double().numpy())
        self._send_encrypted(party, MessageKind.ACTIVATION, step, values, transposed=self.top_plan is not None)

    def eval_forward(self, party: PassiveParty, step: int, sample_ids: np.ndarray, split: str) -> None:
        with torch.no_grad(), party.timer.phase(Phase.EVALUATE):
            output = party.model(party.eval_x[split][sample_ids])
        self._send_encrypted(party, MessageKind.EVAL_ACTIVATION, step, output.double().numpy(), transposed=False)

    def _send_encrypted(self, party: PassiveParty, kind: MessageKind, step: int, values: np.ndarray, transposed: bool) -> None:
        what = f"{party.name} {kind}"
        with party.timer.phase(Phase.ENCRYPT):
            if self.top_plan is None:  # the sum top: pairwise masks, when the run has them, cancel in the active party's sum
                masked, bound = masked_activations(self.masks, kind, values, self.bounds.activation, what)
                tensors = [(kind, _encrypt(self._public, masked, what, bound, layout=Layout.FLAT, levels=0))]
            else:
                stride = self.top_plan.activation_stride()
                tensors = [(kind, _encrypt(self._public, values, what, self.bounds.activation, layout=Layout.ROWS, stride=stride, levels=1))]
                if transposed:
                    padded_t = _pad_rows(values, self.plan.batch).T
                    stride_t = self.top_plan.transposed_activation_stride()
                    tensors.append(
                        (MessageKind.ACTIVATION_T, _encrypt(self._public, padded_t, what, self.bounds.activation, layout=Layout.ROWS, stride=stride_t, levels=1))
                    )
        for message_kind, tensor in tensors:
            with party.timer.phase(Phase.CIPHERTEXT_SERIALIZE):
                payload = tensor.to_bytes()
            party.channel.send(Message(message_kind, party.name, party.active_name, step, payload, codec="ckks"))

    def backward(self, party: PassiveParty, step: int, sample_ids: np.ndarray) -> None:
        if self._cache is None or self.client is None or self._batch_ids is None:
            raise ProtocolError(f"{party.name} received a gradient without having sent activations")
        check_same_batch(party.name, self._batch_ids, sample_ids)
        receive = party.channel.receive
        message = receive(party.name, MessageKind.GRADIENT, sender=party.active_name)
        scale = received_gradient_scale(message.meta, len(sample_ids), party.active_name)
        gradient_t = _load(self._public, message, party.name)
        gradient = None
        received = [message]
        if self.plan.layers > 1:
            received.append(receive(party.name, MessageKind.GRADIENT_BM, sender=party.active_name))
            gradient = _load(self._public, received[-1], party.name)
        self.link.report_gradient(party.name, party.channel, step, received)  # before any request that uses it
        client = self.client
        batch = _BatchBackprop(self, self._cache, EncryptedGradientRows(gradient_t, gradient), client, step, scale)
        with party.timer.phase(Phase.HOMOMORPHIC_BACKPROP):
            if party.attack is None:
                encrypted = batch.backprop(batch.gradient, batch.row_weight)
            else:
                encrypted = party.attack.encrypted_gradients(step, sample_ids, batch)
        party.optimizer.zero_grad(set_to_none=True)
        if party.attack is not None and encrypted:
            try:
                party.attack.extra_requests(
                    step, "parameter_gradient", encrypted[0],
                    lambda crafted: client.reveal(crafted, step, "parameter_gradient", per_sample=False),
                )
            except RequestRefusedError as exc:  # an attack that let a refusal through: as if its own request was refused
                if not party.attack.gradient_request_refused(step, exc.reason):
                    raise
                self._cache = None
                return
        revealed = []
        for (linear, _), enc in zip(self._stack, encrypted, strict=True):
            try:
                values = client.reveal(enc, step, "parameter_gradient", per_sample=False) / batch.revealed_scales[len(revealed)]
            except RequestRefusedError as exc:
                if party.attack is None or not party.attack.gradient_request_refused(step, exc.reason):
                    raise
                party.optimizer.zero_grad(set_to_none=True)  # the attacker's crafted request was refused: no update this step
                self._cache = None
                return
            party.audit.saw("parameter_gradient", values.shape, per_sample=False, masked=False, source=client.key_holder)
            linear.weight.grad = torch.from_numpy(values[:, :-1]).to(linear.weight.dtype)
            linear.bias.grad = torch.from_numpy(values[:, -1]).to(linear.bias.dtype)
            revealed.append(values)
        if party.attack is not None:
            party.attack.revealed_parameter_gradients(step, sample_ids, revealed, party.model)
        with party.timer.phase(Phase.BOTTOM_BACKWARD):
            party.optimizer.step()
        self._cache = None


class _BatchBackprop:
    """One batch's homomorphic backpropagation at a passive, as the attack hook exposes it.

    Implements :class:`~securevfl.attacks.hooks.EncryptedBackprop` over the party's private
    forward cache, which never leaves this module.
    """

    def __init__(
        self, wire: BlindPassiveWire, cache: ForwardCache, gradient: EncryptedGradientRows, client: MaskedKeyHolderClient,
        step: int, scale: float,
    ) -> None:
        self._wire, self._cache, self._client, self._step = wire, cache, client, step
        self.gradient = gradient
        self.row_weight = cache.row_weight.copy()
        rows = gradient.batch_major
        shrinks = [1.0] * len(wire._stack) if rows is None else carried_shrinks(wire._stack, rows.value_bound, wire.bounds.gradient)
        self.revealed_scales = [scale / shrink for shrink in shrinks]

    def backprop(self, gradient: EncryptedGradientRows, row_weight: np.ndarray, source: np.ndarray | None = None) -> list[EncryptedTensor]:
        cache = replace(self._cache, row_weight=np.asarray(row_weight, dtype=np.float64))
        if source is not None:
            weighted = np.flatnonzero(cache.row_weight)
            picked = np.asarray(source)[weighted]

            def moved(values: np.ndarray) -> np.ndarray:
                out = np.zeros_like(values)
                out[weighted] = values[picked]
                return out

            cache = replace(
                cache,
                layer_inputs=[moved(a) for a in cache.layer_inputs],
                relu_masks=[None if m is None else moved(m) for m in cache.relu_masks],
            )
        wire = self._wire
        return encrypted_parameter_gradients(
            wire._stack, wire.plan, cache, gradient.feature_major, gradient.batch_major, self._client, self._step, wire.bounds.gradient
        )


class BlindActiveWire:
    """The active party when it never holds an individual passive activation.

    ``key_holder`` is the key holder service when the active party holds the key itself (it
    then decrypts its combined values directly); otherwise ``link`` names the coordinator it
    asks through masked decryption.
    """

    def __init__(
        self,
        passive_plans: dict[str, BottomPlan],
        top_plan: TopPlan | None,
        bounds: Bounds,
        key_holder: KeyHolder | None = None,
        link: KeyHolderLink | None = None,
    ) -> None:
        self.passive_plans = passive_plans
        self.top_plan = top_plan
        self.bounds = bounds
        self.key_holder = key_holder
        self.link = link
        self.client: MaskedKeyHolderClient | None = None

    @property
    def mask_bound(self) -> float:
        """The largest magnitude of one passive's pairwise activation mask (0 without them)."""
        return self.link.pairwise_mask_bound if self.link is not None else 0.0

    def _check_masks_cancelled(self, values: np.ndarray, bound: float, name: str) -> None:
        if self.link is not None:
            check_masks_cancelled(values, bound, self.link.pairwise_mask_bound, self.link.mask_half_width, name)

    def announce(self, party: ActiveParty) -> None:
        """Nothing: the key holder party announces the key (under this party's name if it is the holder)."""

    def learn(self, party: ActiveParty) -> None:
        if (self.key_holder is None) == (self.link is None):
            raise ProtocolError(f"{party.name} must either hold the key or link to the key holder, not both or neither")
        if self.link is not None:
            self.client = self.link.connect(party.name, party.channel, party.timer)

    @property
    def _keyring(self) -> Keyring:
        if self.key_holder is not None:
            return self.key_holder.keyring
        if self.client is not None:
            return self.client.public
        raise ProtocolError("the active party has neither the key nor a key holder connection")

    def _reveal(self, party: ActiveParty, encrypted: EncryptedTensor, step: int, what: str, per_sample: bool) -> np.ndarray:
        if self.key_holder is not None:
            with party.timer.phase(Phase.DECRYPT):
                values = encrypted.decrypt(self.key_holder.keyring)
            source = party.name
        elif self.client is not None:
            client = self.client
            if party.attack is not None:
                party.attack.extra_requests(step, what, encrypted, lambda crafted: client.reveal(crafted, step, what, per_sample))
            values = client.reveal(encrypted, step, what, per_sample)
            source = client.key_holder
        else:
            raise ProtocolError(f"{party.name} cannot decrypt")
        party.audit.saw(what, values.shape, per_sample=per_sample, masked=False, source=source)
        return values

    def _receive(self, party: ActiveParty, kind: MessageKind, sender: str) -> EncryptedTensor:
        message = party.channel.receive(party.name, kind, sender=sender)
        with party.timer.phase(Phase.CIPHERTEXT_DESERIALIZE):
            return _load(self._keyring, message, party.name)

    def _combined(self, party: ActiveParty, received: list[EncryptedTensor], step: int, what: str) -> torch.Tensor:
        """Decrypt only the combination of the passives' activations: their sum or first layer."""
        with party.timer.phase(Phase.TOP_ENCRYPTED):
            if self.top_plan is None:
                combined = unmasked_sum(received, self.mask_bound)
            else:
                blocks = self._first_layer_blocks(party, _first_layer(party).weight)
                combined = EncryptedTensor.sum_of([enc @ block.T for enc, block in zip(received, blocks, strict=True)])
        values = self._reveal(party, combined, step, what, per_sample=True)
        self._check_masks_cancelled(values, combined.value_bound, party.name)
        return torch.from_numpy(values.astype(np.float32))

    def _received_activations(self, party: ActiveParty, step: int, rows: int) -> tuple[list[EncryptedTensor], list[EncryptedTensor]]:
        """Every passive's encrypted activations (and transposed copies), after under-encryption defenses."""
        received, transposed = [], []
        for sender in party.passive_names:
            ctx = party.context("activation", sender, step, rows)
            packings = [(self._receive(party, MessageKind.ACTIVATION, sender), ctx)]
            if party.attack is not None:
                party.attack.encrypted_activations(step, sender, packings[0][0])
            if self.top_plan is not None:
                packings.append((self._receive(party, MessageKind.ACTIVATION_T, sender), replace(ctx, sample_axis=1)))
            with party.timer.phase(Phase.DEFENSE_ENCRYPTED):
                tensors = party.defenses.encrypted(packings)
            received.append(tensors[0])
            transposed.extend(tensors[1:])
        return received, transposed

    def _first_layer_blocks(self, party: ActiveParty, weight: torch.Tensor) -> list[np.ndarray]:
        width = self.top_plan.part_width  # type: ignore[union-attr]
        w = weight.detach().double().numpy()
        return [w[:, k * width : (k + 1) * width] for k in range(len(party.passive_names))]

    def _logits(self, party: ActiveParty, combined: torch.Tensor, local_x: torch.Tensor | None) -> torch.Tensor:
        if self.top_plan is None:
            logits = combined
            if local_x is not None:
                logits = logits + party.local_block.model(local_x)  # type: ignore[union-attr]
            return logits
        first = _first_layer(party)
        width = self.top_plan.part_width
        pre = combined + first.bias
        if local_x is not None:
            local_h = party.local_block.model(local_x)  # type: ignore[union-attr]
            start = len(party.passive_names) * width
            pre = pre + F.linear(local_h, first.weight[:, start : start + width])
        return party.top.layers[1:](pre)  # type: ignore[index,operator]

    def train_step(self, party: ActiveParty, step: int, sample_ids: np.ndarray) -> float:
        if self.key_holder is not None:
            self.key_holder.note_step(step)  # the passives' requests may run at most one step ahead of it
        what = "activation_sum" if self.top_plan is None else "first_layer_preactivation"
        received, transposed = self._received_activations(party, step, len(sample_ids))
        combined = self._combined(party, received, step, what)
        if party.attack is not None:
            party.attack.combined_activations(step, sample_ids, combined.numpy().copy())
        with party.timer.phase(Phase.TOP):
            combined.requires_grad_(True)
            local_x = party.local_input(sample_ids, split=None)
            party.top.train()
            loss = F.cross_entropy(self._logits(party, combined, local_x), party.y_train[sample_ids])
            for optimizer in party.optimizers():
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            delta = combined.grad.double().numpy()  # type: ignore[union-attr]
        gradients = self._passive_gradients(party, delta)
        one_ciphertext = self.link is not None and self.link.gradient_agreement  # every passive gets the very same bytes
        if party.attack is not None:
            gradients = party.attack.outgoing_gradients(step, sample_ids, [g.copy() for g in gradients])
            if one_ciphertext and any(not np.array_equal(g, gradients[0]) for g in gradients[1:]):
                one_ciphertext = False  # a malicious active party encrypting each passive's rows on its own
        if self.top_plan is not None:
            self._first_layer_weight_gradient(party, transposed, delta, step, sample_ids)
        with party.timer.phase(Phase.TOP):
            for optimizer in party.optimizers():
                optimizer.step()
        shared: list[tuple[MessageKind, bytes, dict[str, float]]] | None = None
        for sender, gradient in zip(party.passive_names, gradients, strict=True):
            ctx = party.context("gradient", sender, step, len(sample_ids), sample_ids)
            party.computed_gradient(step, sample_ids, sender, gradient)
            if shared is None:
                messages = self._gradient_messages(party, sender, party.defenses.plaintext(Placement.PRE_ENCRYPTION, gradient, ctx), ctx)
                if one_ciphertext:
                    shared = messages  # the coordinator checks that every passive received them: .gradient_agreement
            else:
                messages = shared
            for kind, payload, meta in messages:
                party.channel.send(Message(kind, party.name, sender, step, payload, codec="ckks", meta=meta))
        return float(loss.detach())

    def _passive_gradients(self, party: ActiveParty, delta: np.ndarray) -> list[np.ndarray]:
        """dL/dH_k for every passive, from quantities the active party holds (before its update)."""
        if self.top_plan is None:
            return [delta for _ in party.passive_names]
        return [delta @ block for block in self._first_layer_blocks(party, _first_layer(party).weight)]

    def _first_layer_weight_gradient(
        self, party: ActiveParty, transposed: list[EncryptedTensor], delta: np.ndarray, step: int, sample_ids: np.ndarray
    ) -> None:
        """dW1_k = H_k^T delta under encryption; only the batch-summed product is decrypted (and shown to an attack)."""
        first = _first_layer(party)
        if first.weight.grad is None:
            first.weight.grad = torch.zeros_like(first.weight)
        scale = gradient_scale(len(sample_ids))  # per-sample delta: the product's absolute noise matters less
        padded = _pad_rows(delta * scale, self.top_plan.batch)  # type: ignore[union-attr]
        width = self.top_plan.part_width  # type: ignore[union-attr]
        for k, enc in enumerate(transposed):
            with party.timer.phase(Phase.TOP_ENCRYPTED):
                product = enc @ padded
            values = self._reveal(party, product, step, "top_weight_gradient", per_sample=False) / scale
            if party.attack is not None:  # its own delta and weight block (not yet updated): what it holds
                party.attack.revealed_top_weight_gradient(step, sample_ids, party.passive_names[k], values.copy(), delta.copy(), first.weight.detach().double().numpy()[:, k * width : (k + 1) * width])
            first.weight.grad[:, k * width : (k + 1) * width] += torch.from_numpy(values.T.astype(np.float32))

    def _gradient_messages(
        self, party: ActiveParty, receiver: str, gradient: np.ndarray, ctx: MessageContext
    ) -> list[tuple[MessageKind, bytes, dict[str, float]]]:
        """``Enc(G^T)`` (and ``Enc(G)`` below a hidden layer) for ``receiver``, after its under-encryption defenses, as sent."""
        plan = self.passive_plans[receiver]
        top_layer = plan.layers - 1
        announced = gradient_scale(ctx.rows, gradient, self.bounds.gradient)  # see .precision: per-sample values
        scale = announced * AMPLIFICATION  # ... amplified
        padded = _pad_rows(gradient * scale, plan.batch)
        bound = self.bounds.gradient * AMPLIFICATION
        what = f"gradient for {receiver}"
        with party.timer.phase(Phase.ENCRYPT):
            tensors = [(MessageKind.GRADIENT, _encrypt(self._keyring, padded.T, what, bound, layout=Layout.ROWS, stride=plan.feature_major_stride(top_layer)))]
            if plan.layers > 1:
                tensors.append(
                    (MessageKind.GRADIENT_BM, _encrypt(self._keyring, padded, what, bound, layout=Layout.ROWS, stride=plan.batch_major_stride(top_layer)))
                )
        if party.defenses.wants_encrypted(ctx):
            ctx = replace(ctx, value_scale=scale)  # additive defenses scale their draws to the values as sent
            contexts = [replace(ctx, sample_axis=1), ctx][: len(tensors)]
            with party.timer.phase(Phase.DEFENSE_ENCRYPTED):
                defended = party.defenses.encrypted([(tensor, c) for (_, tensor), c in zip(tensors, contexts, strict=True)])
            tensors = [(kind, tensor) for (kind, _), tensor in zip(tensors, defended, strict=True)]
        messages = []
        for kind, tensor in tensors:
            with party.timer.phase(Phase.CIPHERTEXT_SERIALIZE):
                messages.append((kind, tensor.to_bytes(), {SCALE_META: announced}))
        return messages

    def predict(self, party: ActiveParty, step: int, sample_ids: np.ndarray, split: str) -> torch.Tensor:
        what = "eval_activation_sum" if self.top_plan is None else "eval_first_layer_preactivation"
        received = [self._receive(party, MessageKind.EVAL_ACTIVATION, sender) for sender in party.passive_names]
        combined = self._combined(party, received, step, what)
        with party.timer.phase(Phase.EVALUATE):
            local_x = party.local_input(sample_ids, split)
            party.top.eval()
            return self._logits(party, combined, local_x).argmax(dim=1)


def _first_layer(party: ActiveParty) -> nn.Linear:
    return party.top.layers[0]  # type: ignore[index,return-value]
