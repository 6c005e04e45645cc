"""How gradients travel in the one-key-holder schemes so that noise flooding costs little precision.

The key holder floods every decryption that leaves it with Gaussian noise ``2**15`` times the
public noise bound of the request (:mod:`securevfl.crypto.flooding`; the bound is a few times the
noise an honest request carries), so whatever noise a product carries is multiplied by ~33,000 or
more in the value a party learns. Two sources dominate, both
*absolute* (independent of the values):

- every rotation (a key switch) adds ~4.5e-7 in slot units at the ``compute`` preset;
- a matmul rotates its input ciphertext before the plaintext product (baby steps, row copies),
  and that noise is multiplied by the plaintext like the values are.

At mean-loss scale (gradient entries ~1e-2) the flooded gradients were as large as the
gradients themselves. Two public factors fix that, measured in docs/threat-model.md
("What flooding costs"):

- :func:`gradient_scale`: the active party sends per-sample gradients (the mean-loss gradient
  times the batch's sample count, which the public ``gradient_bound`` bounds); receivers
  divide decrypted batch sums by the same factor in plaintext, where it costs nothing. When a
  defense has pushed the rows past the bound (label-DP noise is unbounded), the factor halves
  until they fit; it travels with the message (``meta["scale"]``), so it is public: a power-of-
  two fraction of the batch size, computed from the rows as sent, i.e. after every defense
  (for label-DP noise, post-processing of the noisy rows);
- :data:`AMPLIFICATION`: every gradient ciphertext a passive multiplies by a plaintext matrix
  travels ``2**8`` times larger (the active party encrypts it so, the key holder re-encrypts
  refreshed gradients so), and the plaintext factor of the product carries ``2**-8``. The
  rotations of the input then add noise 256 times smaller relative to the values; the product
  leaves at its true scale, within the decryption ceiling. The top levels of the modulus chain
  have room for the larger values (``2**8 x gradient_bound`` is far below their ceilings); more
  amplification stops helping once the plaintext factor's encoding error (``~2**-40`` times
  ``2**k``) reaches the rotation noise it divides (measured: ``2**7``-``2**9`` is the plateau).

Below the top layer a passive has ``G_l @ W_l`` refreshed. Its entries are bounded only by the
worst case ``max|G_l| x`` (largest column l1 norm of ``W_l``), which grows with the passive's
weights past any fixed multiple of ``gradient_bound``; the key holder re-encrypts under the
rule's public bound and refuses what exceeds it (a content refusal: the masked value sits near
the edge of its mask only rarely, so an honest run stopped at random, 2026-11-26). The refreshed
gradient's bound is therefore :data:`BACKPROP_HEADROOM` times ``gradient_bound``, and the passive
divides the product by the power of two :func:`backprop_shrink` that brings the worst case
within it, carrying the factor in the values and multiplying it into the decrypted parameter
gradients (:func:`.backprop.carried_shrinks`; multiplied back into the next product's plaintext
instead, it made that product's noise exceed its public bound: a refusal). Every declared bound
is true; the flooding grows by that factor where the worst case needs it (deeper bottoms: see
:data:`BACKPROP_HEADROOM`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from securevfl.protocols.errors import ProtocolError

__all__ = ["AMPLIFICATION", "BACKPROP_HEADROOM", "SCALE_META", "backprop_shrink", "gradient_scale", "received_gradient_scale"]

#: Public factor of every gradient ciphertext a passive multiplies by a plaintext matrix.
AMPLIFICATION = 2.0**8

#: The public bound of a refreshed hidden-layer gradient ``G_l @ W_l``, in units of ``gradient_bound``:
#: the first refresh has room for column l1 norms of the top layer's ``W`` up to 8 before
#: :func:`backprop_shrink` acts (MNIST's 392 -> 32 -> 10: none). Every lower refresh arrives at this
#: bound already, so any column l1 norm above 1 shrinks it (measured at initialisation: 392 -> 64 ->
#: 32 -> 10 carries 4 into the first layer, 392 -> 256 -> 128 -> 64 -> 10 carries 32), and the
#: flooding in those layers' gradients grows by the same factor (review, 2026-11-27).
BACKPROP_HEADROOM = 8.0

#: The gradient message's meta field carrying :func:`gradient_scale`.
SCALE_META = "scale"

#: Halvings of the batch size allowed before the rows count as out of range anyway.
_MAX_HALVINGS = 40


def gradient_scale(rows: int, values: np.ndarray | None = None, bound: float | None = None) -> float:
    """What the active party multiplies ``dL/dH`` by before encrypting it: the batch's sample count.

    The training loss is a mean, so each entry of ``dL/dH`` is a per-sample gradient divided by
    the batch size; multiplied back, the values fill the range the public ``gradient_bound``
    (a bound on per-sample gradients) allows, and the flooding noise becomes small beside them.
    With ``values`` and ``bound``, the count is halved until ``max|values| x factor <= bound``.
    """
    factor = float(max(rows, 1))
    if values is None or bound is None or values.size == 0:
        return factor
    peak = float(np.max(np.abs(values)))
    halvings = 0
    while peak * factor > bound and halvings < _MAX_HALVINGS:
        factor /= 2.0
        halvings += 1
    return factor


def backprop_shrink(reach: float, bound: float) -> float:
    """The least power of two ``2**k >= 1`` with ``reach / 2**k <= bound``.

    ``reach`` is the worst-case magnitude of ``G_l @ W_l`` (the ciphertext's tracked bound times
    the plaintext's largest column l1 norm, as the product itself computes it); dividing by the
    result keeps the refreshed value within the public ``bound`` whatever the gradient's entries.
    """
    if not (math.isfinite(reach) and reach >= 0 and bound > 0):
        raise ValueError(f"backprop_shrink needs a finite reach >= 0 and a bound > 0, got {reach!r} and {bound!r}")
    if reach <= bound:
        return 1.0
    return 2.0 ** math.ceil(math.log2(reach / bound))


def received_gradient_scale(meta: Mapping[str, object], rows: int, sender: str) -> float:
    """The factor a gradient message announces, checked: ``rows / 2^k`` for some ``k`` in [0, 40]."""
    value = meta.get(SCALE_META)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ProtocolError(f"the gradient from {sender} announces no valid scale (meta {SCALE_META!r} = {value!r})")
    ratio = max(rows, 1) / float(value)
    halvings = math.log2(ratio) if ratio >= 1 else -1.0
    if not (0 <= halvings <= _MAX_HALVINGS and halvings == int(halvings)):
        raise ProtocolError(
            f"the gradient from {sender} announces scale {value!r}: not the batch size {rows} halved 0 to {_MAX_HALVINGS} times"
        )
    return float(value)
