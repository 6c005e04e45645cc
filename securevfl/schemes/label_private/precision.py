"""How gradients travel in the one-key-holder schemes so that noise flooding costs little precision.

The key holder floods every decryption that leaves it with Gaussian noise ``2**15`` times the
ciphertext noise it measures (:mod:`securevfl.crypto.flooding`), so whatever noise a product
carries is multiplied by ~33,000 in the value a party learns. Two sources dominate, both
*absolute* (independent of the values):

- every rotation (a key switch) adds ~4.5e-7 in slot units at the ``compute`` preset;
- a matmul rotates its input ciphertext before the plaintext product (baby steps, row copies),
  and that noise is multiplied by the plaintext like the values are.

At mean-loss scale (gradient entries ~1e-2) the flooded gradients were as large as the
gradients themselves. Two public factors fix that, measured in docs/threat-model.md
("What flooding costs"):

- :func:`gradient_scale`: the active party sends per-sample gradients (the mean-loss gradient
  times the batch's sample count, which the public ``gradient_bound`` bounds); receivers
  divide decrypted batch sums by the same count in plaintext, where it costs nothing;
- :data:`AMPLIFICATION`: every gradient ciphertext a passive multiplies by a plaintext matrix
  travels ``2**8`` times larger (the active party encrypts it so, the key holder re-encrypts
  refreshed gradients so), and the plaintext factor of the product carries ``2**-8``. The
  rotations of the input then add noise 256 times smaller relative to the values; the product
  leaves at its true scale, within the decryption ceiling. The top levels of the modulus chain
  have room for the larger values (``2**8 x gradient_bound`` is far below their ceilings); more
  amplification stops helping once the plaintext factor's encoding error (``~2**-40`` times
  ``2**k``) reaches the rotation noise it divides (measured: ``2**7``-``2**9`` is the plateau).
"""

from __future__ import annotations

__all__ = ["AMPLIFICATION", "gradient_scale"]

#: Public factor of every gradient ciphertext a passive multiplies by a plaintext matrix.
AMPLIFICATION = 2.0**8


def gradient_scale(rows: int) -> float:
    """What the active party multiplies ``dL/dH`` by before encrypting it: the batch's sample count.

    The training loss is a mean, so each entry of ``dL/dH`` is a per-sample gradient divided by
    the batch size; multiplied back, the values fill the range the public ``gradient_bound``
    (a bound on per-sample gradients) allows, and the flooding noise becomes small beside them.
    """
    return float(max(rows, 1))
