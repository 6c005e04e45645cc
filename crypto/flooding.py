"""Noise flooding: a decryption that leaves the key holder must not reveal the secret key.

A CKKS decryption returns ``m + e`` where the noise ``e`` depends on the secret key. Li and
Micciancio (EUROCRYPT 2021) showed that whoever receives full-precision decryptions of chosen
ciphertexts solves for the key: two requests holding an encryption of zero suffice against an
unflooded key holder (see :mod:`securevfl.attacks.key_recovery`). The countermeasure (Li,
Micciancio, Schultz and Sorrell, CRYPTO 2022; OpenFHE's ``NOISE_FLOODING_DECRYPT``) adds fresh
Gaussian noise much larger than ``e`` before a decryption leaves the key holder, so the result
is statistically independent of ``e``.

The flooding standard deviation is ``2**(kappa/2) * B`` for ``kappa`` bits of statistical
security, where ``B`` bounds the ciphertext's own noise. The key holder does not trust a bound
claimed by the requester: it *measures* it. Every value the protocol encrypts is real, so the
imaginary part of every decrypted slot is pure noise of the same size as the real part's;
``B`` is the largest imaginary part over the ciphertext's slots (never below one unit of the
coefficient noise, ``sqrt(N) / scale``). A requester who scales a ciphertext to amplify its noise
scales the imaginary parts too, and with them the flooding; one who does not know the key cannot
put noise into the real parts only.

The price is precision: the flooded result is off by about ``2**(kappa/2)`` times the ciphertext
noise (a few 1e-4 for the ``compute`` preset at ``kappa = 30``; see docs/threat-model.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from securevfl.crypto.keys import SecretKeyring
from securevfl.crypto.randomness import csprng_normal
from securevfl.crypto.tensor import EncryptedTensor

__all__ = ["FloodedValues", "NoiseFlooding", "flooded_decrypt"]


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
    """The largest measured ciphertext noise (slot units) over the tensor's ciphertexts."""
    sigma: float
    """The largest flooding standard deviation used."""


def noise_floor(keyring: SecretKeyring) -> float:
    """One unit of coefficient noise, in slot units: the least noise any decryption has."""
    params = keyring.params
    return math.sqrt(params.poly_modulus_degree) / params.scale


def flooded_decrypt(tensor: EncryptedTensor, keyring: SecretKeyring, flooding: NoiseFlooding) -> FloodedValues:
    """Decrypt ``tensor`` and flood every slot with noise scaled to its ciphertext's measured noise."""
    floor = noise_floor(keyring)
    slot_vectors, exact_vectors, bounds, sigmas = [], [], [], []
    for ciphertext in tensor.ciphertexts:
        slots = keyring.decrypt_vector_complex(ciphertext)
        bound = max(float(np.max(np.abs(slots.imag))), floor)
        sigma = flooding.sigma(bound)
        real = slots.real if sigma == 0.0 else slots.real + csprng_normal(sigma, slots.shape)
        slot_vectors.append(real)
        exact_vectors.append(slots.real)
        bounds.append(bound)
        sigmas.append(sigma)
    packing = tensor.packing
    return FloodedValues(
        values=packing.unpack(np.stack(slot_vectors)),
        exact=packing.unpack(np.stack(exact_vectors)),
        noise_bound=max(bounds),
        sigma=max(sigmas),
    )
