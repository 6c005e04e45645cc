"""The start of every attempt of a planned run: a fresh session, and agreement on where to continue.

A planned run (one process per party) may be started several times: first from the beginning,
then, after a crash or a stop, with ``--resume``. Each start is an *attempt*. Before any other
frame, every party runs :func:`start_attempt` with every other party:

1. **HELLO** to every peer: a fresh random nonce (16 bytes from the OS) and the completed epochs
   this party can continue after (``0`` = the beginning; a party that holds no training state,
   a coordinator, accepts any). Then it waits for every peer's HELLO.
2. Every party computes the same two things from the same HELLOs:

   * the **epoch** to continue after: the latest epoch every party with training state can
     continue after. Parties keep their last two epoch checkpoints, so a crash between two
     parties' checkpoint writes (they can be at most one epoch apart) still has an epoch in
     common. If there is none (one party starts from the beginning while another resumes, or
     their checkpoints are from different epochs), every party stops with the same line naming
     each party's epochs (:class:`AttemptRefusedError`);
   * the attempt's **session id**: SHA-256 of the plan's session id, the plan's agreement digest
     and every party's nonce.

   Every HELLO also carries the sender's **agreement digest**: a hash of everything in its plan
   that every party must hold alike (the roster, the run configuration with its protection
   settings, the shape; not local paths). A party whose peer's digest differs stops with one line
   naming the peer: without it, whoever assembles the plan could hand the key holder a copy with
   flooding and the decryption policy off while the passives' copies say they are on (a red-team
   pass ran exactly that to the end, 2026-11-27), or give each party another roster.

3. **READY** to every peer with that session id and epoch, after which this party also admits
   frames of the new session (:meth:`~.framing.FrameVerifier.expect_session`); then it waits for
   every peer's READY, checks that the peer derived the same session and epoch, and from then on
   signs and admits only the new session (``enter_session``).

Why a session per attempt: sequence numbers start at 0 again in every attempt, so under the
plan's session alone a frame recorded in an earlier attempt would be "next in line" again in a
later one. Under the attempt's session, every frame of an earlier attempt is refused as another
session's. Why two rounds: a party may send in the new session only once every peer admits it,
which READY says. A HELLO replayed from an earlier attempt (only possible for someone who holds
a party's TLS key, since every link is mutual TLS) makes the parties derive different sessions:
the READY check then stops the attempt with a line naming the peer, and nothing of the run is
exchanged.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from securevfl.protocols.errors import ProtocolError
from securevfl.protocols.messages import Message, MessageKind

__all__ = ["Attempt", "AttemptRefusedError", "agree_on_epoch", "derive_session", "start_attempt"]

_EMPTY = np.zeros(0, dtype=np.float32)
_NONCE_BYTES = 16
_HEX = re.compile(r"[0-9a-f]+")
_ANY = "any"
_DOMAIN = b"securevfl attempt session v1"


class AttemptRefusedError(ProtocolError):
    """The parties cannot start this attempt together (no common epoch, or different sessions derived)."""


class AttemptChannel(Protocol):
    """What the handshake needs of a party's channel (the gRPC and the threaded channel have it)."""

    def send(self, message: Message) -> None: ...

    def receive(self, receiver: str, kind: MessageKind, sender: str | None = None) -> Message: ...

    def expect_session(self, session: str) -> None: ...

    def enter_session(self, session: str) -> None: ...


@dataclass(frozen=True)
class Attempt:
    """What every party agreed on at the start of an attempt."""

    session: str
    """The attempt's session id: every later frame carries it."""
    epoch: int
    """The last completed epoch every party continues after (0: the run starts from the beginning)."""
    offers: Mapping[str, tuple[int, ...] | None]
    """Each party's completed epochs it could continue after (None: any, it holds no training state)."""


def derive_session(plan_session: str, nonces: Mapping[str, str], agreement: str = "") -> str:
    """The attempt's session id: SHA-256 over the plan's session, its agreement digest and every party's nonce (32 hex digits)."""
    digest = hashlib.sha256(_DOMAIN)
    digest.update(plan_session.encode())
    digest.update(b"\x00" + agreement.encode())
    for party in sorted(nonces):
        digest.update(b"\x00" + party.encode() + b"\x00" + nonces[party].encode())
    return digest.hexdigest()[:32]


