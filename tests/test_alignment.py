"""Private sample alignment (securevfl.alignment): every party ends with rows whose ids agree
position by position, equal to Python's set intersection; no party receives an id outside the
intersection in plaintext; the same party code runs on a blocking, one-thread-per-party channel;
bad ids and forged alignment messages are refused in one line."""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import threading
import time
from collections.abc import Collection, Mapping

import numpy as np
import pytest

from securevfl.alignment import (
    DECOY_FRACTION,
    MIN_DECOYS,
    AlignmentError,
    alignment_tag,
    AlignmentMessageError,
    EmptyIntersectionError,
    PassiveAlignment,
    align_as_active,
    align_as_passive,
    align_in_process,
    ids_digest,
)
from securevfl.errors import DataError
from securevfl.protocols import CodecRegistry, InProcessChannel, Message, MessageKind, ProtocolError, decode_message
from securevfl.protocols.psi import PSI_CODEC, PsiClient

KEY = b"k" * 32


def _ids(numbers: Collection[int], rng: random.Random) -> list[str]:
    """Distinctive ids (a plaintext one can be found in a frame by substring), in a random row order."""
    ids = [f"patient-{n:08d}" for n in numbers]
    rng.shuffle(ids)
    return ids


def _scenario(sizes: Mapping[str, int], shared: int, seed: int) -> dict[str, list[str]]:
    """``shared`` ids every party holds plus ids of each party's own (some shared with one other party)."""
    rng = random.Random(seed)
    pool = iter(rng.sample(range(10**7), 10 * sum(sizes.values())))
    common = [next(pool) for _ in range(shared)]
    pairwise = [next(pool) for _ in range(30)]  # held by the active party and one passive only
    parties = {}
    for index, (name, size) in enumerate(sizes.items()):
        extra = pairwise[index % 2 * 15 : index % 2 * 15 + 15] if name != "active" else pairwise
        own = [*common, *extra][:size]
        own += [next(pool) for _ in range(size - len(own))]
        parties[name] = _ids(own, rng)
    return parties


def _expected_order(ids: set[str]) -> list[str]:
    """The agreed order computed independently: HMAC-SHA256 under the alignment's key."""
    return sorted(ids, key=lambda i: hmac.new(KEY, i.encode(), hashlib.sha256).digest())


def _assert_aligned(parties: Mapping[str, list[str]], results: Mapping) -> None:  # type: ignore[type-arg]
    expected = set.intersection(*(set(ids) for ids in parties.values()))
    order = _expected_order(expected)
    assert set(results) == set(parties)
    for name, ids in parties.items():
        result = results[name]
        assert result.rows.dtype == np.int64 and len(set(result.rows.tolist())) == len(result.rows)
        assert [ids[row] for row in result.rows] == order, name  # its own rows, position by position
        assert list(result.ids) == order
        assert result.take(np.array(ids)).tolist() == order


@pytest.mark.parametrize(
    ("sizes", "shared"),
    [
        ({"active": 300, "bank": 300, "insurer": 300}, 300),
        ({"active": 250, "bank": 400, "insurer": 120}, 80),
        ({"active": 60, "bank": 500}, 40),
        ({"active": 500, "bank": 90, "insurer": 200, "telco": 150}, 50),
        ({"active": 100, "bank": 100, "insurer": 100}, 1),
    ],
    ids=["full overlap", "different sizes", "one passive", "three passives", "one shared id"],
)
def test_every_party_gets_the_set_intersection_in_one_order(sizes: dict[str, int], shared: int) -> None:
    parties = _scenario(sizes, shared, seed=sum(sizes.values()) + shared)
    results = align_in_process(parties, order_key=KEY)
    _assert_aligned(parties, results)
    active = results["active"]
    for name, ids in parties.items():
        if name == "active":
            continue
        # what each side learned beyond the intersection: set sizes and, for the active party, A ∩ Pi
        assert active.peer_set_sizes[name] == len(ids)
        assert active.pairwise_intersection_sizes[name] == len(set(parties["active"]) & set(ids))
        # what a passive learns of the active party is its request's size: its ids and the decoys
        decoys = max(MIN_DECOYS, math.ceil(DECOY_FRACTION * len(parties["active"])))
        assert results[name].peer_set_sizes == {"active": len(parties["active"]) + decoys}
        assert results[name].pairwise_intersection_sizes == {}


