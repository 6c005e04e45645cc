"""Payload codecs: how a message's payload becomes bytes and back.

The plaintext codec ships dense numpy arrays. Encrypted schemes register their own codec
under another name; the wire frame records which codec wrote a payload, so a receiver
never interprets ciphertext bytes as plaintext or the other way round.
"""

from __future__ import annotations

import math
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
    """Plain arrays, CKKS ciphertext bytes and key material: what every endpoint understands."""
    return [NdarrayCodec(), BytesCodec("ckks"), BytesCodec("key")]
