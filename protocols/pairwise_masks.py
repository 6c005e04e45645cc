"""Pairwise activation masks that cancel in the sum of the passives' activations.

Why: under the sum top with a coordinator holding the key, the active party is allowed the sum
``S = sum_k H_k`` only. A semi-honest active party gets nothing else, but one that deviates can put a
single passive's ``Enc(H_k)`` where the coordinator expects the sum (the coordinator cannot tell them
apart: same shape, same range) and read ``H_k`` (docs/threat-model.md, the own-slot finding). With
these masks each passive sends ``Enc(H_k + M_k)`` where ``sum_k M_k = 0``: any single ciphertext, or
any combination other than the plain sum, decrypts to values under uniform masks of half-width
``w`` (``protection.mask_half_width``), and only the sum the protocol asks for decrypts to ``S``.

How (as in secure aggregation, Bonawitz et al. 2017, without the dropout handling: a passive that
drops stops the run anyway):

- the coordinator draws a fresh 256-bit key per unordered pair of passives at every attempt and sends
  each passive the keys of its pairs (``MASK_KEYS``, over the authenticated, encrypted channel: the
  active party never sees them); the coordinator learns nothing new, since it holds the secret key;
- for the ``c``-th message of a kind, the pair ``(a, b)``, ``a < b`` by name, draws
  ``P_ab = U[-w, w]`` from ChaCha20 under its key with the nonce ``(kind, c)``; ``a`` adds ``+P_ab``,
  ``b`` adds ``-P_ab``, so the masks cancel exactly in the sum (up to float rounding, ~1e-12);
- every passive sends the same messages in the same order (the protocol is in lockstep), so the
  counters agree; a passive out of step makes the sum decrypt to mask-sized values, which the active
  party refuses with one line instead of training on them.

Each ``H_k + M_k`` is within total variation ``|H_k| / (2w)`` per value of the mask alone (1/512 at the
defaults; ``E`` views of one value, e.g. a test sample every epoch, within ``E |H_k| / (2w)``); with
``n`` passives a passive's mask is the sum of ``n - 1`` pair masks and its values stay within
``H + (n - 1) w``, which must decrypt at the last level (checked with the config).

What the masks do not stop: the active party chooses each passive's gradient, and a probe sent to one
passive alone moves only that passive's activations, which the honest sums then show (gradient
steering, tests/test_pairwise_masks.py). :mod:`.gradient_agreement` stops that.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence

import numpy as np

from securevfl.crypto.randomness import KEY_BYTES, keyed_uniform
from securevfl.protocols.errors import ProtocolError
from securevfl.protocols.messages import MessageKind

__all__ = ["PairwiseMasks", "deal_pair_keys", "read_pair_keys"]

#: the message kinds that carry masked activations, and their code in the nonce
MASKED_KINDS = {MessageKind.ACTIVATION: 1, MessageKind.EVAL_ACTIVATION: 2}


def deal_pair_keys(passives: Sequence[str]) -> dict[str, bytes]:
    """A fresh key per unordered pair of passives (``os.urandom``); per passive, the payload of its ``MASK_KEYS``."""
    names = sorted(passives)
    keys = {(a, b): os.urandom(KEY_BYTES) for i, a in enumerate(names) for b in names[i + 1 :]}
    payloads = {}
    for name in names:
        own = {(b if a == name else a): key.hex() for (a, b), key in keys.items() if name in (a, b)}
        payloads[name] = json.dumps(own, sort_keys=True).encode("utf-8")
    return payloads


def read_pair_keys(payload: bytes, own: str, passives: Sequence[str], sender: str) -> dict[str, bytes]:
    """The keys in a ``MASK_KEYS`` payload, checked: exactly one 256-bit key per other passive, else one error line."""
    expected = sorted(name for name in passives if name != own)
    try:
        keys = json.loads(bytes(payload).decode("utf-8"))
        if not isinstance(keys, dict) or sorted(keys) != expected:
            raise ValueError(f"keys for {sorted(keys) if isinstance(keys, dict) else type(keys).__name__}, expected {expected}")
        parsed = {peer: bytes.fromhex(value) for peer, value in keys.items()}
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise ProtocolError(f"{own} rejected the pairwise mask keys from {sender}: {exc}") from None
    short = [peer for peer, key in parsed.items() if len(key) != KEY_BYTES]
    if short:
        raise ProtocolError(f"{own} rejected the pairwise mask keys from {sender}: not {KEY_BYTES}-byte keys for {short}")
    return parsed


class PairwiseMasks:
    """One passive's masks ``M = sum over its pairs of +-P``, numbered per message kind."""

    def __init__(self, own: str, keys: dict[str, bytes], half_width: float) -> None:
        if not half_width > 0:
            raise ValueError(f"mask half-width must be positive, got {half_width}")
        self.own = own
        self.half_width = float(half_width)
        self._keys = dict(keys)
        self._counters = dict.fromkeys(MASKED_KINDS, 0)

    @property
    def bound(self) -> float:
        """The largest magnitude of a mask: ``(n - 1) w``."""
        return len(self._keys) * self.half_width

    def next(self, kind: MessageKind, shape: tuple[int, ...]) -> np.ndarray:
        """The mask of this passive's next ``kind`` message (every passive numbers its messages the same way)."""
        if kind not in self._counters:
            raise ValueError(f"no pairwise masks for {kind} messages")
        counter = self._counters[kind]
        self._counters[kind] = counter + 1
        nonce = struct.pack("<BQ3x", MASKED_KINDS[kind], counter)
        mask = np.zeros(shape)
        for peer, key in self._keys.items():
            sign = 1.0 if self.own < peer else -1.0
            mask += sign * keyed_uniform(key, nonce, -self.half_width, self.half_width, shape)
        return mask
