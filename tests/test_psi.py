"""Two-party PSI over a channel (securevfl.protocols.psi) and the id-list codec: results checked
against Python's set intersection, every malformed or forged PSI message refused in one line."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import private_set_intersection.python as openmined_psi
import pytest

from securevfl.protocols import CodecRegistry, InProcessChannel, Message, MessageKind, WireFormatError, decode_message
from securevfl.protocols.codecs import IdListCodec
from securevfl.protocols.psi import (
    PSI_CODEC,
    PsiClient,
    PsiMessageError,
    PsiServer,
    SampleIdError,
    validate_ids,
)


def _ids(numbers: list[int]) -> list[str]:
    return [f"customer-{n:07d}" for n in numbers]


def _exchange(client_ids: list[str], server_ids: list[str], rate: float = 1e-9) -> tuple[list[int], PsiClient, PsiServer, str]:
    """Run one exchange; also returns which set form the server's setup used (read off the wire)."""
    hub = InProcessChannel()
    frames: list[bytes] = []
    hub.taps.append(frames.append)
    client, server = PsiClient(client_ids, rate), PsiServer(server_ids)
    client.send_request(hub.endpoint("c"), "c", "s")
    server.serve(hub.endpoint("s"), "s", "c")
    positions = client.receive_intersection(hub.endpoint("c"), "c", "s")
    (setup,) = [m for m in (decode_message(f, CodecRegistry()) for f in frames) if m.kind == MessageKind.PSI_SETUP]
    parsed = openmined_psi.ServerSetup()
    parsed.ParseFromString(setup.payload)
    return positions, client, server, str(parsed.WhichOneof("data_structure"))


@pytest.mark.parametrize(
    ("client_n", "server_n", "overlap"),
    [(200, 200, 200), (300, 120, 60), (50, 400, 10), (150, 150, 0), (1, 300, 1)],
    ids=["full", "partial", "small client", "disjoint", "single id"],
)
def test_the_client_learns_exactly_its_ids_the_server_holds(client_n: int, server_n: int, overlap: int) -> None:
    rng = random.Random(client_n * 7 + server_n)
    shared = rng.sample(range(10**6), overlap)
    client_only = rng.sample(range(10**6, 2 * 10**6), client_n - overlap)
    server_only = rng.sample(range(2 * 10**6, 3 * 10**6), server_n - overlap)
    client_ids = _ids(shared + client_only)
    server_ids = _ids(server_only + shared)
    rng.shuffle(client_ids)
    rng.shuffle(server_ids)

    positions, client, server, structure = _exchange(client_ids, server_ids)

    assert structure == "gcs"
    assert positions == sorted(positions)
    assert {client_ids[p] for p in positions} == set(client_ids) & set(server_ids)
    assert len(positions) == overlap
    assert client.server_size == server_n and server.client_size == client_n  # the sizes each side learns


@pytest.mark.parametrize(
    ("rate", "structure"),
    [(1e-9, "gcs"), (0.0, "raw"), (1e-14, "raw")],
    ids=["default rate: compressed set", "rate 0: exact set", "hash range beyond 64 bits: exact set"],
)
def test_the_server_sends_the_exact_set_when_asked_or_when_the_compressed_one_would_overflow(rate: float, structure: str) -> None:
    rng = random.Random(1)
    client_ids = _ids(rng.sample(range(5000), 300))
    server_ids = _ids(rng.sample(range(5000), 400))  # 300 x 400 / 1e-14 = 1.2e19 ids: beyond the library's int64
    positions, _, _, used = _exchange(client_ids, server_ids, rate)
    assert used == structure
    assert {client_ids[p] for p in positions} == set(client_ids) & set(server_ids)


def _request(ids: list[str], reveal: bool = True) -> bytes:
    return openmined_psi.client.CreateWithNewKey(reveal).CreateRequest(ids).SerializeToString()


def _tampered_request() -> bytes:
    request = openmined_psi.Request()
    request.ParseFromString(_request(_ids([1, 2, 3])))
    request.encrypted_elements[1] = b"\x02" + b"\xff" * 32  # not a point of the curve
    return request.SerializeToString()


