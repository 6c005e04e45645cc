"""Errors raised while framing, sending or receiving protocol messages."""

from __future__ import annotations

import unicodedata

#: The most characters of a peer's own text (an ABORT's or a refusal's reason) an error line repeats.
PEER_TEXT_LIMIT = 500


def peer_text(value: object, limit: int = PEER_TEXT_LIMIT) -> str:
    """A peer's text as it may appear in one of this party's error lines: one line, no control characters, at most
    ``limit`` characters. A reason is whatever the peer put in its message; printed raw, a malicious peer could end
    the line, forge log lines or send terminal escapes (red-team pass, 2026-11-27)."""
    text = "".join("?" if unicodedata.category(char).startswith("C") and char not in " \t\n\r" else char for char in str(value))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ProtocolError(Exception):
    """A message broke the protocol: unexpected kind or sender, or a receive with nothing queued."""


class WireFormatError(ProtocolError, ValueError):
    """Bytes that do not decode to a well-formed message: bad magic, version, checksum or payload."""


class NonFiniteError(ProtocolError, ValueError):
    """A payload held NaN or infinity; such values are refused before they leave the sender."""


class PayloadRangeError(ProtocolError, ValueError):
    """An outgoing value lies outside what the CKKS parameters can carry precisely."""


class IdentityError(ProtocolError, ValueError):
    """A party identity or roster that does not check out: unknown party, bad key, pinned fingerprint mismatch."""


class FrameAuthenticationError(ProtocolError):
    """A frame its receiver refused: not signed by the claimed sender, another session or receiver, replayed or out of order.

    ``receiver`` refused the frame, ``sender`` is who the frame *claims* to be from (unverified
    when the signature is what failed), ``reason`` says why and ``frame`` names the frame (kind,
    sequence number, step); the message is one line naming them all.
    """

    def __init__(self, receiver: str, sender: str, reason: str, frame: str = "a frame") -> None:
        self.receiver = receiver
        self.sender = sender
        self.reason = reason
        super().__init__(f"{receiver} refused {frame} from {sender!r}: {reason}")


class PeerUnavailableError(ProtocolError):
    """A peer cannot be reached: its process is gone, it refuses the connection, or TLS with it fails.

    Raised by a network transport when a send cannot connect within its bounded retry, or when a
    receive's liveness check finds the party it waits for gone. ``peer`` names that party; the
    message is one line naming the party that noticed, the peer, what it was doing and the cause.
    """

    def __init__(self, peer: str, message: str) -> None:
        self.peer = peer
        super().__init__(message)


class PeerTimeoutError(ProtocolError):
    """A receive's deadline passed: the awaited sender was reachable (or not answering) but sent nothing that matched.

    ``peer`` names the awaited sender (None when the receive accepted any sender); the message is
    one line naming the receiver, the awaited kind and sender, how long it waited and the last
    step of traffic it saw.
    """

    def __init__(self, peer: str | None, message: str) -> None:
        self.peer = peer
        super().__init__(message)


class FrameTooLargeError(ProtocolError, ValueError):
    """A frame exceeds the transport's configured maximum message size (the sender's or the receiver's)."""


class ReceiverBusyError(ProtocolError):
    """The receiver has not taken enough of this sender's frames to queue another (back-pressure): the sender retries
    until its send deadline. Raised at the receiver; a sender sees it only as the cause of a timeout."""


#: How a receiving server's status text marks back-pressure (a client retries such a refusal).
BUSY_PREFIX = "busy: "


class RequestRefusedError(ProtocolError):
    """The party a receive waits for refused this party's request (a ``request_refused`` message): its reply will not come."""

    def __init__(self, receiver: str, awaited: str, refusal: object) -> None:
        meta = getattr(refusal, "meta", {})
        self.sender = str(getattr(refusal, "sender", "?"))
        self.reason = peer_text(meta.get("reason", "no reason given"))
        request = peer_text(meta.get("request", "request"), 60)
        step = getattr(refusal, "step", "?")
        super().__init__(
            f"{receiver} stopped waiting for a {awaited!r} message from {self.sender!r}: {self.sender} refused its {request} (step {step}): {self.reason}"
        )
