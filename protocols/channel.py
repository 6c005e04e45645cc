"""Channels move framed messages between named parties and account for every byte.

:class:`InProcessChannel` keeps one FIFO mailbox per receiver inside a single process but
still serializes every message to bytes and back, so the receiver gets an independent
copy (no shared tensors, no autograd graph leaking across a party boundary) and the byte
counts equal what a network transport would carry.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection
from typing import Protocol

from securevfl.protocols.accounting import TrafficStats
from securevfl.protocols.codecs import CodecRegistry
from securevfl.protocols.errors import ProtocolError
from securevfl.protocols.messages import Message, MessageKind
from securevfl.protocols.wire import decode_message, encode_message, peek_route
from securevfl.protocols.phases import Phase


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


class InProcessChannel:
    """Serialize-on-send, deserialize-on-receive mailboxes for a single-process simulation.

    Parties run one after another in one thread, so a party that waits for a reply (a masked
    decryption) cannot block: when its message is not queued yet, the channel lets the attached
    :class:`Server` parties answer what is queued for them, then looks again. That stands in for
    the servers' own loops on a network; no party ever calls another party.
    """

    def __init__(self, codecs: CodecRegistry | None = None) -> None:
        self.codecs = codecs if codecs is not None else CodecRegistry()
        self.stats = TrafficStats()
        self._mailboxes: dict[str, deque[bytes]] = {}
        self._servers: list[Server] = []
        self._serving = False
        self.taps: list[Callable[[bytes], None]] = []
        """Observers of every frame sent (a relay's or eavesdropper's view; studies attach attacks here)."""

    def endpoint(self, party: str) -> ChannelEndpoint:
        """The channel as ``party`` may use it: send as itself, receive its own mail, nothing else."""
        return ChannelEndpoint(self, party)

    def attach_server(self, server: Server) -> None:
        """Let ``server`` answer its queued requests whenever a receive would otherwise fail."""
        self._servers.append(server)

    def send(self, message: Message) -> None:
        with self.stats.timer.phase(Phase.SERIALIZE):
            frame = encode_message(message, self.codecs)
        self.stats.record(message.kind, len(frame))
        for tap in self.taps:
            tap(frame)
        self._mailboxes.setdefault(message.receiver, deque()).append(frame)

    def receive(self, receiver: str, kind: MessageKind, sender: str | None = None) -> Message:
        """The oldest message for ``receiver`` of ``kind`` (from ``sender``, if given).

        Messages from one sender keep their order; messages from different senders do not
        block each other, as on separate network connections.
        """
        frame = self._take(receiver, (kind,), sender)
        while frame is None and self._run_servers():
            frame = self._take(receiver, (kind,), sender)
        if frame is None:
            mailbox = self._mailboxes.get(receiver)
            origin = f" from {sender!r}" if sender is not None else ""
            if not mailbox:
                raise ProtocolError(f"{receiver} expected a {kind!r} message{origin} but none is queued")
            queued = ", ".join(f"{k!r} from {s!r}" for k, s in map(peek_route, mailbox))
            raise ProtocolError(f"{receiver} expected a {kind!r} message{origin}, got only {queued}")
        return self._decode(frame, receiver)

    def poll(self, receiver: str, kinds: Collection[MessageKind]) -> Message | None:
        """The oldest message for ``receiver`` whose kind is one of ``kinds``, or None (never waits)."""
        frame = self._take(receiver, tuple(kinds), None)
        return None if frame is None else self._decode(frame, receiver)

    def pending(self, receiver: str) -> int:
        """Messages queued for ``receiver`` and not yet received."""
        return len(self._mailboxes.get(receiver, ()))

    def _take(self, receiver: str, kinds: tuple[MessageKind, ...], sender: str | None) -> bytes | None:
        mailbox = self._mailboxes.get(receiver)
        if not mailbox:
            return None
        for index, frame in enumerate(mailbox):
            frame_kind, frame_sender = peek_route(frame)
            if frame_kind in kinds and (sender is None or frame_sender == sender):
                del mailbox[index]
                return frame
        return None

    def _decode(self, frame: bytes, receiver: str) -> Message:
        with self.stats.timer.phase(Phase.DESERIALIZE):
            message = decode_message(frame, self.codecs)
        if message.receiver != receiver:
            raise ProtocolError(f"message addressed to {message.receiver!r} was delivered to {receiver!r}")
        return message

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

    A party holds its endpoint, never the channel: it cannot send under another name, read
    another party's mailbox, tap the traffic or attach servers; the federation that owns the
    channel does those. The network transport gives each party the same interface.
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
