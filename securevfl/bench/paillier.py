"""The Paillier baseline, and CKKS on exactly the same message.

FATE-style vertical federated learning protects each message with Paillier, one ciphertext per
value (python-paillier, 2048-bit modulus). That is what a user would otherwise pick, so the
benchmark times it on the messages securevfl actually sends (64x10 with the sum top, 64x32 with
the trainable top): encrypt with the public key, serialize, deserialize, decrypt, and the
homomorphic addition of two messages (what an aggregator does).

Paillier costs the same for every value of a message, so timing every one of the 640 or 2,048
values would only repeat the same measurement for minutes: a prefix of ``sample_values`` values
is timed and the per-value cost scaled to the message, and the result says so. Ciphertext bytes
are exact: every ciphertext is an integer below n^2, serialized at a fixed 512 bytes, plus its
4-byte exponent.

CKKS is timed on the whole message with the ``transport`` preset, as the receiver scheme sends
it: ``EncryptedTensor.encrypt(public, values, Layout.FLAT, levels=0)`` under a public keyring
received as bytes, i.e. by a sender that does not hold the secret key (the scheme declares
``bound=transport_bound``; the bound changes the checks, not the cost).
"""

from __future__ import annotations

import statistics
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["KEY_BITS", "paillier_info", "paillier_vs_ckks"]

KEY_BITS = 2048
#: Fixed width of one serialized ciphertext: an integer modulo n^2 (2 x 2048 bits).
CIPHERTEXT_BYTES = 2 * KEY_BITS // 8
EXPONENT_FORMAT = ">i"
OPERATIONS = ("encrypt", "serialize", "deserialize", "decrypt", "add")


def paillier_info() -> dict[str, Any]:
    """Library, version and whether gmpy2 accelerates python-paillier's big-integer arithmetic."""
    import phe
    import phe.util

    return {
        "library": "python-paillier (phe)",
        "version": phe.__version__,
        "key_bits": KEY_BITS,
        "gmpy2": bool(getattr(phe.util, "HAVE_GMP", False)),
        "encoding": "one ciphertext per value, phe's default float encoding (as FATE)",
    }


def _paillier_message(public: Any, private: Any, values: np.ndarray, sample_values: int) -> dict[str, Any]:
    """Time each operation on the first ``sample_values`` values and scale to the message."""
    from phe import paillier

    flat = [float(v) for v in values.ravel()]
    sample = flat[: max(1, min(sample_values, len(flat)))]
    seconds: dict[str, float] = {}

    tick = time.perf_counter()
    ciphertexts = [public.encrypt(value) for value in sample]
    seconds["encrypt"] = time.perf_counter() - tick

    tick = time.perf_counter()
    wire = [c.ciphertext().to_bytes(CIPHERTEXT_BYTES, "big") + struct.pack(EXPONENT_FORMAT, c.exponent) for c in ciphertexts]
    seconds["serialize"] = time.perf_counter() - tick

    tick = time.perf_counter()
    loaded = [
        paillier.EncryptedNumber(public, int.from_bytes(item[:CIPHERTEXT_BYTES], "big"), struct.unpack(EXPONENT_FORMAT, item[CIPHERTEXT_BYTES:])[0])
        for item in wire
    ]
    seconds["deserialize"] = time.perf_counter() - tick

    tick = time.perf_counter()
    decrypted = [private.decrypt(c) for c in loaded]
    seconds["decrypt"] = time.perf_counter() - tick

    tick = time.perf_counter()
    _ = [a + b for a, b in zip(loaded, ciphertexts, strict=True)]
    seconds["add"] = time.perf_counter() - tick

    n, k = len(flat), len(sample)
    per_value = {op: s / k for op, s in seconds.items()}
    return {
        "values": n,
        "timed_values": k,
        "basis": "measured" if k == n else f"extrapolated from {k} of {n} values",
        "per_value_ms": {op: round(s * 1e3, 6) for op, s in per_value.items()},
        "message_ms": {op: round(s * n * 1e3, 3) for op, s in per_value.items()},
        "bytes": round(sum(len(item) for item in wire) / k * n),
        "max_abs_error": float(max(abs(a - b) for a, b in zip(decrypted, sample, strict=True))),
    }


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tick)
    return statistics.median(times) * 1e3


