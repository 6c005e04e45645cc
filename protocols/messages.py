"""The unit of communication between parties.

A :class:`Message` is what a party hands to a channel; the channel turns it into bytes
(:mod:`securevfl.protocols.wire`) even in-process, so that plaintext and encrypted runs are
measured identically and a later network transport changes nothing above this layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Kinds used by the training protocol. Channels accept any kind string; these constants
#: keep the names consistent across parties, accounting and reports.
ACTIVATION = "activation"
GRADIENT = "gradient"
EVAL_ACTIVATION = "eval_activation"

JsonScalar = str | int | float | bool | None


@dataclass(frozen=True)
class Message:
    """A payload travelling from ``sender`` to ``receiver`` at training ``step``.

    ``codec`` names the payload codec that turns ``payload`` into bytes; ``meta`` carries
    small JSON-serializable facts the receiver needs (never secrets, never tensors).
    """

    kind: str
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
        if not isinstance(self.step, int) or self.step < 0:
            raise ValueError(f"Message.step must be a non-negative int, got {self.step!r}")
