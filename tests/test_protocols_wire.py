"""Wire format and channel: round trips, accounting, and refusal of malformed frames."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from securevfl.protocols import (
    CodecRegistry,
    InProcessChannel,
    Message,
    MessageKind,
    NonFiniteError,
    ProtocolError,
    WireFormatError,
    decode_message,
    encode_message,
)

CODECS = CodecRegistry()
finite_floats = st.floats(-1e6, 1e6, allow_nan=False, width=32)
arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
    elements=finite_floats,
)


@given(payload=arrays, step=st.integers(0, 2**40), kind=st.sampled_from(list(MessageKind)))
def test_round_trip_preserves_payload_and_header(payload: np.ndarray, step: int, kind: str) -> None:
    message = Message(kind, "passive_1", "active", step, payload, meta={"rows": 3})
    decoded = decode_message(encode_message(message, CODECS), CODECS)
    assert (decoded.kind, decoded.sender, decoded.receiver, decoded.step) == (kind, "passive_1", "active", step)
    assert decoded.meta == {"rows": 3}
    assert decoded.payload.dtype == payload.dtype and decoded.payload.shape == payload.shape
    np.testing.assert_array_equal(decoded.payload, payload)


@settings(max_examples=200)
@given(data=st.data())
def test_any_single_byte_change_is_rejected(data: st.DataObject) -> None:
    frame = bytearray(encode_message(Message("gradient", "active", "passive_2", 7, np.ones((4, 3), np.float32)), CODECS))
    position = data.draw(st.integers(0, len(frame) - 1))
    flip = data.draw(st.integers(1, 255))
    frame[position] ^= flip
    with pytest.raises(WireFormatError):
        decode_message(bytes(frame), CODECS)


@given(cut=st.integers(0, 200))
def test_truncated_or_extended_frames_are_rejected(cut: int) -> None:
    frame = encode_message(Message("activation", "p", "a", 0, np.zeros((5, 5), np.float32)), CODECS)
    with pytest.raises(WireFormatError):
        decode_message(frame[: max(0, len(frame) - 1 - cut)], CODECS)
    with pytest.raises(WireFormatError):
        decode_message(frame + b"\0" * (cut + 1), CODECS)


def test_foreign_bytes_and_unknown_codec_are_rejected() -> None:
    with pytest.raises(WireFormatError, match="magic"):
        decode_message(b"GARBAGE-GARBAGE-GARBAGE-GARBAGE", CODECS)
    message = Message("activation", "p", "a", 0, np.zeros(3, np.float32))
    frame = encode_message(message, CODECS)
    with pytest.raises(WireFormatError, match="unknown payload codec"):
        decode_message(frame, CodecRegistry(codecs=[]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_payloads_never_leave_the_sender(bad: float) -> None:
    channel = InProcessChannel()
    payload = np.zeros((2, 2), np.float32)
    payload[1, 0] = bad
    with pytest.raises(NonFiniteError, match="NaN/Inf"):
        channel.send(Message("activation", "p", "a", 0, payload))
    assert channel.pending("a") == 0 and channel.stats.total_bytes == 0


def test_channel_delivers_copies_and_accounts_bytes_per_kind() -> None:
    channel = InProcessChannel()
    payload = np.arange(6, dtype=np.float32).reshape(2, 3)
    channel.send(Message("activation", "passive_1", "active", 0, payload))
    channel.send(Message("gradient", "active", "passive_1", 0, payload * 2))
    received = channel.receive("active", "activation", sender="passive_1").payload
    payload[0, 0] = 99  # the receiver holds its own copy
    assert received[0, 0] == 0
    np.testing.assert_array_equal(channel.receive("passive_1", "gradient").payload, np.arange(6).reshape(2, 3) * 2)
    stats = channel.stats.to_dict()
    assert stats["messages_by_kind"] == {"activation": 1, "gradient": 1}
    # 24 payload bytes + frame overhead per message, counted from the actual frames
    assert all(n > 24 for n in stats["bytes_by_kind"].values())
    assert channel.stats.total_bytes == sum(stats["bytes_by_kind"].values())


def test_channel_enforces_expected_kind_and_sender() -> None:
    channel = InProcessChannel()
    with pytest.raises(ProtocolError, match="none is queued"):
        channel.receive("active", "activation")
    channel.send(Message("gradient", "active", "passive_1", 0, np.zeros(2, np.float32)))
    with pytest.raises(ProtocolError, match="expected a 'activation'"):
        channel.receive("passive_1", "activation")
    channel.send(Message("gradient", "active", "passive_1", 1, np.zeros(2, np.float32)))
    with pytest.raises(ProtocolError, match="from 'coordinator'"):
        channel.receive("passive_1", "gradient", sender="coordinator")


def test_unknown_kinds_are_refused_when_built_and_when_decoded() -> None:
    with pytest.raises(ValueError, match="not a protocol message kind"):
        Message("activations", "p", "a", 0, np.zeros(2, np.float32))
    frame = encode_message(Message(MessageKind.GRADIENT, "p", "a", 0, np.zeros(2, np.float32)), CODECS)
    forged = frame.replace(b'"kind":"gradient"', b'"kind":"gradientX"')
    header_len = int.from_bytes(forged[6:10], "little") + 1
    forged = forged[:6] + header_len.to_bytes(4, "little") + forged[10:-4]
    forged += zlib.crc32(forged).to_bytes(4, "little")
    with pytest.raises(WireFormatError, match="unknown kind 'gradientX'"):
        decode_message(forged, CODECS)


def test_two_thousand_mutated_frames_raise_only_the_wire_layers_errors() -> None:
    """Random flips, cuts and splices, with the checksum recomputed half the time so the parser goes deeper."""
    rng = np.random.default_rng(2026)
    seeds = [
        encode_message(Message(MessageKind.GRADIENT, "active", "passive_1", 3, rng.normal(size=(4, 3)).astype(np.float32)), CODECS),
        encode_message(Message(MessageKind.DECRYPT_REQUEST, "passive_1", "coordinator", 9, b"\x01\x02" * 40, codec="ckks", meta={"what": "x"}), CODECS),
    ]
    outcomes = {"decoded": 0, "refused": 0}
    for trial in range(2000):
        frame = bytearray(seeds[trial % 2])
        for _ in range(int(rng.integers(1, 6))):
            action = rng.integers(0, 4)
            position = int(rng.integers(0, len(frame)))
            if action == 0:
                frame[position] ^= 1 << int(rng.integers(0, 8))
            elif action == 1:
                frame = frame[: max(1, position)]
            elif action == 2:
                frame[position:position] = rng.integers(0, 256, size=int(rng.integers(1, 9))).astype(np.uint8).tobytes()
            elif len(frame) > 18:  # a character of the JSON header (it starts after the 18-byte prefix)
                frame[18 + position % (len(frame) - 18)] = ord(rng.choice(list('{}[]",:0123456789-e')))
        if trial % 2 and len(frame) > 22:  # a well-formed checksum: the header and payload checks must hold alone
            body = bytes(frame[:-4])
            frame = bytearray(body + zlib.crc32(body).to_bytes(4, "little"))
        try:
            decode_message(bytes(frame), CODECS)
            outcomes["decoded"] += 1
        except ProtocolError:  # WireFormatError, NonFiniteError: the documented ones
            outcomes["refused"] += 1
    assert outcomes["refused"] > 1500, outcomes


@pytest.mark.parametrize(
    "header",
    [
        b"[" * 20000 + b"]" * 20000,  # nesting deep enough for a RecursionError below
        b'{"kind":"gradient","sender":"a","receiver":"b","step":1' + b"0" * 5000 + b',"codec":"ndarray","meta":{}}',
        b"[" * 40000 + b"]" * 40000,  # larger than any header the protocol writes
        b'{"kind":"gradient","sender":"a","receiver":"b","step":1,"codec":"ndarray","meta":{},"dtype":"<f4","shape":[1000000000,1000000000]}',
    ],
    ids=["deep", "huge-integer", "oversized", "absurd-shape"],
)
def test_hostile_headers_are_wire_errors(header: bytes) -> None:
    body = b"\x00" * 24
    frame = struct.pack("<4sBBIQ", b"SVFL", 1, 0, len(header), len(body)) + header + body
    with pytest.raises(WireFormatError):
        decode_message(frame + zlib.crc32(frame).to_bytes(4, "little"), CODECS)
