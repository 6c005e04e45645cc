"""Private sample alignment: which of its own rows each party trains on, and in which order.

Before vertical training every party must hold the same samples in the same order, but a party's
sample ids (customer numbers, patient ids) are themselves private: a bank should not learn which
of an insurer's customers it does not share. Here the active party (the one with the labels) and
every passive party ``P1..Pk`` find the ids *all* of them hold with an established private set
intersection (ECDH PSI of the openmined-psi library, :mod:`securevfl.protocols.psi`), fix one
order, and each ends with the positions of those samples in its *own* data.

The protocol, over any :class:`~securevfl.protocols.Channel`:

1. **Pairwise PSI.** For each passive ``Pi`` the active party is the PSI *client* and ``Pi`` the
   *server*, with fresh one-time keys per pair. All ``k`` requests leave before any answer is
   awaited, so passives on a network answer in parallel. The active party obtains ``A ∩ Pi`` as
   positions in its own list.
2. **Intersection.** The active party intersects the ``k`` answers: ``I = A ∩ P1 ∩ ... ∩ Pk``.
3. **Agreed order.** ``I`` is sorted by ``HMAC-SHA256(order_key, id)``. The key is 32 random
   bytes the active party draws per alignment (or is given, for a reproducible order) and never
   sends: the order is a pseudorandom permutation, independent of the active party's row order
   (which may be sorted by label or date) and of any structure in the ids.
4. **Distribution.** The active party sends each passive the ids of ``I`` in that order, each as
   its tag ``HMAC-SHA256(tag_key, id)`` under a fresh 32-byte key per passive and alignment, sent
   with the tags (``ALIGNMENT``). No id travels in plaintext: the passive finds a tag only by
   computing it from an id it holds (or guesses).
5. **Check and rows.** Each passive refuses a list with a repeated tag or a tag of no id it holds;
   otherwise its rows are the positions of those ids in its own list, in the list's order. It
   confirms with ``ALIGNMENT_ACK`` (SHA-256 of the ids themselves), which the active party checks,
   so no party goes on to train on an alignment another party refused, and a passive confirms only
   ids it knows.

Why decoys, and tags rather than ids: the active party takes the PSI's answer on trust. A red-team
pass (2026-11-27) had a passive doctor its PSI response (every element its answer to one held id,
or the elements shuffled; the library cannot tell) so that the active party believed it held ids
it does not, and then sent it, in plaintext, the ids the active party shares with the *other*
passives: 600 foreign ids of 900, the run going on without an error. Tags alone were not enough:
a second pass tested every decimal id of six digits against the tags offline (3 s) and confirmed
the list. So each PSI request hides random **decoy** ids nobody holds among the active party's
(:func:`_with_decoys`): a doctored answer that claims more than the passive holds claims decoys
too, and the active party stops before any id or tag leaves it
(``tests/test_alignment.py::test_a_passive_that_doctors_its_psi_answer_is_caught_*``); the tags
keep ids off the wire for everything else (a false positive, a network observer).

Who learns what, when every party follows the protocol:

- the **active party** learns ``I`` and the order and, for every passive ``Pi``, ``A ∩ Pi``
  (which of *its own* ids ``Pi`` holds) and ``|Pi|``; it never learns an id of ``Pi`` outside
  ``A``;
- a **passive** ``Pi`` learns ``I`` (a subset of its own ids), the order and ``|A|``; it never
  learns an id it does not hold itself, which of its ids outside ``I`` the active party holds, or
  anything about another passive beyond what ``I`` implies.

The pairwise intersections ``A ∩ Pi`` (which may be larger than ``I``) are what a two-party PSI
necessarily gives its client; hiding them too would take a multi-party PSI, which no established
library offers. Cardinalities: each passive learns the active party's set size; the active party
learns each passive's set size and each pairwise intersection's size; everyone learns ``|I|``.

False positives: the PSI's compressed set admits a false positive with probability at most
``false_positive_rate`` per passive and alignment (default ``1e-9``,
:data:`~securevfl.protocols.psi.DEFAULT_FALSE_POSITIVE_RATE`): the active party would believe
``Pi`` holds an id it does not. Only if that id is also held by every other passive does it reach
``Pi`` in the alignment; ``Pi`` then sees that one id, refuses the alignment
(:class:`AlignmentMessageError`) and the parties align again with fresh keys. A rate of 0 (and,
automatically, sets too large for the compressed form: beyond ~68,000 ids on each side at 1e-9)
uses the exact set instead: no false positives, about 29 more bytes per passive id. There are no
false negatives.

Beyond honest parties: a malicious active party can put guessed ids into its request to test
whether a passive holds them (what any PSI client can do), and a passive can check that the
aligned ids are its own, not that every other party holds them. A malicious passive can put
guessed ids into its own set (what any PSI server can do: one elliptic-curve operation per guess,
counted in the set size it announces) and learns whether they are in ``I``; a doctored PSI answer
is caught by the decoys with a probability that grows with what it claims (every decoy when it
repeats one answer; each swapped position is a decoy with probability at least 1/5).
Integrity of messages in transit is the transport's job (TLS, signed frames).

Entry points: :func:`align_as_active` and :func:`align_as_passive` for one party each on a
blocking transport (a party process), :func:`align_in_process` for all parties in one process.
:class:`~securevfl.data.VFLDataset` does not carry ids yet: align the parties' own tables first
(``x[result.rows]``), then build the data set from the aligned rows.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import re
import secrets
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from securevfl.errors import DataError
from securevfl.protocols import Channel, InProcessChannel, Message, MessageKind, ProtocolError
from securevfl.protocols.psi import (
    DEFAULT_FALSE_POSITIVE_RATE,
    PSI_CODEC,
    PsiClient,
    PsiServer,
    SampleIdError,
    validate_ids,
)

__all__ = [
    "DECOY_FRACTION",
    "MIN_DECOYS",
    "AlignmentError",
    "AlignmentMessageError",
    "AlignmentResult",
    "EmptyIntersectionError",
    "PassiveAlignment",
    "align_as_active",
    "align_as_passive",
    "align_in_process",
    "alignment_tag",
    "ids_digest",
    "order_tag",
]

IDS_CODEC = "ids"
_ORDER_KEY_BYTES = 32
_TAG_KEY_BYTES = 32


class AlignmentError(DataError):
    """A party's ids or the party names cannot be aligned (not text, repeated, empty, unknown party)."""


