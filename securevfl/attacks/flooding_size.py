"""Key recovery from the *size* of a key holder's noise flooding (red-team finding 1, 2026-11-26).

A key holder that floods each decryption in proportion to the noise it measures in the request
(the unhardened path: ``decryption_policy = "none"`` with ``flooding_bits > 0``) reveals that
noise in the spread of its reply. The noise is the largest imaginary part of the decrypted slots,
and a requester can make it a function of the secret key:

1. From two honest encryptions of zero, public operations build the ciphertext ``(0, 1)``, which
   decrypts to the key ``s`` itself (:func:`.key_recovery.secret_key_ciphertext`).
2. ``T * (0, 1) + i * kappa``, with the plaintext ``T`` equal to ``t`` at slot ``j`` and zero
   elsewhere, decrypts to ``i * kappa + t * s_j`` at slot ``j`` and ~0 everywhere else: its
   largest imaginary part is ``kappa + t * Im(s_j)``, and the flooding's standard deviation is
   ``2**(bits/2)`` times that. The reply's other slots hold nothing but the flooding, so their
   spread gives ``Im(s_j)``; the same with ``-i * T`` gives ``-Re(s_j)``.
3. Two requests per slot give every slot of ``s``; the inverse embedding, rounded, gives its
   ternary coefficients, which the attacker checks on an encryption of its own.

A malicious passive spends extra parameter-gradient requests on it before its honest ones and,
with the key, reads its gradient rows, i.e. every label (:class:`FloodingKeyRecovery`, the
counterpart of :class:`.key_recovery.KeyRecovery`); a malicious active party under the coordinator
spends spare evaluation requests (:class:`ActiveFloodingKeyRecovery`, as
:class:`.key_recovery.ActiveKeyRecovery` does) and, with the key, reads every passive's ``Enc(H_k)``. The hardened key holder floods every request of a rule alike (its public noise
bound) and refuses a request noisier than that bound: the first probe is refused as content and
the attack stops; a key holder that does not flood has nothing to read (there the two-request
attack of Li and Micciancio works instead, :mod:`.key_recovery`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import tenseal.sealapi as sealapi
from pydantic import Field

from securevfl.attacks.base import AttackConfigBase, AttackSetting
from securevfl.attacks.key_recovery import (
    ActiveKeyRecovery,
    KeyRecovery,
    decrypt_with_secret,
    secret_key_ciphertext,
    verify_secret_key,
)
from securevfl.crypto import EncryptedTensor, Keyring, ring
from securevfl.protocols.errors import ProtocolError, RequestRefusedError
from securevfl.protocols.keyholder import CONTENT_REFUSAL

if TYPE_CHECKING:
    from torch import nn

    from securevfl.attacks.hooks import EncryptedBackprop
    from securevfl.crypto.layout import Packing

__all__ = [
    "ActiveFloodingKeyRecovery",
    "ActiveFloodingKeyRecoveryConfig",
    "FloodingKeyRecovery",
    "FloodingKeyRecoveryConfig",
    "NoFlooding",
    "flooding_probe",
    "key_from_flooding",
]

#: ``t``: the probe's factor on the key, in coefficient units (``T`` is encoded at scale 1).
KEY_FACTOR = 2.0**22
#: ``kappa`` in units of ``t / scale``: above the largest slot component of a ternary key of
#: degree 8,192 (standard deviation ~52, largest of 8,192 ~230), so the spread is ``kappa + t Im(s_j)``
#: with its sign known.
KAPPA_UNITS = 400.0
_FACTORS = (1.0 + 0.0j, -1.0j)  # Im(t s_j), then Im(-i t s_j) = -t Re(s_j)


def flooding_probe(unit: EncryptedTensor, slot: int, factor: complex) -> EncryptedTensor:
    """``T * (0, 1) + i * kappa`` at ``slot`` of the first ciphertext (``unit`` holds ``(0, 1)`` there).

    It decrypts to ``i * kappa + factor * t * s_slot`` at ``slot``, and to ~0 in every other slot.
    """
    keyring = unit.keyring
    ciphertext = unit.ciphertexts[0]
    encoder = sealapi.CKKSEncoder(keyring.seal_context)
    slots = keyring.params.slots
    times_slots = np.zeros(slots, dtype=complex)
    times_slots[slot] = factor * KEY_FACTOR
    times = sealapi.Plaintext()
    encoder.encode(times_slots.tolist(), ciphertext.parms_id(), 1.0, times)
    plus_slots = np.zeros(slots, dtype=complex)
    plus_slots[slot] = 1j * KAPPA_UNITS * KEY_FACTOR / ciphertext.scale
    plus = sealapi.Plaintext()
    encoder.encode(plus_slots.tolist(), ciphertext.parms_id(), ciphertext.scale, plus)
    crafted = sealapi.Ciphertext()
    keyring.evaluator.multiply_plain(ciphertext, times, crafted)
    keyring.evaluator.add_plain_inplace(crafted, plus)
    packing: Packing = unit.packing
    return EncryptedTensor(keyring, packing, [crafted, *unit.ciphertexts[1:]], value_bound=1.0, dtype=np.dtype(np.float64))


class NoFlooding(ProtocolError):
    """The key holder's reply carried no flooding: its size says nothing (the unflooded key falls to Li-Micciancio)."""


