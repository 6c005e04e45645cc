"""Authenticated framing: every frame is signed by its sender and admitted by its receiver in order.

A party's :class:`FrameSigner` numbers the frames it sends to each receiver (0, 1, 2, ... per
(sender, receiver) pair) and signs each whole frame (:mod:`.wire`: session id, sequence number,
the header with kind, sender, receiver, step, codec and meta, and the body) with its identity key
(:mod:`.identity`). A party's :class:`FrameVerifier` checks every frame on arrival, in arrival
order, and admits it only if

1. it is signed by the key the roster holds for the sender it names (unknown sender or bad
   signature: refused; so nobody forges a frame or splices a payload into another's frame, and
   nobody but its owner announces a CKKS public key);
2. it belongs to this run's session (a frame of another run is refused);
3. it is addressed to this party (a frame redirected from another receiver is refused);
4. its sequence number is exactly the next one from that sender (a replay or a gap is refused,
   which also refuses reordering: the frame that overtook is a gap);
5. its step is not behind the last step admitted from that sender.

A refusal raises :class:`~securevfl.protocols.errors.FrameAuthenticationError` (one line: the
receiver, the claimed sender, the reason). A forged, foreign, misdirected or replayed frame
consumes nothing, so the genuine frame is still admitted when it comes. An authentic frame next
in line whose step goes back was really sent by its sender: its sequence number is used up
(the link goes on) and the frame itself is dropped. A frame that was lost for good (dropped, or
refused as reordered) cannot be made up for: every later frame from that sender is a gap, and
the link from that sender stays closed for the session; only a new session (a new run) reopens
it. Structurally malformed bytes raise
:class:`~securevfl.protocols.errors.WireFormatError` before any key is consulted, and a payload
is decoded only after its frame was admitted.

The session id is random per run (:func:`new_session_id`) and known to every party before the
first frame: the in-process channel draws it; a deployment's launcher hands it to every
process with the roster. It is not a secret: it binds frames to one run.

**Attempts.** A planned run may be started more than once (a resume after a crash, a restart):
every start of its processes is an *attempt*, and sequence numbers start again at 0. So that no
frame of an earlier attempt can be replayed into a later one, each attempt derives its own
session id in a handshake (:mod:`.attempt`: every party contributes a fresh
random nonce) and moves to it in two steps: :meth:`FrameVerifier.expect_session` admits the new
session's frames (with fresh counters) while the handshake's last frames still arrive in the old
one, and :meth:`FrameSigner.enter_session` / :meth:`FrameVerifier.enter_session` then sign only
in the new session and refuse every other.

What this does not do: hide contents (a network transport adds TLS for that), or stop a party
from sending whatever it likes in its own name (the key holder's policy and the protocol checks
do that).
"""

from __future__ import annotations

import secrets

from securevfl.protocols.codecs import CodecRegistry
from securevfl.protocols.errors import FrameAuthenticationError, IdentityError, ProtocolError
from securevfl.protocols.identity import Identity, Roster
from securevfl.protocols.messages import Message
from securevfl.protocols.wire import ParsedFrame, decode_payload, encode_unsigned, parse_frame

__all__ = ["SESSION_ID_BYTES", "FrameSigner", "FrameVerifier", "new_session_id"]

#: Random bytes in a session id (written as hex in every frame).
SESSION_ID_BYTES = 16


def new_session_id() -> str:
    """A fresh random session id for one federation run (32 hex digits)."""
    return secrets.token_hex(SESSION_ID_BYTES)


class FrameSigner:
    """A party's outgoing side: numbers its frames per receiver and signs each with its identity key.

    One per party: every role a party plays (the active party that also holds the key) sends
    through the same signer, so its frames to one receiver form one numbered sequence.
    """

    def __init__(self, identity: Identity, session: str) -> None:
        self.identity = identity
        self.session = session
        self._next_sequence: dict[str, int] = {}

    @property
    def party(self) -> str:
        return self.identity.name

    def enter_session(self, session: str) -> None:
        """Sign every later frame in ``session``, numbering each link from 0 again (an attempt's own session)."""
        self.session = session
        self._next_sequence = {}

    def seal(self, message: Message, codecs: CodecRegistry) -> bytes:
        """The signed frame of ``message``; the sequence number is used up only if framing succeeds."""
        if message.sender != self.party:
            raise ProtocolError(f"{self.party} cannot sign a message as {message.sender!r}")
        sequence = self._next_sequence.get(message.receiver, 0)
        unsigned = encode_unsigned(message, codecs, session=self.session, sequence=sequence)
        self._next_sequence[message.receiver] = sequence + 1
        return unsigned + self.identity.sign(unsigned)


class FrameVerifier:
    """A party's incoming side: admits a frame only if it is authentic, fresh and next in line.

    ``roster`` is the public keys it checks signers against (the channel replaces it when a
    party is enrolled before the run starts).
    """

    def __init__(self, party: str, roster: Roster, session: str) -> None:
        self.party = party
        self.roster = roster
        self.session = session
        # per admitted session: sender -> next sequence number, sender -> last step
        self._counters: dict[str, tuple[dict[str, int], dict[str, int]]] = {session: ({}, {})}

    @property
    def sessions(self) -> tuple[str, ...]:
        """The sessions whose frames are admitted now (two only between :meth:`expect_session` and :meth:`enter_session`)."""
        return tuple(self._counters)

    def expect_session(self, session: str) -> None:
        """Admit ``session``'s frames too (fresh counters), while the current session's last frames still arrive."""
        self._counters.setdefault(session, ({}, {}))

    def enter_session(self, session: str) -> None:
        """Admit only ``session``'s frames from now on (keeping its counters if it was expected)."""
        self._counters = {session: self._counters.get(session, ({}, {}))}
        self.session = session

    def next_sequence(self, sender: str) -> int:
        """The sequence number the current session expects next from ``sender``."""
        return self._counters[self.session][0].get(sender, 0)

    def admit(self, data: bytes) -> ParsedFrame:
        """Check ``data`` in the order the module docstring gives; the state moves only as it says."""
        frame = parse_frame(data)
        header = frame.header
        what = f"{header.kind} #{header.sequence} (step {header.step})"

        def refused(reason: str) -> FrameAuthenticationError:
            return FrameAuthenticationError(self.party, header.sender, reason, frame=what)

        try:
            self.roster.verify(header.sender, frame.signed, frame.signature)
        except IdentityError as exc:
            raise refused(str(exc)) from None
        counters = self._counters.get(header.session)
        if counters is None:
            raise refused(f"session {header.session[:12]}... is not this run's ({self.session[:12]}...)")
        next_sequence, last_steps = counters
        if header.receiver != self.party:
            raise refused(f"addressed to {header.receiver!r}, not to {self.party!r}")
        expected = next_sequence.get(header.sender, 0)
        if header.sequence < expected:
            raise refused(f"replayed: sequence {header.sequence} was already admitted, next expected {expected}")
        if header.sequence > expected:
            raise refused(f"out of order: sequence {header.sequence} but next expected {expected} (a frame before it is missing)")
        next_sequence[header.sender] = expected + 1  # authentic and next in line: its number is used up
        last_step = last_steps.get(header.sender)
        if last_step is not None and header.step < last_step:
            raise refused(f"step {header.step} goes back from step {last_step}")
        last_steps[header.sender] = header.step
        return frame

    def open(self, data: bytes, codecs: CodecRegistry) -> Message:
        """The message of an admitted frame (its payload decoded only after admission)."""
        return decode_payload(self.admit(data), codecs)