class EmptyIntersectionError(AlignmentError):
    """No sample id is held by every party: there is nothing to train on."""


class AlignmentMessageError(ProtocolError, ValueError):
    """An alignment message that is malformed or forged: ids not held, repeated, or a wrong confirmation."""


@dataclass(frozen=True, eq=False)
class AlignmentResult:
    """One party's outcome: the rows of its own data to train on, in the order every party shares."""

    party: str
    """The party this result belongs to."""
    rows: np.ndarray
    """int64 positions into this party's own ids (and data rows), in the agreed order."""
    ids: tuple[str, ...]
    """The aligned sample ids in the agreed order; equal at every party (``own_ids[rows]``)."""
    peer_set_sizes: Mapping[str, int] = field(default_factory=dict)
    """How many ids each peer holds, as far as this party learned it (the PSI reveals set sizes; a passive learns the
    size of the active party's request: its ids and the decoys, :data:`MIN_DECOYS`, :data:`DECOY_FRACTION`)."""
    pairwise_intersection_sizes: Mapping[str, int] = field(default_factory=dict)
    """Active party only: ``|A ∩ Pi|`` per passive (larger than ``len(ids)`` when passives differ)."""
    seconds: float = 0.0
    """Time this party spent on its own alignment work (PSI and checks), not waiting for peers."""

    def take(self, rows_of_own_data: np.ndarray) -> np.ndarray:
        """This party's own rows (features, labels) in the agreed order: ``data[rows]``."""
        return np.asarray(rows_of_own_data)[self.rows]


def order_tag(order_key: bytes, sample_id: str) -> bytes:
    """The sort key of ``sample_id`` in the agreed order: HMAC-SHA256 under the alignment's key."""
    return hmac.new(order_key, sample_id.encode("utf-8"), hashlib.sha256).digest()


def alignment_tag(tag_key: bytes, sample_id: str) -> str:
    """How the alignment names ``sample_id`` to a passive (hex HMAC-SHA256 under that passive's tag key): a passive
    matches it only by computing it from an id it holds."""
    return hmac.new(tag_key, b"securevfl alignment tag\x00" + sample_id.encode("utf-8"), hashlib.sha256).hexdigest()


def ids_digest(ids: Iterable[str]) -> bytes:
    """SHA-256 of an ordered id list (length-prefixed, so ``["ab"]`` and ``["a", "b"]`` differ)."""
    digest = hashlib.sha256()
    for sample_id in ids:
        raw = sample_id.encode("utf-8")
        digest.update(struct.pack("<I", len(raw)))
        digest.update(raw)
    return digest.digest()


