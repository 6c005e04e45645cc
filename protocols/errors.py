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
