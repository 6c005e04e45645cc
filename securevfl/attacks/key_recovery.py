"""Key recovery through the key holder's decryptions (Li and Micciancio, EUROCRYPT 2021).

A malicious passive under a label-private scheme holds the key holder's public key and the
encrypted gradient rows it is sent, and it may have values decrypted: that is how it learns its
parameter gradients. It abuses exactly that request slot, so no decryption policy can tell:

1. In place of its first layer's encrypted ``[dW | db]`` it submits ``k * Enc(0)`` (``k = 64``
   keeps the honest client's mask rounding and double precision below half a coefficient), then at the next step
   the same ciphertext times ``X^(N/2)``, which turns the imaginary parts of the slots into real
   ones. The key holder decrypts both; the replies, unmasked by the passive as usual, are the
   real and imaginary parts of ``k * (c0 + c1 * s)`` decoded.
2. Inverting the CKKS embedding gives the integer polynomial ``p = c0 + c1 * s mod q`` exactly,
   and ``s = (p - c0) / c1`` in ``Z_q[X]/(X^N + 1)``. The attacker checks the key on an
   encryption it makes itself: the check needs nothing the attacker does not have.
3. With the key it decrypts every gradient ciphertext it is sent: ``G = dL/dH`` row by row and,
   under the sum top, each label as ``argmin G_b``.

Its layer-0 update in the two steps is ~0 (the decryptions of ``k * Enc(0)``); training goes on.
Against a key holder that floods its decryptions (:mod:`securevfl.crypto.flooding`) the solved
``s`` is garbage: the key check fails and the "labels" it reads are at chance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import tenseal.sealapi as sealapi
from pydantic import Field

from securevfl.attacks.activation_reads import ActivationReads
from securevfl.attacks.base import DECRYPTION_REQUESTS, NO_DECRYPTION_REQUESTS, Attack, AttackConfigBase, AttackSetting, AttackTruth
from securevfl.attacks.label_guesses import LabelGuesses
from securevfl.attacks.metrics import MetricSpec
from securevfl.crypto import EncryptedTensor, Keyring, Layout, kernels, ring
from securevfl.protocols.errors import ProtocolError, RequestRefusedError
from securevfl.protocols.keyholder import CONTENT_REFUSAL
from securevfl.roles import Capability, Role

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn

    from securevfl.attacks.hooks import EncryptedBackprop

__all__ = [
    "ACTIVE_KEY_RECOVERY_ROWS",
    "KEY_RECOVERED",
    "KEY_RECOVERY_LABEL_ACCURACY",
    "ActiveKeyRecovery",
    "ActiveKeyRecoveryConfig",
    "KeyRecovery",
    "KeyRecoveryConfig",
    "recover_secret_key",
]

KEY_RECOVERED = MetricSpec(
    "key_recovered",
    "1 if the attacker recovered the key holder's secret key (checked on an encryption of its own), else 0",
    "higher",
    "key recovered",
)
KEY_RECOVERY_LABEL_ACCURACY = MetricSpec(
    "key_recovery_label_accuracy",
    "fraction of the epoch's training samples whose label the passive read by decrypting its gradient rows with the key it recovered",
    "higher",
    "labels via key",
    blind_guess_scores_chance=True,
)

ACTIVE_KEY_RECOVERY_ROWS = MetricSpec(
    "key_recovery_activation_rows",
    "fraction of the epoch's per-sample activation rows (all passives) the active party read by decrypting them with "
    "the key it recovered (within the relative tolerance)",
    "higher",
    "activations via key",
)

#: Integer factor on the zero encryption. The honest client's mask is encoded with rounding (< 1/2
#: per coefficient) and a masked value of ~2^14 at scale 2^40 decodes with ~2 units of double
#: rounding; divided by 64 both stay far below half a coefficient.
AMPLIFICATION = 64


class KeyRecoveryConfig(AttackConfigBase):
    """Recover the key holder's secret key from two decryptions it answers, then read labels."""

    kind: Literal["key_recovery"] = "key_recovery"
    start_step: int = Field(default=0, ge=0, description="training step of the first of the two crafted requests")


