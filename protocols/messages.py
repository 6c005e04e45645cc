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
    GRADIENT_DIGEST = "gradient_digest"
    """SHA-256 of the gradient a passive received at a step, passive -> coordinator, with pairwise masks
    (:mod:`.gradient_agreement`: every passive must have received the same one)."""
    MASK_KEYS = "mask_keys"
    """Pairwise activation masks: the coordinator's fresh 256-bit key for every pair this passive is in, coordinator ->
    passive, once per attempt after its public key (:mod:`.pairwise_masks`)."""
    DECRYPT_REQUEST = "decrypt_request"
    DECRYPT_REPLY = "decrypt_reply"
    REFRESH_REQUEST = "refresh_request"
    REFRESH_REPLY = "refresh_reply"
    PSI_REQUEST = "psi_request"
    """Sample alignment: the active party's ids hashed onto the curve and blinded with its one-time
    ECDH key (one fresh key per passive), active -> passive. Reveals their count, nothing else."""
    PSI_SETUP = "psi_setup"
    """Sample alignment: the passive's own ids blinded with its one-time key, in a Golomb-compressed
    set sized for the requested false-positive rate, passive -> active."""
    PSI_RESPONSE = "psi_response"
    """Sample alignment: the request's elements blinded again with the passive's key, in request
    order (so the active party can tell which of its own ids the passive holds), passive -> active."""
    ALIGNMENT = "alignment"
    """Sample alignment: the ids every party holds, in the agreed training order, active -> passive.
    Only ids of the intersection travel in plaintext, and each passive checks they are its own."""
    ALIGNMENT_ACK = "alignment_ack"
    """Sample alignment: a passive's confirmation that it holds every aligned id (the SHA-256 of the
    list it received), passive -> active, so no party trains on a partial alignment."""
    HELLO = "hello"
    """Start of an attempt of a planned run (:mod:`.attempt`): the sender's fresh nonce (``meta["nonce"]``),
    the completed epochs it can continue after (``meta["epochs"]``) and its plan's agreement digest
    (``meta["agreement"]``), to every other party."""
    READY = "ready"
    """Start of an attempt: the session id the sender derived from every nonce and the epoch it agreed
    on (``meta["session"]``, ``meta["epoch"]``); after every peer's READY, frames travel in that session."""
    DONE = "done"
    """End of run: the sender has finished its schedule and sends nothing more but this (empty payload).
    Each party tells the key holder it used and the active party; the active party tells every
    passive once all of them are done, so a key holder knows when to stop serving and every
    process knows the run completed (running one party per process, :mod:`securevfl.party_runner`)."""
    REQUEST_REFUSED = "request_refused"
    """The key holder will not answer a request: key holder -> requester, ``meta["reason"]`` says why
    in one line and ``meta["request"]`` names the refused kind (empty payload). A receive waiting for
    the reply from that key holder fails at once with the reason (every channel) instead of waiting
    out its receive deadline."""
    ABORT = "abort"
    """The sender stopped with an error and will send nothing more; ``meta["reason"]`` says why in
    one line (empty payload). A party waiting for this sender's messages fails at once instead of
    waiting out its receive deadline."""


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
