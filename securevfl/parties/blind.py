"""Parties of the label-private schemes (``key_holder = "active"`` or ``"coordinator"``).

- :class:`BlindPassiveParty` encrypts its activations under the key holder's public key and
  trains from encrypted gradients (see :mod:`securevfl.blind.backprop`): it never holds a
  plaintext per-sample gradient.
- :class:`BlindActiveParty` combines the encrypted activations before anything is decrypted
  (their sum, or the trainable top's first dense layer), so it never holds an individual H_k.
- :class:`CoordinatorParty` holds the key and sees only masked values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from securevfl.crypto import CryptoError, EncryptedTensor, Keyring, Layout, PrecisionError
from securevfl.protocols import ACTIVATION, EVAL_ACTIVATION, GRADIENT, Channel, Message, MessageKind, PhaseTimer, ProtocolError
from securevfl.protocols.keyholder import KeyHolder, MaskedKeyHolderClient
from securevfl.protocols.errors import PayloadRangeError
from securevfl.protocols.phases import Phase
from securevfl.blind.backprop import ForwardCache, cached_forward, encrypted_parameter_gradients, linear_stack
from securevfl.blind.plan import BottomPlan, TopPlan
from securevfl.defenses.base import MessageContext, Placement
from securevfl.parties.active import ActiveParty, LocalBlock
from securevfl.parties.passive import PassiveParty

ACTIVATION_T = MessageKind.ACTIVATION_T
GRADIENT_BM = MessageKind.GRADIENT_BM


@dataclass(frozen=True)
class Bounds:
    """Public magnitude bounds values must respect before encryption (CKKS precision)."""

    activation: float
    gradient: float


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


class BlindPassiveParty(PassiveParty):
    """A passive party that cannot decrypt: it learns only batch-summed parameter gradients."""

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
        plan: BottomPlan,
        top_plan: TopPlan | None,
        bounds: Bounds,
    ) -> None:
        super().__init__(name, x_train, x_test, model, optimizer, channel, active_name, timer, protection=None)
        self.plan = plan
        self.top_plan = top_plan
        self.bounds = bounds
        self.client: MaskedKeyHolderClient | None = None
        self._stack = linear_stack(model)
        self._cache: ForwardCache | None = None

    def connect(self, client: MaskedKeyHolderClient) -> None:
        """Attach the key holder's public keyring and request channel (after key announcement)."""
        self.client = client

    @property
    def _public(self) -> Keyring:
        if self.client is None:
            raise ProtocolError(f"{self.name} has no key holder connection yet")
        return self.client.public

    def send_activations(self, step: int, sample_ids: np.ndarray) -> None:
        with self.timer.phase(Phase.BOTTOM_FORWARD):
            output, self._cache = cached_forward(self._stack, self._x_train[sample_ids], self.plan.batch)
        self._batch_ids = sample_ids
        values = self._outgoing(step, sample_ids, output.double().numpy())
        self._send_encrypted(ACTIVATION, step, values, transposed=self.top_plan is not None)

    def send_eval_activations(self, step: int, sample_ids: np.ndarray, split: str = "test") -> None:
        with torch.no_grad(), self.timer.phase(Phase.EVALUATE):
            output = self.model(self._eval[split][sample_ids])
        self._send_encrypted(EVAL_ACTIVATION, step, output.double().numpy(), transposed=False)

    def _send_encrypted(self, kind: str, step: int, values: np.ndarray, transposed: bool) -> None:
        what = f"{self.name} {kind}"
        with self.timer.phase(Phase.ENCRYPT):
            if self.top_plan is None:
                tensors = [(kind, _encrypt(self._public, values, what, self.bounds.activation, layout=Layout.FLAT, levels=0))]
            else:
                stride = self.top_plan.activation_stride()
                tensors = [(kind, _encrypt(self._public, values, what, self.bounds.activation, layout=Layout.ROWS, stride=stride, levels=1))]
                if transposed:
                    padded_t = _pad_rows(values, self.plan.batch).T
                    stride_t = self.top_plan.transposed_activation_stride()
                    tensors.append(
                        (ACTIVATION_T, _encrypt(self._public, padded_t, what, self.bounds.activation, layout=Layout.ROWS, stride=stride_t, levels=1))
                    )
        for message_kind, tensor in tensors:
            with self.timer.phase(Phase.CIPHERTEXT_SERIALIZE):
                payload = tensor.to_bytes()
            self.channel.send(Message(message_kind, self.name, self.active_name, step, payload, codec="ckks"))

    def apply_gradients(self, step: int) -> None:
        if self._cache is None or self.client is None:
            raise ProtocolError(f"{self.name} received a gradient without having sent activations")
        gradient_t = _load(self._public, self.channel.receive(self.name, GRADIENT, sender=self.active_name), self.name)
        gradient = None
        if self.plan.layers > 1:
            gradient = _load(self._public, self.channel.receive(self.name, GRADIENT_BM, sender=self.active_name), self.name)
        client = self.client

        def backprop(cache: ForwardCache, g_t: EncryptedTensor, g: EncryptedTensor | None) -> list[EncryptedTensor]:
            return encrypted_parameter_gradients(self._stack, self.plan, cache, g_t, g, client, step, self.bounds.gradient)

        with self.timer.phase(Phase.HOMOMORPHIC_BACKPROP):
            if self.attack is None:
                encrypted = backprop(self._cache, gradient_t, gradient)
            else:
                encrypted = self.attack.encrypted_gradients(step, self._batch_ids, self._cache, gradient_t, gradient, backprop)  # type: ignore[arg-type]
        self.optimizer.zero_grad(set_to_none=True)
        for (linear, _), enc in zip(self._stack, encrypted, strict=True):
            values = self.client.reveal(enc, step, "parameter_gradient", per_sample=False)
            self.audit.saw("parameter_gradient", values.shape, per_sample=False, masked=False, source=self.client.key_holder)
            linear.weight.grad = torch.from_numpy(values[:, :-1]).to(linear.weight.dtype)
            linear.bias.grad = torch.from_numpy(values[:, -1]).to(linear.bias.dtype)
        with self.timer.phase(Phase.BOTTOM_BACKWARD):
            self.optimizer.step()
        self._cache = None


