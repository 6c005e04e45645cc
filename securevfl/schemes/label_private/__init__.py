"""The label-private schemes: one CKKS key, held by the active party or a coordinator.

Everything this scheme is made of lives in this package: the scheme object (checks, placements,
capabilities, assembly), the parties' protocol (:mod:`.wires`), the packing plans
(:mod:`.plan`) and the homomorphic backpropagation (:mod:`.backprop`). The key holder's
decryption service and the masks are protocol pieces (``securevfl.protocols.keyholder``,
``securevfl.protocols.masking``).
"""

from securevfl.schemes.label_private.scheme import LabelPrivateScheme

__all__ = ["LabelPrivateScheme"]
