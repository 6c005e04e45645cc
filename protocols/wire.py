"""The byte frame every message travels in: layout and structural checks only, no keys.

Layout (all integers little-endian)::

    magic  b"SVFL"            4 bytes
    version                    1 byte   (WIRE_VERSION)
    reserved                   1 byte   (zero)
    session id                16 bytes  (random per run)
    sequence number            8 bytes  (per sender and receiver, from 0)
    header length              4 bytes
    body length                8 bytes
    header                     UTF-8 JSON: kind, sender, receiver, step, codec, meta, codec fields
    body                       codec-specific payload bytes
    signature                  64 bytes: Ed25519 by the sender over everything before it

Version 2 added the session id and sequence number (fixed width, so a frame's size does not
depend on how far into a session it travels) and replaced version 1's CRC32 trailer with the
signature: a checksum catches corruption but not an adversary, the signature catches both. This module writes the part a signature covers
(:func:`encode_unsigned`) and splits a received frame into header, body, signed bytes and
signature (:func:`parse_frame`), refusing every structurally malformed frame with
:class:`~securevfl.protocols.errors.WireFormatError`. Who may sign, and which frames a receiver
admits, is :mod:`securevfl.protocols.framing`'s job; payloads are decoded
(:func:`decode_payload`) only from frames it admitted.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from typing import Any

from securevfl.protocols.codecs import CodecRegistry
from securevfl.protocols.errors import WireFormatError
from securevfl.protocols.identity import SIGNATURE_BYTES
from securevfl.protocols.messages import Message, MessageKind

MAGIC = b"SVFL"
WIRE_VERSION = 2
_PREFIX = struct.Struct("<4sBB16sQIQ")
_KINDS = frozenset(kind.value for kind in MessageKind)
#: No header of the protocol comes near this; a larger one is refused before it is parsed.
MAX_HEADER_BYTES = 64 * 1024
#: Session ids are 16 random bytes, written as 32 lower-case hex digits outside the frame.
_SESSION = re.compile(r"[0-9a-f]{32}")
_RESERVED_HEADER_KEYS = {"kind", "sender", "receiver", "step", "codec", "meta"}
#: Bytes before the header: magic, version, reserved, session id, sequence number, header length, body length.
PREFIX_BYTES = _PREFIX.size
#: Bytes every frame carries besides its payload and its header's JSON (prefix and signature).
FIXED_OVERHEAD_BYTES = PREFIX_BYTES + SIGNATURE_BYTES


@dataclass(frozen=True)
class FrameHeader:
    """The routing facts of a frame: all of them are covered by its signature."""

    session: str
    """32 hex digits."""
    kind: MessageKind
    sender: str
    receiver: str
    step: int
    sequence: int
    codec: str
    meta: dict[str, Any]
    codec_fields: dict[str, Any]


@dataclass(frozen=True)
class ParsedFrame:
    """A structurally well-formed frame, not yet authenticated: its signature is still to check."""

    header: FrameHeader
    body: bytes
    signed: bytes
    """Everything the signature covers (prefix, header and body)."""
    signature: bytes

    @property
    def header_bytes(self) -> bytes:
        """The header's JSON exactly as it travelled (what an attacker would splice)."""
        return self.signed[PREFIX_BYTES : len(self.signed) - len(self.body)]


def encode_unsigned(message: Message, codecs: CodecRegistry, *, session: str, sequence: int) -> bytes:
    """Prefix, header and body of ``message``'s frame: the bytes its sender signs.

    The codec runs first, so a payload it refuses (NaN, wrong type) raises before anything else.
    """
    codec_fields, body = codecs.get(message.codec).encode(message.payload)
    clash = _RESERVED_HEADER_KEYS & codec_fields.keys()
    if clash:
        raise ValueError(f"codec {message.codec!r} used reserved header keys {sorted(clash)}")
    header = {
        "kind": message.kind,
        "sender": message.sender,
        "receiver": message.receiver,
        "step": message.step,
        "codec": message.codec,
        "meta": dict(message.meta),
        **codec_fields,
    }
    header_bytes = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return encode_raw(header_bytes, body, session=session, sequence=sequence)


def encode_raw(header: bytes, body: bytes, *, session: str, sequence: int) -> bytes:
    """Prefix, ``header`` and ``body`` as given, the header unchecked: what :func:`encode_unsigned`
    writes, and what tests and attack studies use to craft frames (a receiver checks everything)."""
    if not _SESSION.fullmatch(session):
        raise ValueError(f"session id must be 32 lower-case hex digits, got {session!r}")
    if not isinstance(sequence, int) or not 0 <= sequence < 2**64:
        raise ValueError(f"sequence number must be an int in [0, 2**64), got {sequence!r}")
    prefix = _PREFIX.pack(MAGIC, WIRE_VERSION, 0, bytes.fromhex(session), sequence, len(header), len(body))
    return b"".join((prefix, header, body))


