"""A channel for one party per thread: each party its own endpoint, identity and waiting receive.

:class:`~.channel.InProcessChannel` runs every party in one thread and lets the key holder answer
whenever a receive finds nothing. With one thread per party (a test of the per-process schedule
without a network) a receive must *wait* for the peer's thread instead. Here the parties share
only a :class:`ThreadedNetwork`, which moves raw signed frames to their receiver's inbox and
holds no key; each party's :class:`ThreadedEndpoint` holds that party's identity only, signs its
frames with its own :class:`~.framing.FrameSigner` and admits what arrives with its own
:class:`~.framing.FrameVerifier` against the public roster, exactly as a network transport does.

**Receive.** The oldest admitted message of the kind (and sender) asked for; while there is none,
the caller waits up to ``receive_timeout`` seconds and then fails with one line. A frame the
verifier refuses is dropped and logged; a receive that waits for a frame claiming exactly that
kind and sender raises the refusal at once, others raise it only when their deadline passes with
nothing to return (never ``poll``, so a key holder keeps serving).

**Abort.** An admitted :attr:`~.messages.MessageKind.ABORT` frame means its sender stopped: every
receive of this endpoint then fails at once with :class:`PeerAbortedError` (its reason in the
line) instead of waiting out its deadline; the frame is still queued for ``poll`` to see.

Every method may be called from several threads of the same party (the active party's training
thread and its key holder's serving thread): one lock of the network guards all state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection

from securevfl.protocols.accounting import TrafficStats
from securevfl.protocols.channel import FrameRefusal
from securevfl.protocols.codecs import CodecRegistry
from securevfl.protocols.errors import ProtocolError, RequestRefusedError, WireFormatError, peer_text
from securevfl.protocols.framing import FrameSigner, FrameVerifier, new_session_id
from securevfl.protocols.identity import Identity, Roster
from securevfl.protocols.messages import Message, MessageKind
from securevfl.protocols.phases import Phase
from securevfl.protocols.wire import peek_route

__all__ = ["DEFAULT_RECEIVE_TIMEOUT", "PeerAbortedError", "ThreadedEndpoint", "ThreadedNetwork"]

_LOG = logging.getLogger("securevfl.channel")

#: Seconds a receive waits for its message before it fails (a CKKS step on a loaded machine takes seconds).
DEFAULT_RECEIVE_TIMEOUT = 300.0


class PeerAbortedError(ProtocolError):
    """A peer announced that it stopped (an ABORT frame): waiting for it would only time out."""


class ThreadedNetwork:
    """The wire between the threads of one process: raw frames per receiver, in arrival order.

    It holds no identity and checks nothing (as a network would not): every receiver's endpoint
    verifies what arrives. ``taps`` see every frame as its sender signed it (an eavesdropper's
    view, for observer attacks in tests).
    """

    def __init__(self, session: str | None = None) -> None:
        self.session = session if session is not None else new_session_id()
        self.condition = threading.Condition()
        self.taps: list[Callable[[bytes], None]] = []
        self._inboxes: dict[str, deque[bytes]] = {}

    def endpoint(self, identity: Identity, roster: Roster, *, receive_timeout: float = DEFAULT_RECEIVE_TIMEOUT) -> ThreadedEndpoint:
        """The endpoint of the party ``identity`` names, checking its peers against ``roster``."""
        return ThreadedEndpoint(self, identity, roster, receive_timeout=receive_timeout)

    def post(self, receiver: str, frame: bytes) -> None:
        """Put ``frame`` in ``receiver``'s inbox and wake every waiting party (call with the condition held)."""
        for tap in self.taps:
            tap(frame)
        self._inboxes.setdefault(receiver, deque()).append(frame)
        self.condition.notify_all()

    def has_arrived(self, receiver: str) -> bool:
        """Whether a frame for ``receiver`` waits in its inbox (call with the condition held)."""
        return bool(self._inboxes.get(receiver))

    def take_arrived(self, receiver: str) -> list[bytes]:
        """Every frame that arrived for ``receiver`` since the last call (call with the condition held)."""
        inbox = self._inboxes.get(receiver)
        if not inbox:
            return []
        frames = list(inbox)
        inbox.clear()
        return frames