def _own_ids(ids: Sequence[str], party: str) -> tuple[str, ...]:
    try:
        return validate_ids(ids, party)
    except SampleIdError as exc:
        raise AlignmentError(str(exc)) from None


def align_as_active(
    channel: Channel,
    me: str,
    passives: Sequence[str],
    ids: Sequence[str],
    *,
    false_positive_rate: float = DEFAULT_FALSE_POSITIVE_RATE,
    order_key: bytes | None = None,
) -> AlignmentResult:
    """The active party's side: PSI with every passive, the agreed order, the alignment sent and confirmed.

    Args:
        channel: this party's channel (it sends as ``me`` and receives ``me``'s mail).
        me: the active party's name.
        passives: every passive party's name; each must run :func:`align_as_passive` (or
            :class:`PassiveAlignment`) against ``me``.
        ids: one sample id per row of the active party's own data, in row order.
        false_positive_rate: see :data:`~securevfl.protocols.psi.DEFAULT_FALSE_POSITIVE_RATE`.
        order_key: at least 16 bytes fixing the order (for a reproducible run); default: 32 fresh
            random bytes. Never sent.

    Raises:
        AlignmentError: bad ids or party names. EmptyIntersectionError: no id held by every
        party (the passives are told first, so none of them waits). ProtocolError: a peer's
        message was malformed or forged.
    """
    own = _own_ids(ids, me)
    names = _passive_names(me, passives)
    key = secrets.token_bytes(_ORDER_KEY_BYTES) if order_key is None else _checked_key(order_key)
    requests = {name: _with_decoys(own) for name in names}
    clients = {name: PsiClient(request.ids, false_positive_rate) for name, request in requests.items()}
    for name, client in clients.items():
        client.send_request(channel, me, name)
    shared: set[int] | None = None
    pairwise: dict[str, int] = {}
    for name, client in clients.items():
        positions = requests[name].own_positions(client.receive_intersection(channel, me, name), name)
        pairwise[name] = len(positions)
        shared = set(positions) if shared is None else shared & set(positions)
    start = time.perf_counter()
    order = sorted(shared or (), key=lambda position: order_tag(key, own[position]))
    aligned = tuple(own[position] for position in order)
    for name in names:
        tag_key = secrets.token_bytes(_TAG_KEY_BYTES)
        tags = tuple(alignment_tag(tag_key, sample_id) for sample_id in aligned)
        channel.send(Message(MessageKind.ALIGNMENT, me, name, 0, tags, codec=IDS_CODEC, meta={"tag_key": tag_key.hex()}))
    if not aligned:
        sizes = ", ".join(f"{me} ∩ {name}: {count}" for name, count in pairwise.items())
        raise EmptyIntersectionError(f"{me}: no sample id is held by every party ({sizes} ids); nothing to train on")
    expected = ids_digest(aligned)
    seconds = time.perf_counter() - start
    for name in names:
        ack = channel.receive(me, MessageKind.ALIGNMENT_ACK, sender=name)
        if ack.payload != expected:
            raise AlignmentMessageError(f"{name}'s {MessageKind.ALIGNMENT_ACK} does not confirm the {len(aligned)} ids sent to it")
    return AlignmentResult(
        party=me,
        rows=np.asarray(order, dtype=np.int64),
        ids=aligned,
        peer_set_sizes={name: int(client.server_size or 0) for name, client in clients.items()},
        pairwise_intersection_sizes=pairwise,
        seconds=seconds + sum(client.seconds for client in clients.values()),
    )


