"""One party's thread-safe mailbox: the messages its verifier admitted, and the frames it refused.

A network transport fills the mailbox from its server's threads and the party empties it from
its own thread, so every operation holds one lock, and a party waiting for a message sleeps on a
condition that a new message, a refusal or a :meth:`Mailbox.nudge` wakes.

Taking follows :class:`~.channel.InProcessChannel`: the oldest message that matches the kinds
(and the sender, if given), so messages from one sender keep their order and messages from
different senders do not block each other. Refusals are kept until a failed receive reports the
one that best explains it (:meth:`Mailbox.pop_refusal`). A refusal marked *decisive* (the sender
itself sent a frame its receiver refused, so the message a receive waits for will not come in
order) ends a matching wait at once (:meth:`Mailbox.wait_for`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

from securevfl.protocols.channel import FrameRefusal
from securevfl.protocols.messages import Message, MessageKind

__all__ = ["Mailbox"]

# FrameRefusal.waited_for's score of a refusal that claimed the awaited kind and sender
_SAME_KIND_AND_SENDER = 2


@dataclass(frozen=True)
class _Unreported:
    refusal: FrameRefusal
    decisive: bool


class Mailbox:
    """Admitted messages in arrival order, and refusals, for one receiver."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._messages: deque[Message] = deque()
        self._sizes: dict[int, int] = {}  # id(message) -> its frame's bytes, while it is queued
        self._queued_bytes: dict[str, int] = {}  # sender -> bytes of its frames queued and not yet taken
        self._unreported: list[_Unreported] = []
        self.refusals: list[FrameRefusal] = []
        """Every frame refused, in arrival order (kept even after a receive reported it)."""

    def put(self, message: Message, size: int = 0) -> None:
        """Queue ``message``; ``size`` (its frame's bytes) counts towards its sender's :meth:`queued_bytes` until it is taken."""
        with self._condition:
            self._messages.append(message)
            self._sizes[id(message)] = size
            self._queued_bytes[message.sender] = self._queued_bytes.get(message.sender, 0) + size
            self._condition.notify_all()

    def queued_bytes(self, sender: str) -> int:
        """Bytes of ``sender``'s frames queued here and not taken yet (what a flood of unsolicited frames would grow)."""
        with self._condition:
            return self._queued_bytes.get(sender, 0)

    def refuse(self, refusal: FrameRefusal, *, decisive: bool) -> None:
        with self._condition:
            self.refusals.append(refusal)
            self._unreported.append(_Unreported(refusal, decisive))
            self._condition.notify_all()

    def nudge(self) -> None:
        """Wake every waiting :meth:`wait_for` so it looks again (something it checks changed)."""
        with self._condition:
            self._condition.notify_all()

    def __len__(self) -> int:
        with self._condition:
            return len(self._messages)

    def take(self, kinds: Collection[MessageKind], sender: str | None) -> Message | None:
        """The oldest queued message of one of ``kinds`` (from ``sender``, if given), removed; None if there is none."""
        with self._condition:
            return self._take(kinds, sender)

    def wait_for(
        self, kind: MessageKind, sender: str | None, until: float, *, ends: Collection[MessageKind] = ()
    ) -> Message | FrameRefusal | None:
        """The message a receive waits for, or a message of ``ends`` from ``sender`` (one that says
        the awaited one will not come), or the decisive refusal of it, or None at ``until``
        (``time.monotonic()``) or when woken by anything else; the caller loops."""
        with self._condition:
            found = self._find(kind, sender, ends)
            if found is not None:
                return found
            remaining = until - time.monotonic()
            if remaining > 0:
                self._condition.wait(remaining)
            return self._find(kind, sender, ends)

    def _find(self, kind: MessageKind, sender: str | None, ends: Collection[MessageKind]) -> Message | FrameRefusal | None:
        found = self._take((kind,), sender)
        if found is None and ends and sender is not None:
            found = self._take(tuple(ends), sender)
        return found or self._pop_decisive(kind, sender)

    def wait_for_any(self, timeout: float) -> bool:
        """Block until a message is queued or ``timeout`` seconds pass; True if one is queued."""
        with self._condition:
            return self._condition.wait_for(lambda: bool(self._messages), timeout)

    def pop_refusal(self, kind: str, sender: str | None) -> FrameRefusal | None:
        """The unreported refusal that best explains a failed receive (oldest first among equals)."""
        with self._condition:
            if not self._unreported:
                return None
            scores = [entry.refusal.waited_for(kind, sender) for entry in self._unreported]
            best = max(range(len(scores)), key=lambda i: (scores[i], -i))
            return self._unreported.pop(best).refusal

    def describe(self) -> str:
        """What is queued, for an error line: ``'gradient' from 'active', ...`` or ``nothing``."""
        with self._condition:
            return ", ".join(f"{m.kind.value!r} from {m.sender!r}" for m in self._messages) or "nothing"

    def _take(self, kinds: Collection[MessageKind], sender: str | None) -> Message | None:
        for index, message in enumerate(self._messages):
            if message.kind in kinds and (sender is None or message.sender == sender):
                del self._messages[index]
                self._queued_bytes[message.sender] -= self._sizes.pop(id(message), 0)
                return message
        return None

    def _pop_decisive(self, kind: MessageKind, sender: str | None) -> FrameRefusal | None:
        for index, entry in enumerate(self._unreported):
            if entry.decisive and entry.refusal.waited_for(kind, sender) == _SAME_KIND_AND_SENDER:
                return self._unreported.pop(index).refusal
        return None