def parse_frame(data: bytes) -> ParsedFrame:
    """Split a frame into header, body, signed bytes and signature; WireFormatError if malformed."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireFormatError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < FIXED_OVERHEAD_BYTES:
        raise WireFormatError(f"frame of {len(data)} bytes is shorter than the minimal frame")
    session, sequence, header_len, body_len = _check_prefix(data)
    expected_len = _PREFIX.size + header_len + body_len + SIGNATURE_BYTES
    if len(data) != expected_len:
        raise WireFormatError(
            f"frame length {len(data)} does not match its declared length {expected_len} (truncated or padded)"
        )
    header_end = _PREFIX.size + header_len
    header = _parse_header(data[_PREFIX.size : header_end], session, sequence)
    signed_end = header_end + body_len
    return ParsedFrame(header=header, body=data[header_end:signed_end], signed=data[:signed_end], signature=data[signed_end:])


def decode_payload(frame: ParsedFrame, codecs: CodecRegistry) -> Message:
    """The message a frame carries (call only on a frame :mod:`.framing` admitted)."""
    header = frame.header
    payload = codecs.get(header.codec).decode(header.codec_fields, frame.body)
    return Message(
        kind=header.kind,
        sender=header.sender,
        receiver=header.receiver,
        step=header.step,
        payload=payload,
        codec=header.codec,
        meta=header.meta,
    )


def decode_message(data: bytes, codecs: CodecRegistry) -> Message:
    """The message in a frame, read the way an eavesdropper reads it: parsed and decoded with no
    signature or order check. For observers of the traffic and tests; a receiver only opens frames
    through :class:`~securevfl.protocols.framing.FrameVerifier`."""
    return decode_payload(parse_frame(data), codecs)


def peek_route(data: bytes) -> tuple[str, str]:
    """(kind, sender) of a frame, read from its header without decoding the payload or checking the signature.

    For observers of the traffic (an eavesdropper reads headers); a receiver trusts nothing it
    has not authenticated.
    """
    if len(data) < _PREFIX.size:
        raise WireFormatError("frame too short to hold a header")
    session, sequence, header_len, _ = _check_prefix(bytes(data[: _PREFIX.size]))
    header = _parse_header(bytes(data[_PREFIX.size : _PREFIX.size + header_len]), session, sequence)
    return header.kind, header.sender


def declared_frame(start: bytes) -> tuple[str, str, int]:
    """(kind, sender, total length) a frame declares in its first bytes (prefix and header), before the rest arrives.

    For a receiver reading a large frame in chunks: it checks the claimed sender against the TLS peer and the declared
    length against its limits before it buffers the body. Nothing here is authenticated yet.
    """
    if len(start) < _PREFIX.size:
        raise WireFormatError("frame too short to hold a header")
    session, sequence, header_len, body_len = _check_prefix(bytes(start[: _PREFIX.size]))
    if len(start) < _PREFIX.size + header_len:
        raise WireFormatError("the frame's first chunk does not hold its whole header")
    header = _parse_header(bytes(start[_PREFIX.size : _PREFIX.size + header_len]), session, sequence)
    return header.kind, header.sender, _PREFIX.size + header_len + body_len + SIGNATURE_BYTES


def _check_prefix(data: bytes) -> tuple[str, int, int, int]:
    """(session id, sequence number, header length, body length) of a frame's prefix."""
    magic, version, reserved, session, sequence, header_len, body_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise WireFormatError(f"bad magic {magic!r}: not a securevfl message")
    if version != WIRE_VERSION:
        raise WireFormatError(f"unsupported wire version {version} (this build reads {WIRE_VERSION})")
    if reserved != 0:
        raise WireFormatError("reserved byte is not zero")
    return session.hex(), sequence, header_len, body_len


def _parse_header(raw: bytes, session: str, sequence: int) -> FrameHeader:
    if len(raw) > MAX_HEADER_BYTES:
        raise WireFormatError(f"message header of {len(raw)} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireFormatError(f"message header is not valid JSON: {exc}") from None
    except (RecursionError, ValueError) as exc:  # nesting too deep; integers too long to convert
        raise WireFormatError(f"message header is not a well-formed frame header: {type(exc).__name__}") from None
    if not isinstance(header, dict):
        raise WireFormatError("message header is not a JSON object")
    for key in ("kind", "sender", "receiver", "codec"):
        if not isinstance(header.get(key), str) or not header[key]:
            raise WireFormatError(f"message header field {key!r} is missing or not a string")
    if header["kind"] not in _KINDS:
        raise WireFormatError(f"message header names an unknown kind {header['kind']!r:.80}")
    step = header.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise WireFormatError(f"message header field 'step' is malformed: {step!r:.80}")
    if not isinstance(header.get("meta"), dict):
        raise WireFormatError("message header field 'meta' is missing or not an object")
    return FrameHeader(
        session=session,
        kind=MessageKind(header["kind"]),
        sender=header["sender"],
        receiver=header["receiver"],
        step=step,
        sequence=sequence,
        codec=header["codec"],
        meta=header["meta"],
        codec_fields={k: v for k, v in header.items() if k not in _RESERVED_HEADER_KEYS},
    )