class PassiveAlignment:
    """A passive party's side, as step logic that reacts to whatever the active party sent.

    On a blocking transport :func:`align_as_passive` feeds it the two messages in turn. In one
    process it is a :class:`~securevfl.protocols.Server` attached to the channel
    (:meth:`serve_pending`), so the active party's waits let it answer, as the key holder does.
    """

    def __init__(self, channel: Channel, name: str, active: str, ids: Sequence[str]) -> None:
        self.channel = channel
        self.name = name
        self.active = active
        self.ids = _own_ids(ids, name)
        self.result: AlignmentResult | None = None
        """Set once the alignment has arrived and been confirmed."""
        self._server = PsiServer(self.ids)
        self._active_size: int | None = None
        self._seconds = 0.0

    def handle(self, message: Message) -> None:
        """Answer the active party's PSI request, or check and confirm its alignment."""
        if message.sender != self.active:
            raise AlignmentMessageError(f"{self.name} takes alignment messages only from the active party {self.active!r}, not from {message.sender!r}")
        if message.kind == MessageKind.PSI_REQUEST:
            self._active_size = self._server.answer(self.channel, self.name, message)
        elif message.kind == MessageKind.ALIGNMENT:
            self._accept(message)
        else:
            raise AlignmentMessageError(f"{self.name} expected a {MessageKind.PSI_REQUEST} or {MessageKind.ALIGNMENT}, got {message.kind!r}")

    def serve_pending(self) -> bool:
        """Handle every alignment message queued for this party; True if there was at least one."""
        handled = False
        while (message := self.channel.poll(self.name, (MessageKind.PSI_REQUEST, MessageKind.ALIGNMENT))) is not None:
            self.handle(message)
            handled = True
        return handled

    def _accept(self, message: Message) -> None:
        kind = MessageKind.ALIGNMENT
        if self._active_size is None:
            raise AlignmentMessageError(f"{self.name} got an {kind} before answering {self.active}'s PSI request")
        if self.result is not None:
            raise AlignmentMessageError(f"{self.name} got a second {kind} from {self.active}")
        tags = message.payload
        if message.codec != IDS_CODEC or not isinstance(tags, tuple):
            raise AlignmentMessageError(f"{self.active}'s {kind} must carry a tag list (codec {IDS_CODEC!r}), got codec {message.codec!r}")
        tag_key = message.meta.get("tag_key")
        if not isinstance(tag_key, str) or not re.fullmatch(f"[0-9a-f]{{{2 * _TAG_KEY_BYTES}}}", tag_key):
            raise AlignmentMessageError(f"{self.active}'s {kind} carries no tag key ({2 * _TAG_KEY_BYTES} hex digits in meta 'tag_key')")
        start = time.perf_counter()
        if not tags:
            raise EmptyIntersectionError(f"{self.name}: the active party {self.active!r} reports that no sample id is held by every party; nothing to train on")
        key = bytes.fromhex(tag_key)
        position_of_tag = {alignment_tag(key, sample_id): position for position, sample_id in enumerate(self.ids)}
        rows = [position_of_tag.get(tag, -1) if isinstance(tag, str) else -1 for tag in tags]
        missing = [position for position, row in enumerate(rows) if row < 0]
        if missing:
            raise AlignmentMessageError(
                f"{self.active}'s {kind} holds {len(missing)} id(s) {self.name} does not hold (first at position "
                f"{missing[0]}): a PSI false positive or a forged message; align again with fresh keys"
            )
        if len(set(rows)) != len(rows):
            raise AlignmentMessageError(f"{self.active}'s {kind} repeats an id; each aligned sample appears once")
        aligned = tuple(self.ids[row] for row in rows)
        self.channel.send(Message(MessageKind.ALIGNMENT_ACK, self.name, self.active, 0, ids_digest(aligned), codec=PSI_CODEC))
        self._seconds += time.perf_counter() - start
        self.result = AlignmentResult(
            party=self.name,
            rows=np.asarray(rows, dtype=np.int64),
            ids=aligned,
            peer_set_sizes={self.active: self._active_size},
            seconds=self._seconds + self._server.seconds,
        )


def align_as_passive(channel: Channel, me: str, active: str, ids: Sequence[str]) -> AlignmentResult:
    """A passive party's side on a blocking transport: answer the PSI request, then take the alignment.

    Raises:
        AlignmentError: bad ids. EmptyIntersectionError: the active party found no id every party
        holds. AlignmentMessageError / PsiMessageError: a malformed or forged message.
    """
    party = PassiveAlignment(channel, me, active, ids)
    party.handle(channel.receive(me, MessageKind.PSI_REQUEST, sender=active))
    party.handle(channel.receive(me, MessageKind.ALIGNMENT, sender=active))
    if party.result is None:  # unreachable: accepting an alignment sets the result or raises
        raise ProtocolError(f"{me} took {active}'s alignment but holds no result")
    return party.result


