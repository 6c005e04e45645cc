"""The hook interface between attacks and the training step, for every role.

A party calls its attack's hooks at fixed points of its protocol round and never branches on
the kind of attack; every hook defaults to honest behaviour (:class:`~securevfl.attacks.base.Attack`).
Schemes give attacks what they hold through the small types below, never through their private
classes, so an attack works under every scheme that grants its capabilities.

=============  ==============================================  ====================================
role           hook                                            called
=============  ==============================================  ====================================
passive        ``outgoing_activations(step, ids, H)``          before a training batch's H leaves
passive        ``incoming_gradient(step, ids, G)``             after it decrypted (or received) G
passive        ``encrypted_gradients(step, ids, backprop)``    its backpropagation on ciphertext rows
passive        ``revealed_parameter_gradients(step, ids, g)``  after masked decryption of its dW|db
active         ``received_activations(step, ids, sender, H)``  each passive's H, where it decrypts it
active         ``combined_activations(step, ids, Z)``          the combination it decrypts (blind)
active         ``outgoing_gradients(step, ids, [G_k])``         before each passive's G_k is encrypted
                                                               (label-private; may return others)
active         ``revealed_top_weight_gradient(step, ids, k,    H_k^T delta it decrypts for its first
               M, delta, W_k)``                                top layer (blind, trainable top)
key holder     ``decrypted_request(step, requester, values)``  each request it decrypts (masked)
observer       ``observed_frame(frame)``                       every frame on the channel
=============  ==============================================  ====================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from securevfl.crypto import EncryptedTensor

__all__ = ["EncryptedBackprop", "EncryptedGradientRows"]


@dataclass(frozen=True)
class EncryptedGradientRows:
    """One batch's gradient rows dL/dH as a passive holds them under a label-private scheme.

    ``feature_major`` is Enc(G^T); ``batch_major`` is Enc(G), present when the bottom model has
    hidden layers. An attack may keep them and replay them in a later step.
    """

    feature_major: EncryptedTensor
    batch_major: EncryptedTensor | None

    def to_state(self) -> dict[str, bytes | None]:
        """Serialized ciphertexts, for a checkpoint."""
        return {
            "feature_major": self.feature_major.to_bytes(),
            "batch_major": None if self.batch_major is None else self.batch_major.to_bytes(),
        }


class EncryptedBackprop(Protocol):
    """A passive's homomorphic backpropagation of one batch, as an attack may drive it.

    Backpropagation is linear in the gradient rows and in the passive's own per-row inputs, so
    one operation covers honest training, dropping rows and replaying recorded rows through
    another sample's inputs.
    """

    gradient: EncryptedGradientRows
    """This batch's gradient rows."""
    row_weight: np.ndarray
    """The honest weight of every (padded) row: 1 for real samples, 0 for padding."""
    revealed_scales: list[float]
    """The factor the passive divides each layer's decrypted product by before using it (the
    protocol sends per-sample gradients for precision, and a hidden layer's gradient may travel
    divided by a power of two: :func:`~securevfl.schemes.label_private.backprop.carried_shrinks`):
    an attack that crafts a request multiplies the revealed values back by it to read the raw
    decryption."""

    def backprop(
        self, gradient: EncryptedGradientRows, row_weight: np.ndarray, source: np.ndarray | None = None
    ) -> list[EncryptedTensor]:
        """Enc([dW_l | db_l]) per layer of ``sum_r row_weight[r] * (row r of gradient, through sample source[r])``.

        ``source[r]`` is the batch position whose inputs and ReLU masks row ``r`` is
        backpropagated through (default: ``r`` itself). Rows of weight 0 contribute nothing.
        """
        ...
