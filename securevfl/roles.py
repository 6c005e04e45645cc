"""Where a party sits in a federation (:class:`Role`) and what it can hold there (:class:`Capability`).

Schemes grant capabilities per role; attacks declare the role they run at and the capabilities
they need. Both import this small module, so neither depends on the other.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Capability", "Role"]


class Role(StrEnum):
    """Where in a federation a party (or an attack) sits."""

    PASSIVE = "passive"
    """Holds a block of feature columns and a bottom model."""
    ACTIVE = "active"
    """Holds the labels and the top model."""
    KEY_HOLDER = "key_holder"
    """Holds the only CKKS secret key of a label-private scheme (the active party or a coordinator)."""
    OBSERVER = "observer"
    """Sees the frames on the channel (a relay or an eavesdropper), holds no key."""


class Capability(StrEnum):
    """What a party in some role can hold or do under a scheme (what attacks require)."""

    PLAINTEXT_GRADIENT_ROWS = "plaintext_gradient_rows"
    """It decrypts (or simply receives) dL/dH row by row, one row per sample."""
    CIPHERTEXT_GRADIENT_ROWS = "ciphertext_gradient_rows"
    """It holds dL/dH only encrypted, but can address its rows (samples) in its own backprop."""
    OWN_PLAINTEXT = "own_plaintext"
    """It computes its own activations in plaintext before they leave (every scheme)."""
    BATCH_SUMMED_PARAMETER_GRADIENTS = "batch_summed_parameter_gradients"
    """It learns the exact batch-summed gradients of its own parameters (and so their change)."""
    PLAINTEXT_ACTIVATION_ROWS = "plaintext_activation_rows"
    """It holds each passive's activations H_k row by row (the active party of the open schemes)."""
    COMBINED_ACTIVATIONS = "combined_activations"
    """It holds only a combination of all passives' activations (their sum or the first dense layer)."""
    FRAMES = "frames"
    """It sees every frame's header and (possibly encrypted) payload bytes on the channel."""
    DECRYPTION_REQUESTS = "decryption_requests"
    """It asks another party's key to decrypt values it computed (masked requests, replies it reads in full)."""
    MASKED_DECRYPTIONS = "masked_decryptions"
    """It decrypts whatever it is asked to (the key holder), seeing the values as the requester masked them."""