def align_in_process(
    ids_by_party: Mapping[str, Sequence[str]],
    active: str = "active",
    *,
    false_positive_rate: float = DEFAULT_FALSE_POSITIVE_RATE,
    order_key: bytes | None = None,
    channel: InProcessChannel | None = None,
) -> dict[str, AlignmentResult]:
    """Align every party in this process; each party still sees only its own messages.

    Args:
        ids_by_party: party name -> its sample ids in its own row order; ``active`` must be one of
            them, every other party is a passive.
        channel: the channel to run on (to read its byte counts or attach taps); default: a new
            :class:`~securevfl.protocols.InProcessChannel`. The passives are attached to it as servers.

    Returns:
        party name -> its :class:`AlignmentResult`, every party's ``ids`` in the same order.
    """
    if not isinstance(ids_by_party, Mapping) or active not in ids_by_party:
        known = list(ids_by_party) if isinstance(ids_by_party, Mapping) else type(ids_by_party).__name__
        raise AlignmentError(f"ids_by_party must map every party, the active party {active!r} included, to its ids; got {known}")
    checked = {name: _own_ids(ids, name) for name, ids in ids_by_party.items()}
    hub = channel if channel is not None else InProcessChannel()
    passives = [PassiveAlignment(hub.endpoint(name), name, active, ids) for name, ids in checked.items() if name != active]
    for passive in passives:
        hub.attach_server(passive)
    results = {active: align_as_active(
        hub.endpoint(active), active, [passive.name for passive in passives], checked[active],
        false_positive_rate=false_positive_rate, order_key=order_key,
    )}
    for passive in passives:
        if passive.result is None:
            raise ProtocolError(f"{passive.name} never received its alignment")
        results[passive.name] = passive.result
    return results


#: Decoy ids in each PSI request: at least this many, and at least this fraction of the active party's own ids.
MIN_DECOYS = 128
DECOY_FRACTION = 0.25


@dataclass(frozen=True)
class _DecoyedRequest:
    """The active party's own ids and random decoys nobody holds, in a random order: what one PSI request asks about."""

    ids: tuple[str, ...]
    own_index: tuple[int, ...]
    """Per request position: the position in the active party's own list, or -1 for a decoy."""

    def own_positions(self, found: Sequence[int], passive: str) -> list[int]:
        """The active party's own positions among ``found`` (request positions the passive holds); refused if a decoy is among them."""
        decoys = sum(1 for position in found if self.own_index[position] < 0)
        if decoys:
            raise AlignmentMessageError(
                f"{passive}'s PSI answer claims {decoys} of the random decoy ids nobody holds: a doctored answer (or, with "
                "probability about false_positive_rate per decoy, a false positive); the alignment stops before any id or tag is sent"
            )
        return sorted(self.own_index[position] for position in found)


def _with_decoys(own: Sequence[str]) -> _DecoyedRequest:
    """``own`` with ``max(MIN_DECOYS, DECOY_FRACTION x len(own))`` fresh random decoys, shuffled by the OS's CSPRNG.

    Why: the active party cannot check a passive's PSI answer. A red-team pass had a passive doctor it (every element
    its answer to one held id, or the elements shuffled, or a few positions swapped) so that the active party believed
    it held ids it does not, and then sent it those ids (in plaintext, until the same day), or their tags, which a
    passive can test guessable ids against offline (decimal customer numbers: 10^6 guesses in 3 s). A doctored answer
    that claims more than the passive holds claims decoys too: every decoy when it repeats one answer, a fraction
    |A ∩ P| / |A| of them when it shuffles, and each swapped position is a decoy with probability
    decoys / (ids + decoys) >= 1/5, which the passive cannot tell apart (blinded, in random positions). The passive
    learns the request's size (|A| plus the decoys) instead of |A|.
    """
    count = max(MIN_DECOYS, math.ceil(DECOY_FRACTION * len(own)))
    decoys = [f"securevfl-decoy-{secrets.token_hex(16)}" for _ in range(count)]
    entries = [(sample_id, index) for index, sample_id in enumerate(own)] + [(decoy, -1) for decoy in decoys]
    order = list(range(len(entries)))
    random.SystemRandom().shuffle(order)
    return _DecoyedRequest(tuple(entries[i][0] for i in order), tuple(entries[i][1] for i in order))


def _passive_names(me: str, passives: Sequence[str]) -> list[str]:
    if isinstance(passives, str):
        raise AlignmentError(f"passives must be a list of party names, got the string {passives!r}")
    names = list(passives)
    if not names:
        raise AlignmentError(f"{me}: alignment needs at least one passive party")
    if any(not isinstance(name, str) or not name for name in names):
        raise AlignmentError(f"{me}: passive party names must be non-empty strings, got {names!r}")
    if len(set(names)) != len(names) or me in names:
        raise AlignmentError(f"{me}: passive party names must be distinct and differ from the active party's, got {names!r}")
    return names


def _checked_key(order_key: bytes) -> bytes:
    if not isinstance(order_key, bytes) or len(order_key) < 16:
        raise AlignmentError(f"order_key must be at least 16 bytes, got {type(order_key).__name__} of length {len(order_key) if isinstance(order_key, bytes) else '-'}")
    return order_key