def _spread_in_key_units(reply: np.ndarray, slot: int, slots: int, scale: float, noise_factor: float) -> float:
    """``kappa + Im(factor * s_slot)`` (units of ``t / scale``): the spread of the reply's other slots over the flooding factor."""
    first = np.asarray(reply, dtype=np.float64).ravel()[:slots]  # the probe's ciphertext (FLAT: the first slots)
    spread = float(np.sqrt(np.mean(np.delete(first, slot) ** 2 if slot < first.size else first**2)))
    return spread / noise_factor * scale / KEY_FACTOR


def key_from_flooding(
    keyring: Keyring, shape: tuple[int, int], reveal: Callable[[EncryptedTensor], np.ndarray], noise_factor: float
) -> np.ndarray:
    """The secret key's centred coefficients, from ``2 * slots`` decryptions of :func:`flooding_probe` requests.

    Raises :class:`~securevfl.protocols.errors.ProtocolError` when the key holder refuses a probe,
    and :class:`NoFlooding` when its first reply carries no flooding to read.
    """
    unit = secret_key_ciphertext(keyring, shape)
    scale = unit.ciphertexts[0].scale
    slots = keyring.params.slots
    key_slots = np.zeros(slots, dtype=complex)
    for slot in range(slots):
        parts = []
        for factor in _FACTORS:
            measured = _spread_in_key_units(reveal(flooding_probe(unit, slot, factor)), slot, slots, scale, noise_factor)
            if slot == 0 and not parts and measured < KAPPA_UNITS / 2:
                raise NoFlooding("the reply's spread is far below the probe's own imaginary part: there is no flooding to read")
            parts.append(measured - KAPPA_UNITS)
        key_slots[slot] = -parts[1] + 1j * parts[0]
    coefficients = ring.slots_to_coefficients(key_slots, 1.0, keyring.params.poly_modulus_degree)
    return np.rint(np.real(coefficients)).astype(np.int64)


class ActiveFloodingKeyRecoveryConfig(AttackConfigBase):
    """Recover the coordinator's secret key from the size of its flooding, then read every passive's activations."""

    kind: Literal["active_flooding_key_recovery"] = "active_flooding_key_recovery"
    start_step: int = Field(default=0, ge=0, description="first training step at which the crafted requests may be sent")
    tolerance: float = Field(
        default=1e-3, gt=0, lt=1, description="an activation row counts as read when its relative L2 error is at most this"
    )
    flooding_bits: int = Field(
        default=30, ge=2, le=120,
        description="the flooding the attacker assumes (kappa, the key holder's protection.flooding_bits): its noise factor is 2**(bits/2)",
    )


