"""Wire format and channel: round trips, accounting, and refusal of malformed frames.

Frames are signed (wire version 2); the authentication rules themselves are tested in
tests/test_protocols_framing.py. Here every frame is sealed by a fresh signer and opened by a
fresh verifier, so each is the first (sequence 0) of its link.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from securevfl.protocols import (
    CodecRegistry,
    FrameAuthenticationError,
    FrameSigner,
    FrameVerifier,
    InProcessChannel,
    Message,
    MessageKind,
    NonFiniteError,
    ProtocolError,
    WireFormatError,
    parse_frame,
)
from securevfl.protocols.identity import SIGNATURE_BYTES
from helpers import signed_session
from securevfl.protocols.wire import PREFIX_BYTES, encode_raw

CODECS, IDENTITIES, ROSTER, SESSION = signed_session()
finite_floats = st.floats(-1e6, 1e6, allow_nan=False, width=32)
arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
    elements=finite_floats,
)


def seal(message: Message) -> bytes:
    return FrameSigner(IDENTITIES[message.sender], SESSION).seal(message, CODECS)


def open_frame(frame: bytes, receiver: str, codecs: CodecRegistry = CODECS) -> Message:
    return FrameVerifier(receiver, ROSTER, SESSION).open(frame, codecs)


def signed_raw(header: bytes, body: bytes, signer: str = "active", session: str = SESSION) -> bytes:
    """A frame with any header bytes, validly signed by a roster party (an insider's hostile frame)."""
    unsigned = encode_raw(header, body, session=session, sequence=0)
    return unsigned + IDENTITIES[signer].sign(unsigned)


@given(payload=arrays, step=st.integers(0, 2**40), kind=st.sampled_from(list(MessageKind)))
def test_round_trip_preserves_payload_and_header(payload: np.ndarray, step: int, kind: str) -> None:
    message = Message(kind, "passive_1", "active", step, payload, meta={"rows": 3})
    frame = seal(message)
    decoded = open_frame(frame, "active")
    assert (decoded.kind, decoded.sender, decoded.receiver, decoded.step) == (kind, "passive_1", "active", step)
    assert decoded.meta == {"rows": 3}
    assert decoded.payload.dtype == payload.dtype and decoded.payload.shape == payload.shape
    np.testing.assert_array_equal(decoded.payload, payload)
    header = parse_frame(frame).header
    assert (header.session, header.sequence) == (SESSION, 0)


@settings(max_examples=200)
@given(data=st.data())
def test_any_single_byte_change_is_refused(data: st.DataObject) -> None:
    frame = bytearray(seal(Message("gradient", "active", "passive_2", 7, np.ones((4, 3), np.float32))))
    position = data.draw(st.integers(0, len(frame) - 1))
    flip = data.draw(st.integers(1, 255))
    frame[position] ^= flip
    with pytest.raises((WireFormatError, FrameAuthenticationError)):
        open_frame(bytes(frame), "passive_2")


@given(cut=st.integers(0, 200))
def test_truncated_or_extended_frames_are_rejected(cut: int) -> None:
    frame = seal(Message("activation", "passive_1", "active", 0, np.zeros((5, 5), np.float32)))
    with pytest.raises(WireFormatError, match="shorter than the minimal frame|does not match its declared length"):
        open_frame(frame[: max(0, len(frame) - 1 - cut)], "active")
    with pytest.raises(WireFormatError, match="does not match its declared length"):
        open_frame(frame + b"\0" * (cut + 1), "active")


def test_foreign_bytes_old_versions_and_unknown_codec_are_rejected() -> None:
    with pytest.raises(WireFormatError, match="bad magic"):
        open_frame(b"GARBAGE-GARBAGE-GARBAGE-GARBAGE" * 4, "active")
    frame = seal(Message("activation", "passive_1", "active", 0, np.zeros(3, np.float32)))
    version_1 = frame[:4] + bytes([1]) + frame[5:]
    with pytest.raises(WireFormatError, match="unsupported wire version 1 \\(this build reads 2\\)"):
        open_frame(version_1, "active")
    with pytest.raises(WireFormatError, match="unknown payload codec"):  # decoded only once admitted
        open_frame(frame, "active", CodecRegistry(codecs=[]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_payloads_never_leave_the_sender(bad: float) -> None:
    channel = InProcessChannel()
    payload = np.zeros((2, 2), np.float32)
    payload[1, 0] = bad
    with pytest.raises(NonFiniteError, match="NaN/Inf"):
        channel.send(Message("activation", "p", "a", 0, payload))
    assert channel.pending("a") == 0 and channel.stats.total_bytes == 0
    channel.send(Message("activation", "p", "a", 0, np.zeros((2, 2), np.float32)))  # the refused send used up no sequence number
    assert channel.receive("a", "activation").sender == "p" and channel.refusals == []


def test_channel_delivers_copies_and_accounts_the_signed_frames_bytes() -> None:
    channel = InProcessChannel()
    frames: list[bytes] = []
    channel.taps.append(frames.append)
    payload = np.arange(6, dtype=np.float32).reshape(2, 3)
    channel.send(Message("activation", "passive_1", "active", 0, payload))
    channel.send(Message("gradient", "active", "passive_1", 0, payload * 2))
    received = channel.receive("active", "activation", sender="passive_1").payload
    payload[0, 0] = 99  # the receiver holds its own copy
    assert received[0, 0] == 0
    np.testing.assert_array_equal(channel.receive("passive_1", "gradient").payload, np.arange(6).reshape(2, 3) * 2)
    stats = channel.stats.to_dict()
    assert stats["messages_by_kind"] == {"activation": 1, "gradient": 1}
    # counted from the actual frames: 24 payload bytes, the header and the 64-byte signature
    assert stats["bytes_by_kind"] == {"activation": len(frames[0]), "gradient": len(frames[1])}
    assert all(len(frame) > 24 + SIGNATURE_BYTES for frame in frames)
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


def test_unknown_kinds_are_refused_when_built_and_when_parsed() -> None:
    with pytest.raises(ValueError, match="not a protocol message kind"):
        Message("activations", "p", "a", 0, np.zeros(2, np.float32))
    frame = parse_frame(seal(Message(MessageKind.GRADIENT, "active", "passive_1", 0, np.zeros(2, np.float32))))
    header = json.loads(frame.header_bytes)
    forged = signed_raw(json.dumps({**header, "kind": "gradientX"}).encode(), frame.body)
    with pytest.raises(WireFormatError, match="unknown kind 'gradientX'"):
        open_frame(forged, "passive_1")


def _mutate(frame: bytearray, rng: np.random.Generator) -> bytearray:
    for _ in range(int(rng.integers(1, 6))):
        action = rng.integers(0, 4)
        position = int(rng.integers(0, len(frame)))
        if action == 0:
            frame[position] ^= 1 << int(rng.integers(0, 8))
        elif action == 1:
            frame = frame[: max(1, position)]
        elif action == 2:
            frame[position:position] = rng.integers(0, 256, size=int(rng.integers(1, 9))).astype(np.uint8).tobytes()
        elif len(frame) > PREFIX_BYTES:  # a character of the JSON header (it starts after the prefix)
            frame[PREFIX_BYTES + position % (len(frame) - PREFIX_BYTES)] = ord(rng.choice(list('{}[]",:0123456789-e')))
    return frame


def test_two_thousand_mutated_frames_raise_only_the_wire_layers_errors() -> None:
    """Random flips, cuts and splices. Half are re-signed by the genuine sender (an insider's
    malformed frames), so the header and payload checks must hold without the signature's help."""
    rng = np.random.default_rng(2026)
    seeds = [
        seal(Message(MessageKind.GRADIENT, "active", "passive_1", 3, rng.normal(size=(4, 3)).astype(np.float32))),
        seal(Message(MessageKind.DECRYPT_REQUEST, "passive_1", "coordinator", 9, b"\x01\x02" * 40, codec="ckks", meta={"what": "x"})),
    ]
    receivers, signers = ["passive_1", "coordinator"], ["active", "passive_1"]
    outcomes = {"admitted": 0, "wire": 0, "authentication": 0, "non_finite": 0}
    for trial in range(2000):
        frame = _mutate(bytearray(seeds[trial % 2]), rng)
        resigned = trial % 4 >= 2 and len(frame) > SIGNATURE_BYTES
        if resigned:
            body = bytes(frame[:-SIGNATURE_BYTES])
            frame = bytearray(body + IDENTITIES[signers[trial % 2]].sign(body))
        try:
            open_frame(bytes(frame), receivers[trial % 2])
            assert resigned or bytes(frame) == seeds[trial % 2], "a mutated frame was admitted without a valid signature"
            outcomes["admitted"] += 1
        except WireFormatError:
            outcomes["wire"] += 1
        except FrameAuthenticationError:
            outcomes["authentication"] += 1
        except NonFiniteError:  # only an authentic frame gets its payload decoded
            assert resigned, "a payload was decoded from a frame nobody signed"
            outcomes["non_finite"] += 1
    assert outcomes["wire"] + outcomes["authentication"] > 1900, outcomes
    assert outcomes["authentication"] > 50 and outcomes["wire"] > 1000, outcomes  # both layers were exercised


@pytest.mark.parametrize(
    "header",
    [
        b"[" * 20000 + b"]" * 20000,  # nesting deep enough for a RecursionError below
        b'{"kind":"gradient","sender":"active","receiver":"passive_1","step":1' + b"0" * 5000 + b',"codec":"ndarray","meta":{}}',
        b"[" * 40000 + b"]" * 40000,  # larger than any header the protocol writes
        b'{"kind":"gradient","sender":"active","receiver":"passive_1","step":1,"codec":"ndarray","meta":{},'
        b'"dtype":"<f4","shape":[1000000000,1000000000]}',
        b'{"kind":"gradient","sender":"active","receiver":"passive_1","step":-1,"codec":"ndarray","meta":{}}',
        b'{"kind":"gradient","sender":"active","receiver":"passive_1","step":true,"codec":"ndarray","meta":{}}',
        b'{"kind":"gradient","sender":"active","receiver":"passive_1","step":1,"codec":"ndarray","meta":[]}',
    ],
    ids=["deep", "huge-integer", "oversized", "absurd-shape", "negative-step", "boolean-step", "meta-not-an-object"],
)
def test_hostile_headers_are_wire_errors_even_when_signed(header: bytes) -> None:
    """Signed by a roster party, so nothing but the header and payload checks stand in the way."""
    with pytest.raises(WireFormatError):
        open_frame(signed_raw(header, b"\x00" * 24), "passive_1")
