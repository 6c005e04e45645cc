"""The named phases every party's time is accounted under, and the cost groups they roll up into.

Phases are defined once here so that a timer, the result record and the benchmark cannot drift
apart: :class:`~securevfl.protocols.accounting.PhaseTimer` refuses a name that is not a
:class:`Phase`, and every phase belongs to exactly one :class:`CostGroup` (a test checks), so
time spent in a new phase can never silently vanish from ``timing.summary``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

__all__ = ["PHASE_GROUPS", "CostGroup", "Phase", "cost_summary"]


class Phase(StrEnum):
    """One kind of work a party times (the keys of ``result.json``'s ``timing``)."""

    BOTTOM_FORWARD = "bottom_forward"
    TOP = "top"
    BOTTOM_BACKWARD = "bottom_backward"
    EVALUATE = "evaluate"
    HOMOMORPHIC_BACKPROP = "homomorphic_backprop"
    """A passive's backpropagation under encryption, including the refresh round trips it makes."""
    TOP_ENCRYPTED = "top_encrypted"
    """The active party's combination of encrypted activations (sum or first dense layer)."""
    DEFENSE_ENCRYPTED = "defense_encrypted"
    """Defenses placed under encryption (homomorphic operations on a message's ciphertext)."""
    KEYGEN = "keygen"
    ENCRYPT = "encrypt"
    SERIALIZE = "serialize"
    CIPHERTEXT_SERIALIZE = "ciphertext_serialize"
    DESERIALIZE = "deserialize"
    CIPHERTEXT_DESERIALIZE = "ciphertext_deserialize"
    DECRYPT = "decrypt"


class CostGroup(StrEnum):
    """The cost categories reported for every scheme (``timing.summary``)."""

    COMPUTE = "compute"
    ENCRYPTED_COMPUTE = "encrypted_compute"
    KEYGEN = "keygen"
    ENCODE_ENCRYPT = "encode_encrypt"
    SERIALIZE = "serialize"
    DESERIALIZE = "deserialize"
    DECRYPT = "decrypt"
    TRANSFER = "transfer"
    """Time on the network; 0 for the in-process channel (see the byte counts instead)."""


#: How phases roll up into cost groups; every :class:`Phase` appears exactly once.
PHASE_GROUPS: Mapping[CostGroup, tuple[Phase, ...]] = {
    CostGroup.COMPUTE: (Phase.BOTTOM_FORWARD, Phase.TOP, Phase.BOTTOM_BACKWARD, Phase.EVALUATE),
    # ciphertext-by-plaintext kernels; includes the refresh round trips made from inside them
    CostGroup.ENCRYPTED_COMPUTE: (Phase.HOMOMORPHIC_BACKPROP, Phase.TOP_ENCRYPTED, Phase.DEFENSE_ENCRYPTED),
    CostGroup.KEYGEN: (Phase.KEYGEN,),
    CostGroup.ENCODE_ENCRYPT: (Phase.ENCRYPT,),
    CostGroup.SERIALIZE: (Phase.SERIALIZE, Phase.CIPHERTEXT_SERIALIZE),
    CostGroup.DESERIALIZE: (Phase.DESERIALIZE, Phase.CIPHERTEXT_DESERIALIZE),
    CostGroup.DECRYPT: (Phase.DECRYPT,),
    CostGroup.TRANSFER: (),
}


def cost_summary(seconds: Mapping[str, float]) -> dict[str, float]:
    """Seconds per cost group from seconds per phase (missing phases count as 0)."""
    return {
        group.value: round(sum(float(seconds.get(phase, 0.0)) for phase in phases), 6)
        for group, phases in PHASE_GROUPS.items()
    }
