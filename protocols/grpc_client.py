"""A party's connection to one peer: delivers frames and checks that the peer is alive, over mutual TLS.

The client presents the party's certificate and checks the peer's against the federation's CA and
the name of the address it dials, or, when the address pins the peer's certificate, against exactly
that certificate (:class:`~.grpc_settings.PeerAddress`). Every failure becomes one
line naming the party, the peer, what it was doing and the cause:

* the peer cannot be reached within ``connect`` seconds (process down, wrong address, TLS refused
  either way): :class:`~.errors.PeerUnavailableError`; until then gRPC retries the connection
  with a short backoff, so a peer that starts a little later is waited for;
* the connection drops while a frame travels: :class:`~.errors.PeerUnavailableError`;
* the frame is not delivered within ``send`` seconds: :class:`~.errors.PeerTimeoutError`;
* the peer refuses the frame (its one line is passed on): :class:`~.errors.ProtocolError`;
* the frame is over the peer's size limit: :class:`~.errors.FrameTooLargeError`.

A frame is sent at most once: the connection is established before the frame goes out, and a call
that failed after that is never retried (the receiver would refuse the copy as a replay, and the
sender cannot know whether the first one arrived).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from securevfl.protocols.errors import BUSY_PREFIX, FrameTooLargeError, PeerTimeoutError, PeerUnavailableError, ProtocolError, peer_text
from securevfl.protocols.grpc_settings import (
    CHUNK_BYTES,
    DELIVER_CHUNKS_METHOD,
    DELIVER_METHOD,
    PING_METHOD,
    UNARY_FRAME_BYTES,
    ChannelTimeouts,
    PeerAddress,
    TlsMaterial,
    client_options,
)
from securevfl.protocols.wire_bytes import ByteCounter

__all__ = ["Liveness", "PeerClient", "PeerStatus"]


class Liveness(enum.Enum):
    """What one ping found out about a peer."""

    ALIVE = "alive"
    """It answered: its process is up and serving (it may still be slow to send what is awaited)."""
    NOT_ANSWERING = "not answering"
    """Connected or connecting, but no answer within the ping's timeout: busy, hung or partitioned."""
    GONE = "gone"
    """Unreachable: connection refused or reset, or TLS with it failed."""


@dataclass(frozen=True)
class PeerStatus:
    """The outcome of a ping: how the peer is, and the cause when it is not alive (one line)."""

    liveness: Liveness
    cause: str = ""


#: Back-pressure retries: the first pause and the longest (doubling in between).
_BUSY_FIRST_PAUSE = 0.02
_BUSY_MAX_PAUSE = 0.5


def _identity(data: bytes) -> bytes:
    return data


def _chunks(frame: bytes) -> Iterator[bytes]:
    """``frame`` in :data:`CHUNK_BYTES` pieces, for the chunked delivery of a frame over :data:`UNARY_FRAME_BYTES`."""
    view = memoryview(frame)
    for start in range(0, len(frame), CHUNK_BYTES):
        yield bytes(view[start : start + CHUNK_BYTES])


def _one_line(text: str | None) -> str:
    """A peer server's status text as one sanitised line (no control characters, bounded: :func:`~.errors.peer_text`)."""
    return peer_text(text or "", 1000)


