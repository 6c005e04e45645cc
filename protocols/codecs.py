"""Payload codecs: how a message's payload becomes bytes and back.

The plaintext codec ships dense numpy arrays. Encrypted schemes register their own codec
under another name; the wire frame records which codec wrote a payload, so a receiver
never interprets ciphertext bytes as plaintext or the other way round.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Protocol

import numpy as np

from securevfl.protocols.errors import NonFiniteError, WireFormatError

HeaderFields = dict[str, Any]


class PayloadCodec(Protocol):
    """Turns a payload into (header fields, body bytes) and back, validating on the way in."""

    name: str

    def encode(self, payload: Any) -> tuple[HeaderFields, bytes]: ...

    def decode(self, header: HeaderFields, body: bytes) -> Any: ...


class NdarrayCodec:
    """Dense little-endian numpy arrays of float32, float64 or int64.

    Float payloads containing NaN or infinity are refused at encode time: a non-finite
    activation or gradient means training has already diverged, and shipping it would
    only move the failure somewhere harder to diagnose.
    """

    name = "ndarray"
    allowed_dtypes = ("<f4", "<f8", "<i8")

    def encode(self, payload: Any) -> tuple[HeaderFields, bytes]:
        array = np.asarray(payload)
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype.str not in self.allowed_dtypes:
            raise TypeError(
                f"ndarray codec ships float32, float64 or int64 arrays, got dtype {array.dtype}"
            )
        if dtype.kind == "f" and not np.isfinite(array).all():
            bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
            raise NonFiniteError(f"payload holds {bad} NaN/Inf value(s); refusing to send it")
        body = np.ascontiguousarray(array, dtype=dtype).tobytes()
        return {"dtype": dtype.str, "shape": list(array.shape)}, body

    def decode(self, header: HeaderFields, body: bytes) -> np.ndarray:
        dtype_str = header.get("dtype")
        shape = header.get("shape")
        if dtype_str not in self.allowed_dtypes:
            raise WireFormatError(f"ndarray payload has unsupported dtype {dtype_str!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise WireFormatError(f"ndarray payload has a malformed shape {shape!r}")
        dtype = np.dtype(dtype_str)
        expected = math.prod(shape) * dtype.itemsize
        if len(body) != expected:
            raise WireFormatError(
                f"ndarray payload of shape {tuple(shape)} and dtype {dtype_str} needs "
                f"{expected} bytes, got {len(body)}"
            )
        array = np.frombuffer(body, dtype=dtype).reshape(shape).copy()
        if dtype.kind == "f" and not np.isfinite(array).all():
            raise NonFiniteError("received payload holds NaN/Inf values")
        return array


class BytesCodec:
    """Opaque bytes produced by a higher layer (e.g. serialized ciphertexts).

    The frame still names the codec, so a receiver knows these bytes are, say, CKKS
    ciphertexts and hands them to the key holder rather than reading them as an array.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def encode(self, payload: Any) -> tuple[HeaderFields, bytes]:
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"{self.name} codec ships bytes, got {type(payload).__name__}")
        return {}, bytes(payload)

    def decode(self, header: HeaderFields, body: bytes) -> bytes:
        if header:
            raise WireFormatError(f"{self.name} payload carries unexpected header fields {sorted(header)}")
        return body


class IdListCodec:
    """An ordered list of sample ids (text), e.g. the aligned ids of a private set intersection.

    Body: per id, its UTF-8 length as 4 little-endian bytes, then the UTF-8 bytes; the header
    carries the count. A length-prefixed form rather than a separator, because an id may hold
    any character; a body that does not split into exactly ``count`` well-formed ids is refused.
    """

    name = "ids"
    _LENGTH = struct.Struct("<I")

    def encode(self, payload: Any) -> tuple[HeaderFields, bytes]:
        if isinstance(payload, str | bytes) or not isinstance(payload, list | tuple):
            raise TypeError(f"ids codec ships a list or tuple of str, got {type(payload).__name__}")
        parts = []
        for position, item in enumerate(payload):
            if not isinstance(item, str):
                raise TypeError(f"ids codec ships str ids, got {type(item).__name__} at position {position}")
            try:
                raw = item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"ids codec: id at position {position} is not encodable as UTF-8") from None
            parts += [self._LENGTH.pack(len(raw)), raw]
        return {"count": len(payload)}, b"".join(parts)

    def decode(self, header: HeaderFields, body: bytes) -> tuple[str, ...]:
        count = header.get("count")
        if set(header) != {"count"} or not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise WireFormatError(f"ids payload needs exactly a non-negative 'count' header field, got {header!r}")
        if count * self._LENGTH.size > len(body):
            raise WireFormatError(f"ids payload declares {count} ids but has only {len(body)} bytes")
        ids = []
        offset = 0
        for position in range(count):
            if offset + self._LENGTH.size > len(body):
                raise WireFormatError(f"ids payload ends inside the length of id {position} of {count}")
            (length,) = self._LENGTH.unpack_from(body, offset)
            offset += self._LENGTH.size
            if offset + length > len(body):
                raise WireFormatError(f"ids payload ends inside id {position} of {count}")
            try:
                ids.append(body[offset : offset + length].decode("utf-8"))
            except UnicodeDecodeError:
                raise WireFormatError(f"ids payload: id {position} is not valid UTF-8") from None
            offset += length
        if offset != len(body):
            raise WireFormatError(f"ids payload has {len(body) - offset} bytes after its {count} ids")
        return tuple(ids)


class CodecRegistry:
    """Codecs by name; a channel looks the codec up from the message or the wire header."""

    def __init__(self, codecs: list[PayloadCodec] | None = None) -> None:
        self._codecs: dict[str, PayloadCodec] = {}
        for codec in codecs if codecs is not None else default_codecs():
            self.register(codec)

    def register(self, codec: PayloadCodec) -> None:
        self._codecs[codec.name] = codec

    def get(self, name: str) -> PayloadCodec:
        try:
            return self._codecs[name]
        except KeyError:
            known = ", ".join(sorted(self._codecs)) or "none"
            raise WireFormatError(f"unknown payload codec {name!r} (known: {known})") from None


def default_codecs() -> list[PayloadCodec]:
    """Plain arrays, CKKS ciphertext bytes, key material, private-set-intersection messages (the
    PSI library's own serialized messages) and id lists: what every endpoint understands."""
    return [NdarrayCodec(), BytesCodec("ckks"), BytesCodec("key"), BytesCodec("psi"), IdListCodec()]