def test_the_order_depends_on_the_key_only_not_on_row_order() -> None:
    parties = _scenario({"active": 200, "bank": 200}, 150, seed=3)
    first = align_in_process(parties, order_key=KEY)["bank"].ids
    reordered = {name: random.Random(9).sample(ids, len(ids)) for name, ids in parties.items()}
    assert align_in_process(reordered, order_key=KEY)["bank"].ids == first
    fresh = align_in_process(parties)  # a random key per alignment
    assert set(fresh["bank"].ids) == set(first) and fresh["bank"].ids != first
    assert fresh["active"].ids == fresh["bank"].ids


@pytest.mark.parametrize(
    "parties",
    [
        {"active": ["patient-1", "patient-2"], "bank": ["patient-3", "patient-4"]},
        {"active": ["patient-1", "patient-2"], "bank": ["patient-1", "patient-2"], "insurer": ["patient-9"]},
        {"active": ["patient-1", "patient-2"], "bank": ["patient-1"], "insurer": ["patient-2"]},
    ],
    ids=["no overlap", "one passive disjoint", "pairwise overlaps only"],
)
def test_an_empty_intersection_is_refused_in_one_line(parties: dict[str, list[str]]) -> None:
    with pytest.raises(EmptyIntersectionError) as caught:
        align_in_process(parties)
    message = str(caught.value)
    assert "no sample id is held by every party" in message and "\n" not in message
    assert isinstance(caught.value, DataError)


def _frames_by_receiver(hub: InProcessChannel) -> dict[str, list[bytes]]:
    delivered: dict[str, list[bytes]] = {}
    codecs = CodecRegistry()
    hub.taps.append(lambda frame: delivered.setdefault(decode_message(frame, codecs).receiver, []).append(frame))
    return delivered


def test_no_party_receives_an_id_outside_the_intersection_in_plaintext() -> None:
    parties = _scenario({"active": 200, "bank": 260, "insurer": 150}, 60, seed=11)
    hub = InProcessChannel()
    delivered = _frames_by_receiver(hub)
    results = align_in_process(parties, order_key=KEY, channel=hub)
    intersection = set(results["active"].ids)
    outside = set().union(*map(set, parties.values())) - intersection
    # ids the active party shares with one passive only exist, and must still not reach that passive
    assert min(results["active"].pairwise_intersection_sizes.values()) > len(intersection)
    codecs = CodecRegistry()
    for receiver, frames in delivered.items():
        kinds = set()
        for frame in frames:
            message = decode_message(frame, codecs)
            kinds.add(message.kind)
            leaked = [i for i in outside if i.encode() in frame]
            assert leaked == [], f"{receiver} received {len(leaked)} id(s) outside the intersection in a {message.kind}"
            assert not any(i.encode() in frame for i in intersection)  # no frame carries an id in plaintext, the alignment included
            if message.kind == MessageKind.ALIGNMENT:  # the intersection's tags under this passive's own key, in the agreed order
                key = bytes.fromhex(str(message.meta["tag_key"]))
                assert message.payload == tuple(alignment_tag(key, i) for i in results["active"].ids)
        expected = {MessageKind.PSI_REQUEST, MessageKind.ALIGNMENT} if receiver != "active" else {
            MessageKind.PSI_SETUP, MessageKind.PSI_RESPONSE, MessageKind.ALIGNMENT_ACK}
        assert kinds == expected, receiver
    # the check sees what a frame carries: the bank's alignment frame holds every tag as text
    bank_alignment = [decode_message(f, codecs) for f in delivered["bank"] if decode_message(f, codecs).kind == MessageKind.ALIGNMENT][0]
    assert all(any(str(tag).encode() in f for f in delivered["bank"]) for tag in bank_alignment.payload)
    assert results["bank"].ids == results["active"].ids  # and the bank still ends with the ids themselves, its own


