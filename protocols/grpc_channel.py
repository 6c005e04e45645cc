"""The network :class:`~.channel.Channel` of one party process: signed frames over gRPC with mutual TLS.

A :class:`GrpcChannel` is one party's whole transport. It listens for frames addressed to its
party (:mod:`.grpc_server`), keeps one connection per peer it sends to (:mod:`.grpc_client`), and
gives the party the same three calls as :class:`~.channel.InProcessChannel`:

* ``send(message)`` signs the frame with the party's :class:`~.framing.FrameSigner` and returns
  once the receiver's server admitted it (or raises one line: the peer unreachable, refusing,
  too slow). The frames to one receiver travel one at a time, in sequence-number order.
* Incoming frames are checked on arrival, in arrival order: the TLS peer must be the frame's
  claimed sender (:mod:`.tls_peer`), then the party's :class:`~.framing.FrameVerifier` admits it;
  admitted messages queue in the party's :class:`~.mailbox.Mailbox`, refused frames are dropped,
  recorded in :attr:`GrpcChannel.refusals`, logged, and answered to the client as refused (so
  an honest sender whose frame was refused stops with that line instead of waiting).
* ``receive(receiver, kind, sender)`` blocks until a matching admitted message is there, and
  has a deadline: meanwhile it pings the awaited sender (:mod:`.liveness`) and gives up early,
  with :class:`~.errors.PeerUnavailableError`, if that sender is gone; at the deadline it raises
  :class:`~.errors.PeerTimeoutError`. Either line names the receiver, the awaited kind and
  sender, the sender's state and the last traffic (kind and step) the party saw. A refused frame
  from the awaited sender explains the wait and is raised instead (its
  :class:`~.errors.FrameAuthenticationError`); it ends the wait at once when it claimed the
  awaited kind, came over the sender's own TLS connection and is not a copy of a frame already
  admitted (the awaited message cannot come in order after it). A frame refused because its TLS
  peer is not its sender never ends a wait early: the genuine frame may still come. ``poll``
  never blocks and never raises for a refused frame. A ``request_refused`` or ``abort`` message
  from the awaited sender also ends the wait at once (its reason in the line): the awaited
  message will not come.

Messages from one sender keep their order; different senders do not block each other. ``stats``
counts the frames this party sent (summed over all parties, the in-process channel's numbers);
:meth:`GrpcChannel.byte_counts` puts them next to the gRPC-layer and TCP-layer bytes
(:mod:`.wire_bytes`).

**How a party process uses it**::

    tls = securevfl.pki.load_tls_material(ca_bundle, cert, key, party)
    trusted = securevfl.pki.load_ca_bundle(ca_bundle)
    def peer_check(pem: bytes, party: str) -> None:
        securevfl.pki.verify_peer_certificate(pem, trusted, party, pinned_fingerprint=plan.pins.get(party))

    with GrpcChannel(identity, roster, session, listen="0.0.0.0:50051", tls=tls,
                     peer_check=peer_check, peers={"active": PeerAddress("bank.example:50051")}) as channel:
        channel.wait_for_peers()
        party = PassiveParty(..., channel=channel)
        ...

A failed delivery uses up the frame's sequence number (the receiver may or may not have admitted
it), so the link to that receiver is closed for the session; a send that could not even connect
uses nothing up and may be tried again.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from types import TracebackType
from typing import Any, Self

from securevfl.protocols.accounting import TrafficStats
from securevfl.protocols.channel import FrameRefusal
from securevfl.protocols.codecs import CodecRegistry
from securevfl.protocols.errors import (
    FrameAuthenticationError,
    FrameTooLargeError,
    IdentityError,
    PeerTimeoutError,
    PeerUnavailableError,
    ProtocolError,
    ReceiverBusyError,
    RequestRefusedError,
    WireFormatError,
    peer_text,
)
from securevfl.protocols.framing import FrameSigner, FrameVerifier
from securevfl.protocols.grpc_client import PeerClient, PeerStatus
from securevfl.protocols.grpc_server import FrameServer
from securevfl.protocols.grpc_settings import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_QUEUED_BYTES,
    ChannelTimeouts,
    PeerAddress,
    TlsMaterial,
    check_max_frame_bytes,
)
from securevfl.protocols.identity import Identity, Roster
from securevfl.protocols.liveness import LivenessWatch
from securevfl.protocols.mailbox import Mailbox
from securevfl.protocols.messages import Message, MessageKind
from securevfl.protocols.phases import Phase
from securevfl.protocols.tls_peer import CachedPeerCheck, PeerCheck, PeerMismatchError
from securevfl.protocols.wire import declared_frame, decode_payload, parse_frame, peek_route
from securevfl.protocols.wire_bytes import WireBytes, tcp_bytes

__all__ = ["GrpcChannel"]

_LOG = logging.getLogger("securevfl.channel")
_SESSION = re.compile(r"[0-9a-f]{32}")
# FrameRefusal.waited_for's score of a refusal from the awaited sender (any kind)
_SAME_SENDER = 1
# messages from the awaited sender that say the awaited message will not come (end a receive at once)
_ENDS_A_WAIT = (MessageKind.REQUEST_REFUSED, MessageKind.ABORT)


class GrpcChannel:
    """``identity``'s party's end of the federation's network (module docstring).

    * ``roster``, ``session``: the run's public keys and session id, as every party holds them.
    * ``listen``: ``host:port`` this party serves on (port 0: a free port, see :attr:`port`).
    * ``tls``: the party's PEM material (``securevfl.pki.load_tls_material``).
    * ``peer_check``: raises unless a PEM certificate is the named party's (wraps
      ``securevfl.pki.verify_peer_certificate``); asked for every frame's claimed sender.
    * ``peers``: where the parties this one sends to or waits for listen (more with :meth:`add_peer`).
    * ``timeouts``: every wait (:class:`~.grpc_settings.ChannelTimeouts`).
    * ``max_frame_bytes``: the largest frame sent or accepted (default 128 MiB; CKKS public
      keyrings reach about 60 MB).
    * ``max_queued_bytes``: from this many bytes of one sender's frames queued and not yet taken
      (default the larger of 256 MiB and twice ``max_frame_bytes``), the sender's next frame is
      refused as busy at once and its client retries until its send deadline (back-pressure).
    """

    def __init__(
        self,
        identity: Identity,
        roster: Roster,
        session: str,
        *,
        listen: str,
        tls: TlsMaterial,
        peer_check: PeerCheck,
        peers: Mapping[str, PeerAddress | str] | None = None,
        codecs: CodecRegistry | None = None,
        timeouts: ChannelTimeouts | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_queued_bytes: int | None = None,
    ) -> None:
        self.party = identity.name
        if roster.public_key(self.party) != identity.public_key:  # IdentityError if not on the roster at all
            raise IdentityError(f"{self.party}'s identity key is not the one the roster holds for {self.party}")
        if not isinstance(session, str) or not _SESSION.fullmatch(session):
            raise ValueError(f"session id must be 32 lower-case hex digits, got {session!r}")
        self.session = session
        self.roster = roster
        self.codecs = codecs if codecs is not None else CodecRegistry()
        self.timeouts = timeouts if timeouts is not None else ChannelTimeouts()
        self.max_frame_bytes = check_max_frame_bytes(max_frame_bytes)
        self.max_queued_bytes = max(DEFAULT_MAX_QUEUED_BYTES, 2 * self.max_frame_bytes) if max_queued_bytes is None else int(max_queued_bytes)
        self.stats = TrafficStats()
        """The frames this party sent, by kind, and its serialize/deserialize seconds."""
        self._tls = tls
        self._signer = FrameSigner(identity, session)
        self._verifier = FrameVerifier(self.party, roster, session)
        self._peer_check = CachedPeerCheck(peer_check)
        self._mailbox = Mailbox()
        self._lock = threading.Lock()  # signer, stats, links, last traffic
        self._admit_lock = threading.Lock()  # the verifier sees frames one at a time, in arrival order
        self._clients: dict[str, PeerClient] = {}
        self._link_locks: dict[str, threading.Lock] = {}
        self._broken_links: dict[str, str] = {}
        self._admitted_up_to: dict[str, int] = {}  # sender -> highest sequence number admitted (under _admit_lock)
        self._in_flight: dict[str, int] = {}  # sender -> declared bytes of its chunked frames being read (under _lock)
        self._last_traffic = "none yet"
        self._send_seconds = 0.0
        self._closed = False
        self._server = FrameServer(
            self.party, listen, tls, self._admit, max_frame_bytes=self.max_frame_bytes, workers=max(4, 2 * len(roster)),
            admit_peer=self._admit_peer, reserve=self._reserve_chunked_frame,
        )
        try:
            for name, address in (peers or {}).items():
                self.add_peer(name, address)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ set-up and shutdown
    @property
    def port(self) -> int:
        """The port this party's server listens on."""
        return self._server.port

    @property
    def refusals(self) -> list[FrameRefusal]:
        """Every frame this party refused, in arrival order."""
        return self._mailbox.refusals

    def add_peer(self, party: str, address: PeerAddress | str) -> None:
        """Say where ``party`` listens (once per party, before sending to it or waiting for it; a
        receive from a party without an address has its deadline but no liveness check)."""
        if party == self.party or party not in self.roster:
            raise ProtocolError(f"{party!r} is not a peer of {self.party} (roster: {', '.join(self.roster)})")
        with self._lock:
            if party in self._clients:
                raise ProtocolError(f"{self.party} already has an address for {party!r}")
            self._clients[party] = PeerClient(
                self.party, party, PeerAddress.of(address), self._tls, max_frame_bytes=self.max_frame_bytes, timeouts=self.timeouts
            )
            self._link_locks[party] = threading.Lock()

    def wait_for_peers(self, peers: Collection[str] | None = None) -> None:
        """Return once a TLS connection to each of ``peers`` (default: all known) is up; each waits at most ``connect`` seconds."""
        for name in sorted(self._clients) if peers is None else peers:
            self._client(name).wait_connected()

    def expect_session(self, session: str) -> None:
        """Admit frames of ``session`` too (an attempt's own session, :mod:`.framing`), besides the current one."""
        with self._admit_lock:
            self._verifier.expect_session(session)

    def enter_session(self, session: str) -> None:
        """Sign and admit only ``session``'s frames from now on; every link numbers from 0 again."""
        with self._lock:
            self._signer.enter_session(session)
            self.session = session
        with self._admit_lock:
            self._verifier.enter_session(session)
            self._admitted_up_to = {}

    def check_peer(self, peer: str) -> PeerStatus:
        """Ping ``peer`` once: alive, not answering, or gone (with the cause)."""
        return self._client(peer).ping()

    def close(self) -> None:
        """Stop serving, close every connection, wake a waiting receive. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            clients = list(self._clients.values())
        self._mailbox.nudge()
        self._server.stop()
        for client in clients:
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ the Channel protocol
    def send(self, message: Message) -> None:
        """Sign ``message`` and deliver it to its receiver; returns once the receiver admitted it."""
        if message.sender != self.party:
            raise ProtocolError(f"{self.party} cannot send a message as {message.sender!r}")
        client = self._client(message.receiver)
        what = f"{message.kind.value!r} frame (step {message.step})"
        with self._link_locks[message.receiver]:
            self._check_open()
            broken = self._broken_links.get(message.receiver)
            if broken is not None:
                raise ProtocolError(f"{self.party}'s link to {message.receiver} is closed for this session after: {broken}")
            client.wait_connected()  # before a sequence number is used up: a send that cannot connect may be retried
            frame = self._seal(message)
            try:
                if len(frame) > self.max_frame_bytes:
                    raise FrameTooLargeError(
                        f"{self.party}'s {what} to {message.receiver} is {len(frame):,} bytes, over max_frame_bytes={self.max_frame_bytes:,}"
                    )
                started = time.perf_counter()
                client.deliver(frame, what)
            except ProtocolError as exc:
                self._broken_links[message.receiver] = str(exc)
                raise
            with self._lock:
                self._send_seconds += time.perf_counter() - started
                self._last_traffic = f"sent {message.kind.value!r} (step {message.step}) to {message.receiver!r}"

    def receive(self, receiver: str, kind: MessageKind, sender: str | None = None) -> Message:
        """The oldest admitted message for this party of ``kind`` (from ``sender``, if given); waits
        at most ``timeouts.receive`` seconds, less if the awaited sender is found gone."""
        self._own(receiver)
        started = time.monotonic()
        deadline = started + self.timeouts.receive
        client = self._clients.get(sender) if sender is not None else None
        watch = LivenessWatch(client, self.timeouts, self._mailbox.nudge) if client is not None else None
        try:
            while True:
                now = time.monotonic()
                until = deadline if watch is None else min(deadline, watch.next_check(now))
                found = self._mailbox.wait_for(kind, sender, until, ends=_ENDS_A_WAIT)
                if isinstance(found, Message):
                    self._note_received(found)
                    if found.kind != kind:
                        raise self._ended_by(kind, found)
                    return found
                if isinstance(found, FrameRefusal):
                    raise found.error
                self._check_open(f" while waiting for a {MessageKind(kind).value!r} message")
                now = time.monotonic()
                if watch is not None:
                    watch.update(now)
                    if watch.gone and sender is not None:  # (a watch exists only for a named sender)
                        raise self._explained(kind, sender, self._gone_error(kind, sender, watch, now))
                if now >= deadline:
                    raise self._explained(kind, sender, self._timeout_error(kind, sender, watch, now - started, now))
        finally:
            if watch is not None:
                watch.stop()

    def poll(self, receiver: str, kinds: Collection[MessageKind]) -> Message | None:
        """The oldest admitted message for this party whose kind is one of ``kinds``, or None (never waits)."""
        self._own(receiver)
        message = self._mailbox.take(tuple(kinds), None)
        if message is not None:
            self._note_received(message)
        return message

    def pending(self, receiver: str) -> int:
        """Admitted messages queued for this party and not yet received."""
        self._own(receiver)
        return len(self._mailbox)

    def wait_for_mail(self, timeout: float) -> bool:
        """Block until a message is queued or ``timeout`` seconds pass (a serving party's loop: wait, then poll)."""
        return self._mailbox.wait_for_any(timeout)

    # ------------------------------------------------------------------ bytes
    def byte_counts(self) -> WireBytes:
        """This party's bytes: accounted frames sent, gRPC messages both ways, TCP payload both ways."""
        with self._lock:
            clients = list(self._clients.values())
            accounted = self.stats.total_bytes
        tcp = tcp_bytes({self.port}, {client.address.port for client in clients})
        return WireBytes(
            accounted_sent=accounted,
            grpc_sent=self._server.counter.sent + sum(client.counter.sent for client in clients),
            grpc_received=self._server.counter.received + sum(client.counter.received for client in clients),
            tcp_sent=tcp.sent if tcp is not None else None,
            tcp_received=tcp.received if tcp is not None else None,
            tcp_connections=tcp.connections if tcp is not None else 0,
        )

    @property
    def send_seconds(self) -> float:
        """Wall seconds this party's sends spent delivering frames (network time, after signing)."""
        with self._lock:
            return self._send_seconds

    # ------------------------------------------------------------------ internals
    def _admit_peer(self, peer_certificate: bytes | None, delivery: bool = True) -> None:
        """The TLS peer must be one of the run's parties (any of them, this one included, whose misdialled ping then hears
        its own name; the frame's claimed sender is checked against it in :meth:`_admit`). Asked before a chunked frame is
        read, after a unary one (at most UNARY_FRAME_BYTES) is; a ``delivery`` also waits for room in the mailbox."""
        reasons = []
        for name in self.roster:
            try:
                self._peer_check.require(peer_certificate, name)
            except PeerMismatchError as exc:
                reasons.append(str(exc))
                continue
            # back-pressure: while this party has not taken max_queued_bytes of the peer's frames, the peer's next frame
            # is refused at once as busy (no worker waits); the peer's client retries until its send deadline
            if delivery and self._mailbox.queued_bytes(name) >= self.max_queued_bytes:
                raise ReceiverBusyError(f"{self.party} has not taken {self._mailbox.queued_bytes(name):,} bytes of {name}'s frames "
                                        f"(max_queued_bytes={self.max_queued_bytes:,})")
            return
        error = FrameAuthenticationError(self.party, "unknown", f"its TLS peer is none of the run's parties ({reasons[0] if reasons else 'no peer'})",
                                         frame="a call")
        self._refuse(None, None, error, decisive=False)
        raise error

    def _route(self, read: Callable[[bytes], tuple[Any, ...]], start: bytes, peer_certificate: bytes | None) -> tuple[Any, ...]:
        """``read(start)`` (the frame's kind and claimed sender first), once the TLS peer is that sender; refused otherwise:
        a relay holding another valid certificate is refused before the frame's signature or sequence number is looked at."""
        try:
            route = read(start)
        except WireFormatError as exc:
            self._refuse(None, None, exc, decisive=False)
            raise
        kind, sender = route[0], route[1]
        try:
            self._peer_check.require(peer_certificate, sender)
        except PeerMismatchError as exc:
            error = FrameAuthenticationError(self.party, sender, f"its TLS peer is not {sender}: {exc}", frame=f"a {kind} frame")
            self._refuse(kind, sender, error, decisive=False)
            raise error from None
        return route

    def _reserve_chunked_frame(self, first_chunk: bytes, peer_certificate: bytes | None) -> tuple[int, Callable[[], None]]:
        """Before a chunked frame's body is read: its declared sender must be the TLS peer, its declared length within
        max_frame_bytes, and the sender's untaken plus in-flight bytes within max_queued_bytes (else busy: it retries);
        the declared length is held as in flight until the returned callable releases it."""
        kind, sender, total = self._route(declared_frame, first_chunk, peer_certificate)
        if total > self.max_frame_bytes:
            raise FrameTooLargeError(f"a {kind} frame of {total:,} bytes from {sender} is over {self.party}'s max_frame_bytes={self.max_frame_bytes:,}")
        with self._lock:
            held = self._mailbox.queued_bytes(sender) + self._in_flight.get(sender, 0)
            if held and held + total > self.max_queued_bytes:
                raise ReceiverBusyError(f"{self.party} holds {held:,} bytes of {sender}'s frames, untaken or arriving "
                                        f"(max_queued_bytes={self.max_queued_bytes:,})")
            self._in_flight[sender] = self._in_flight.get(sender, 0) + total

        def release() -> None:
            with self._lock:
                self._in_flight[sender] -= total

        return total, release

    def _admit(self, frame: bytes, peer_certificate: bytes | None) -> None:
        """The server's sink: check a frame as this party, in arrival order; queue it or refuse it."""
        kind, claimed_sender, *_ = self._route(peek_route, frame, peer_certificate)
        with self._admit_lock:
            started = time.perf_counter()
            try:
                admitted = self._verifier.admit(frame)
                self._admitted_up_to[claimed_sender] = admitted.header.sequence
                message = decode_payload(admitted, self.codecs)
            except ProtocolError as exc:  # FrameAuthenticationError, WireFormatError, NonFiniteError
                # its sender's own connection delivered it: unless it repeats a frame already admitted,
                # the message a receive waits from that sender will not come in order
                self._refuse(kind, claimed_sender, exc, decisive=not self._is_replay(frame, claimed_sender))
                raise
            finally:
                with self._lock:
                    self.stats.timer.add(Phase.DESERIALIZE, time.perf_counter() - started)
            self._mailbox.put(message, len(frame))

    def _ended_by(self, kind: MessageKind, found: Message) -> ProtocolError:
        """The error of a wait that a message of :data:`_ENDS_A_WAIT` from the awaited sender ended."""
        if found.kind == MessageKind.REQUEST_REFUSED:
            return RequestRefusedError(self.party, MessageKind(kind).value, found)
        reason = peer_text(found.meta.get("reason", "no reason given"))
        return PeerUnavailableError(found.sender, f"{self.party} stopped waiting for {self._waited_for(kind, found.sender)}: {found.sender} aborted ({reason})")

    def _is_replay(self, frame: bytes, sender: str) -> bool:
        """Whether ``frame`` carries a sequence number already admitted from ``sender`` (malformed: no)."""
        try:
            sequence = parse_frame(frame).header.sequence
        except WireFormatError:
            return False
        return sequence <= self._admitted_up_to.get(sender, -1)

    def _refuse(self, kind: str | None, sender: str | None, error: ProtocolError, *, decisive: bool) -> None:
        self._mailbox.refuse(FrameRefusal(self.party, kind, sender, error), decisive=decisive)
        _LOG.warning("%s", error)

    def _seal(self, message: Message) -> bytes:
        with self._lock:
            started = time.perf_counter()
            frame = self._signer.seal(message, self.codecs)
            self.stats.timer.add(Phase.SERIALIZE, time.perf_counter() - started)
            self.stats.record(message.kind, len(frame))
        return frame

    def _note_received(self, message: Message) -> None:
        with self._lock:
            self._last_traffic = f"received {message.kind.value!r} (step {message.step}) from {message.sender!r}"

    def _explained(self, kind: str, sender: str | None, fallback: ProtocolError) -> ProtocolError:
        """The refusal of a frame from the awaited sender if there was one (it explains the wait), else ``fallback``."""
        refusal = self._mailbox.pop_refusal(kind, sender)
        if refusal is not None and (sender is None or refusal.waited_for(kind, sender) >= _SAME_SENDER):
            return refusal.error
        return fallback

    def _waited_for(self, kind: str, sender: str | None) -> str:
        origin = f"from {sender!r}" if sender is not None else "from any party"
        return f"a {MessageKind(kind).value!r} message {origin}"

    def _gone_error(self, kind: str, sender: str, watch: LivenessWatch, now: float) -> PeerUnavailableError:
        client = self._clients[sender]
        with self._lock:
            last = self._last_traffic
        return PeerUnavailableError(
            sender,
            f"{self.party} stopped waiting for {self._waited_for(kind, sender)}: {sender} at {client.address.target} is gone "
            f"({watch.describe(now)}); last traffic: {last}",
        )

    def _timeout_error(self, kind: str, sender: str | None, watch: LivenessWatch | None, waited: float, now: float) -> PeerTimeoutError:
        with self._lock:
            last = self._last_traffic
        state = f" ({sender} {watch.describe(now)})" if watch is not None else ""
        return PeerTimeoutError(
            sender,
            f"{self.party} waited {waited:.1f} s for {self._waited_for(kind, sender)} and got none{state}; "
            f"last traffic: {last}; queued: {self._mailbox.describe()}",
        )

    def _client(self, peer: str) -> PeerClient:
        client = self._clients.get(peer)
        if client is None:
            known = ", ".join(sorted(self._clients)) or "none"
            raise ProtocolError(f"{self.party} has no address for {peer!r} (peers with an address: {known})")
        return client

    def _own(self, receiver: str) -> None:
        if receiver != self.party:
            raise ProtocolError(f"{self.party} cannot receive the messages addressed to {receiver!r}")

    def _check_open(self, doing: str = "") -> None:
        if self._closed:
            raise ProtocolError(f"{self.party}'s channel is closed{doing}")