def agree_on_epoch(offers: Mapping[str, Collection[int] | None]) -> int:
    """The latest epoch every party with training state can continue after; one line naming everyone's if none."""
    holding = {party: set(epochs) for party, epochs in offers.items() if epochs is not None}
    if not holding:
        return 0
    common = set.intersection(*holding.values())
    if common:
        return max(common)
    described = "; ".join(f"{party} {_describe(sorted(epochs))}" for party, epochs in sorted(holding.items()))
    raise AttemptRefusedError(f"the parties do not agree on the last completed epoch: {described}")


def start_attempt(
    channel: AttemptChannel, party: str, peers: Sequence[str], plan_session: str, epochs: Collection[int] | None, agreement: str = ""
) -> Attempt:
    """Run the handshake (module docstring) as ``party`` with every one of ``peers``; return the agreement.

    ``epochs``: the completed epochs this party can continue after (``[0]`` to start from the
    beginning), or None if it holds no training state. ``agreement``: the digest of this party's
    plan (:meth:`securevfl.plan.Plan.agreement`); every peer must send the same.
    """
    nonce = secrets.token_hex(_NONCE_BYTES)
    own = None if epochs is None else tuple(sorted({int(epoch) for epoch in epochs}))
    for peer in peers:
        meta = {"nonce": nonce, "epochs": _encode(own), "agreement": agreement}
        channel.send(Message(MessageKind.HELLO, party, peer, 0, _EMPTY, meta=meta))
    nonces, offers = {party: nonce}, {party: own}
    for peer in peers:
        hello = channel.receive(party, MessageKind.HELLO, sender=peer)
        nonces[peer], offers[peer] = _read_hello(hello)
        theirs = hello.meta.get("agreement")
        if theirs != agreement:
            raise AttemptRefusedError(
                f"{peer} runs another plan than {party} (agreement digest {str(theirs)[:12]}... against {agreement[:12]}...): "
                "every party must hold the same plan (roster, run configuration, shape) and the same securevfl version"
            )
    session = derive_session(plan_session, nonces, agreement)
    epoch = agree_on_epoch(offers)
    channel.expect_session(session)
    for peer in peers:
        channel.send(Message(MessageKind.READY, party, peer, 0, _EMPTY, meta={"session": session, "epoch": epoch}))
    for peer in peers:
        ready = channel.receive(party, MessageKind.READY, sender=peer)
        if ready.meta.get("session") != session or ready.meta.get("epoch") != epoch:
            raise AttemptRefusedError(
                f"{peer} derived session {str(ready.meta.get('session'))[:12]}... and epoch {ready.meta.get('epoch')!r}, "
                f"{party} session {session[:12]}... and epoch {epoch} (a HELLO of another attempt reached one of them)"
            )
    channel.enter_session(session)
    return Attempt(session=session, epoch=epoch, offers=offers)


def _read_hello(message: Message) -> tuple[str, tuple[int, ...] | None]:
    nonce, epochs = message.meta.get("nonce"), message.meta.get("epochs")
    if not isinstance(nonce, str) or len(nonce) != 2 * _NONCE_BYTES or not _HEX.fullmatch(nonce):
        raise AttemptRefusedError(f"{message.sender}'s HELLO carries no valid nonce")
    if epochs == _ANY:
        return nonce, None
    if not isinstance(epochs, str) or not re.fullmatch(r"\d{1,9}(,\d{1,9})*", epochs):
        raise AttemptRefusedError(f"{message.sender}'s HELLO carries no valid list of epochs ({str(epochs)[:40]!r})")
    return nonce, tuple(int(epoch) for epoch in epochs.split(","))


def _encode(epochs: tuple[int, ...] | None) -> str:
    return _ANY if epochs is None else ",".join(str(epoch) for epoch in epochs)


def _describe(epochs: list[int]) -> str:
    if epochs == [0]:
        return "starts from the beginning"
    if not epochs:
        return "has no epoch to continue after"
    return "continues after epoch " + " or ".join(str(epoch) for epoch in epochs)