class ActiveFloodingKeyRecovery(ActiveKeyRecovery):
    """A malicious active party reading the coordinator's key from the size of its flooding (two requests per slot).

    Everything after the key (reading ``Enc(H_k)``, the metrics) is :class:`.ActiveKeyRecovery`'s.
    """

    name: ClassVar[str] = "active_flooding_key_recovery"
    config_type = ActiveFloodingKeyRecoveryConfig

    def __init__(self, party: str, n_samples: int, passives: tuple[str, ...], start_step: int, tolerance: float, flooding_bits: int) -> None:
        super().__init__(party, n_samples, passives, start_step, tolerance)
        self.noise_factor = 2.0 ** (flooding_bits / 2)
        self.answered = 0
        self.unusable_reason: str | None = None

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: Any) -> ActiveFloodingKeyRecovery:
        assert isinstance(config, ActiveFloodingKeyRecoveryConfig)
        return cls(setting.party, len(setting.dataset.y_train), setting.passives, config.start_step, config.tolerance, config.flooding_bits)

    def extra_requests(self, step: int, what: str, honest: EncryptedTensor, reveal: Callable[[EncryptedTensor], np.ndarray]) -> None:
        keyring = honest.keyring
        if self._stage >= 2 or step < self.start_step or len(honest.shape) != 2:
            return
        rows, width = honest.shape
        shape = (max(rows, -(-keyring.params.slots // width)), width)  # one whole ciphertext (the evaluation rule's rows)

        def counted(crafted: EncryptedTensor) -> np.ndarray:
            reply = reveal(crafted)
            self.answered += 1
            return reply

        try:
            self.secret = key_from_flooding(keyring, shape, counted, self.noise_factor)
        except NoFlooding as exc:
            self.unusable_reason = str(exc)
            self._stage = 3
            return
        except ProtocolError as exc:
            self.refused = str(exc)
            if isinstance(exc, RequestRefusedError) and exc.reason == CONTENT_REFUSAL:
                self._stage = 3  # detected: a second content refusal would cut the active party off
            return
        self.key_verified = verify_secret_key(keyring, self.secret)
        self._keyring = keyring
        self._stage = 2

    def summary(self) -> dict[str, Any]:
        return {
            "key_recovered": self.key_verified,
            "requests_answered": self.answered,
            "last_refusal": self.refused,
            **({"no_flooding": self.unusable_reason} if self.unusable_reason else {}),
        }


class FloodingKeyRecoveryConfig(AttackConfigBase):
    """Recover the key holder's secret key from the size of its flooding, then read every label."""

    kind: Literal["flooding_key_recovery"] = "flooding_key_recovery"
    start_step: int = Field(default=0, ge=0, description="training step at which the crafted requests are sent")
    flooding_bits: int = Field(
        default=30, ge=2, le=120,
        description="the flooding the attacker assumes (kappa, the key holder's protection.flooding_bits): its noise factor is 2**(bits/2)",
    )


class FloodingKeyRecovery(KeyRecovery):
    """A malicious passive reading the key holder's key from the size of its flooding (two extra requests per slot).

    It sends the probes as extra parameter-gradient requests, shaped like its first layer's, before
    its honest ones at ``start_step``. Where a policy counts them, the first probe spends that
    step's slot: refused as content by the hardened key holder, the honest request of that step is
    refused too and the passive skips one update (:meth:`gradient_request_refused`). With the key it
    decrypts its gradient rows and reads each label as ``argmin`` (sum top), like :class:`.KeyRecovery`.
    """

    name: ClassVar[str] = "flooding_key_recovery"
    config_type = FloodingKeyRecoveryConfig

    def __init__(self, party: str, n_samples: int, start_step: int, sum_top: bool, flooding_bits: int) -> None:
        super().__init__(party, n_samples, start_step, sum_top)
        self.noise_factor = 2.0 ** (flooding_bits / 2)
        self.answered = 0
        self.unusable_reason: str | None = None

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: Any) -> FloodingKeyRecovery:
        assert isinstance(config, FloodingKeyRecoveryConfig)
        sum_top = setting.top == "sum" and setting.bottom_output == setting.dataset.num_classes
        return cls(setting.party, len(setting.dataset.y_train), config.start_step, sum_top, config.flooding_bits)

    def encrypted_gradients(self, step: int, sample_ids: np.ndarray, backprop: EncryptedBackprop) -> list[EncryptedTensor]:
        self._pending = (np.asarray(sample_ids), backprop.gradient.feature_major, 1.0)
        return backprop.backprop(backprop.gradient, backprop.row_weight)

    def extra_requests(self, step: int, what: str, honest: EncryptedTensor, reveal: Callable[[EncryptedTensor], np.ndarray]) -> None:
        if self._stage >= 2 or step < self.start_step:
            return
        keyring = honest.keyring
        if honest.size < keyring.params.slots:
            self.unusable = (
                f"its first layer's gradient has {honest.size} values, fewer than the {keyring.params.slots} slots whose "
                "spread the attack reads"
            )
            self._stage = 3
            return
        self._crafted_at = step

        def counted(crafted: EncryptedTensor) -> np.ndarray:
            reply = reveal(crafted)
            self.answered += 1
            return reply

        try:
            self.secret = key_from_flooding(keyring, tuple(honest.shape), counted, self.noise_factor)  # type: ignore[arg-type]
        except NoFlooding as exc:
            self.unusable_reason = str(exc)
            self._stage = 3
            return
        except ProtocolError as exc:
            self.refused = str(exc)
            if isinstance(exc, RequestRefusedError) and exc.reason == CONTENT_REFUSAL:
                self._stage = 3  # detected: a second content refusal would cut the passive off
            return
        self.key_verified = verify_secret_key(keyring, self.secret)
        self._stage = 2

    def gradient_request_refused(self, step: int, reason: str) -> bool:
        """Its probes spent this step's slot: the honest request is refused too, and the passive trains on."""
        return self._crafted_at == step

    def revealed_parameter_gradients(
        self, step: int, sample_ids: np.ndarray, gradients: list[np.ndarray], model: nn.Module
    ) -> None:
        pending, self._pending = self._pending, None
        if pending is None or self.secret is None or not self.key_verified:
            return
        ids, rows, _ = pending
        gradient = decrypt_with_secret(rows.keyring, rows, self.secret).T[: len(ids)]
        labels = np.argmin(gradient, axis=1) if self.sum_top else np.argmax(np.abs(gradient), axis=1)
        self._guesses.guess(ids, labels)

    def summary(self) -> dict[str, Any]:
        if self.unusable is not None:
            return {"not_run": self.unusable}
        return {
            "key_recovered": self.key_verified,
            "requests_answered": self.answered,
            "last_refusal": self.refused,
            **({"no_flooding": self.unusable_reason} if self.unusable_reason else {}),
        }
