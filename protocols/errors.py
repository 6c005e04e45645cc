"""Errors raised while framing, sending or receiving protocol messages."""

from __future__ import annotations


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