class BlindActiveParty(ActiveParty):
    """The active party when it never holds an individual passive activation."""

    def __init__(
        self,
        name: str,
        y_train: np.ndarray,
        y_test: np.ndarray,
        top: nn.Module,
        top_optimizer: torch.optim.Optimizer | None,
        passive_names: list[str],
        passive_plans: dict[str, BottomPlan],
        top_plan: TopPlan | None,
        channel: Channel,
        timer: PhaseTimer,
        bounds: Bounds,
        local_block: LocalBlock | None = None,
    ) -> None:
        super().__init__(
            name, y_train, y_test, top, top_optimizer, passive_names, channel, timer, protection=None, local_block=local_block
        )
        self.passive_plans = passive_plans
        self.top_plan = top_plan
        self.bounds = bounds
        self.key_holder: KeyHolder | None = None
        self.client: MaskedKeyHolderClient | None = None

    def hold_key(self, key_holder: KeyHolder) -> None:
        self.key_holder = key_holder

    def connect(self, client: MaskedKeyHolderClient) -> None:
        self.client = client

    @property
    def _keyring(self) -> Keyring:
        if self.key_holder is not None:
            return self.key_holder.keyring
        if self.client is not None:
            return self.client.public
        raise ProtocolError(f"{self.name} has neither the key nor a key holder connection")

    def _reveal(self, encrypted: EncryptedTensor, step: int, what: str, per_sample: bool) -> np.ndarray:
        if self.key_holder is not None:
            with self.timer.phase(Phase.DECRYPT):
                values = encrypted.decrypt(self.key_holder.keyring)
            source = self.name
        elif self.client is not None:
            values = self.client.reveal(encrypted, step, what, per_sample)
            source = self.client.key_holder
        else:
            raise ProtocolError(f"{self.name} cannot decrypt")
        self.audit.saw(what, values.shape, per_sample=per_sample, masked=False, source=source)
        return values

    def _receive(self, kind: str, sender: str) -> EncryptedTensor:
        message = self.channel.receive(self.name, kind, sender=sender)
        with self.timer.phase(Phase.CIPHERTEXT_DESERIALIZE):
            return _load(self._keyring, message, self.name)

    def _combined(self, received: list[EncryptedTensor], step: int, what: str) -> torch.Tensor:
        """Decrypt only the combination of the passives' activations: their sum or first layer."""
        with self.timer.phase(Phase.TOP_ENCRYPTED):
            if self.top_plan is None:
                combined = EncryptedTensor.sum_of(received)
            else:
                first = self._first_layer
                products = [enc @ block.T for enc, block in zip(received, self._first_layer_blocks(first.weight), strict=True)]
                combined = EncryptedTensor.sum_of(products)
        values = self._reveal(combined, step, what, per_sample=True)
        return torch.from_numpy(values.astype(np.float32))

    def _received_activations(self, step: int, rows: int) -> tuple[list[EncryptedTensor], list[EncryptedTensor]]:
        """Every passive's encrypted activations (and transposed copies), after under-encryption defenses."""
        received, transposed = [], []
        for sender in self.passive_names:
            packings = [(self._receive(ACTIVATION, sender), self._context("activation", sender, self.name, step, rows))]
            if self.top_plan is not None:
                ctx_t = MessageContext(kind="activation", sender=sender, receiver=self.name, step=step, rows=rows, sample_axis=1)
                packings.append((self._receive(ACTIVATION_T, sender), ctx_t))
            with self.timer.phase(Phase.DEFENSE_ENCRYPTED):
                tensors = self.defenses.encrypted(packings)
            received.append(tensors[0])
            transposed.extend(tensors[1:])
        return received, transposed

    @property
    def _first_layer(self) -> nn.Linear:
        return self.top.layers[0]  # type: ignore[index,return-value]

    def _first_layer_blocks(self, weight: torch.Tensor) -> list[np.ndarray]:
        width = self.top_plan.part_width  # type: ignore[union-attr]
        w = weight.detach().double().numpy()
        return [w[:, k * width : (k + 1) * width] for k in range(len(self.passive_names))]

    def _logits(self, combined: torch.Tensor, local_x: torch.Tensor | None) -> torch.Tensor:
        if self.top_plan is None:
            logits = combined
            if local_x is not None:
                logits = logits + self.local_block.model(local_x)  # type: ignore[union-attr]
            return logits
        first = self._first_layer
        width = self.top_plan.part_width
        pre = combined + first.bias
        if local_x is not None:
            local_h = self.local_block.model(local_x)  # type: ignore[union-attr]
            start = len(self.passive_names) * width
            pre = pre + F.linear(local_h, first.weight[:, start : start + width])
        return self.top.layers[1:](pre)  # type: ignore[index]

    def train_step(self, step: int, sample_ids: np.ndarray) -> float:
        what = "activation_sum" if self.top_plan is None else "first_layer_preactivation"
        received, transposed = self._received_activations(step, len(sample_ids))
        combined = self._combined(received, step, what)
        with self.timer.phase(Phase.TOP):
            combined.requires_grad_(True)
            local_x = None
            if self.local_block is not None:
                self.local_block.model.train()
                local_x = self.local_block.x_train[sample_ids]
            self.top.train()
            loss = F.cross_entropy(self._logits(combined, local_x), self._y_train[sample_ids])
            for optimizer in self._optimizers():
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            delta = combined.grad.double().numpy()  # type: ignore[union-attr]
        gradients = self._passive_gradients(delta)
        if self.top_plan is not None:
            self._first_layer_weight_gradient(transposed, delta, step)
        with self.timer.phase(Phase.TOP):
            for optimizer in self._optimizers():
                optimizer.step()
        for sender, gradient in zip(self.passive_names, gradients, strict=True):
            ctx = self._context("gradient", self.name, sender, step, len(sample_ids))
            self._send_gradient(sender, self.defenses.plaintext(Placement.PRE_ENCRYPTION, gradient, ctx), ctx)
        return float(loss.detach())

    def _passive_gradients(self, delta: np.ndarray) -> list[np.ndarray]:
        """dL/dH_k for every passive, from quantities the active party holds (before its update)."""
        if self.top_plan is None:
            return [delta for _ in self.passive_names]
        return [delta @ block for block in self._first_layer_blocks(self._first_layer.weight)]

    def _first_layer_weight_gradient(self, transposed: list[EncryptedTensor], delta: np.ndarray, step: int) -> None:
        """dW1_k = H_k^T delta under encryption; only the batch-summed product is decrypted."""
        first = self._first_layer
        if first.weight.grad is None:
            first.weight.grad = torch.zeros_like(first.weight)
        padded = _pad_rows(delta, self.top_plan.batch)  # type: ignore[union-attr]
        width = self.top_plan.part_width  # type: ignore[union-attr]
        for k, enc in enumerate(transposed):
            with self.timer.phase(Phase.TOP_ENCRYPTED):
                product = enc @ padded
            values = self._reveal(product, step, "top_weight_gradient", per_sample=False)
            first.weight.grad[:, k * width : (k + 1) * width] += torch.from_numpy(values.T.astype(np.float32))

    def _send_gradient(self, receiver: str, gradient: np.ndarray, ctx: MessageContext) -> None:
        plan, step = self.passive_plans[receiver], ctx.step
        top_layer = plan.layers - 1
        padded = _pad_rows(gradient, plan.batch)
        what = f"gradient for {receiver}"
        with self.timer.phase(Phase.ENCRYPT):
            tensors = [(GRADIENT, _encrypt(self._keyring, padded.T, what, self.bounds.gradient, layout=Layout.ROWS, stride=plan.feature_major_stride(top_layer)))]
            if plan.layers > 1:
                tensors.append(
                    (GRADIENT_BM, _encrypt(self._keyring, padded, what, self.bounds.gradient, layout=Layout.ROWS, stride=plan.batch_major_stride(top_layer)))
                )
        if self.defenses.wants_encrypted(ctx):
            contexts = [replace(ctx, sample_axis=1), ctx][: len(tensors)]
            with self.timer.phase(Phase.DEFENSE_ENCRYPTED):
                defended = self.defenses.encrypted([(tensor, c) for (_, tensor), c in zip(tensors, contexts, strict=True)])
            tensors = [(kind, tensor) for (kind, _), tensor in zip(tensors, defended, strict=True)]
        for kind, tensor in tensors:
            with self.timer.phase(Phase.CIPHERTEXT_SERIALIZE):
                payload = tensor.to_bytes()
            self.channel.send(Message(kind, self.name, receiver, step, payload, codec="ckks"))

    @torch.no_grad()
    def predict(self, step: int, sample_ids: np.ndarray, split: str = "test") -> torch.Tensor:
        what = "eval_activation_sum" if self.top_plan is None else "eval_first_layer_preactivation"
        combined = self._combined([self._receive(EVAL_ACTIVATION, sender) for sender in self.passive_names], step, what)
        with self.timer.phase(Phase.EVALUATE):
            local_x = None
            if self.local_block is not None:
                self.local_block.model.eval()
                local_x = self._local_eval[split][sample_ids]
            self.top.eval()
            return self._logits(combined, local_x).argmax(dim=1)


class CoordinatorParty:
    """Owns nothing but the secret key; answers masked requests and sees only masked values."""

    def __init__(self, key_holder: KeyHolder) -> None:
        self.key_holder = key_holder
        self.name = key_holder.name
        self.audit = key_holder.audit

    def serve(self, channel: Channel, requester: str) -> None:
        self.key_holder.serve(channel, requester)