class KeyRecovery(Attack):
    """A malicious passive turning its parameter-gradient decryptions into a key-recovery oracle."""

    name: ClassVar[str] = "key_recovery"
    config_type = KeyRecoveryConfig
    requires = (DECRYPTION_REQUESTS,)
    infeasible_because = NO_DECRYPTION_REQUESTS
    metrics = (KEY_RECOVERED, KEY_RECOVERY_LABEL_ACCURACY)
    success_metric = KEY_RECOVERY_LABEL_ACCURACY.name
    reads_private_data = True

    def __init__(self, party: str, n_samples: int, start_step: int, sum_top: bool) -> None:
        super().__init__(party)
        self.start_step = start_step
        self.sum_top = sum_top
        self._guesses = LabelGuesses(n_samples)
        self._probe: EncryptedTensor | None = None
        self._real_parts: np.ndarray | None = None
        self._stage = 0  # 0: waiting, 1: first probe sent, 2: second probe sent, 3: done
        self.secret: np.ndarray | None = None
        self.key_verified = False
        self._pending: tuple[np.ndarray, EncryptedTensor, float] | None = None
        self.unusable: str | None = None
        self._crafted_at: int | None = None
        self.refused: str | None = None

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: Any) -> KeyRecovery:
        assert isinstance(config, KeyRecoveryConfig)
        sum_top = setting.top == "sum" and setting.bottom_output == setting.dataset.num_classes
        return cls(setting.party, len(setting.dataset.y_train), config.start_step, sum_top)

    # ------------------------------------------------------------------ hooks
    def encrypted_gradients(self, step: int, sample_ids: np.ndarray, backprop: EncryptedBackprop) -> list[EncryptedTensor]:
        honest = backprop.backprop(backprop.gradient, backprop.row_weight)
        rows = backprop.gradient.feature_major
        self._pending = (np.asarray(sample_ids), rows, backprop.revealed_scales[0])
        if step < self.start_step or self._stage >= 2:
            return honest
        keyring = rows.keyring
        if honest[0].size < keyring.params.slots:
            self.unusable = (
                f"its first layer's gradient has {honest[0].size} values, fewer than the {keyring.params.slots} slots "
                "one decryption must reveal (this attack does not combine partial decryptions)"
            )
            self._stage = 3
            return honest
        if self._stage == 0:
            self._probe = _zero_probe(keyring, honest[0].shape)
            crafted = self._probe
        else:
            crafted = _times_monomial(keyring, self._probe, keyring.params.poly_modulus_degree // 2)  # type: ignore[arg-type]
        self._stage += 1
        self._crafted_at = step
        return [crafted, *honest[1:]]

    def gradient_request_refused(self, step: int, reason: str) -> bool:
        """A probe refused (the hardened key holder: noisier than its rule's bound) ends the attack; the passive trains on."""
        if self._crafted_at != step:
            return False
        self.refused = reason
        self._stage = 3
        self._pending = None
        return True

    def revealed_parameter_gradients(
        self, step: int, sample_ids: np.ndarray, gradients: list[np.ndarray], model: nn.Module
    ) -> None:
        if self._pending is None:
            return
        ids, rows, scale = self._pending  # the passive divided its decryptions by the public scale
        self._pending = None
        keyring = rows.keyring
        slots = keyring.params.slots
        if self._stage == 1 and self._real_parts is None:
            self._real_parts = np.asarray(gradients[0]).ravel()[:slots] * scale
            return
        if self._stage == 2 and self.secret is None:
            imaginary = np.asarray(gradients[0]).ravel()[:slots] * scale
            self.secret = recover_secret_key(keyring, self._probe, self._real_parts, imaginary)  # type: ignore[arg-type]
            self.key_verified = verify_secret_key(keyring, self.secret)
            self._stage = 3
        if self.secret is not None and self.key_verified:  # a key that fails its check reads nothing (the attacker knows)
            gradient = decrypt_with_secret(keyring, rows, self.secret).T[: len(ids)]
            labels = np.argmin(gradient, axis=1) if self.sum_top else np.argmax(np.abs(gradient), axis=1)
            self._guesses.guess(ids, labels)

    # ------------------------------------------------------------------ results
    def epoch_metrics(self, truth: AttackTruth) -> dict[str, float]:
        if self.unusable is not None:
            return {}
        metrics = {KEY_RECOVERED.name: float(self.key_verified)}
        accuracy = self._guesses.epoch_accuracy(truth.y_train)
        if self.sum_top:  # no label read this epoch (no key, nothing decrypted) is 0 %, a number to compare
            metrics[KEY_RECOVERY_LABEL_ACCURACY.name] = accuracy if accuracy is not None else 0.0
        return metrics

    def summary(self) -> dict[str, Any]:
        if self.unusable is not None:
            return {"not_run": self.unusable}
        crafted = min(self._stage, 2) if self.refused is None else (1 if self._real_parts is None else 2)
        return {"key_recovered": self.key_verified, "requests_crafted": crafted, "last_refusal": self.refused}

    def artifacts(self, truth: AttackTruth) -> Mapping[str, list[list[Any]]]:
        return {"key_recovery_labels": self._guesses.rows(truth.y_train, "label_read")}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self._guesses.state_dict(), "stage": self._stage, "key_verified": self.key_verified}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._guesses.load_state_dict(state)
        # the key and the probe are not checkpointed: a resumed attack starts over at its next step
        self._stage = 0
        self.key_verified = bool(state["key_verified"])