class BlockingChannel:
    """A network transport's behaviour in one process: one thread per party, ``receive`` waits."""

    def __init__(self) -> None:
        self.hub = InProcessChannel()
        self.stats = self.hub.stats
        self._arrived = threading.Condition()

    def send(self, message: Message) -> None:
        with self._arrived:
            self.hub.send(message)
            self._arrived.notify_all()

    def receive(self, receiver: str, kind: MessageKind, sender: str | None = None) -> Message:
        deadline = time.monotonic() + 30
        with self._arrived:
            while True:
                try:
                    return self.hub.receive(receiver, kind, sender)
                except ProtocolError as exc:
                    if type(exc) is not ProtocolError or time.monotonic() > deadline:  # a real refusal, or a hang
                        raise
                self._arrived.wait(0.5)

    def poll(self, receiver: str, kinds: Collection[MessageKind]) -> Message | None:
        with self._arrived:
            return self.hub.poll(receiver, kinds)


def test_the_party_functions_run_one_thread_per_party_on_a_blocking_channel() -> None:
    parties = _scenario({"active": 220, "bank": 180, "insurer": 240}, 70, seed=5)
    channel = BlockingChannel()
    results: dict[str, object] = {}

    def passive(name: str) -> None:
        try:
            results[name] = align_as_passive(channel, name, "active", parties[name])
        except Exception as exc:  # reported by the assertion below
            results[name] = exc

    threads = [threading.Thread(target=passive, args=(name,)) for name in ("bank", "insurer")]
    for thread in threads:
        thread.start()
    results["active"] = align_as_active(channel, "active", ["bank", "insurer"], parties["active"], order_key=KEY)
    for thread in threads:
        thread.join(timeout=30)
    _assert_aligned(parties, results)
    assert channel.stats.messages_by_kind[MessageKind.ALIGNMENT_ACK] == 2


@pytest.mark.parametrize(
    ("parties", "reason"),
    [
        ({"active": ["a", "b", "a"], "bank": ["a"]}, "active: sample id 'a' appears at positions 0 and 2"),
        ({"active": ["a", "b"], "bank": [1, 2]}, "bank: sample ids must be str, got int 1"),
        ({"active": ["a"], "bank": []}, "bank: has no sample ids"),
        ({"active": ["a"]}, "at least one passive party"),
        ({"bank": ["a"], "insurer": ["a"]}, "the active party 'active' included"),
    ],
    ids=["repeated id", "numbers", "no ids", "no passive", "no active"],
)
def test_unusable_input_is_refused_in_one_line_before_any_message(parties: dict, reason: str) -> None:
    hub = InProcessChannel()
    with pytest.raises(AlignmentError, match=reason) as caught:
        align_in_process(parties, channel=hub)
    assert "\n" not in str(caught.value) and isinstance(caught.value, DataError)
    assert hub.stats.total_bytes == 0


def test_a_short_order_key_is_refused() -> None:
    with pytest.raises(AlignmentError, match="at least 16 bytes"):
        align_in_process({"active": ["a"], "bank": ["a"]}, order_key=b"short")


def _passive_after_psi(ids: list[str]) -> tuple[InProcessChannel, PassiveAlignment]:
    """A bank that has answered the active party's PSI request (so an alignment may come next)."""
    hub = InProcessChannel()
    bank = PassiveAlignment(hub.endpoint("bank"), "bank", "active", ids)
    PsiClient(["x-1", "x-2"]).send_request(hub.endpoint("active"), "active", "bank")
    assert bank.serve_pending()
    return hub, bank


TAG_KEY = bytes(range(32))


