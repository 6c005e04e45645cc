"""Noise flooding: a decryption that leaves the key holder must not reveal the secret key.

A CKKS decryption returns ``m + e`` where the noise ``e`` depends on the secret key. Li and
Micciancio (EUROCRYPT 2021) showed that whoever receives full-precision decryptions of chosen
ciphertexts solves for the key: two requests holding an encryption of zero suffice against an
unflooded key holder (see :mod:`securevfl.attacks.key_recovery`). The countermeasure (Li,
Micciancio, Schultz and Sorrell, CRYPTO 2022; OpenFHE's ``NOISE_FLOODING_DECRYPT``) adds fresh
Gaussian noise much larger than ``e`` before a decryption leaves the key holder, so the result
is statistically independent of ``e``.

The flooding standard deviation is ``2**(kappa/2) * B`` for ``kappa`` bits of statistical
security, where ``B`` bounds the ciphertext's own noise. Every value the protocol encrypts is real,
so the imaginary part of every decrypted slot is pure noise of the same size as the real part's.

**B is public, never measured.** An earlier version set ``B`` to the largest imaginary part it
measured in each request. That made the *size* of the flooding a function of the request's noise,
and the noise of a crafted request is a function of the key: from two honest encryptions, public
operations build the ciphertext ``(0, 1)``, which decrypts to the secret key ``s``; a request
``T * (0, 1) + i*kappa`` with ``T`` nonzero at one slot puts ``Im(t * s_j)`` into that slot's
imaginary part, and the spread of the reply's known slots gave it back (the whole key in two
requests per slot; ``tests/test_key_holder_hardening.py``). Now the caller passes the bound of
the request it admitted (the decryption policy's rule, :class:`~securevfl.protocols.decryption_policy.RequestRule`):
the flooding is the same for every request of that rule, and a ciphertext whose imaginary parts
exceed the bound is not a ciphertext of the protocol: :class:`NoiseBoundExceeded`, and the key
holder answers that sender no more. A crafted ciphertext that stays within the bound in every slot
carries key-dependent content no larger than the bound in its real parts either (its imaginary
parts could be made small only by aligning each slot's phase with the unknown ``s_j``, which needs
the conjugation key; no keyring here has it), so ``2**(kappa/2)`` times the bound hides it.
Without a bound (the unhardened key holder without a policy, kept to measure attacks) the old
measured bound is used.

The price is precision: the flooded result is off by about ``2**(kappa/2)`` times the ciphertext
noise (a few 1e-4 for the ``compute`` preset at ``kappa = 30``; see docs/threat-model.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from securevfl.crypto.errors import CryptoError
from securevfl.crypto.keys import SecretKeyring
from securevfl.crypto.params import CkksParameters
from securevfl.crypto.randomness import csprng_normal
from securevfl.crypto.tensor import EncryptedTensor

__all__ = ["FloodedValues", "NoiseBoundExceeded", "NoiseFlooding", "flooded_decrypt", "noise_floor", "noise_unit"]


class NoiseBoundExceeded(CryptoError):
    """A decrypted ciphertext's imaginary parts exceed the public noise bound of its request."""


@dataclass(frozen=True)
class NoiseFlooding:
    """Flooding at ``statistical_bits`` bits (0: off, the decryption leaves unflooded)."""

    statistical_bits: int = 30

    def __post_init__(self) -> None:
        if not 0 <= self.statistical_bits <= 80:
            raise ValueError(f"statistical_bits must be in [0, 80], got {self.statistical_bits}")

    @property
    def enabled(self) -> bool:
        return self.statistical_bits > 0

    def sigma(self, noise_bound: float) -> float:
        """Standard deviation of the flooding noise for a ciphertext with noise bound ``noise_bound``."""
        return 0.0 if not self.enabled else noise_bound * 2.0 ** (self.statistical_bits / 2)


@dataclass(frozen=True)
class FloodedValues:
    """A decryption ready to leave the key holder, and how much noise it carries."""

    values: np.ndarray
    """Flooded: what may leave the key holder."""
    exact: np.ndarray
    """Unflooded real parts: what the key holder itself sees (never sent)."""
    noise_bound: float
    """The noise bound the flooding was sized for (slot units): the public one, or without it the largest measured."""
    sigma: float
    """The largest flooding standard deviation used."""


def noise_unit(params: CkksParameters) -> float:
    """One unit of coefficient noise, in slot units (``sqrt(N) / scale``): the least noise any decryption has."""
    return math.sqrt(params.poly_modulus_degree) / params.scale


def noise_floor(keyring: SecretKeyring) -> float:
    """:func:`noise_unit` of ``keyring``'s parameters."""
    return noise_unit(keyring.params)


def flooded_decrypt(
    tensor: EncryptedTensor, keyring: SecretKeyring, flooding: NoiseFlooding, noise_bound: float | None = None
) -> FloodedValues:
    """Decrypt ``tensor`` and flood every slot with noise sized for ``noise_bound`` (slot units, public).

    With ``noise_bound`` (and flooding on) every ciphertext must have all its imaginary parts within
    it (:class:`NoiseBoundExceeded` otherwise; the message names no value) and the flooding is
    ``flooding.sigma(noise_bound)`` for every request alike. With flooding off nothing is checked:
    an unflooded decryption gives the key away to a probe within any bound (Li-Micciancio), so a
    check would only hide that from the attacks that measure it. Without it (no policy: the unhardened
    key holder) each ciphertext's flooding follows its measured noise, which leaks the key to a
    requester who crafts that noise (module docstring).
    """
    floor = noise_floor(keyring)
    if noise_bound is not None and not (math.isfinite(noise_bound) and noise_bound >= floor):
        raise ValueError(f"noise_bound must be a finite bound of at least one noise unit ({floor:.3g}), got {noise_bound!r}")
    slot_vectors, exact_vectors, bounds, sigmas = [], [], [], []
    within = True  # checked after every ciphertext is decrypted and flooded: the work does not depend on where one fails
    for ciphertext in tensor.ciphertexts:
        slots = keyring.decrypt_vector_complex(ciphertext)
        measured = float(np.max(np.abs(slots.imag)))
        within = within and (noise_bound is None or not flooding.enabled or measured <= noise_bound)  # NaN fails too
        bound = noise_bound if noise_bound is not None else max(measured, floor)
        sigma = flooding.sigma(bound)
        real = slots.real if sigma == 0.0 else slots.real + csprng_normal(sigma, slots.shape)
        slot_vectors.append(real)
        exact_vectors.append(slots.real)
        bounds.append(bound)
        sigmas.append(sigma)
    if not within:
        raise NoiseBoundExceeded("the decrypted ciphertext is noisier than its request's public bound")
    packing = tensor.packing
    return FloodedValues(
        values=packing.unpack(np.stack(slot_vectors)),
        exact=packing.unpack(np.stack(exact_vectors)),
        noise_bound=max(bounds),
        sigma=max(sigmas),
    )
