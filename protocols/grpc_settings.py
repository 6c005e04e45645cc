"""What the gRPC transport's server and clients agree on: method names, limits, timeouts, addresses.

The transport carries raw frame bytes (:mod:`.wire`) through two generic gRPC methods, with no
protobuf compilation: ``Deliver`` (a frame of at most :data:`UNARY_FRAME_BYTES` in, an empty
acknowledgement out), ``DeliverChunks`` (a larger frame as a client stream of
:data:`CHUNK_BYTES` chunks) and ``Ping`` (empty in, the serving party's name out; the liveness
check). Why two delivery methods: gRPC reads a unary call's message in full before the handler
can look at the TLS peer, so the server accepts unary messages of at most
:data:`UNARY_FRAME_BYTES` and receives larger frames (key announcements) in chunks it reads only
after checking the peer (:mod:`.grpc_server`); a unary call costs half a streamed one's time for
the per-step messages (docs/results/grpc_loopback.md). Both ends use the identity serializer, so a
unary gRPC message is exactly the frame.

Everything here is data and validation; :mod:`.grpc_server`, :mod:`.grpc_client` and
:mod:`.grpc_channel` read it, so a limit or a method name cannot drift between the two sides.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_QUEUED_BYTES",
    "CHUNK_BYTES",
    "DELIVER_CHUNKS_METHOD",
    "DELIVER_METHOD",
    "GRPC_MESSAGE_LIMIT",
    "PING_METHOD",
    "SERVICE",
    "UNARY_FRAME_BYTES",
    "ChannelTimeouts",
    "PeerAddress",
    "TlsMaterial",
    "check_max_frame_bytes",
    "client_options",
    "server_options",
]

SERVICE = "securevfl.transport.Frames"
DELIVER_METHOD = f"/{SERVICE}/Deliver"
DELIVER_CHUNKS_METHOD = f"/{SERVICE}/DeliverChunks"
PING_METHOD = f"/{SERVICE}/Ping"
#: The largest frame sent as one unary call, and the largest gRPC message a party's server reads before it has checked
#: the TLS peer: what a holder of any certificate of the CA can make it buffer per call (CKKS messages of a training
#: step are 0.1-1 MB; key announcements, up to ~60 MB, go in chunks).
UNARY_FRAME_BYTES = 4 * 1024 * 1024
#: The chunk size of a larger frame's client stream (as fast as unary delivery from a few MB on: grpc_loopback.md).
CHUNK_BYTES = 1024 * 1024
#: Calls a party's server runs at once: each may hold up to UNARY_FRAME_BYTES unchecked, so this bounds what strangers
#: can make it buffer (32 x 4 MiB); honest parties keep one delivery and one ping in flight per peer.
MAX_CONCURRENT_CALLS = 32

#: CKKS public keyrings with Galois keys reach about 60 MB; twice that leaves room for larger parameters.
DEFAULT_MAX_FRAME_BYTES = 128 * 1024 * 1024
#: The most bytes of one sender's frames a party keeps queued and not yet taken (at least twice the largest frame):
#: a party that floods another with frames of a kind it never takes is refused beyond it instead of exhausting its
#: memory (a red-team pass queued 12 frames of 48 MiB, 889 MB). Honest queues stay far below: a key announcement
#: (up to ~60 MB) and a few batches' messages.
DEFAULT_MAX_QUEUED_BYTES = 256 * 1024 * 1024
#: gRPC sizes messages with a signed 32-bit integer.
GRPC_MESSAGE_LIMIT = 2**31 - 1

# Reconnect quickly while a peer's process is starting or restarting (gRPC's defaults wait 1 s, then
# back off to 120 s, which would turn a 10-second connect budget into one or two attempts).
_RECONNECT_BACKOFF_MS = 200
_MAX_RECONNECT_BACKOFF_MS = 1000
# HTTP/2 keepalive pings on a connection with calls in flight: a peer whose machine vanished
# without closing its sockets fails the call in about 30 s instead of at the call's deadline.
_KEEPALIVE_TIME_MS = 20_000
_KEEPALIVE_TIMEOUT_MS = 10_000

_TARGET = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})")


class TlsMaterial(Protocol):
    """PEM bytes for gRPC's TLS credentials (``securevfl.pki.load_tls_material`` returns one).

    A structural type: the transport takes the bytes and never reads certificate files itself,
    so it depends on no particular PKI module.
    """

    @property
    def root_certificates(self) -> bytes:
        """The CA bundle that peers' certificates must chain to."""
        ...

    @property
    def certificate_chain(self) -> bytes:
        """This party's certificate (and any intermediates)."""
        ...

    @property
    def private_key(self) -> bytes:
        """This party's decrypted private key (PEM)."""
        ...


