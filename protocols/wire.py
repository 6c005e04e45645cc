"""The byte frame every message travels in.

Layout (all integers little-endian)::

    magic  b"SVFL"            4 bytes
    version                    1 byte   (WIRE_VERSION)
    reserved                   1 byte   (zero)
    header length              4 bytes
    body length                8 bytes
    header                     UTF-8 JSON: kind, sender, receiver, step, codec, meta, codec fields
    body                       codec-specific payload bytes
    crc32                      4 bytes over everything before it

The CRC catches corruption and truncation, not an adversary: integrity against an active
attacker is the transport's job (TLS for the network channel). Every malformed frame is
rejected with :class:`~securevfl.protocols.errors.WireFormatError` before any payload is decoded.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

from securevfl.protocols.codecs import CodecRegistry
from securevfl.protocols.errors import WireFormatError
from securevfl.protocols.messages import Message, MessageKind

MAGIC = b"SVFL"
WIRE_VERSION = 1
_PREFIX = struct.Struct("<4sBBIQ")
_CRC = struct.Struct("<I")
_KINDS = frozenset(kind.value for kind in MessageKind)
#: No header of the protocol comes near this; a larger one is refused before it is parsed.
MAX_HEADER_BYTES = 64 * 1024
_RESERVED_HEADER_KEYS = {"kind", "sender", "receiver", "step", "codec", "meta"}


def encode_message(message: Message, codecs: CodecRegistry) -> bytes:
    """Frame ``message`` as bytes using the codec it names."""
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
    prefix = _PREFIX.pack(MAGIC, WIRE_VERSION, 0, len(header_bytes), len(body))
    frame = b"".join((prefix, header_bytes, body))
    return frame + _CRC.pack(zlib.crc32(frame))


def decode_message(data: bytes, codecs: CodecRegistry) -> Message:
    """Parse and validate a frame produced by :func:`encode_message`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireFormatError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _PREFIX.size + _CRC.size:
        raise WireFormatError(f"frame of {len(data)} bytes is shorter than the minimal frame")
    magic, version, reserved, header_len, body_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise WireFormatError(f"bad magic {magic!r}: not a securevfl message")
    if version != WIRE_VERSION:
        raise WireFormatError(f"unsupported wire version {version} (this build reads {WIRE_VERSION})")
    if reserved != 0:
        raise WireFormatError("reserved byte is not zero")
    expected_len = _PREFIX.size + header_len + body_len + _CRC.size
    if len(data) != expected_len:
        raise WireFormatError(
            f"frame length {len(data)} does not match its declared length {expected_len} "
            "(truncated or padded)"
        )
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[: -_CRC.size]) != crc:
        raise WireFormatError("checksum mismatch: the message was corrupted or altered")
    header_end = _PREFIX.size + header_len
    header = _parse_header(data[_PREFIX.size : header_end])
    body = data[header_end : header_end + body_len]
    codec_fields = {k: v for k, v in header.items() if k not in _RESERVED_HEADER_KEYS}
    payload = codecs.get(header["codec"]).decode(codec_fields, body)
    return Message(
        kind=header["kind"],
        sender=header["sender"],
        receiver=header["receiver"],
        step=header["step"],
        payload=payload,
        codec=header["codec"],
        meta=header["meta"],
    )


def peek_route(data: bytes) -> tuple[str, str]:
    """(kind, sender) of a frame, read from its header without decoding the payload."""
    if len(data) < _PREFIX.size:
        raise WireFormatError("frame too short to hold a header")
    magic, version, _, header_len, _ = _PREFIX.unpack_from(data)
    if magic != MAGIC or version != WIRE_VERSION:
        raise WireFormatError("not a securevfl message of this wire version")
    header = _parse_header(bytes(data[_PREFIX.size : _PREFIX.size + header_len]))
    return header["kind"], header["sender"]


def _parse_header(raw: bytes) -> dict[str, Any]:
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
        raise WireFormatError(f"message header names an unknown kind {header['kind']!r}")
    step = header.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise WireFormatError(f"message header field 'step' is malformed: {step!r}")
    if not isinstance(header.get("meta"), dict):
        raise WireFormatError("message header field 'meta' is missing or not an object")
    return header