def _ckks_message(values: np.ndarray, repeats: int, preset: str) -> dict[str, Any]:
    """The receiver scheme's per-message costs for ``values`` (medians over ``repeats``)."""
    from securevfl.crypto import EncryptedTensor, Layout, PublicKeyring, SecretKeyring, get_preset

    secret = SecretKeyring.generate(get_preset(preset))
    public = PublicKeyring.from_bytes(secret.public_keyring().to_bytes())  # as a sender holds it
    encrypted = EncryptedTensor.encrypt(public, values, Layout.FLAT, levels=0)
    wire = encrypted.to_bytes()
    loaded = EncryptedTensor.from_bytes(secret, wire)
    other = EncryptedTensor.from_bytes(secret, EncryptedTensor.encrypt(public, values, Layout.FLAT, levels=0).to_bytes())
    message_ms = {
        "encrypt": _median_ms(lambda: EncryptedTensor.encrypt(public, values, Layout.FLAT, levels=0), repeats),
        "serialize": _median_ms(encrypted.to_bytes, repeats),
        "deserialize": _median_ms(lambda: EncryptedTensor.from_bytes(secret, wire), repeats),
        "decrypt": _median_ms(loaded.decrypt, repeats),
        "add": _median_ms(lambda: loaded + other, repeats),
    }
    return {
        "preset": preset,
        "values": int(values.size),
        "basis": f"measured, median of {repeats}",
        "message_ms": {op: round(ms, 4) for op, ms in message_ms.items()},
        "bytes": len(wire),
        "max_abs_error": float(np.max(np.abs(loaded.decrypt() - values))),
    }


def paillier_vs_ckks(
    shapes: list[tuple[int, int]], sample_values: int, ckks_repeats: int = 20, ckks_preset: str = "transport", seed: int = 0
) -> dict[str, Any]:
    """Per-message costs of Paillier and CKKS for each message shape, and their ratios.

    The message holds values of the size activations and gradients have (normal, sd 1).
    Ratios are Paillier / CKKS, so larger means CKKS is faster (or smaller).
    """
    from phe import paillier

    rng = np.random.default_rng(seed)
    tick = time.perf_counter()
    public, private = paillier.generate_paillier_keypair(n_length=KEY_BITS)
    keygen_seconds = time.perf_counter() - tick
    messages: dict[str, Any] = {}
    for rows, cols in shapes:
        values = rng.normal(0.0, 1.0, (rows, cols))
        pail = _paillier_message(public, private, values, sample_values)
        ckks = _ckks_message(values, ckks_repeats, ckks_preset)
        round_trip = ("encrypt", "serialize", "deserialize", "decrypt")
        pail_rt = sum(pail["message_ms"][op] for op in round_trip)
        ckks_rt = sum(ckks["message_ms"][op] for op in round_trip)
        messages[f"{rows}x{cols}"] = {
            "paillier": pail,
            "ckks": ckks,
            "ratio": {
                **{op: _ratio(pail["message_ms"][op], ckks["message_ms"][op]) for op in OPERATIONS},
                "round_trip": _ratio(pail_rt, ckks_rt),
                "bytes": _ratio(pail["bytes"], ckks["bytes"]),
            },
            "round_trip_ms": {"paillier": round(pail_rt, 3), "ckks": round(ckks_rt, 4)},
        }
    return {**paillier_info(), "keygen_seconds": round(keygen_seconds, 3), "ckks_preset": ckks_preset, "messages": messages}


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 1) if denominator > 0 else None