def _alignment(ids: object, sender: str = "active", codec: str = "ids", tag_key: object = TAG_KEY.hex()) -> Message:
    """An alignment naming ``ids`` by their tags under ``TAG_KEY`` (any other payload as it is)."""
    payload = tuple(alignment_tag(TAG_KEY, i) if isinstance(i, str) else i for i in ids) if isinstance(ids, tuple) else ids
    meta = {} if tag_key is None else {"tag_key": tag_key}
    return Message(MessageKind.ALIGNMENT, sender, "bank", 0, payload, codec=codec, meta=meta)


@pytest.mark.parametrize(
    ("message", "error", "reason"),
    [
        (_alignment(("x-1", "x-9")), AlignmentMessageError, "1 id\\(s\\) bank does not hold \\(first at position 1\\)"),
        (_alignment(("x-1", "x-1")), AlignmentMessageError, "repeats an id"),
        (_alignment(("x-1",), sender="insurer"), AlignmentMessageError, "only from the active party"),
        (_alignment(np.zeros(2), codec="ndarray"), AlignmentMessageError, "must carry a tag list"),
        (_alignment(()), EmptyIntersectionError, "reports that no sample id is held by every party"),
        (_alignment(("x-1",), tag_key=None), AlignmentMessageError, "carries no tag key"),
        (_alignment(("x-1",), tag_key="zz" * 32), AlignmentMessageError, "carries no tag key"),
    ],
    ids=["id not held", "repeated id", "wrong sender", "wrong codec", "empty", "no tag key", "bad tag key"],
)
def test_a_passive_refuses_a_forged_alignment_in_one_line(message: Message, error: type, reason: str) -> None:
    hub, bank = _passive_after_psi(["x-1", "x-2", "x-3"])
    hub.send(message)
    with pytest.raises(error, match=reason) as caught:
        bank.serve_pending()
    assert "\n" not in str(caught.value)
    assert bank.result is None and hub.pending("active") == 2  # only the PSI setup and response: no confirmation
    assert "x-9" not in str(caught.value)  # the error does not repeat the foreign id


def test_a_passive_refuses_an_alignment_before_the_psi_and_a_second_one() -> None:
    hub = InProcessChannel()
    bank = PassiveAlignment(hub.endpoint("bank"), "bank", "active", ["x-1"])
    hub.send(_alignment(("x-1",)))
    with pytest.raises(AlignmentMessageError, match="before answering"):
        bank.serve_pending()
    hub, bank = _passive_after_psi(["x-1", "x-2"])
    hub.send(_alignment(("x-2",)))
    hub.send(_alignment(("x-1",)))
    with pytest.raises(AlignmentMessageError, match="second alignment"):
        bank.serve_pending()
    assert bank.result is not None and bank.result.ids == ("x-2",)


def test_the_active_party_refuses_a_confirmation_of_another_list() -> None:
    hub = InProcessChannel()

    class LyingBank:
        name = "bank"

        def __init__(self) -> None:
            self.honest = PassiveAlignment(hub.endpoint("bank"), "bank", "active", ["x-1", "x-2"])

        def serve_pending(self) -> bool:
            request = hub.poll("bank", (MessageKind.PSI_REQUEST,))
            if request is not None:
                self.honest.handle(request)
                return True
            if hub.poll("bank", (MessageKind.ALIGNMENT,)) is not None:
                hub.send(Message(MessageKind.ALIGNMENT_ACK, "bank", "active", 0, ids_digest(["x-2", "x-1"]), codec=PSI_CODEC))
                return True
            return False

    hub.attach_server(LyingBank())
    with pytest.raises(AlignmentMessageError, match="does not confirm the 2 ids"):
        align_as_active(hub.endpoint("active"), "active", ["bank"], ["x-1", "x-2", "x-3"], order_key=KEY)