BAD_REQUESTS: dict[str, Callable[[], Message]] = {
    "garbage bytes": lambda: Message(MessageKind.PSI_REQUEST, "c", "s", 0, b"\xff\xfe garbage", codec=PSI_CODEC, meta={"false_positive_rate": 1e-9}),
    "an array, not bytes": lambda: Message(MessageKind.PSI_REQUEST, "c", "s", 0, np.zeros(3), codec="ndarray", meta={"false_positive_rate": 1e-9}),
    "point off the curve": lambda: Message(MessageKind.PSI_REQUEST, "c", "s", 0, _tampered_request(), codec=PSI_CODEC, meta={"false_positive_rate": 1e-9}),
    "cardinality only": lambda: Message(MessageKind.PSI_REQUEST, "c", "s", 0, _request(_ids([1]), reveal=False), codec=PSI_CODEC, meta={"false_positive_rate": 1e-9}),
    "no rate": lambda: Message(MessageKind.PSI_REQUEST, "c", "s", 0, _request(_ids([1])), codec=PSI_CODEC),
    "negative rate": lambda: Message(MessageKind.PSI_REQUEST, "c", "s", 0, _request(_ids([1])), codec=PSI_CODEC, meta={"false_positive_rate": -1e-9}),
    "rate of 1": lambda: Message(MessageKind.PSI_REQUEST, "c", "s", 0, _request(_ids([1])), codec=PSI_CODEC, meta={"false_positive_rate": 1}),
    "empty request": lambda: Message(MessageKind.PSI_REQUEST, "c", "s", 0, b"", codec=PSI_CODEC, meta={"false_positive_rate": 1e-9}),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_a_server_refuses_a_malformed_request_in_one_line(case: str) -> None:
    hub = InProcessChannel()
    hub.send(BAD_REQUESTS[case]())
    server = PsiServer(_ids([1, 2, 3]))
    with pytest.raises(PsiMessageError) as caught:
        server.serve(hub.endpoint("s"), "s", "c")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("c's psi_request"), message
    assert hub.pending("c") == 0  # nothing was answered


def test_a_server_answers_one_request_per_key() -> None:
    hub = InProcessChannel()
    server = PsiServer(_ids([1, 2]))
    for _ in range(2):
        PsiClient(_ids([2, 3])).send_request(hub.endpoint("c"), "c", "s")
    server.serve(hub.endpoint("s"), "s", "c")
    with pytest.raises(PsiMessageError, match="second psi_request"):
        server.serve(hub.endpoint("s"), "s", "c")


def _reply(server_ids: list[str], client: PsiClient, hub: InProcessChannel, forge: Callable[[Message, Message], tuple[Message, Message]]) -> None:
    """Let an honest server answer, then replace its two messages with ``forge``'s."""
    honest = InProcessChannel()
    client.send_request(hub.endpoint("c"), "c", "s")
    PsiServer(server_ids).answer(honest.endpoint("s"), "s", hub.receive("s", MessageKind.PSI_REQUEST))
    setup = honest.receive("c", MessageKind.PSI_SETUP)
    response = honest.receive("c", MessageKind.PSI_RESPONSE)
    for message in forge(setup, response):
        hub.send(message)


def _with_payload(message: Message, payload: bytes, meta: dict | None = None) -> Message:
    return Message(message.kind, message.sender, message.receiver, 0, payload, codec=PSI_CODEC, meta=message.meta if meta is None else meta)


def _coarse_setup(setup: Message, response: Message) -> tuple[Message, Message]:
    coarse = openmined_psi.server.CreateWithNewKey(True).CreateSetupMessage(1e-3, 3, _ids([1, 2, 3]), openmined_psi.DataStructure.GCS)
    return _with_payload(setup, coarse.SerializeToString()), response


def _bloom_setup(setup: Message, response: Message) -> tuple[Message, Message]:
    bloom = openmined_psi.server.CreateWithNewKey(True).CreateSetupMessage(1e-12, 3, _ids([1, 2, 3]), openmined_psi.DataStructure.BLOOM_FILTER)
    return _with_payload(setup, bloom.SerializeToString()), response


def _truncated_response(setup: Message, response: Message) -> tuple[Message, Message]:
    parsed = openmined_psi.Response()
    parsed.ParseFromString(response.payload)
    del parsed.encrypted_elements[-1]
    return setup, _with_payload(response, parsed.SerializeToString())


def _corrupted_response(setup: Message, response: Message) -> tuple[Message, Message]:
    parsed = openmined_psi.Response()
    parsed.ParseFromString(response.payload)
    parsed.encrypted_elements[0] = b"junk"
    return setup, _with_payload(response, parsed.SerializeToString())


def _short_exact_setup(setup: Message, response: Message) -> tuple[Message, Message]:
    exact = openmined_psi.server.CreateWithNewKey(True).CreateSetupMessage(0.0, 3, _ids([1, 2]), openmined_psi.DataStructure.RAW)
    return _with_payload(setup, exact.SerializeToString()), response  # 2 elements, 3 ids announced


def _degenerate_setup(setup: Message, response: Message) -> tuple[Message, Message]:
    parsed = openmined_psi.ServerSetup()
    parsed.ParseFromString(setup.payload)
    parsed.gcs.bits = b""
    return _with_payload(setup, parsed.SerializeToString()), response


BAD_REPLIES: dict[str, tuple[Callable[[Message, Message], tuple[Message, Message]], str]] = {
    "coarser than asked": (_coarse_setup, "too coarse"),
    "bloom filter": (_bloom_setup, "Golomb-compressed or an exact set"),
    "exact set short of its ids": (_short_exact_setup, "holds 2 elements but announces 3 ids"),
    "no announced size": (lambda s, r: (_with_payload(s, s.payload, meta={}), r), "set size"),
    "setup garbage": (lambda s, r: (_with_payload(s, b"\xff\xff\xff"), r), "not a well-formed"),
    "degenerate set": (_degenerate_setup, "degenerate"),
    "response one short": (_truncated_response, "answers 2 elements"),
    "response point corrupted": (_corrupted_response, "refused by the PSI library"),
}


@pytest.mark.parametrize("case", sorted(BAD_REPLIES))
def test_a_client_refuses_a_malformed_or_coarse_reply_in_one_line(case: str) -> None:
    forge, reason = BAD_REPLIES[case]
    hub = InProcessChannel()
    client = PsiClient(_ids([1, 2, 4]), 1e-9)
    _reply(_ids([1, 2, 3]), client, hub, forge)
    with pytest.raises(PsiMessageError, match=reason) as caught:
        client.receive_intersection(hub.endpoint("c"), "c", "s")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("ids", "reason"),
    [
        (["a", "b", "a"], "'a' appears at positions 0 and 2"),
        (["a", 7], "must be str, got int 7 at position 1"),
        ([], "has no sample ids"),
        (["a", ""], "position 1 is empty"),
        ({"a", "b"}, "unordered"),
        ("abc", "sequence of str"),
        (["ok", "\udc80"], "not UTF-8 encodable"),
    ],
    ids=["repeated", "not text", "empty list", "empty id", "a set", "a string", "lone surrogate"],
)
def test_unusable_ids_are_refused_in_one_line(ids: object, reason: str) -> None:
    with pytest.raises(SampleIdError, match=reason) as caught:
        validate_ids(ids, "bank")  # type: ignore[arg-type]
    assert str(caught.value).startswith("bank: ") and "\n" not in str(caught.value)


def test_the_id_list_codec_round_trips_any_text() -> None:
    codec = IdListCodec()
    ids = ("a", "é|ü", "with\nnewline", "x" * 1000, "0", "tab\tand,comma")
    header, body = codec.encode(ids)
    assert codec.decode(header, body) == ids
    assert codec.decode(*codec.encode([])) == ()


@pytest.mark.parametrize(
    ("header", "body", "reason"),
    [
        ({"count": 2}, b"\x01\x00\x00\x00a", "declares 2 ids"),
        ({"count": 1}, b"\x05\x00\x00\x00ab", "ends inside id 0"),
        ({"count": 1}, b"\x01\x00\x00\x00ab", "1 bytes after"),
        ({"count": 1}, b"\x01\x00\x00\x00\xff", "not valid UTF-8"),
        ({"count": -1}, b"", "non-negative 'count'"),
        ({"count": 0, "extra": 1}, b"", "exactly a non-negative"),
    ],
    ids=["too few bytes", "truncated id", "trailing bytes", "bad utf-8", "negative count", "extra field"],
)
def test_the_id_list_codec_refuses_malformed_bodies(header: dict, body: bytes, reason: str) -> None:
    with pytest.raises(WireFormatError, match=reason):
        IdListCodec().decode(header, body)
