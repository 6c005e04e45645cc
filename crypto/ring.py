"""The algebra under CKKS, in numpy: for analysing decryptions and for attacks on them.

SEAL hides the polynomials behind encode/encrypt/decrypt. To reason about what a decryption
*reveals* (and to test that noise flooding closes it) we need them in the open:

- :func:`slots_to_coefficients` inverts SEAL's CKKS decoding: from the complex slot values of a
  decryption (and the scale) back to the integer plaintext polynomial ``c0 + c1*s mod q``.
- :func:`ciphertext_coefficients` reads a ciphertext's two polynomials in coefficient form.
- :class:`NegacyclicRing` multiplies and inverts in ``Z_q[X]/(X^N + 1)`` with an exact
  number-theoretic transform over Python integers (no overflow for 60-bit primes).
- :func:`decrypt_coefficients` / :func:`coefficients_to_slots` decrypt with a secret key given as
  a coefficient vector (e.g. one an attacker recovered).

Slot ``j`` of SEAL's CKKS encoder is the polynomial evaluated at ``zeta**(3**j mod 2N)`` with
``zeta = exp(i*pi/N)``, divided by the scale (its ``matrix_reps_index_map``); the conjugate roots
hold the conjugate values, which is why a real-valued message has 2 * slots = N real degrees of
freedom.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
import tenseal.sealapi as sealapi

from securevfl.crypto.keys import Keyring

__all__ = [
    "NegacyclicRing",
    "ciphertext_coefficients",
    "coefficients_to_slots",
    "decrypt_coefficients",
    "monomial_plaintext",
    "secret_key_coefficients",
    "slot_roots",
    "slots_to_coefficients",
]


def slot_roots(n: int) -> np.ndarray:
    """Exponents ``e_j`` (odd, mod 2N) with slot ``j`` = polynomial at ``exp(i*pi*e_j/N)``."""
    exponents = np.empty(n // 2, dtype=np.int64)
    value = 1
    for j in range(n // 2):
        exponents[j] = value
        value = value * 3 % (2 * n)
    return exponents


def slots_to_coefficients(slots: np.ndarray, scale: float, n: int) -> np.ndarray:
    """The real polynomial (rounded to integers) whose decoding is ``slots`` (complex, length N/2).

    Exact when the polynomial's coefficients are integers and the slot values carry enough
    precision (a decryption's do: SEAL decodes in double precision).
    """
    exponents = slot_roots(n)
    values = np.zeros(n, dtype=np.complex128)
    values[(exponents - 1) // 2] = np.asarray(slots) * scale
    values[(2 * n - exponents - 1) // 2] = np.conj(np.asarray(slots)) * scale
    # values[t] = sum_k p_k zeta^k w^(t k) with w = exp(2 pi i / N): a DFT with positive sign
    twisted = np.fft.fft(values) / n
    coefficients = twisted * np.exp(-1j * np.pi * np.arange(n) / n)
    return np.rint(coefficients.real).astype(np.int64)


def coefficients_to_slots(coefficients: np.ndarray, scale: float) -> np.ndarray:
    """CKKS decoding of an integer polynomial (centred coefficients): its N/2 complex slots."""
    poly = np.asarray(coefficients, dtype=np.float64)
    n = poly.size
    twisted = poly * np.exp(1j * np.pi * np.arange(n) / n)
    values = np.fft.ifft(twisted) * n
    return values[(slot_roots(n) - 1) // 2] / scale


def monomial_plaintext(keyring: Keyring, parms_id: Any, power: int) -> Any:
    """A plaintext of ``X**power`` at scale 1: multiplying by it is exact (no encoding error).

    Built through the encoder from the slots ``zeta_j**power``; the encoding rounds to the
    integer polynomial, which is exactly the monomial.
    """
    n = keyring.params.poly_modulus_degree
    slots = np.exp(1j * np.pi * ((slot_roots(n) * power) % (2 * n)) / n)
    plain = sealapi.Plaintext()
    sealapi.CKKSEncoder(keyring.seal_context).encode(slots.tolist(), parms_id, 1.0, plain)
    return plain


def ciphertext_coefficients(keyring: Keyring, ciphertext: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """``(c0, c1, q)`` of a two-polynomial ciphertext at the last level, in coefficient form."""
    if keyring.chain_index(ciphertext) != 0 or ciphertext.size() != 2:
        raise ValueError("expected a two-polynomial ciphertext at the last level (one prime)")
    n = keyring.params.poly_modulus_degree
    plain_form = sealapi.Ciphertext()
    keyring.evaluator.transform_from_ntt(ciphertext, plain_form)
    data = plain_form.dyn_array()
    values = np.array([data.at(i) for i in range(2 * n)], dtype=object)
    modulus = keyring.seal_context.get_context_data(ciphertext.parms_id()).parms().coeff_modulus()[0].value()
    return values[:n], values[n:], int(modulus)


def decrypt_coefficients(keyring: Keyring, ciphertext: Any, secret: np.ndarray) -> np.ndarray:
    """Decrypt a last-level ciphertext with a secret key given as coefficients (centred ints)."""
    c0, c1, q = ciphertext_coefficients(keyring, ciphertext)
    ring = NegacyclicRing(len(c0), q)
    return ring.center(ring.add(c0, ring.mul(c1, ring.reduce(secret))))


class NegacyclicRing:
    """``Z_q[X]/(X^N + 1)`` for a prime ``q = 1 mod 2N``, with exact arithmetic on Python ints."""

    def __init__(self, n: int, q: int) -> None:
        if (q - 1) % (2 * n):
            raise ValueError(f"q = {q} is not 1 mod 2N = {2 * n}: no negacyclic transform")
        self.n, self.q = n, q
        self.psi = self._primitive_root()
        self._psi_powers = self._powers(self.psi, n)
        self._psi_inverse_powers = self._powers(pow(self.psi, q - 2, q), n)
        self._n_inverse = pow(n, q - 2, q)

    def _primitive_root(self) -> int:
        n, q = self.n, self.q
        while True:
            candidate = pow(2 + secrets.randbelow(q - 3), (q - 1) // (2 * n), q)
            if pow(candidate, n, q) == q - 1:  # order exactly 2N
                return candidate

    def _powers(self, base: int, count: int) -> np.ndarray:
        out = np.empty(count, dtype=object)
        value = 1
        for k in range(count):
            out[k] = value
            value = value * base % self.q
        return out

    def reduce(self, values: np.ndarray) -> np.ndarray:
        return np.array([int(v) % self.q for v in np.asarray(values).ravel()], dtype=object)

    def center(self, values: np.ndarray) -> np.ndarray:
        """Representatives in (-q/2, q/2], as int64 when they fit (small polynomials always do)."""
        half = self.q // 2
        centred = [int(v) - self.q if int(v) > half else int(v) for v in values]
        if max((abs(v) for v in centred), default=0) < 2**62:
            return np.array(centred, dtype=np.int64)
        return np.array(centred, dtype=object)

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (self.reduce(a) + self.reduce(b)) % self.q

    def sub(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (self.reduce(a) - self.reduce(b)) % self.q

    def forward(self, a: np.ndarray) -> np.ndarray:
        """Evaluations at ``psi^(2t+1)``, t = 0..N-1."""
        return self._cyclic(self.reduce(a) * self._psi_powers % self.q, self.psi * self.psi % self.q)

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        omega_inverse = pow(self.psi * self.psi % self.q, self.q - 2, self.q)
        cyclic = self._cyclic(np.asarray(values, dtype=object), omega_inverse) * self._n_inverse % self.q
        return cyclic * self._psi_inverse_powers % self.q

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.inverse_transform(self.forward(a) * self.forward(b) % self.q)

    def invert(self, a: np.ndarray) -> np.ndarray:
        """The inverse of ``a`` in the ring (``ZeroDivisionError`` if it has none)."""
        evaluations = self.forward(a)
        if any(int(v) == 0 for v in evaluations):
            raise ZeroDivisionError("polynomial is not invertible mod q")
        return self.inverse_transform(np.array([pow(int(v), self.q - 2, self.q) for v in evaluations], dtype=object))

    def _cyclic(self, a: np.ndarray, omega: int) -> np.ndarray:
        """Radix-2 cyclic transform with root ``omega`` of order len(a)."""
        n = len(a)
        if n == 1:
            return a.copy()
        omega_squared = omega * omega % self.q
        even = self._cyclic(a[0::2], omega_squared)
        odd = self._cyclic(a[1::2], omega_squared)
        twiddled = odd * self._powers(omega, n // 2) % self.q
        return np.concatenate([(even + twiddled) % self.q, (even - twiddled) % self.q])


def secret_key_coefficients(secret: Any) -> np.ndarray:
    """The key holder's own secret key as centred coefficients, from one exact decryption it makes.

    For evaluation and tests (how many coefficients did an attack get right?); it needs the
    :class:`~securevfl.crypto.keys.SecretKeyring` and never leaves the key holder.
    """
    from securevfl.crypto.layout import Layout
    from securevfl.crypto.tensor import EncryptedTensor

    n = secret.params.poly_modulus_degree
    probe = EncryptedTensor.encrypt(secret, np.zeros(secret.params.slots), Layout.FLAT, bound=1.0, levels=0).ciphertexts[0]
    p = slots_to_coefficients(secret.decrypt_vector_complex(probe), probe.scale, n)
    c0, c1, q = ciphertext_coefficients(secret, probe)
    field = NegacyclicRing(n, q)
    return field.center(field.mul(field.sub(p, c0), field.invert(c1)))