class PeerClient:
    """``party``'s connection to ``peer`` at ``address``."""

    def __init__(
        self,
        party: str,
        peer: str,
        address: PeerAddress,
        tls: TlsMaterial,
        *,
        max_frame_bytes: int,
        timeouts: ChannelTimeouts,
    ) -> None:
        self.party = party
        self.peer = peer
        self.address = address
        self.counter = ByteCounter()
        """Message bytes sent to the peer (frames, pings) and received from it (acknowledgements, ping replies)."""
        self._timeouts = timeouts
        credentials = grpc.ssl_channel_credentials(  # a pinned certificate is the only one trusted for this peer
            root_certificates=address.pinned_certificate or tls.root_certificates,
            private_key=tls.private_key,
            certificate_chain=tls.certificate_chain,
        )
        self._channel = grpc.secure_channel(address.target, credentials, options=client_options(max_frame_bytes, address.tls_name))
        # a frame up to UNARY_FRAME_BYTES in one unary call, a larger one in chunks the server reads only after it has
        # checked the TLS peer (grpc_server)
        self._deliver = self._channel.unary_unary(DELIVER_METHOD, request_serializer=_identity, response_deserializer=_identity)
        self._deliver_chunks = self._channel.stream_unary(DELIVER_CHUNKS_METHOD, request_serializer=_identity, response_deserializer=_identity)
        self._ping = self._channel.unary_unary(PING_METHOD, request_serializer=_identity, response_deserializer=_identity)
        # True once the peer answered over this connection, False again after the connection failed.
        # (Not gRPC's connectivity subscription: its polling thread can outlive close() and die with a
        # traceback, and a "ready" future starts a thread per call.)
        self._answered = False

    @property
    def where(self) -> str:
        return f"{self.peer} at {self.address.target}"

    def wait_connected(self) -> None:
        """Return once a TLS connection to the peer is up; retry for at most ``connect`` seconds."""
        if self._answered:
            return
        try:  # a ping that waits for the connection: gRPC retries it with a short backoff until the deadline
            name = self._ping(b"", timeout=self._timeouts.connect, wait_for_ready=True)
        except grpc.RpcError:
            # one fail-fast call fetches gRPC's last connection error (refused, TLS handshake, name resolution)
            status = self.ping()
            if status.liveness is Liveness.ALIVE:  # it came up just now
                return
            cause = status.cause if status.liveness is Liveness.GONE else "connected, but it did not answer"
            if self.address.pinned_certificate is not None and "CERTIFICATE_VERIFY_FAILED" in cause:
                cause = f"the certificate served there is not the one pinned for {self.peer} (the plan's tls_certificate): {cause}"
            raise PeerUnavailableError(self.peer, f"{self.party} cannot reach {self.where} within {self._timeouts.connect:g} s: {cause}") from None
        self._check_name(name)

    def deliver(self, frame: bytes, what: str) -> None:
        """Send ``frame`` (described by ``what`` in errors) and return once the peer admitted it."""
        self.wait_connected()
        deadline = time.monotonic() + self._timeouts.send
        pause = _BUSY_FIRST_PAUSE
        while True:
            self.counter.add(sent=len(frame))
            try:
                remaining = max(deadline - time.monotonic(), 0.001)
                if len(frame) <= UNARY_FRAME_BYTES:
                    acknowledgement = self._deliver(frame, timeout=remaining)
                else:
                    acknowledgement = self._deliver_chunks(_chunks(frame), timeout=remaining)
                break
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""  # type: ignore[attr-defined]
                if code == grpc.StatusCode.RESOURCE_EXHAUSTED and details.startswith(BUSY_PREFIX):
                    # back-pressure: the peer has not taken enough of this party's frames yet; nothing was admitted
                    if time.monotonic() + pause >= deadline:
                        raise PeerTimeoutError(
                            self.peer, f"{self.party}'s {what} of {len(frame):,} bytes to {self.where} was not taken within "
                            f"{self._timeouts.send:g} s: {_one_line(details.removeprefix(BUSY_PREFIX))}") from None
                    time.sleep(pause)
                    pause = min(2 * pause, _BUSY_MAX_PAUSE)
                    continue
                if code == grpc.StatusCode.UNAVAILABLE:
                    self._answered = False
                raise self._delivery_error(exc, frame, what) from None
        self.counter.add(received=len(acknowledgement))

    def ping(self) -> PeerStatus:
        """Ask the peer whether it is alive; never waits longer than ``liveness_timeout``."""
        return self.ping_status(self.start_ping())

    def start_ping(self) -> grpc.Future:
        """Send a ping without waiting for the answer (read it with :meth:`ping_status`)."""
        return self._ping.future(b"", timeout=self._timeouts.liveness_timeout)

    def ping_status(self, ping: grpc.Future) -> PeerStatus:
        """What the answer to ``ping`` says (waits for it: at most ``liveness_timeout``)."""
        try:
            name = ping.result()
        except grpc.FutureCancelledError:
            return PeerStatus(Liveness.NOT_ANSWERING, "the ping was cancelled")
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return PeerStatus(Liveness.NOT_ANSWERING, f"no answer to a ping within {self._timeouts.liveness_timeout:g} s")
            self._answered = False
            return PeerStatus(Liveness.GONE, _one_line(exc.details()))  # type: ignore[attr-defined]
        try:
            self._check_name(name)
        except PeerUnavailableError as exc:
            return PeerStatus(Liveness.GONE, str(exc))
        return PeerStatus(Liveness.ALIVE)

    def close(self) -> None:
        self._channel.close()

    def _check_name(self, name: bytes) -> None:
        """Note a ping's answer; the party serving the address must be the expected peer."""
        self.counter.add(received=len(name))
        if name != self.peer.encode("utf-8"):
            self._answered = False
            served_by = name.decode("utf-8", "replace")
            raise PeerUnavailableError(self.peer, f"{self.party} dialled {self.where}, but {served_by!r} answers there: check the address")
        self._answered = True

    def _delivery_error(self, exc: grpc.RpcError, frame: bytes, what: str) -> ProtocolError:
        code = exc.code()  # type: ignore[attr-defined]
        details = _one_line(exc.details())  # type: ignore[attr-defined]
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return ProtocolError(details)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return FrameTooLargeError(f"{self.where} refused {self.party}'s {what} of {len(frame):,} bytes: {details}")
        if code == grpc.StatusCode.UNAVAILABLE:
            return PeerUnavailableError(self.peer, f"{self.party} lost {self.where} while sending {what}: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return PeerTimeoutError(
                self.peer, f"{self.party}'s {what} of {len(frame):,} bytes to {self.where} was not delivered within {self._timeouts.send:g} s"
            )
        return ProtocolError(f"{self.party} could not deliver {what} to {self.where}: {code.name}: {details}")