class ActiveKeyRecoveryConfig(AttackConfigBase):
    """Recover the coordinator's secret key with spare decryption requests, then read every passive's activations."""

    kind: Literal["active_key_recovery"] = "active_key_recovery"
    start_step: int = Field(default=0, ge=0, description="first training step at which the crafted requests may be sent")
    tolerance: float = Field(
        default=1e-3, gt=0, lt=1, description="an activation row counts as read when its relative L2 error is at most this"
    )


class ActiveKeyRecovery(Attack):
    """A malicious active party turning its request budget at the coordinator into a key-recovery oracle.

    When a coordinator holds the key, the active party has its combined activations decrypted
    by masked requests; the key holder's policy admits, per step, the requests the protocol
    needs, counted with room to spare for evaluation passes, each of up to ``eval_batch_size``
    rows (a last batch may be shorter, so the rule bounds rows from above). Declared at
    ``ceil(slots / width)`` rows (410 at MNIST's width 10, within the default 1,024) a request
    fills a whole ciphertext, which is what the Li-Micciancio algebra of :class:`KeyRecovery`
    needs, however small the evaluation split. The policy counts requests per step and does not
    know where epochs end, so such a request is admitted at any step. It spends two spare ones on ``k * Enc(0)`` and ``k * Enc(0) * X^(N/2)`` before its honest request, so
    its own predictions stay intact. With the key it decrypts each passive's ``Enc(H_k)`` as it
    arrives: the individual activations the scheme promises it never holds. Against a flooding
    key holder the solved key fails its check and nothing is read.
    """

    name: ClassVar[str] = "active_key_recovery"
    config_type = ActiveKeyRecoveryConfig
    role: ClassVar[Role] = Role.ACTIVE
    requires = (frozenset({Capability.DECRYPTION_REQUESTS, Capability.COMBINED_ACTIVATIONS}),)
    infeasible_because = (
        "the active party sends no decryption request another party's key answers (it holds the key itself, or "
        "receives the activations in the clear)"
    )
    metrics = (KEY_RECOVERED, ACTIVE_KEY_RECOVERY_ROWS)
    success_metric = ACTIVE_KEY_RECOVERY_ROWS.name
    reads_private_data = True
    scores_activations = True
    activation_truth_optional = True  # sealed passives hold no activations: the key is still scored

    def __init__(self, party: str, n_samples: int, passives: tuple[str, ...], start_step: int, tolerance: float) -> None:
        super().__init__(party)
        self.start_step = start_step
        self.passives = passives
        self._stage = 0  # 0: nothing sent, 1: first probe answered, 2: key solved (verified or not)
        self._probe: EncryptedTensor | None = None
        self._real_parts: np.ndarray | None = None
        self._keyring: Keyring | None = None
        self.secret: np.ndarray | None = None
        self.key_verified = False
        self.refused: str | None = None
        self._pending: list[tuple[str, EncryptedTensor]] = []
        self._reads = ActivationReads(n_samples, passives, tolerance)

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: Any) -> ActiveKeyRecovery:
        assert isinstance(config, ActiveKeyRecoveryConfig)
        return cls(setting.party, len(setting.dataset.y_train), setting.passives, config.start_step, config.tolerance)

    # ------------------------------------------------------------------ hooks
    def extra_requests(self, step: int, what: str, honest: EncryptedTensor, reveal: Callable[[EncryptedTensor], np.ndarray]) -> None:
        keyring = honest.keyring
        slots = keyring.params.slots
        if self._stage >= 2 or step < self.start_step or len(honest.shape) != 2:
            return
        # a request may declare up to the rule's row count (evaluation: train.eval_batch_size rows, whatever the split's
        # size): enough rows to fill one ciphertext, or the honest request's if it is larger
        rows, width = honest.shape
        shape = (max(rows, -(-slots // width)), width)
        try:
            if self._stage == 0:
                self._probe = _zero_probe(keyring, shape)
                self._real_parts = np.asarray(reveal(self._probe)).ravel()[:slots].copy()
                self._stage = 1
            rotated = _times_monomial(keyring, self._probe, keyring.params.poly_modulus_degree // 2)  # type: ignore[arg-type]
            imaginary = np.asarray(reveal(rotated)).ravel()[:slots]
        except ProtocolError as exc:  # the key holder refused (budget spent, policy): try again at a later request
            self.refused = str(exc)
            if isinstance(exc, RequestRefusedError) and exc.reason == CONTENT_REFUSAL:
                self._stage = 3  # detected: a second content refusal would cut the active party off
            return
        self.secret = recover_secret_key(keyring, self._probe, self._real_parts, imaginary)  # type: ignore[arg-type]
        self.key_verified = verify_secret_key(keyring, self.secret)
        self._keyring = keyring
        self._stage = 2

    def encrypted_activations(self, step: int, sender: str, tensor: EncryptedTensor) -> None:
        if self.key_verified:
            self._pending.append((sender, tensor))

    def combined_activations(self, step: int, sample_ids: np.ndarray, values: np.ndarray) -> None:
        pending, self._pending = self._pending, []
        if self.secret is None or self._keyring is None:
            return
        for sender, tensor in pending:
            self._reads.store(sender, sample_ids, decrypt_with_secret(self._keyring, tensor, self.secret))

    # ------------------------------------------------------------------ results
    def epoch_metrics(self, truth: AttackTruth) -> dict[str, float]:
        metrics = {KEY_RECOVERED.name: float(self.key_verified)}
        recovered = self._reads.fraction_recovered(truth)
        if recovered is not None:
            metrics[ACTIVE_KEY_RECOVERY_ROWS.name] = recovered
        return metrics

    def summary(self) -> dict[str, Any]:
        return {
            "key_recovered": self.key_verified,
            "requests_crafted": {0: 0, 1: 1, 2: 2}.get(self._stage, 0 if self._real_parts is None else 1),
            "last_refusal": self.refused,
        }

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "key_verified": self.key_verified}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        # the key is not checkpointed: a resumed attack starts over at its next eligible request
        self._stage = 0
        self.key_verified = False


# ---------------------------------------------------------------------- the algebra
_DIGIT_BITS = 20  # a plaintext factor with coefficients mod q is applied in base-2^20 digits, each exact at scale 1


def _times_polynomial(keyring: Keyring, ciphertext: Any, coefficients: np.ndarray, modulus: int) -> Any:
    """``ciphertext * P`` for a polynomial ``P`` with arbitrary coefficients mod ``modulus`` (exact, public operations)."""
    centred = [int(c) % modulus for c in coefficients]
    centred = [c - modulus if c > modulus // 2 else c for c in centred]
    base, half = 1 << _DIGIT_BITS, 1 << (_DIGIT_BITS - 1)
    encoder = sealapi.CKKSEncoder(keyring.seal_context)
    out, rest, power = None, centred, 0
    while any(rest):
        digit = [((c + half) % base) - half for c in rest]
        rest = [(c - d) >> _DIGIT_BITS for c, d in zip(rest, digit, strict=True)]
        plain = sealapi.Plaintext()
        encoder.encode(ring.coefficients_to_slots(np.asarray(digit, dtype=np.float64), 1.0).tolist(), ciphertext.parms_id(), 1.0, plain)
        part = sealapi.Ciphertext()
        keyring.evaluator.multiply_plain(ciphertext, plain, part)
        if power:
            shift = sealapi.Plaintext()
            encoder.encode(float(1 << (_DIGIT_BITS * power)), ciphertext.parms_id(), 1.0, shift)
            keyring.evaluator.multiply_plain_inplace(part, shift)
        if out is None:
            out = part
        else:
            keyring.evaluator.add_inplace(out, part)
        power += 1
    return out


def secret_key_ciphertext(keyring: Keyring, shape: tuple[int, ...]) -> EncryptedTensor:
    """A FLAT tensor, last level, whose one ciphertext is exactly ``(0, 1)``: it decrypts to the secret key ``s``.

    Built by anyone holding the public keyring: two honest encryptions ``a``, ``b`` of zero are
    combined as ``P*a + Q*b`` with ``D = a1*b0 - a0*b1``, ``P = b0/D``, ``Q = -a0/D`` (mod q), so the
    first polynomial cancels and the second is 1. Multiplied by a plaintext ``T`` it decrypts to
    ``T * s``: whatever a key holder reveals about such a request's decryption is about the key
    (docs/threat-model.md; the flooding's size once was, :mod:`securevfl.crypto.flooding`).
    """
    for _ in range(16):  # a draw whose factors SEAL's encoder refuses ("encoded value is too large") is drawn again
        try:
            return _secret_key_ciphertext_once(keyring, shape)
        except ValueError:
            continue
    raise ValueError("no pair of encryptions gave encodable factors in 16 draws")


def _secret_key_ciphertext_once(keyring: Keyring, shape: tuple[int, ...]) -> EncryptedTensor:
    a = EncryptedTensor.encrypt(keyring, np.zeros(shape), Layout.FLAT, bound=1.0, levels=0)
    b = EncryptedTensor.encrypt(keyring, np.zeros(shape), Layout.FLAT, bound=1.0, levels=0)
    a0, a1, modulus = ring.ciphertext_coefficients(keyring, a.ciphertexts[0])
    b0, b1, _ = ring.ciphertext_coefficients(keyring, b.ciphertexts[0])
    field = ring.NegacyclicRing(len(a0), modulus)
    inverse = field.invert(field.sub(field.mul(a1, b0), field.mul(a0, b1)))
    p_factor = field.mul(b0, inverse)
    q_factor = field.sub(np.zeros(len(a0), dtype=object), field.mul(a0, inverse))
    unit = _times_polynomial(keyring, a.ciphertexts[0], p_factor, modulus)
    keyring.evaluator.add_inplace(unit, _times_polynomial(keyring, b.ciphertexts[0], q_factor, modulus))
    a.ciphertexts[0] = unit
    return a


def _zero_probe(keyring: Keyring, shape: tuple[int, ...]) -> EncryptedTensor:
    """``k * Enc(0)`` at the last level, FLAT, shaped like the request it replaces."""
    probe = EncryptedTensor.encrypt(keyring, np.zeros(shape), Layout.FLAT, bound=1.0, levels=0)
    amplify = sealapi.Plaintext()
    sealapi.CKKSEncoder(keyring.seal_context).encode(float(AMPLIFICATION), probe.ciphertexts[0].parms_id(), 1.0, amplify)
    for ciphertext in probe.ciphertexts:
        keyring.evaluator.multiply_plain_inplace(ciphertext, amplify)
    return probe


def _times_monomial(keyring: Keyring, probe: EncryptedTensor, power: int) -> EncryptedTensor:
    """The same ciphertexts times ``X**power`` (exact): slot j is multiplied by ``zeta_j**power``."""
    copy = EncryptedTensor.from_bytes(keyring, probe.to_bytes())
    plain = ring.monomial_plaintext(keyring, copy.ciphertexts[0].parms_id(), power)
    for ciphertext in copy.ciphertexts:
        keyring.evaluator.multiply_plain_inplace(ciphertext, plain)
    return copy


def recover_secret_key(keyring: Keyring, probe: EncryptedTensor, real: np.ndarray, rotated: np.ndarray) -> np.ndarray:
    """``s`` (centred coefficients) from the decryptions of ``probe`` and of ``probe * X^(N/2)``.

    ``probe`` decrypts to ``P = k * e`` for a small ``e``; dividing the slots by ``k`` before
    rounding absorbs errors below ``k / 2`` coefficient units (mask encoding, double precision).
    """
    n = keyring.params.poly_modulus_degree
    factors = np.exp(1j * np.pi * ((ring.slot_roots(n) * (n // 2)) % (2 * n)) / n)  # +-i
    imaginary = -np.asarray(rotated) / factors.imag  # Re(+-i z) = -+Im z
    slots = (np.asarray(real) + 1j * imaginary) / AMPLIFICATION
    ciphertext = probe.ciphertexts[0]
    p = ring.slots_to_coefficients(slots, ciphertext.scale, n).astype(object) * AMPLIFICATION
    c0, c1, q = ring.ciphertext_coefficients(keyring, ciphertext)
    field = ring.NegacyclicRing(n, q)
    try:
        return field.center(field.mul(field.sub(p, c0), field.invert(c1)))
    except ZeroDivisionError:
        return np.zeros(n, dtype=np.int64)


def verify_secret_key(keyring: Keyring, secret: np.ndarray) -> bool:
    """Whether ``secret`` decrypts a fresh encryption of random values made under the public key."""
    values = np.random.default_rng().uniform(-1, 1, keyring.params.slots)
    probe = EncryptedTensor.encrypt(keyring, values, Layout.FLAT, bound=1.0, levels=0)
    decrypted = ring.coefficients_to_slots(
        ring.decrypt_coefficients(keyring, probe.ciphertexts[0], secret), probe.ciphertexts[0].scale
    ).real
    return bool(np.max(np.abs(decrypted - values)) < 1e-3)


def decrypt_with_secret(keyring: Keyring, tensor: EncryptedTensor, secret: np.ndarray) -> np.ndarray:
    """Decrypt any tensor under ``keyring``'s key pair with a secret key given as coefficients."""
    slot_vectors = []
    for ciphertext in tensor.ciphertexts:
        last = kernels.mod_switch_to_level(keyring, ciphertext, 0)
        coefficients = ring.decrypt_coefficients(keyring, last, secret)
        slot_vectors.append(ring.coefficients_to_slots(coefficients, last.scale).real)
    return tensor.packing.unpack(np.stack(slot_vectors))
