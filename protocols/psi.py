"""Two-party private set intersection of sample ids over any :class:`Channel` (ECDH, openmined-psi).

The cryptography is the openmined-psi library's (elliptic-curve Diffie-Hellman PSI on P-256 with
a Golomb-compressed set, GCS); this module only carries its messages between two named parties,
checks them on arrival, and turns a bad message into one :class:`PsiMessageError` line. Because
it speaks only ``send`` / ``receive`` of the channel, the same code runs in one process and, one
process per party, over a network transport.

The exchange (a *client* that learns the intersection, a *server* that answers)::

    client -> server  PSI_REQUEST   H(c)^a for each client id c, in the client's order
                                    (a: the client's one-time key); meta: the false-positive rate
    server -> client  PSI_SETUP     {H(s)^b} for the server's ids s (b: the server's one-time
                                    key), as a GCS sized for that rate and the request's length,
                                    or as the exact sorted list (see below); meta: how many ids
                                    the server holds
    server -> client  PSI_RESPONSE  (H(c)^a)^b for each request element, in request order
    client                          removes a: H(c)^b, and looks each up in the set

Who learns what (both parties following the protocol):

* the client learns which of *its own* ids the server holds (as positions in its list) and how
  many ids the server holds; a server id outside the intersection reaches it only as a blinded,
  hashed, compressed set entry, which it cannot invert (decisional Diffie-Hellman on P-256);
* the server learns how many ids the client holds and nothing else: it never sees the client's
  ids, nor which of them matched;
* no id travels in plaintext in either direction.

False positives: the GCS is a probabilistic set. ``false_positive_rate`` is the probability that
*any* of the client's ids not held by the server is nevertheless reported as held (the library's
definition: for the whole request, not per id). The client chooses it and checks that the
server's set really is that precise (from its hash range). Each factor of 1000 costs about ten
bits per server id in the setup message. The library keeps the GCS's hash range,
``server ids x client ids / rate``, in a signed 64-bit integer and silently overflows beyond it
(e.g. 100,000 ids each at 1e-9); the server then sends the exact set instead (the blinded
elements themselves, sorted: ~33 bytes per id instead of ~6, no false positives at all), as it
does when the client asks for a rate of 0. The client accepts either and refuses anything else.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, TypeVar

import private_set_intersection.python as openmined_psi
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtobufMessage

from securevfl.protocols.channel import Channel
from securevfl.protocols.errors import ProtocolError
from securevfl.protocols.messages import Message, MessageKind

__all__ = [
    "DEFAULT_FALSE_POSITIVE_RATE",
    "PSI_CODEC",
    "PsiClient",
    "PsiMessageError",
    "PsiServer",
    "SampleIdError",
    "psi_as_client",
    "psi_as_server",
    "validate_ids",
]

DEFAULT_FALSE_POSITIVE_RATE = 1e-9
"""Probability that one PSI run reports any id as shared that the server does not hold.

