"""Versioned byte format of an :class:`~securevfl.crypto.tensor.EncryptedTensor`.

Layout (little endian)::

    magic        4s   b"SVCT"
    version      u8   FORMAT_VERSION
    flags        u8   bit 0: payloads are seeded (symmetric) ciphertexts
                      bit 1: padding slots are zero
    layout       u8   0 flat, 1 rows, 2 columns
    dtype        u8   1 float32, 2 float64 (what decrypt returns)
    ndim         u8
    levels_left  u8   multiplicative levels left on every ciphertext
    stride       u32  row/column stride (1 for flat)
    count        u32  number of ciphertexts
    value_bound  f64  worst-case magnitude of any element (precision bookkeeping)
    params       16s  CkksParameters.fingerprint
    key_id       16s  Keyring.key_id of the key pair
    shape        u32 * ndim
    lengths      u32 * count
    payloads     SEAL-serialized ciphertexts (zstd-compressed by SEAL), back to back
    digest       16s  BLAKE2b-128 of everything above

The digest catches corruption and truncation before SEAL parses anything; SEAL's own loader
then validates every ciphertext against the receiving context (``is_valid_for``), which is what
stands between a deliberately forged payload and the evaluator. Parameter fingerprint and key id
make bytes from a foreign parameter set or key pair fail loudly instead of decrypting to noise.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass

import numpy as np

from .errors import SerializationError

__all__ = ["MAGIC", "FORMAT_VERSION", "WireHeader", "encode_tensor_bytes", "decode_tensor_bytes"]

MAGIC = b"SVCT"
FORMAT_VERSION = 1
_FIXED = struct.Struct("<4sBBBBBBIId16s16s")
_DIGEST_BYTES = 16
_MAX_NDIM = 8
FLAG_SEEDED = 1
FLAG_PADDING_CLEAN = 2

DTYPE_CODES = {np.dtype(np.float32): 1, np.dtype(np.float64): 2}
DTYPES_BY_CODE = {code: dtype for dtype, code in DTYPE_CODES.items()}


@dataclass(frozen=True)
class WireHeader:
    flags: int
    layout_code: int
    dtype: np.dtype
    levels_left: int
    stride: int
    value_bound: float
    params_fingerprint: bytes
    key_id: bytes
    shape: tuple[int, ...]


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_DIGEST_BYTES).digest()


def encode_tensor_bytes(header: WireHeader, payloads: list[bytes]) -> bytes:
    fixed = _FIXED.pack(
        MAGIC,
        FORMAT_VERSION,
        header.flags,
        header.layout_code,
        DTYPE_CODES[np.dtype(header.dtype)],
        len(header.shape),
        header.levels_left,
        header.stride,
        len(payloads),
        header.value_bound,
        header.params_fingerprint,
        header.key_id,
    )
    dims = struct.pack(f"<{len(header.shape)}I", *header.shape)
    lengths = struct.pack(f"<{len(payloads)}I", *(len(p) for p in payloads))
    body = b"".join([fixed, dims, lengths, *payloads])
    return body + _digest(body)


def decode_tensor_bytes(data: bytes) -> tuple[WireHeader, list[bytes]]:
    """Parse and integrity-check the envelope. Semantic checks (keys, packing) are the caller's."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SerializationError(f"encrypted tensor must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 4 or data[:4] != MAGIC:
        raise SerializationError(f"not an encrypted tensor: bad magic {data[:4]!r} (expected {MAGIC!r})")
    if len(data) < _FIXED.size + _DIGEST_BYTES:
        raise SerializationError("encrypted tensor bytes are truncated (header incomplete)")
    (_, version, flags, layout_code, dtype_code, ndim, levels, stride, count, bound, fingerprint, key_id) = (
        _FIXED.unpack_from(data)
    )
    if version != FORMAT_VERSION:
        raise SerializationError(
            f"unsupported encrypted-tensor format version {version} (this library reads {FORMAT_VERSION})"
        )
    body, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
    if _digest(body) != digest:
        raise SerializationError("encrypted tensor failed its integrity check (truncated or tampered bytes)")
    if ndim > _MAX_NDIM or dtype_code not in DTYPES_BY_CODE or layout_code > 2 or flags > 3:
        raise SerializationError("encrypted tensor header holds invalid field values")
    if not (math.isfinite(bound) and bound > 0):
        raise SerializationError(f"encrypted tensor header holds an invalid value bound {bound!r}")
    offset = _FIXED.size
    needed = offset + 4 * (ndim + count)
    if needed > len(body):
        raise SerializationError("encrypted tensor bytes are truncated (shape/length table)")
    shape = struct.unpack_from(f"<{ndim}I", body, offset)
    offset += 4 * ndim
    lengths = struct.unpack_from(f"<{count}I", body, offset)
    offset += 4 * count
    if offset + sum(lengths) != len(body):
        raise SerializationError("encrypted tensor payload lengths do not add up to the byte count")
    payloads = []
    for length in lengths:
        payloads.append(body[offset : offset + length])
        offset += length
    header = WireHeader(
        flags=flags,
        layout_code=layout_code,
        dtype=DTYPES_BY_CODE[dtype_code],
        levels_left=levels,
        stride=stride,
        value_bound=bound,
        params_fingerprint=fingerprint,
        key_id=key_id,
        shape=tuple(shape),
    )
    return header, payloads
