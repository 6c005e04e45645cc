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
:class:`.key_recovery.ActiveKeyRecovery` does) and, with the key, reads every passive's ``Enc(H_k)``.
The hardened key holder floods every request of a rule alike (its public noise bound) and refuses
a request noisier than that bound: the first request (the calibration) is refused as content and
the attack stops; a key holder that does not flood has nothing to read (there the two-request
attack of Li and Micciancio works instead, :mod:`.key_recovery`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import tenseal.sealapi as sealapi

from securevfl.attacks.base import AttackConfigBase, AttackSetting
from securevfl.attacks.key_recovery import (
    ActiveKeyRecovery,
    ActiveKeyRecoveryConfig,
    KeyRecovery,
    KeyRecoveryConfig,
    decrypt_with_secret,
    secret_key_ciphertext,
    verify_secret_key,
)
from securevfl.crypto import EncryptedTensor, Keyring, Layout, ring
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
    "flooding_factor",
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
    times_slots = np.zeros(keyring.params.slots, dtype=complex)
    times_slots[slot] = factor * KEY_FACTOR
    times = sealapi.Plaintext()
    sealapi.CKKSEncoder(keyring.seal_context).encode(times_slots.tolist(), ciphertext.parms_id(), 1.0, times)
    crafted = sealapi.Ciphertext()
    keyring.evaluator.multiply_plain(ciphertext, times, crafted)
    return _with_kappa(unit, crafted, slot)


def _calibration_probe(unit: EncryptedTensor) -> EncryptedTensor:
    """A fresh encryption of zero plus ``i * kappa`` at slot 0: its flooding is the key holder's factor times kappa."""
    zero = EncryptedTensor.encrypt(unit.keyring, np.zeros(unit.shape), Layout.FLAT, bound=1.0, levels=0)
    return _with_kappa(unit, zero.ciphertexts[0], 0)


def _with_kappa(unit: EncryptedTensor, ciphertext: Any, slot: int) -> EncryptedTensor:
    """``ciphertext + i * kappa`` at ``slot``, as the first ciphertext of a tensor shaped like ``unit``."""
    keyring = unit.keyring
    plus_slots = np.zeros(keyring.params.slots, dtype=complex)
    plus_slots[slot] = 1j * KAPPA_UNITS * KEY_FACTOR / ciphertext.scale
    plus = sealapi.Plaintext()
    sealapi.CKKSEncoder(keyring.seal_context).encode(plus_slots.tolist(), ciphertext.parms_id(), ciphertext.scale, plus)
    keyring.evaluator.add_plain_inplace(ciphertext, plus)
    packing: Packing = unit.packing
    return EncryptedTensor(keyring, packing, [ciphertext, *unit.ciphertexts[1:]], value_bound=1.0, dtype=np.dtype(np.float64))


class NoFlooding(ProtocolError):
    """The key holder's reply carried no flooding: its size says nothing (the unflooded key falls to Li-Micciancio)."""


def _spread_in_key_units(reply: np.ndarray, slot: int, slots: int, scale: float) -> float:
    """The spread of the reply's slots other than ``slot``, in units of ``t / scale``."""
    first = np.asarray(reply, dtype=np.float64).ravel()[:slots]  # the probe's ciphertext (FLAT: the first slots)
    spread = float(np.sqrt(np.mean(np.delete(first, slot) ** 2 if slot < first.size else first**2)))
    return spread * scale / KEY_FACTOR


def flooding_factor(unit: EncryptedTensor, reveal: Callable[[EncryptedTensor], np.ndarray]) -> float:
    """The key holder's flooding in units of the noise it measures, ``2**(bits/2)``, from one :func:`_calibration_probe`.

    The measured ratio is ~1 % off; ``bits`` is an integer, so it is rounded to the nearest such
    factor. Raises :class:`NoFlooding` when the reply carries no flooding.
    """
    slots = unit.keyring.params.slots
    ratio = _spread_in_key_units(reveal(_calibration_probe(unit)), 0, slots, unit.ciphertexts[0].scale) / KAPPA_UNITS
    if ratio < 2.0**0.5 / 1.2:  # flooding_bits >= 1 gives a factor >= 2**0.5
        raise NoFlooding(f"the reply's spread is {ratio:.2g} times the probe's own imaginary part: there is no flooding to read")
    return 2.0 ** (round(2.0 * math.log2(ratio)) / 2.0)


def key_from_flooding(keyring: Keyring, shape: tuple[int, ...], reveal: Callable[[EncryptedTensor], np.ndarray]) -> np.ndarray:
    """The secret key's centred coefficients, from ``1 + 2 * slots`` decryptions of crafted requests.

    The first measures the key holder's flooding factor (:func:`flooding_factor`: exact, so no slot
    estimate inherits an error from it); then two :func:`flooding_probe` requests per slot.
    Raises :class:`~securevfl.protocols.errors.ProtocolError` when the key holder refuses a probe,
    and :class:`NoFlooding` when the calibration reply carries no flooding to read.
    """
    unit = secret_key_ciphertext(keyring, shape)
    scale = unit.ciphertexts[0].scale
    slots = keyring.params.slots
    noise_factor = flooding_factor(unit, reveal)
    key_slots = np.zeros(slots, dtype=complex)
    for slot in range(slots):
        parts = [
            _spread_in_key_units(reveal(flooding_probe(unit, slot, factor)), slot, slots, scale) / noise_factor - KAPPA_UNITS
            for factor in _FACTORS
        ]
        key_slots[slot] = -parts[1] + 1j * parts[0]
    coefficients = ring.slots_to_coefficients(key_slots, 1.0, keyring.params.poly_modulus_degree)
    return np.rint(np.real(coefficients)).astype(np.int64)


class _SpreadReader:
    """What both attackers share: the probes sent through their party's requests, and how a refusal ends them."""

    def __init__(self) -> None:
        self.answered = 0
        self.no_flooding: str | None = None

    def read(
        self, keyring: Keyring, shape: tuple[int, ...], reveal: Callable[[EncryptedTensor], np.ndarray]
    ) -> tuple[np.ndarray | None, str | None, bool]:
        """(the key's coefficients or None, the refusal if any, whether to stop for good).

        A content refusal means the attack was detected (a second one cuts its party off) and an
        unflooded reply has nothing to read: both stop it. Any other refusal (a spent budget) lets
        it try again at a later request.
        """

        def counted(crafted: EncryptedTensor) -> np.ndarray:
            reply = reveal(crafted)
            self.answered += 1
            return reply

        try:
            return key_from_flooding(keyring, shape, counted), None, False
        except NoFlooding as exc:
            self.no_flooding = str(exc)
            return None, None, True
        except ProtocolError as exc:
            content = isinstance(exc, RequestRefusedError) and exc.reason == CONTENT_REFUSAL
            return None, str(exc), content

    def summary(self, refused: str | None) -> dict[str, Any]:
        return {
            "requests_answered": self.answered,
            "last_refusal": refused,
            **({"no_flooding": self.no_flooding} if self.no_flooding else {}),
        }


class ActiveFloodingKeyRecoveryConfig(ActiveKeyRecoveryConfig):
    """Recover the coordinator's secret key from the size of its flooding, then read every passive's activations."""

    kind: Literal["active_flooding_key_recovery"] = "active_flooding_key_recovery"  # type: ignore[assignment]


class ActiveFloodingKeyRecovery(ActiveKeyRecovery):
    """A malicious active party reading the coordinator's key from the size of its flooding (two requests per slot).

    Everything after the key (reading ``Enc(H_k)``, the metrics) is :class:`.ActiveKeyRecovery`'s.
    """

    name: ClassVar[str] = "active_flooding_key_recovery"
    config_type = ActiveFloodingKeyRecoveryConfig

    def __init__(self, party: str, n_samples: int, passives: tuple[str, ...], start_step: int, tolerance: float) -> None:
        super().__init__(party, n_samples, passives, start_step, tolerance)
        self._reader = _SpreadReader()

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: Any) -> ActiveFloodingKeyRecovery:
        assert isinstance(config, ActiveFloodingKeyRecoveryConfig)
        return cls(setting.party, len(setting.dataset.y_train), setting.passives, config.start_step, config.tolerance)

    def extra_requests(self, step: int, what: str, honest: EncryptedTensor, reveal: Callable[[EncryptedTensor], np.ndarray]) -> None:
        keyring = honest.keyring
        if self._stage >= 2 or step < self.start_step or len(honest.shape) != 2:
            return
        rows, width = honest.shape
        shape = (max(rows, -(-keyring.params.slots // width)), width)  # one whole ciphertext (the evaluation rule's rows)
        self.secret, self.refused, stop = self._reader.read(keyring, shape, reveal)
        if self.secret is None:
            self._stage = 3 if stop else self._stage
            return
        self.key_verified = verify_secret_key(keyring, self.secret)
        self._keyring = keyring
        self._stage = 2

    def summary(self) -> dict[str, Any]:
        return {"key_recovered": self.key_verified, **self._reader.summary(self.refused)}


class FloodingKeyRecoveryConfig(KeyRecoveryConfig):
    """Recover the key holder's secret key from the size of its flooding, then read every label."""

    kind: Literal["flooding_key_recovery"] = "flooding_key_recovery"  # type: ignore[assignment]


class FloodingKeyRecovery(KeyRecovery):
    """A malicious passive reading the key holder's key from the size of its flooding (two extra requests per slot).

    It sends the probes as extra parameter-gradient requests, shaped like its first layer's, before
    its honest ones at ``start_step``. Where a policy counts them, the first request (the
    calibration) spends that step's slot: refused as content by the hardened key holder, the honest request of that step is
    refused too and the passive skips one update (:meth:`gradient_request_refused`). With the key it
    decrypts its gradient rows and reads each label as ``argmin`` (sum top), like :class:`.KeyRecovery`.
    """

    name: ClassVar[str] = "flooding_key_recovery"
    config_type = FloodingKeyRecoveryConfig

    def __init__(self, party: str, n_samples: int, start_step: int, sum_top: bool) -> None:
        super().__init__(party, n_samples, start_step, sum_top)
        self._reader = _SpreadReader()

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: Any) -> FloodingKeyRecovery:
        assert isinstance(config, FloodingKeyRecoveryConfig)
        sum_top = setting.top == "sum" and setting.bottom_output == setting.dataset.num_classes
        return cls(setting.party, len(setting.dataset.y_train), config.start_step, sum_top)

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
        self.secret, self.refused, stop = self._reader.read(keyring, tuple(honest.shape), reveal)
        if self.secret is None:
            self._stage = 3 if stop else self._stage
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
        return {"key_recovered": self.key_verified, **self._reader.summary(self.refused)}
