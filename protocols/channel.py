"""Channels move framed messages between named parties and account for every byte.

:class:`InProcessChannel` keeps one FIFO mailbox per receiver inside a single process but
still serializes every message to bytes and back, so the receiver gets an independent
copy (no shared tensors, no autograd graph leaking across a party boundary) and the byte
counts equal what a network transport would carry.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from securevfl.protocols.accounting import TrafficStats
from securevfl.protocols.codecs import CodecRegistry
from securevfl.protocols.errors import ProtocolError
from securevfl.protocols.messages import Message
from securevfl.protocols.wire import decode_message, encode_message, peek_route
from securevfl.protocols.phases import Phase


class Channel(Protocol):
    """What parties need from a transport."""

    stats: TrafficStats

    def send(self, message: Message) -> None: ...

    def receive(self, receiver: str, kind: str, sender: str | None = None) -> Message: ...

    def peek_kind(self, receiver: str) -> str: ...


class InProcessChannel:
    """Serialize-on-send, deserialize-on-receive mailboxes for a single-process simulation."""

    def __init__(self, codecs: CodecRegistry | None = None) -> None:
        self.codecs = codecs if codecs is not None else CodecRegistry()
        self.stats = TrafficStats()
        self._mailboxes: dict[str, deque[bytes]] = {}

    def send(self, message: Message) -> None:
        with self.stats.timer.phase(Phase.SERIALIZE):
            frame = encode_message(message, self.codecs)
        self.stats.record(message.kind, len(frame))
        self._mailboxes.setdefault(message.receiver, deque()).append(frame)

    def receive(self, receiver: str, kind: str, sender: str | None = None) -> Message:
        """The oldest message for ``receiver`` of ``kind`` (from ``sender``, if given).

        Messages from one sender keep their order; messages from different senders do not
        block each other, as on separate network connections.
        """
        mailbox = self._mailboxes.get(receiver)
        if not mailbox:
            raise ProtocolError(f"{receiver} expected a {kind!r} message but none is queued")
        for index, frame in enumerate(mailbox):
            frame_kind, frame_sender = peek_route(frame)
            if frame_kind == kind and (sender is None or frame_sender == sender):
                del mailbox[index]
                break
        else:
            queued = ", ".join(f"{k!r} from {s!r}" for k, s in map(peek_route, mailbox))
            origin = f" from {sender!r}" if sender is not None else ""
            raise ProtocolError(f"{receiver} expected a {kind!r} message{origin}, got only {queued}")
        with self.stats.timer.phase(Phase.DESERIALIZE):
            message = decode_message(frame, self.codecs)
        if message.receiver != receiver:
            raise ProtocolError(
                f"message addressed to {message.receiver!r} was delivered to {receiver!r}"
            )
        return message

    def peek_kind(self, receiver: str) -> str:
        """Kind of the oldest message queued for ``receiver`` (for servers answering several kinds)."""
        mailbox = self._mailboxes.get(receiver)
        if not mailbox:
            raise ProtocolError(f"{receiver} has no message queued")
        return peek_route(mailbox[0])[0]

    def pending(self, receiver: str) -> int:
        """Messages queued for ``receiver`` and not yet received."""
        return len(self._mailboxes.get(receiver, ()))