@pytest.mark.parametrize("doctoring", ["every element its answer to one held id", "elements shuffled", "60 positions swapped"])
def test_a_passive_that_doctors_its_psi_answer_is_caught_by_the_decoys_before_any_tag_is_sent(doctoring: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Red-team passes on the transport (2026-11-27): the active party takes the PSI's answer on trust, so a passive that
    doctors its PSI_RESPONSE made it believe the passive held ids it does not, and then received them (in plaintext;
    then, as tags with their key, which it can test guessable ids against offline: 10^6 decimal ids in 3 s). Each
    request now hides random decoy ids nobody holds among the active party's: a doctored answer claims some, and the
    active party stops before any id or tag leaves it. Swapping positions: each is a decoy with probability >= 1/5."""
    import private_set_intersection.python as openmined_psi

    rng = random.Random(7)
    universe = [f"{rng.randrange(10**6):06d}" for _ in range(600)]  # guessable ids: decimal customer numbers
    universe = list(dict.fromkeys(universe))[:550]
    active_ids, insurer_ids, retailer_ids = universe[:400], universe[200:500], universe[:120] + universe[300:360]
    # the request's order is random (the passive cannot tell decoys by position); here it is kept, decoys last, so that
    # the repeated answer is one of a held id (position 0), the strongest form of that doctoring
    monkeypatch.setattr(random.SystemRandom, "shuffle", lambda self, order: None)
    active_ids = sorted(active_ids, key=lambda i: i not in insurer_ids)
    channel = BlockingChannel()
    outcome: dict[str, object] = {}

    def active() -> None:
        try:
            outcome["active"] = align_as_active(channel, "active", ["insurer", "retailer"], active_ids, order_key=KEY)
        except Exception as exc:  # noqa: BLE001 - inspected below
            outcome["active"] = exc

    def retailer() -> None:
        try:
            align_as_passive(channel, "retailer", "active", retailer_ids)
        except Exception:  # noqa: BLE001 - it waits for an alignment that never comes
            pass

    def doctoring_insurer() -> None:
        request_message = channel.receive("insurer", MessageKind.PSI_REQUEST, sender="active")
        request = openmined_psi.Request()
        request.ParseFromString(request_message.payload)
        server = openmined_psi.server.CreateWithNewKey(True)
        response = server.ProcessRequest(request)
        elements = list(response.encrypted_elements)
        if doctoring.startswith("every"):
            forged = [elements[0]] * len(elements)
        elif doctoring.startswith("elements"):
            forged = rng.sample(elements, len(elements))
        else:  # swap 60 random positions with the answer at another random position
            forged = list(elements)
            for position in rng.sample(range(len(elements)), 60):
                forged[position] = elements[rng.randrange(len(elements))]
        del response.encrypted_elements[:]
        response.encrypted_elements.extend(forged)
        rate = request_message.meta["false_positive_rate"]
        setup = server.CreateSetupMessage(rate, len(elements), insurer_ids, openmined_psi.DataStructure.GCS)
        channel.send(Message(MessageKind.PSI_SETUP, "insurer", "active", 0, setup.SerializeToString(), codec=PSI_CODEC, meta={"ids": len(insurer_ids)}))
        channel.send(Message(MessageKind.PSI_RESPONSE, "insurer", "active", 0, response.SerializeToString(), codec=PSI_CODEC))

    threads = [threading.Thread(target=target, daemon=True) for target in (active, retailer, doctoring_insurer)]
    for thread in threads:
        thread.start()
    threads[0].join(60)
    error = outcome["active"]
    assert isinstance(error, AlignmentMessageError) and "insurer's PSI answer claims" in str(error) and "decoy" in str(error), error
    assert "\n" not in str(error)
    # nothing left the active party for either passive: no id, no tag
    assert channel.poll("insurer", (MessageKind.ALIGNMENT,)) is None and channel.poll("retailer", (MessageKind.ALIGNMENT,)) is None


def test_an_honest_alignment_is_never_taken_for_a_doctored_one() -> None:
    """The decoys cost honest parties nothing but the request's size: over many alignments none claims a decoy."""
    for seed in range(5):
        parties = _scenario({"active": 150, "bank": 170, "insurer": 120}, 40, seed=seed)
        _assert_aligned(parties, align_in_process(parties, order_key=KEY))
