"""Channels move signed frames between named parties and account for every byte.

:class:`InProcessChannel` keeps one FIFO mailbox per receiver inside a single process but
still frames every message to bytes (:mod:`.framing`: signed by its sender, checked by its
receiver) and back, so the receiver gets an independent copy (no shared tensors, no autograd
graph leaking across a party boundary), the byte counts equal what a network transport would
carry, and every run exercises the same authentication a network transport uses.

**Where frames are checked.** A frame is verified when it is delivered to its receiver's
mailbox, in delivery order, by that receiver's :class:`~.framing.FrameVerifier`; only admitted
messages are queued, so what a party receives and in which order it asks for it cannot undo
the order checks.

**What a refusal does to the receiver.** The frame is dropped, appended to
:attr:`InProcessChannel.refusals` and logged (logger ``securevfl.channel``, one warning line);
the party is not interrupted. A later ``receive`` that finds nothing to return raises the
refusal's error (preferring one that claimed the kind and sender it waits for) instead of
"none is queued": the message it waited for was refused, never silently replaced. ``poll``
never raises for a refused frame, so a server (the key holder) keeps serving the frames that
were admitted.

**A network attacker, for studies and tests.** The federation (never a party: a party holds
only its :class:`ChannelEndpoint`) may set :attr:`InProcessChannel.interceptor`, which sees
every frame after it was signed and decides what is delivered in its place (nothing: dropped;
another frame: replaced; several: injected or reordered), and may :meth:`InProcessChannel.inject`
bytes into any party's mailbox. Neither holds a party's identity key, which is exactly a
network attacker's position.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from securevfl.protocols.accounting import TrafficStats
from securevfl.protocols.codecs import CodecRegistry
from securevfl.protocols.errors import ProtocolError, RequestRefusedError, WireFormatError
from securevfl.protocols.framing import FrameSigner, FrameVerifier, new_session_id
from securevfl.protocols.identity import Identity, Roster
from securevfl.protocols.messages import Message, MessageKind
from securevfl.protocols.phases import Phase
from securevfl.protocols.wire import peek_route

__all__ = ["Channel", "ChannelEndpoint", "FrameRefusal", "InProcessChannel", "Interceptor", "Server"]

_LOG = logging.getLogger("securevfl.channel")

#: A network attacker's hook: given a frame as signed by its sender, the frames delivered to that
#: frame's receiver instead (in order; empty to drop it).
Interceptor = Callable[[bytes], Iterable[bytes]]


class Channel(Protocol):
    """What parties need from a transport: send, a blocking receive, and a non-blocking poll.

    A party's step logic depends on nothing else, so the same party code runs on the
    in-process channel and, one process per party, on a network transport.
    """

    stats: TrafficStats

    def send(self, message: Message) -> None: ...

    def receive(self, receiver: str, kind: MessageKind, sender: str | None = None) -> Message: ...

    def poll(self, receiver: str, kinds: Collection[MessageKind]) -> Message | None: ...


class Server(Protocol):
    """A party that answers requests whenever they arrive (the key holder), not on a schedule."""

    name: str

    def serve_pending(self) -> bool:
        """Answer every request queued for this party; True if there was at least one."""
        ...


@dataclass(frozen=True)
class FrameRefusal:
    """A frame a receiver refused: what it claimed to be (if readable) and the error that refused it."""

    receiver: str
    claimed_kind: str | None
    claimed_sender: str | None
    error: ProtocolError

    def waited_for(self, kind: str, sender: str | None) -> int:
        """How closely this refusal matches a receive of ``kind`` from ``sender`` (2: both, 1: sender, 0: neither)."""
        same_sender = sender is None or self.claimed_sender == sender
        return (self.claimed_kind == kind and same_sender) + same_sender


class InProcessChannel:
    """Signed frames and per-receiver mailboxes for a single-process simulation of every party.

    ``identities`` are the parties of the run (it holds them all: it simulates every party, and
    gives each only its endpoint); the roster they form is fixed once the first frame travels
    (:meth:`enrol` adds a party before that). Without ``identities`` the channel enrols every
    party it is told about (by :meth:`endpoint` or :meth:`send`) with a fresh identity: a
    convenience for unit tests and tools that drive several parties through one object; frames
    alone never enrol anybody. ``session`` defaults to a fresh random session id.

    Parties run one after another in one thread, so a party that waits for a reply (a masked
    decryption) cannot block: when its message is not queued yet, the channel lets the attached
    :class:`Server` parties answer what is queued for them, then looks again. That stands in for
    the servers' own loops on a network; no party ever calls another party.
    """

    def __init__(
        self,
        codecs: CodecRegistry | None = None,
        *,
        identities: Mapping[str, Identity] | None = None,
        session: str | None = None,
    ) -> None:
        self.codecs = codecs if codecs is not None else CodecRegistry()
        self.stats = TrafficStats()
        self.session = session if session is not None else new_session_id()
        """This run's session id: in every frame's header, checked by every receiver."""
        for name, identity in (identities or {}).items():
            if identity.name != name:
                raise ProtocolError(f"identity of {identity.name!r} was given for party {name!r}")
        self._identities: dict[str, Identity] = dict(identities or {})
        self._enrols_on_demand = identities is None
        self.roster = Roster.of(self._identities.values())
        """The public keys every receiver checks signers against."""
        self._signers: dict[str, FrameSigner] = {}
        self._verifiers: dict[str, FrameVerifier] = {}
        self._started = False
        self._mailboxes: dict[str, deque[Message]] = {}
        self._unreported: dict[str, list[FrameRefusal]] = {}
        self._servers: list[Server] = []
        self._serving = False
        self.taps: list[Callable[[bytes], None]] = []
        """Observers of every frame as its sender signed it (an eavesdropper's view; observer attacks attach here)."""
        self.interceptor: Interceptor | None = None
        """A network attacker between the parties (module docstring); None delivers every frame as sent."""
        self.refusals: list[FrameRefusal] = []
        """Every frame a receiver refused, in the order they arrived."""

    # ------------------------------------------------------------------ parties
    def enrol(self, identity: Identity) -> None:
        """Add a party to the roster; only before the first frame travels (the roster is then fixed)."""
        if self._started:
            raise ProtocolError(f"cannot enrol {identity.name!r}: the session has started and its roster is fixed")
        self._add(identity)

    def endpoint(self, party: str) -> ChannelEndpoint:
        """The channel as ``party`` may use it: send as itself, receive its own mail, nothing else."""
        self._known(party)
        return ChannelEndpoint(self, party)

    def attach_server(self, server: Server) -> None:
        """Let ``server`` answer its queued requests whenever a receive would otherwise fail."""
        self._servers.append(server)

    # ------------------------------------------------------------------ sending
    def send(self, message: Message) -> None:
        """Sign ``message`` as its sender (whose identity this channel holds) and deliver it."""
        self._known(message.sender)
        self._known(message.receiver)
        signer = self._signers.get(message.sender)
        if signer is None:
            signer = self._signers[message.sender] = FrameSigner(self._identities[message.sender], self.session)
        with self.stats.timer.phase(Phase.SERIALIZE):
            frame = signer.seal(message, self.codecs)
        self._started = True
        self.stats.record(message.kind, len(frame))
        for tap in self.taps:
            tap(frame)
        delivered = [frame] if self.interceptor is None else list(self.interceptor(frame))
        for data in delivered:
            self._deliver(message.receiver, data)

    def inject(self, receiver: str, frame: bytes) -> None:
        """Deliver raw bytes to ``receiver`` as if they came off the network (a network attacker's injection)."""
        if receiver not in self.roster:
            raise ProtocolError(f"cannot inject a frame for {receiver!r}: not a party of this run")
        self._deliver(receiver, frame)

    # ------------------------------------------------------------------ receiving
    def receive(self, receiver: str, kind: MessageKind, sender: str | None = None) -> Message:
        """The oldest admitted message for ``receiver`` of ``kind`` (from ``sender``, if given).

        Messages from one sender keep their order; messages from different senders do not
        block each other, as on separate network connections. When none is queued, the refusal
        of the frame it waited for is raised, if there was one.
        """
        message = self._take(receiver, (kind,), sender)
        while message is None and self._run_servers():
            message = self._take(receiver, (kind,), sender)
        if message is not None:
            return message
        refusal = self._pop_refusal(receiver, kind, sender)
        if refusal is not None:
            raise refusal.error
        refused = self._take(receiver, (MessageKind.REQUEST_REFUSED,), sender) if sender is not None else None
        if refused is not None:
            raise RequestRefusedError(receiver, MessageKind(kind).value, refused)
        mailbox = self._mailboxes.get(receiver)
        origin = f" from {sender!r}" if sender is not None else ""
        if not mailbox:
            raise ProtocolError(f"{receiver} expected a {kind!r} message{origin} but none is queued")
        queued = ", ".join(f"{m.kind!r} from {m.sender!r}" for m in mailbox)
        raise ProtocolError(f"{receiver} expected a {kind!r} message{origin}, got only {queued}")

    def poll(self, receiver: str, kinds: Collection[MessageKind]) -> Message | None:
        """The oldest admitted message for ``receiver`` whose kind is one of ``kinds``, or None (never waits, never raises for a refused frame)."""
        return self._take(receiver, tuple(kinds), None)

    def pending(self, receiver: str) -> int:
        """Admitted messages queued for ``receiver`` and not yet received."""
        return len(self._mailboxes.get(receiver, ()))

    # ------------------------------------------------------------------ internals
    def _known(self, party: str) -> None:
        """Make sure ``party`` is on the roster: enrol it on demand, or refuse a stranger."""
        if party in self.roster:
            return
        if not self._enrols_on_demand:
            raise ProtocolError(f"{party!r} is not a party of this run (roster: {', '.join(self.roster)})")
        self._add(Identity.generate(party))

    def _add(self, identity: Identity) -> None:
        self.roster = self.roster.with_party(identity)
        self._identities[identity.name] = identity
        for verifier in self._verifiers.values():
            verifier.roster = self.roster

    def _deliver(self, receiver: str, data: bytes) -> None:
        """Verify ``data`` as ``receiver`` would on arrival; queue the message or record the refusal."""
        verifier = self._verifiers.get(receiver)
        if verifier is None:
            verifier = self._verifiers[receiver] = FrameVerifier(receiver, self.roster, self.session)
        try:
            with self.stats.timer.phase(Phase.DESERIALIZE):
                message = verifier.open(data, self.codecs)
        except ProtocolError as exc:  # FrameAuthenticationError, WireFormatError, NonFiniteError
            self._refuse(receiver, data, exc)
            return
        self._mailboxes.setdefault(receiver, deque()).append(message)

    def _refuse(self, receiver: str, data: bytes, error: ProtocolError) -> None:
        try:
            kind, sender = peek_route(data)
        except WireFormatError:
            kind = sender = None
        refusal = FrameRefusal(receiver, kind, sender, error)
        self.refusals.append(refusal)
        self._unreported.setdefault(receiver, []).append(refusal)
        _LOG.warning("%s", error)

    def _pop_refusal(self, receiver: str, kind: str, sender: str | None) -> FrameRefusal | None:
        """The unreported refusal that best explains a failed receive (oldest first among equals)."""
        pending = self._unreported.get(receiver)
        if not pending:
            return None
        best = max(range(len(pending)), key=lambda i: (pending[i].waited_for(kind, sender), -i))
        return pending.pop(best)

    def _take(self, receiver: str, kinds: tuple[MessageKind, ...], sender: str | None) -> Message | None:
        mailbox = self._mailboxes.get(receiver)
        if not mailbox:
            return None
        for index, message in enumerate(mailbox):
            if message.kind in kinds and (sender is None or message.sender == sender):
                del mailbox[index]
                return message
        return None

    def _run_servers(self) -> bool:
        """Let every attached server answer its queue once; True if any answered something."""
        if self._serving:  # a server waiting on a reply would deadlock: nothing else can run
            return False
        self._serving = True
        try:
            return any([server.serve_pending() for server in self._servers])
        finally:
            self._serving = False


class ChannelEndpoint:
    """One party's handle on an :class:`InProcessChannel`, the way a network connection is one's own.

    A party holds its endpoint, never the channel: it signs as itself only, reads its own
    mailbox only, and cannot tap or intercept the traffic, inject frames or attach servers; the
    federation that owns the channel does those. The network transport gives each party the
    same interface.
    """

    def __init__(self, hub: InProcessChannel, party: str) -> None:
        self._hub = hub
        self.party = party

    @property
    def stats(self) -> TrafficStats:
        return self._hub.stats

    def send(self, message: Message) -> None:
        if message.sender != self.party:
            raise ProtocolError(f"{self.party} cannot send a message as {message.sender!r}")
        self._hub.send(message)

    def receive(self, receiver: str, kind: MessageKind, sender: str | None = None) -> Message:
        self._own(receiver)
        return self._hub.receive(receiver, kind, sender)

    def poll(self, receiver: str, kinds: Collection[MessageKind]) -> Message | None:
        self._own(receiver)
        return self._hub.poll(receiver, kinds)

    def _own(self, receiver: str) -> None:
        if receiver != self.party:
            raise ProtocolError(f"{self.party} cannot receive the messages addressed to {receiver!r}")
