"""The unit of communication between parties.

A :class:`Message` is what a party hands to a channel; the channel turns it into bytes
(:mod:`securevfl.protocols.wire`) even in-process, so that plaintext and encrypted runs are
measured identically and a later network transport changes nothing above this layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class MessageKind(StrEnum):
    """Every kind of message the protocols exchange (the keys of ``bytes_sent``).

    A ``StrEnum``: the wire header and the byte accounting carry the plain string, so result
    files stay readable, while code names kinds only through this enum.
    """

    ACTIVATION = "activation"
    """H_k, passive -> active (training batch)."""
    ACTIVATION_T = "activation_t"
    """H_k transposed, for the trainable top's weight gradient under encryption (label-private)."""
    EVAL_ACTIVATION = "eval_activation"
    """H_k of an evaluation batch."""
    GRADIENT = "gradient"
    """dL/dH_k, active -> passive (feature-major under the label-private schemes)."""
    GRADIENT_BM = "gradient_bm"
    """dL/dH_k batch-major, for backpropagation below the top layer (label-private)."""
    PUBLIC_KEY = "public_key"
    """A party's public CKKS keyring."""
    DECRYPT_REQUEST = "decrypt_request"
    DECRYPT_REPLY = "decrypt_reply"
    REFRESH_REQUEST = "refresh_request"
    REFRESH_REPLY = "refresh_reply"


ACTIVATION = MessageKind.ACTIVATION
GRADIENT = MessageKind.GRADIENT
EVAL_ACTIVATION = MessageKind.EVAL_ACTIVATION

JsonScalar = str | int | float | bool | None


@dataclass(frozen=True)
class Message:
    """A payload travelling from ``sender`` to ``receiver`` at training ``step``.

    ``codec`` names the payload codec that turns ``payload`` into bytes; ``meta`` carries
    small JSON-serializable facts the receiver needs (never secrets, never tensors).
    """

    kind: MessageKind
    sender: str
    receiver: str
    step: int
    payload: Any
    codec: str = "ndarray"
    meta: Mapping[str, JsonScalar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("kind", "sender", "receiver", "codec"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"Message.{name} must be a non-empty string, got {value!r}")
        if self.kind not in MessageKind.__members__.values():
            known = ", ".join(kind.value for kind in MessageKind)
            raise ValueError(f"Message.kind {self.kind!r} is not a protocol message kind (known: {known})")
        object.__setattr__(self, "kind", MessageKind(self.kind))
        if not isinstance(self.step, int) or self.step < 0:
            raise ValueError(f"Message.step must be a non-negative int, got {self.step!r}")