@dataclass(frozen=True)
class PeerAddress:
    """Where a peer party listens, the name its certificate must carry there, and (pinned) the certificate itself.

    ``target`` is ``host:port``. ``tls_name`` is checked against the peer's certificate (its SAN)
    instead of the host: needed when dialling an address the certificate does not name, such as
    ``127.0.0.1`` for a certificate issued to ``localhost``. None checks the host itself.

    ``pinned_certificate`` (PEM): the client then trusts exactly this certificate for the peer,
    not every certificate the CA issued. Why: gRPC's Python client has no hook to check a server
    certificate's fingerprint, so with the CA as its trust root any certificate the CA issued for
    the dialled name would do -- a party holding one (a CA that issued too broadly) could receive
    the frames meant for this peer after redirecting its address. Given as the only trust root,
    the pinned certificate is what the TLS handshake must present (its validity and the dialled
    name are still checked, the chain to the CA is not: the caller checks the certificate against
    the CA and the plan's fingerprint beforehand, as :func:`securevfl.grpc_transport.open_grpc_channel`
    does). It must be exactly one end-entity certificate: a chain or a CA certificate as the trust
    root would let every certificate it issued through.
    """

    target: str
    tls_name: str | None = None
    pinned_certificate: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        match = _TARGET.fullmatch(self.target) if isinstance(self.target, str) else None
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ValueError(f"peer address must be host:port with a port in 1..65535, got {self.target!r}")
        if self.tls_name is not None and (not isinstance(self.tls_name, str) or not self.tls_name):
            raise ValueError(f"tls_name must be a non-empty host name, got {self.tls_name!r}")
        if self.pinned_certificate is not None:
            _check_pinnable(self.pinned_certificate)

    @property
    def port(self) -> int:
        return int(self.target.rsplit(":", 1)[1])

    @classmethod
    def of(cls, value: PeerAddress | str) -> PeerAddress:
        """``value`` as a PeerAddress (a plain ``host:port`` string checks the host itself)."""
        return value if isinstance(value, PeerAddress) else cls(value)


def _check_pinnable(pem: object) -> None:
    """ValueError unless ``pem`` is exactly one PEM certificate that is not a CA's."""
    from cryptography import x509

    if not isinstance(pem, bytes):
        raise ValueError("pinned_certificate must be PEM bytes")
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ValueError("pinned_certificate is not a readable PEM certificate") from None
    if len(certificates) != 1:
        raise ValueError(f"pinned_certificate must be exactly one certificate (the peer's own), got {len(certificates)}")
    try:
        is_ca = certificates[0].extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if is_ca:
        raise ValueError("pinned_certificate is a CA certificate: pin the peer's own certificate, not its issuer")


@dataclass(frozen=True)
class ChannelTimeouts:
    """Every wait of the transport, in seconds; none of them is unbounded.

    * ``receive``: how long a receive waits for its message before :class:`PeerTimeoutError`.
      A CKKS step of a large model can take minutes on a slow party, so the default is generous;
      a party that is gone is reported much sooner by the liveness check.
    * ``connect``: how long a send keeps retrying to connect to a peer that is not up (yet).
    * ``send``: how long one frame may take to be delivered once connected (a 60 MB keyring on a
      slow link needs tens of seconds).
    * ``liveness_interval``: how often a waiting receive pings the sender it waits for.
    * ``liveness_timeout``: how long one ping may take; a peer that does not answer in time is
      "not answering" (busy or hung), not "gone".
    * ``gone_after``: consecutive pings that found the peer unreachable before it is declared gone
      (one failed connection attempt can be a hiccup).
    """

    receive: float = 300.0
    connect: float = 15.0
    send: float = 120.0
    liveness_interval: float = 2.0
    liveness_timeout: float = 5.0
    gone_after: int = 2

    def __post_init__(self) -> None:
        for name in ("receive", "connect", "send", "liveness_interval", "liveness_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"timeout {name!r} must be a positive number of seconds, got {value!r}")
        if isinstance(self.gone_after, bool) or not isinstance(self.gone_after, int) or self.gone_after < 1:
            raise ValueError(f"gone_after must be a positive number of pings, got {self.gone_after!r}")


def check_max_frame_bytes(max_frame_bytes: int) -> int:
    """``max_frame_bytes`` if gRPC can carry messages of that size; ValueError otherwise."""
    if isinstance(max_frame_bytes, bool) or not isinstance(max_frame_bytes, int) or not 0 < max_frame_bytes <= GRPC_MESSAGE_LIMIT:
        raise ValueError(f"max_frame_bytes must be an int in 1..{GRPC_MESSAGE_LIMIT} (gRPC's limit), got {max_frame_bytes!r}")
    return max_frame_bytes


def client_options(max_frame_bytes: int, tls_name: str | None) -> list[tuple[str, int | str]]:
    """gRPC channel options of a connection to one peer."""
    options: list[tuple[str, int | str]] = [
        ("grpc.max_send_message_length", max_frame_bytes),
        ("grpc.max_receive_message_length", max_frame_bytes),
        ("grpc.initial_reconnect_backoff_ms", _RECONNECT_BACKOFF_MS),
        ("grpc.min_reconnect_backoff_ms", _RECONNECT_BACKOFF_MS),
        ("grpc.max_reconnect_backoff_ms", _MAX_RECONNECT_BACKOFF_MS),
        ("grpc.keepalive_time_ms", _KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_MS),
        # a frame is delivered at most once: a retry could only be refused as a replay
        ("grpc.enable_retries", 0),
        # each peer gets its own connection, never one shared with another GrpcChannel of the process
        ("grpc.use_local_subchannel_pool", 1),
    ]
    if tls_name is not None:
        options.append(("grpc.ssl_target_name_override", tls_name))
    return options


def server_options(max_frame_bytes: int) -> list[tuple[str, int | str]]:
    """gRPC server options of a party's listening side (a larger frame arrives in chunks: :data:`UNARY_FRAME_BYTES`)."""
    return [
        ("grpc.max_receive_message_length", min(max_frame_bytes, UNARY_FRAME_BYTES)),
        ("grpc.max_send_message_length", max_frame_bytes),
        # never share a port with another process: SO_REUSEPORT (gRPC's default on Linux) would let
        # a second server bind the same port and take half of the connections
        ("grpc.so_reuseport", 0),
        # the clients' keepalive pings (every 20 s while calls are in flight) are welcome
        ("grpc.http2.min_ping_interval_without_data_ms", _KEEPALIVE_TIME_MS // 2),
    ]