A false positive would put an id into the alignment that a passive does not hold (it refuses the
alignment, see :mod:`securevfl.alignment`). 1e-9 keeps the compact GCS up to ~68,000 ids on each
side (the library's 64-bit hash range); larger sets, or a rate of 0, use the exact set."""

GCS_HASH_RANGE_LIMIT = 2**62
"""The server uses a GCS only while ``server ids x client ids / rate`` stays below this (half the
library's signed 64-bit range, a margin for its float arithmetic); beyond it, the exact set."""

PSI_CODEC = "psi"
"""Payload codec of the library's serialized messages (opaque bytes to the wire layer)."""

MAX_CLIENT_IDS = 50_000_000
"""A server refuses a larger request instead of spending hours and gigabytes on it."""

_Proto = TypeVar("_Proto", bound=ProtobufMessage)


class PsiMessageError(ProtocolError, ValueError):
    """A PSI message that is malformed, forged or inconsistent with the exchange so far."""


class SampleIdError(ValueError):
    """A party's own sample ids cannot take part in an intersection (not text, repeated, empty)."""


def validate_ids(ids: Sequence[str], owner: str) -> tuple[str, ...]:
    """``ids`` as a tuple of distinct, non-empty, UTF-8-encodable strings, or one clear error.

    Ids must already be text at every party: converting numbers here (``7`` vs ``7.0`` vs
    ``"007"``) would silently miss matches. A repeated id would make "the row of this id"
    ambiguous, so it is refused rather than deduplicated.
    """
    if isinstance(ids, AbstractSet | Mapping):
        raise SampleIdError(f"{owner}: sample ids must be in row order (a list or array), got an unordered {type(ids).__name__}")
    if isinstance(ids, str | bytes) or not hasattr(ids, "__len__") or not hasattr(ids, "__iter__"):
        raise SampleIdError(f"{owner}: sample ids must be a sequence of str, got {type(ids).__name__}")
    checked = tuple(ids)
    if not checked:
        raise SampleIdError(f"{owner}: has no sample ids")
    for position, value in enumerate(checked):
        if not isinstance(value, str):
            raise SampleIdError(
                f"{owner}: sample ids must be str, got {type(value).__name__} {value!r} at position "
                f"{position}; convert them the same way at every party first (e.g. str(id))"
            )
        if not value:
            raise SampleIdError(f"{owner}: sample id at position {position} is empty (a missing value?)")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SampleIdError(f"{owner}: sample id at position {position} is not valid text (not UTF-8 encodable)") from None
    if len(set(checked)) != len(checked):
        seen: dict[str, int] = {}
        for position, value in enumerate(checked):
            if value in seen:
                repeats = len(checked) - len(set(checked))
                raise SampleIdError(
                    f"{owner}: sample id {value!r} appears at positions {seen[value]} and {position} "
                    f"({repeats} repeated id(s) in all); each row needs its own id"
                )
            seen[value] = position
    return checked


def _check_rate(rate: object) -> float:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or not 0 <= rate < 1:
        raise ValueError(f"false_positive_rate must be a number in [0, 1) (0: exact set), got {rate!r}")
    return float(rate)


def _parse(kind: MessageKind, peer: str, payload: object, proto: type[_Proto]) -> _Proto:
    """The library message in ``payload``, or a :class:`PsiMessageError` naming what arrived."""
    if not isinstance(payload, bytes):
        raise PsiMessageError(f"{peer}'s {kind} carries {type(payload).__name__}, not the PSI library's bytes")
    parsed = proto()
    try:
        parsed.ParseFromString(payload)
    except DecodeError:
        raise PsiMessageError(f"{peer}'s {kind} is not a well-formed PSI {proto.__name__} message") from None
    return parsed


def _library_failure(kind: MessageKind, peer: str, exc: Exception) -> PsiMessageError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PsiMessageError(f"{peer}'s {kind} was refused by the PSI library: {reason}")


class PsiClient:
    """The party that learns the intersection: which of its own ids the server holds.

    One instance per exchange: its ECDH key is drawn fresh at construction and never reused with
    another server, so each run is exactly the library's two-party protocol. ``seconds`` adds up
    the time spent in this party's own PSI work (not waiting for the server).
    """

    def __init__(self, ids: Sequence[str], false_positive_rate: float = DEFAULT_FALSE_POSITIVE_RATE) -> None:
        self.ids = validate_ids(ids, "PSI client")
        self.false_positive_rate = _check_rate(false_positive_rate)
        self.seconds = 0.0
        self.server_size: int | None = None
        """How many ids the server holds (what its setup message announces), once the reply has arrived."""
        self._client = openmined_psi.client.CreateWithNewKey(True)
        self._sent = False

    def send_request(self, channel: Channel, me: str, peer: str) -> None:
        """Send the blinded ids to ``peer`` (the server)."""
        if self._sent:
            raise ProtocolError(f"{me} already sent its PSI request; a client runs one exchange")
        start = time.perf_counter()
        request = self._client.CreateRequest(list(self.ids)).SerializeToString()
        self.seconds += time.perf_counter() - start
        meta: dict[str, Any] = {"false_positive_rate": self.false_positive_rate}
        channel.send(Message(MessageKind.PSI_REQUEST, me, peer, 0, request, codec=PSI_CODEC, meta=meta))
        self._sent = True

    def receive_intersection(self, channel: Channel, me: str, peer: str) -> list[int]:
        """Positions (ascending) of this client's ids that ``peer`` holds, from its setup and response."""
        if not self._sent:
            raise ProtocolError(f"{me} must send its PSI request before it can receive an answer")
        setup_message = channel.receive(me, MessageKind.PSI_SETUP, sender=peer)
        response_message = channel.receive(me, MessageKind.PSI_RESPONSE, sender=peer)
        start = time.perf_counter()
        setup = _parse(MessageKind.PSI_SETUP, peer, setup_message.payload, openmined_psi.ServerSetup)
        response = _parse(MessageKind.PSI_RESPONSE, peer, response_message.payload, openmined_psi.Response)
        self.server_size = self._check_setup(peer, setup, setup_message.meta.get("ids"))
        if len(response.encrypted_elements) != len(self.ids):
            raise PsiMessageError(
                f"{peer}'s {MessageKind.PSI_RESPONSE} answers {len(response.encrypted_elements)} elements, "
                f"but the request had {len(self.ids)}"
            )
        try:
            found = self._client.GetIntersection(setup, response)
        except RuntimeError as exc:
            raise _library_failure(MessageKind.PSI_RESPONSE, peer, exc) from None
        positions = sorted(set(found))
        if len(positions) != len(found) or any(not 0 <= p < len(self.ids) for p in positions[:1] + positions[-1:]):
            raise PsiMessageError(f"{peer}'s {MessageKind.PSI_RESPONSE} yields positions outside the client's ids")
        self.seconds += time.perf_counter() - start
        return positions

    def _check_setup(self, peer: str, setup: Any, announced: object) -> int:
        """The server's announced set size, after checking its set is a GCS of the agreed precision.

        The library would silently report an empty intersection for a degenerate set (zero hash
        range, no bits) or a noisy one for a coarse set; both are refused here instead.
        """
        kind = MessageKind.PSI_SETUP
        if isinstance(announced, bool) or not isinstance(announced, int) or announced < 0:
            raise PsiMessageError(f"{peer}'s {kind} must announce its set size as meta 'ids' (a non-negative int), got {announced!r}")
        structure = setup.WhichOneof("data_structure")
        if structure == "raw":  # exact: no false positives, as long as it holds one element per announced id
            if len(setup.raw.encrypted_elements) != announced:
                raise PsiMessageError(f"{peer}'s {kind} holds {len(setup.raw.encrypted_elements)} elements but announces {announced} ids")
            return announced
        if structure != "gcs":
            raise PsiMessageError(f"{peer}'s {kind} must hold a Golomb-compressed or an exact set, got {structure!r}")
        if setup.gcs.hash_range <= 0 or (announced > 0 and not setup.gcs.bits):
            raise PsiMessageError(f"{peer}'s {kind} holds a degenerate set (hash range {setup.gcs.hash_range}, {len(setup.gcs.bits)} bytes)")
        # A GCS over n server ids, queried with m client ids, errs with probability about n * m / hash_range.
        achieved = announced * len(self.ids) / setup.gcs.hash_range
        if achieved > self.false_positive_rate * (1 + 1e-6):
            raise PsiMessageError(
                f"{peer}'s {kind} is too coarse: false-positive rate {achieved:.3g} for {announced} ids, "
                f"asked for {self.false_positive_rate:.3g}"
            )
        return announced


class PsiServer:
    """The party that answers: it learns only how many ids the client holds.

    One instance per exchange (a fresh ECDH key). ``seconds`` adds up this party's PSI work.
    """

    def __init__(self, ids: Sequence[str], max_client_ids: int = MAX_CLIENT_IDS) -> None:
        self.ids = validate_ids(ids, "PSI server")
        self.max_client_ids = max_client_ids
        self.seconds = 0.0
        self.client_size: int | None = None
        """How many ids the client holds (the length of its request), once the request has arrived."""
        self._server = openmined_psi.server.CreateWithNewKey(True)

    def answer(self, channel: Channel, me: str, request: Message) -> int:
        """Check ``request`` (a PSI_REQUEST addressed to ``me``), send the setup and the response.

        Returns the client's set size, the one thing the server learns."""
        peer = request.sender
        if request.kind != MessageKind.PSI_REQUEST or request.receiver != me:
            raise ProtocolError(f"{me} can answer only a {MessageKind.PSI_REQUEST} addressed to it, got {request.kind!r} for {request.receiver!r}")
        if self.client_size is not None:
            raise PsiMessageError(f"{peer} sent a second {MessageKind.PSI_REQUEST}; a server answers one request per key")
        try:
            rate = _check_rate(request.meta.get("false_positive_rate"))
        except ValueError as exc:
            raise PsiMessageError(f"{peer}'s {MessageKind.PSI_REQUEST}: {exc}") from None
        start = time.perf_counter()
        parsed = _parse(MessageKind.PSI_REQUEST, peer, request.payload, openmined_psi.Request)
        count = len(parsed.encrypted_elements)
        if not parsed.reveal_intersection:
            raise PsiMessageError(f"{peer}'s {MessageKind.PSI_REQUEST} asks for the intersection size only; this protocol reveals the intersection")
        if not 0 < count <= self.max_client_ids:
            raise PsiMessageError(f"{peer}'s {MessageKind.PSI_REQUEST} holds {count} elements; between 1 and {self.max_client_ids} are accepted")
        try:
            response = self._server.ProcessRequest(parsed).SerializeToString()
        except RuntimeError as exc:
            raise _library_failure(MessageKind.PSI_REQUEST, peer, exc) from None
        setup = self._server.CreateSetupMessage(rate, count, list(self.ids), self._structure(rate, count)).SerializeToString()
        self.client_size = count
        self.seconds += time.perf_counter() - start
        channel.send(Message(MessageKind.PSI_SETUP, me, peer, 0, setup, codec=PSI_CODEC, meta={"ids": len(self.ids)}))
        channel.send(Message(MessageKind.PSI_RESPONSE, me, peer, 0, response, codec=PSI_CODEC))
        return count

    def _structure(self, rate: float, client_ids: int) -> Any:
        """The compact GCS while its hash range fits the library's integer, else the exact set."""
        if rate > 0 and len(self.ids) * client_ids / rate < GCS_HASH_RANGE_LIMIT:
            return openmined_psi.DataStructure.GCS
        return openmined_psi.DataStructure.RAW

    def serve(self, channel: Channel, me: str, peer: str) -> int:
        """Wait for ``peer``'s request and answer it (a blocking transport's server loop, one request)."""
        return self.answer(channel, me, channel.receive(me, MessageKind.PSI_REQUEST, sender=peer))


def psi_as_client(
    channel: Channel, me: str, peer: str, ids: Sequence[str], false_positive_rate: float = DEFAULT_FALSE_POSITIVE_RATE
) -> list[int]:
    """Run the client's side against ``peer`` on a blocking channel: positions of ``ids`` that ``peer`` holds."""
    client = PsiClient(ids, false_positive_rate)
    client.send_request(channel, me, peer)
    return client.receive_intersection(channel, me, peer)


def psi_as_server(channel: Channel, me: str, peer: str, ids: Sequence[str]) -> int:
    """Run the server's side for ``peer`` on a blocking channel; returns the client's set size (all it learns)."""
    return PsiServer(ids).serve(channel, me, peer)