class ThreadedEndpoint:
    """One party's side of a :class:`ThreadedNetwork`: a :class:`~.channel.Channel` with a waiting receive.

    ``stats`` count what this party sent (the sum over every party's endpoint is what an
    in-process run counts).
    """

    def __init__(self, network: ThreadedNetwork, identity: Identity, roster: Roster, *, receive_timeout: float) -> None:
        if identity.name not in roster:
            raise ProtocolError(f"{identity.name!r} is not on the run's roster (parties: {', '.join(roster)})")
        if roster.public_key(identity.name) != identity.public_key:
            raise ProtocolError(f"{identity.name}'s identity key is not the one the roster pins")
        self.party = identity.name
        self.stats = TrafficStats()
        self.codecs = CodecRegistry()
        self.receive_timeout = receive_timeout
        self.refusals: list[FrameRefusal] = []
        """Every frame this party refused, in arrival order."""
        self._network = network
        self._condition = network.condition
        self._signer = FrameSigner(identity, network.session)
        self._verifier = FrameVerifier(identity.name, roster, network.session)
        self._mailbox: deque[Message] = deque()
        self._unreported: list[FrameRefusal] = []
        self._aborted: dict[str, str] = {}

    # ------------------------------------------------------------------ Channel
    def send(self, message: Message) -> None:
        if message.sender != self.party:
            raise ProtocolError(f"{self.party} cannot send a message as {message.sender!r}")
        with self._condition:
            with self.stats.timer.phase(Phase.SERIALIZE):
                frame = self._signer.seal(message, self.codecs)
            self.stats.record(message.kind, len(frame))
            self._network.post(message.receiver, frame)

    def receive(self, receiver: str, kind: MessageKind, sender: str | None = None) -> Message:
        """The oldest admitted message of ``kind`` (from ``sender``), waiting up to ``receive_timeout`` seconds."""
        self._own(receiver)
        deadline = time.monotonic() + self.receive_timeout
        with self._condition:
            while True:
                self._admit_arrived()
                message = self._take((kind,), sender)
                if message is not None:
                    return message
                refused = self._take((MessageKind.REQUEST_REFUSED,), sender) if sender is not None else None
                if refused is not None:
                    raise RequestRefusedError(self.party, MessageKind(kind).value, refused)
                if self._aborted:
                    peer, reason = next(iter(self._aborted.items()))
                    raise PeerAbortedError(f"{self.party} stopped waiting for a '{kind}' message: {peer} aborted ({reason})")
                exact = self._pop_refusal(kind, sender, exact=True)
                if exact is not None:
                    raise exact.error
                left = deadline - time.monotonic()
                if left <= 0:
                    refusal = self._pop_refusal(kind, sender, exact=False)
                    if refusal is not None:
                        raise refusal.error
                    origin = f" from {sender!r}" if sender is not None else ""
                    raise ProtocolError(f"{self.party} waited {self.receive_timeout:g} s for a '{kind}' message{origin}; none came")
                self._condition.wait(left)

    def poll(self, receiver: str, kinds: Collection[MessageKind]) -> Message | None:
        """The oldest admitted message whose kind is one of ``kinds`` (any sender), or None; never waits."""
        self._own(receiver)
        with self._condition:
            self._admit_arrived()
            return self._take(tuple(kinds), None)

    @property
    def session(self) -> str:
        """The session this endpoint signs in now (the network's, until an attempt moves it)."""
        return self._signer.session

    def expect_session(self, session: str) -> None:
        """Admit frames of ``session`` too (an attempt's own session, :mod:`.framing`), besides the current one."""
        with self._condition:
            self._verifier.expect_session(session)

    def enter_session(self, session: str) -> None:
        """Sign and admit only ``session``'s frames from now on; every link numbers from 0 again."""
        with self._condition:
            self._signer.enter_session(session)
            self._verifier.enter_session(session)

    # ------------------------------------------------------------------ for serving loops
    def wait(self, timeout: float) -> None:
        """Wait until a frame arrives for this party or ``timeout`` seconds pass (a server's idle loop)."""
        with self._condition:
            if not self._network.has_arrived(self.party):
                self._condition.wait(timeout)

    # ------------------------------------------------------------------ internals
    def _own(self, receiver: str) -> None:
        if receiver != self.party:
            raise ProtocolError(f"{self.party} cannot receive the messages addressed to {receiver!r}")

    def _admit_arrived(self) -> None:
        """Verify every frame that arrived, in arrival order: queue the admitted, record the refused."""
        for frame in self._network.take_arrived(self.party):
            try:
                with self.stats.timer.phase(Phase.DESERIALIZE):
                    message = self._verifier.open(frame, self.codecs)
            except ProtocolError as exc:  # FrameAuthenticationError, WireFormatError, NonFiniteError
                self._refuse(frame, exc)
                continue
            if message.kind == MessageKind.ABORT:
                self._aborted.setdefault(message.sender, peer_text(message.meta.get("reason", "no reason given")))
            self._mailbox.append(message)

    def _refuse(self, frame: bytes, error: ProtocolError) -> None:
        try:
            kind, sender = peek_route(frame)
        except WireFormatError:
            kind = sender = None
        refusal = FrameRefusal(self.party, kind, sender, error)
        self.refusals.append(refusal)
        self._unreported.append(refusal)
        _LOG.warning("%s", error)

    def _pop_refusal(self, kind: str, sender: str | None, *, exact: bool) -> FrameRefusal | None:
        if not self._unreported:
            return None
        best = max(range(len(self._unreported)), key=lambda i: (self._unreported[i].waited_for(kind, sender), -i))
        if exact and self._unreported[best].waited_for(kind, sender) < 2:
            return None
        return self._unreported.pop(best)

    def _take(self, kinds: tuple[MessageKind, ...], sender: str | None) -> Message | None:
        for index, message in enumerate(self._mailbox):
            if message.kind in kinds and (sender is None or message.sender == sender):
                del self._mailbox[index]
                return message
        return None
