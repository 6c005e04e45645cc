"""A party's listening side: a gRPC server over mutual TLS that hands each frame, with its TLS peer, to the party.

The server requires a client certificate issued by the federation's CA (``require_client_auth``):
a process without one does not get past the TLS handshake. A certificate of the CA is not yet a
party's: the server asks the party's :data:`PeerAdmission` whether the TLS peer is one of the
run's parties, and refuses the call (``PERMISSION_DENIED``) if not. gRPC reads a unary call's
message in full before the handler runs, and a red-team pass made a party buffer 20 frames of
120 MiB from a non-party certificate (3.4 GB) that way. So a unary message (``Deliver``, ``Ping``)
is at most :data:`~.grpc_settings.UNARY_FRAME_BYTES` (4 MiB), a larger frame arrives as a stream of
chunks (``DeliverChunks``) that is read only once the peer is admitted, and at most
:data:`~.grpc_settings.MAX_CONCURRENT_CALLS` calls run at once: a stranger makes the server buffer
at most their product. What it does with a frame is not its job: it
calls the party's :data:`FrameSink` with the frame and the PEM certificate the TLS peer presented,
and answers the client with the sink's verdict (an empty acknowledgement, or ``PERMISSION_DENIED``
with the refusal's one line; ``RESOURCE_EXHAUSTED`` for a frame over the size limit, from gRPC
itself or from a chunked frame's declared length, and, its text starting ``busy:``, for
back-pressure). It also answers ``Ping`` with the party's name (the liveness check).

Handlers run on a small thread pool; :meth:`FrameServer.stop` refuses new frames, lets frames in
flight finish for a short grace period, stops gRPC and joins the pool's threads. It is idempotent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import grpc

from securevfl.protocols.errors import BUSY_PREFIX, FrameTooLargeError, ProtocolError, ReceiverBusyError
from securevfl.protocols.grpc_settings import MAX_CONCURRENT_CALLS, SERVICE, TlsMaterial, server_options
from securevfl.protocols.wire_bytes import ByteCounter

__all__ = ["FrameReservation", "FrameServer", "FrameSink", "PeerAdmission"]

#: Takes a delivered frame and the TLS peer's certificate (PEM, None if gRPC reported none) and
#: returns if the frame was admitted; raises :class:`ProtocolError` (one line) to refuse it.
FrameSink = Callable[[bytes, bytes | None], None]

#: Takes the TLS peer's certificate (PEM, None if gRPC reported none) and whether the call delivers a frame: returns
#: if it is one of the run's parties, raises :class:`ReceiverBusyError` for a delivery while the party has no room for
#: that party's next frame (back-pressure: answered at once, the client retries) and :class:`ProtocolError` (one line)
#: to refuse the call. A chunked frame is read only after it returned.
PeerAdmission = Callable[[bytes | None, bool], None]

#: Takes a chunked frame's first chunk and the TLS peer's certificate; returns the frame's declared length and a
#: callable that releases the room reserved for it, or raises (:class:`ReceiverBusyError`: retry later;
#: :class:`FrameTooLargeError`; any other :class:`ProtocolError`: refused) before the body is read.
FrameReservation = Callable[[bytes, bytes | None], tuple[int, Callable[[], None]]]


def _nothing() -> None:
    return None

_STOP_GRACE_SECONDS = 1.0
_ACKNOWLEDGEMENT = b""


def _identity(data: bytes) -> bytes:
    return data


class FrameServer:
    """Listens on ``address`` (``host:port``; port 0 picks a free one, see :attr:`port`) for ``party``."""

    def __init__(
        self,
        party: str,
        address: str,
        tls: TlsMaterial,
        sink: FrameSink,
        *,
        max_frame_bytes: int,
        workers: int = 4,
        admit_peer: PeerAdmission | None = None,
        reserve: FrameReservation | None = None,
    ) -> None:
        self.party = party
        self._sink = sink
        self._admit_peer = admit_peer
        self._reserve = reserve
        self.counter = ByteCounter()
        """Message bytes this server received (frames, pings) and sent (acknowledgements, ping replies)."""
        self._name = party.encode("utf-8")
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"grpc-{party}")
        self._max_frame_bytes = max_frame_bytes
        self._server = grpc.server(self._executor, options=server_options(max_frame_bytes), maximum_concurrent_rpcs=MAX_CONCURRENT_CALLS)
        handlers = {
            "Deliver": grpc.unary_unary_rpc_method_handler(self._deliver, request_deserializer=_identity, response_serializer=_identity),
            "DeliverChunks": grpc.stream_unary_rpc_method_handler(self._deliver_chunks, request_deserializer=_identity, response_serializer=_identity),
            "Ping": grpc.unary_unary_rpc_method_handler(self._ping, request_deserializer=_identity, response_serializer=_identity),
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        credentials = grpc.ssl_server_credentials(
            [(tls.private_key, tls.certificate_chain)],
            root_certificates=tls.root_certificates,
            require_client_auth=True,
        )
        try:
            port = self._server.add_secure_port(address, credentials)
        except RuntimeError:  # newer gRPC raises where older returned 0
            port = 0
        if port == 0:
            self._executor.shutdown(wait=False)
            raise ProtocolError(f"{party} cannot listen on {address}: the port is taken or the address is not this machine's")
        self.port = port
        """The port actually bound."""
        # calls in flight, so that stop() can let them finish without gRPC's own grace period (which
        # leaves a thread of its own running after stop returns)
        self._calls = threading.Condition()
        self._active_calls = 0
        self._stopping = False
        self._server.start()

    def stop(self, grace: float = _STOP_GRACE_SECONDS) -> None:
        """Refuse new calls, give calls in flight ``grace`` seconds, stop, join the handler threads. Idempotent."""
        with self._calls:
            if self._stopping:
                return
            self._stopping = True
            self._calls.wait_for(lambda: self._active_calls == 0, grace)
        self._server.stop(None).wait(grace + 1.0)  # cancels what is still running, no thread left behind
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _deliver(self, frame: bytes, context: grpc.ServicerContext) -> bytes:
        self.counter.add(received=len(frame))
        return self._hand_over(frame, self._admitted_peer(context, delivery=True), context)

    def _deliver_chunks(self, chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        certificate = self._admitted_peer(context, delivery=True)  # before a chunk is read
        first = next(chunks, b"")
        self.counter.add(received=len(first))
        try:  # the declared sender and length, checked before the body is buffered; the room is held until handed over
            total, release = self._reserve(first, certificate) if self._reserve is not None else (self._max_frame_bytes, _nothing)
        except ReceiverBusyError as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, BUSY_PREFIX + str(exc))
        except FrameTooLargeError as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except ProtocolError as exc:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        try:
            frame = bytearray(first)
            for chunk in chunks:
                self.counter.add(received=len(chunk))
                if len(frame) + len(chunk) > total:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the frame runs past the {total:,} bytes it declared")
                frame += chunk
            return self._hand_over(bytes(frame), certificate, context)
        finally:
            release()

    def _hand_over(self, frame: bytes, certificate: bytes | None, context: grpc.ServicerContext) -> bytes:
        with self._call(context):
            try:
                self._sink(frame, certificate)
            except ProtocolError as exc:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        self.counter.add(sent=len(_ACKNOWLEDGEMENT))
        return _ACKNOWLEDGEMENT

    @contextmanager
    def _call(self, context: grpc.ServicerContext) -> Iterator[None]:
        """Count a call in flight; once stopping, refuse it as the stopped server it is about to be."""
        with self._calls:
            if self._stopping:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.party} is shutting down")
            self._active_calls += 1
        try:
            yield
        finally:
            with self._calls:
                self._active_calls -= 1
                self._calls.notify_all()

    def _ping(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._admitted_peer(context, delivery=False)
        self.counter.add(received=len(request), sent=len(self._name))
        return self._name

    def _admitted_peer(self, context: grpc.ServicerContext, *, delivery: bool) -> bytes | None:
        """The TLS peer's certificate, once the party admitted it as one of the run's parties; the call is refused otherwise."""
        certificate = (context.auth_context().get("x509_pem_cert") or [None])[0]
        if self._admit_peer is not None:
            try:
                self._admit_peer(certificate, delivery)
            except ReceiverBusyError as exc:  # at once, holding no worker: the client retries until its deadline
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, BUSY_PREFIX + str(exc))
            except ProtocolError as exc:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        return certificate
