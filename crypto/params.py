"""CKKS parameter sets, the 128-bit security check, and the named presets.

A :class:`CkksParameters` is a plain description (ring degree, coefficient-modulus bit sizes,
scale) that refuses to exist when it would be below 128-bit classical security. Everything a
caller needs to reason about precision is derived from it, so the presets and custom sets are
held to exactly the same rules:

* ``depth`` -- how many ciphertext-by-plaintext multiplications a fresh ciphertext supports;
* ``decrypt_ceiling`` -- the largest magnitude any *result* may reach and still decrypt
  correctly at the last level (``2**(first_prime_bits - scale_bits - 1)``, less a 2^-10 relative
  margin: SEAL's primes lie just under their powers of two);
* ``max_magnitude`` -- the default bound on *inputs*: the largest power of two whose square fits
  under the ceiling, so that an input and the product of two inputs both decrypt correctly;
* ``transport_bound`` -- the bound on inputs encrypted at the last level for a receiver that only
  decrypts them (nobody multiplies them): half the ceiling, the most SEAL's encoder takes for a
  constant row (see the property);
* ``expected_precision`` -- the absolute round-trip error bound (encrypt, serialize, decrypt)
  this library guarantees for in-range inputs; measured and stated conservatively (see
  ``docs/crypto.md``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import SecurityError

__all__ = [
    "MAX_COEFF_MODULUS_BITS_128",
    "CkksParameters",
    "PRESETS",
    "get_preset",
    "preset_names",
]

#: Largest total coefficient-modulus size (bits) that keeps 128-bit classical security, per
#: ring degree N, from the HomomorphicEncryption.org security standard (ternary secrets).
MAX_COEFF_MODULUS_BITS_128: dict[int, int] = {
    1024: 27,
    2048: 54,
    4096: 109,
    8192: 218,
    16384: 438,
    32768: 881,
}

_MAX_PRIME_BITS = 60  # SEAL's limit on a single RNS prime


#: Relative margin kept below each power-of-two ceiling (512 at ``2^19``). What decrypts is the product
#: of the primes still in the chain over twice the scale, and SEAL's primes lie below their powers of two
#: (1e-14 relative for a 60-bit prime, up to 6.4e-6 for a 40-bit one: 4e-5 over ``deep``'s chain; each
#: rescale by a prime, not by 2^40, moves the scale as much) while decryption adds ~1e-7 absolute: 2^-10
#: (1e-3) covers all of it with room, checked against SEAL's own primes at every level of every preset
#: (``tests/crypto/test_crypto_edges.py``), and costs nothing a bound in use needs.
CEILING_MARGIN = 2.0**-10


@dataclass(frozen=True)
class CkksParameters:
    """A CKKS parameter set that is guaranteed to give at least 128-bit security.

    Args:
        poly_modulus_degree: ring degree N (a power of two from 1024 to 32768). A ciphertext
            holds N/2 real values ("slots").
        coeff_modulus_bits: bit sizes of the RNS primes, first to last. The first prime is the
            one left at the last level: it bounds the largest decryptable value. Middle primes
            are consumed one per multiplication. With two or more primes the last one is SEAL's
            key-switching ("special") prime, which rotations need; with a single prime the set
            supports neither rotations nor multiplications (pure transport).
        scale_bits: log2 of the CKKS scale; sets the absolute precision.
        name: label used in reports and error messages; not part of the fingerprint.

    Raises:
        SecurityError: the total modulus exceeds the 128-bit bound for N, N is not a standard
            ring degree, or a prime size / the scale is out of range.
    """

    poly_modulus_degree: int
    coeff_modulus_bits: tuple[int, ...]
    scale_bits: int
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeff_modulus_bits", tuple(int(b) for b in self.coeff_modulus_bits))
        n = self.poly_modulus_degree
        if n not in MAX_COEFF_MODULUS_BITS_128:
            raise SecurityError(
                f"poly_modulus_degree={n} is not a standard ring degree; "
                f"choose one of {sorted(MAX_COEFF_MODULUS_BITS_128)}"
            )
        bits = self.coeff_modulus_bits
        if not bits:
            raise SecurityError("coeff_modulus_bits must list at least one prime size")
        min_bits = int(math.log2(n)) + 2  # a prime = 1 mod 2N must exist at this size
        for b in bits:
            if not min_bits <= b <= _MAX_PRIME_BITS:
                raise SecurityError(
                    f"coefficient prime of {b} bits is out of range [{min_bits}, {_MAX_PRIME_BITS}] for N={n}"
                )
        bound = MAX_COEFF_MODULUS_BITS_128[n]
        if self.total_coeff_modulus_bits > bound:
            raise SecurityError(
                f"parameter set {self.name!r} is below 128-bit security: total coefficient modulus "
                f"{self.total_coeff_modulus_bits} bits exceeds the HomomorphicEncryption.org bound of "
                f"{bound} bits for N={n}"
            )
        if not 1 <= self.scale_bits <= bits[0] - 3:
            raise SecurityError(
                f"scale_bits={self.scale_bits} must be between 1 and first prime bits - 3 = {bits[0] - 3}, "
                "otherwise no value fits under the first prime"
            )

    # ----------------------------------------------------------------- derived sizes
    @property
    def slots(self) -> int:
        """Real values one ciphertext holds (N/2)."""
        return self.poly_modulus_degree // 2

    @property
    def total_coeff_modulus_bits(self) -> int:
        return sum(self.coeff_modulus_bits)

    @property
    def security_bound_bits(self) -> int:
        """The 128-bit bound on the total modulus for this N."""
        return MAX_COEFF_MODULUS_BITS_128[self.poly_modulus_degree]

    @property
    def supports_rotations(self) -> bool:
        """Rotations need a key-switching prime, i.e. at least two primes."""
        return len(self.coeff_modulus_bits) >= 2

    @property
    def depth(self) -> int:
        """Ciphertext-by-plaintext multiplications a fresh ciphertext supports."""
        return max(len(self.coeff_modulus_bits) - 2, 0)

    @property
    def scale(self) -> float:
        return float(2.0**self.scale_bits)

    # ----------------------------------------------------------------- precision model
    @property
    def headroom_bits(self) -> int:
        """Bits between the scale and the first prime, less one for the sign."""
        return self.coeff_modulus_bits[0] - self.scale_bits - 1

    @property
    def decrypt_ceiling(self) -> float:
        """Largest magnitude any result may reach and still decrypt at the last level.

        ``2**headroom_bits`` less a relative margin of :data:`CEILING_MARGIN`: the first prime
        lies just below ``2**first_prime_bits`` (SEAL picks the largest NTT-friendly primes under
        it), so what decrypts is ``q0 / 2 / scale``, a hair under the power of two (``2^19 -
        7.45e-9`` under ``transport``), and decryption adds its own ~1e-7 error. A result of
        exactly ``2**headroom_bits`` (two rows of ``2^18`` added) decrypted to ``-2**headroom_bits``
        before the margin: silent garbage, refused now (``tests/crypto/test_crypto_edges.py``).
        """
        return self.ceiling_at(0)

    def ceiling_at(self, levels_left: int) -> float:
        """Largest magnitude a ciphertext with ``levels_left`` multiplications left may hold.

        Each prime above the first adds its bits of room: a value above :attr:`decrypt_ceiling`
        may travel at the top levels (e.g. amplified for precision) as long as the products that
        bring it down to the last level bring it back under the ceiling.
        """
        if not 0 <= levels_left <= self.depth:
            raise ValueError(f"levels_left must be in [0, {self.depth}], got {levels_left}")
        return float(2.0 ** (self.headroom_bits + sum(self.coeff_modulus_bits[1 : 1 + levels_left]))) * (1.0 - CEILING_MARGIN)

    @property
    def max_magnitude(self) -> float:
        """Default input bound: the largest power of two whose square fits under the ceiling, so one product of inputs decrypts.

        A set without levels (``depth == 0``: ``transport``, ``transport_wide``) multiplies nothing,
        so its bound is ``2**(headroom_bits // 2)`` whatever the parity (2048 for ``transport_wide``,
        whose square is the unmargined ceiling 2^22).
        """
        if self.depth == 0:
            return float(2.0 ** (self.headroom_bits // 2))
        return float(2.0 ** ((self.headroom_bits - 1) // 2))

    @property
    def transport_bound(self) -> float:
        """Input bound for a ciphertext at the last level that is only moved, added to and decrypted: ``2**(headroom_bits - 1)``.

        Such a ciphertext has no level to multiply with, so :attr:`max_magnitude`'s room for a
        product is not needed. Half the ceiling is the most a fresh encryption holds whatever the
        values' shape: SEAL's encoder refuses a coefficient above 2^(first prime bits - 2), and a
        slot vector constant at ``v`` puts ``v x scale`` into one coefficient (2^18 x 2^40 = 2^58
        under ``transport``; spread-out values encode further up, constant ones do not). Up to it
        CKKS decrypts as precisely as near 0 (review, 2026-11-27: worst absolute error 9.7e-8
        under ``transport``, 7.3e-7 under ``transport_wide`` over constant, alternating, spiked and
        random rows at the bound, 300 trials each). What is added on the way (noise drawn under
        encryption) may take it up to the ceiling, which the tensor's bound tracking checks.
        """
        return float(2.0 ** (self.headroom_bits - 1))

    @property
    def expected_precision(self) -> float:
        """Absolute round-trip error bound for in-range inputs (public-key encryption, the worst case).

        Fresh CKKS noise is independent of the value and about ``c * N / scale``; measured c is
        ~2**16 for N=4096 without a special prime and 2**13 to 2**15 with one (see
        docs/crypto.md). The bound uses 2**(log2 N + 8) resp. 2**(log2 N + 6), i.e. a margin of
        16x to 50x over the worst error measured.
        """
        log_n = int(math.log2(self.poly_modulus_degree))
        margin = 6 if self.supports_rotations else 8
        return float(2.0 ** (log_n + margin - self.scale_bits))

    # ----------------------------------------------------------------- identity
    @property
    def fingerprint(self) -> bytes:
        """16-byte digest of everything that changes the ciphertext space (not the name)."""
        text = f"ckks|N={self.poly_modulus_degree}|q={','.join(map(str, self.coeff_modulus_bits))}|s={self.scale_bits}"
        return hashlib.blake2b(text.encode(), digest_size=16).digest()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (used in key files and reports)."""
        return {
            "name": self.name,
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_modulus_bits": list(self.coeff_modulus_bits),
            "scale_bits": self.scale_bits,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CkksParameters:
        try:
            return cls(
                poly_modulus_degree=int(data["poly_modulus_degree"]),
                coeff_modulus_bits=tuple(int(b) for b in data["coeff_modulus_bits"]),
                scale_bits=int(data["scale_bits"]),
                name=str(data.get("name", "custom")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SecurityError):
                raise
            raise SecurityError(f"malformed parameter description: {exc}") from exc

    def summary(self) -> dict[str, Any]:
        """Everything a report or a presets table shows."""
        return {
            **self.to_dict(),
            "slots": self.slots,
            "depth": self.depth,
            "supports_rotations": self.supports_rotations,
            "total_coeff_modulus_bits": self.total_coeff_modulus_bits,
            "security_bound_bits": self.security_bound_bits,
            "max_magnitude": self.max_magnitude,
            "decrypt_ceiling": self.decrypt_ceiling,
            "expected_precision": self.expected_precision,
        }


PRESETS: dict[str, CkksParameters] = {
    # One 60-bit prime: no key switching, so no rotations and no multiplications, but the
    # cheapest encryption and the smallest ciphertexts. For messages that are only moved and added.
    "transport": CkksParameters(4096, (60,), 40, name="transport"),
    # Two multiplicative levels (two 40-bit primes), rotations via the last 60-bit prime.
    "compute": CkksParameters(8192, (60, 40, 40, 60), 40, name="compute"),
    # Seven multiplicative levels, 400 of the 438 bits allowed at N=16384.
    "deep": CkksParameters(16384, (60, 40, 40, 40, 40, 40, 40, 40, 60), 40, name="deep"),
    # ``transport`` with 4x the input range: the same single 60-bit prime at scale 2**37, so
    # max_magnitude = 2**11 = 2048 instead of 512 (decrypt ceiling 2**22). Why it exists: the
    # gradient-replacement backdoor amplifies the attacker's activations past transport's 512 on
    # MNIST (521-590 where the committed ckks/receiver runs at gamma 3, 10 and 30 stopped on the
    # range check: docs/results/attacks_defenses.md, docs/results/study_paper_mnist/), so those
    # runs have no encrypted counterpart to compare with plaintext; with this preset they train
    # on, like with like, next to the range stop. It is the widest single-prime preset that keeps
    # a stated precision below 1e-5 (scale >= 2**37 at N = 4096): its round-trip bound is 8x
    # transport's (2**-17 = 7.6e-6; measured ~4e-7), far below the ~1e-3 per-sample gradient
    # entries of the MNIST models. It does not carry gamma 30 (seed 0): the encrypted run reaches
    # 2137 at epoch 2 and stops here too, and the plaintext run diverges in that same epoch
    # (activations up to 7.6e5, epoch loss 4125 > train.max_loss; probes, issue 15), so there the
    # stop is the attack's, in every scheme, not encryption's.
    # Since 2026-11-27 messages under key_holder = "receiver" (never multiplied) are held to
    # transport_bound, half the ceiling (2^21 here, 2^18 under transport), not max_magnitude: the
    # numbers above are those of the runs made before.
    # Added after the others so the existing presets keep their names and order.
    "transport_wide": CkksParameters(4096, (60,), 37, name="transport_wide"),
}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> CkksParameters:
    """Look up a named preset (``transport``, ``compute``, ``deep``, ``transport_wide``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown CKKS preset {name!r}; known presets: {', '.join(PRESETS)}") from None
