"""Bytes a network transport moved, at three layers: accounted frames, gRPC messages, TCP payload.

* **Accounted**: the frames a party sent, as :class:`~.accounting.TrafficStats` counts them (the
  same numbers the in-process channel reports, so runs compare across transports).
* **gRPC messages**: every message the party's gRPC layer serialized or deserialized, counted by
  :class:`ByteCounter`: the frames, and also the acknowledgements and liveness pings the
  transport adds (a few bytes each).
* **TCP payload**: what the kernel counts on the party's TCP connections (``TCP_INFO``'s
  ``bytes_acked`` and ``bytes_received``, Linux only), i.e. the gRPC messages plus everything
  gRPC and TLS wrap them in: a 5-byte gRPC prefix per message, HTTP/2 frame headers (9 bytes per
  DATA frame of at most 16 KiB) and request headers (HPACK-compressed, tens of bytes per call
  once the connection's table is warm), HTTP/2 pings and window updates, TLS records (about 22
  bytes per record of at most 16 KiB with TLS 1.3 and AES-GCM) and the TLS handshakes. IP and
  TCP headers are not included.

The TCP numbers are read from this process's own sockets, chosen by port: connections into the
party's listening port and out to its peers' ports. With one party per process (a deployment)
that is exactly the party's traffic; when several parties share a process (tests), an outgoing
connection to a port is counted for every party of the process that has that peer. A connection
counts only while it is open: the totals of one that closed (a peer that restarted) are lost.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Collection
from dataclasses import dataclass

__all__ = ["ByteCounter", "TcpBytes", "WireBytes", "tcp_bytes"]

# struct tcp_info (linux/tcp.h): offsets of the 64-bit counters of RFC 4898 (Linux >= 4.1 / 4.19)
_BYTES_ACKED_OFFSET = 120
_BYTES_RECEIVED_OFFSET = 128
_TCP_INFO_LENGTH = 256
_COUNTER = struct.Struct("<Q")


class ByteCounter:
    """Thread-safe totals of message bytes sent and received (gRPC handlers run in a thread pool)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent = 0
        self._received = 0

    def add(self, *, sent: int = 0, received: int = 0) -> None:
        with self._lock:
            self._sent += sent
            self._received += received

    @property
    def sent(self) -> int:
        with self._lock:
            return self._sent

    @property
    def received(self) -> int:
        with self._lock:
            return self._received


@dataclass(frozen=True)
class TcpBytes:
    """TCP payload bytes of the open connections that matched, as the kernel counts them."""

    sent: int
    received: int
    connections: int


@dataclass(frozen=True)
class WireBytes:
    """One party's bytes at each layer (module docstring); TCP fields are None where unreadable."""

    accounted_sent: int
    grpc_sent: int
    grpc_received: int
    tcp_sent: int | None
    tcp_received: int | None
    tcp_connections: int

    def to_dict(self) -> dict[str, int | None]:
        return {
            "accounted_sent": self.accounted_sent,
            "grpc_sent": self.grpc_sent,
            "grpc_received": self.grpc_received,
            "tcp_sent": self.tcp_sent,
            "tcp_received": self.tcp_received,
            "tcp_connections": self.tcp_connections,
        }


def tcp_bytes(local_ports: Collection[int], remote_ports: Collection[int]) -> TcpBytes | None:
    """Totals over this process's connected TCP sockets whose local port is in ``local_ports`` or
    whose remote port is in ``remote_ports``; None where the kernel's counters cannot be read."""
    descriptors = "/proc/self/fd"
    if not hasattr(socket, "TCP_INFO") or not os.path.isdir(descriptors):
        return None
    sent = received = connections = 0
    for name in os.listdir(descriptors):
        counters = _connection_counters(int(name), local_ports, remote_ports)
        if counters is not None:
            sent += counters[0]
            received += counters[1]
            connections += 1
    return TcpBytes(sent, received, connections)


def _connection_counters(fd: int, local_ports: Collection[int], remote_ports: Collection[int]) -> tuple[int, int] | None:
    """(bytes acked, bytes received) of descriptor ``fd`` if it is a matching TCP connection."""
    try:
        if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
            return None
        duplicate = os.dup(fd)  # the socket object below owns and closes the duplicate, never ``fd``
    except OSError:  # closed meanwhile
        return None
    try:
        sock = socket.socket(fileno=duplicate)
    except OSError:
        os.close(duplicate)
        return None
    with sock:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
            return None
        try:
            local_port = sock.getsockname()[1]
            remote_port = sock.getpeername()[1]  # a listening socket has no peer: OSError
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LENGTH)
        except OSError:
            return None
    if local_port not in local_ports and remote_port not in remote_ports:
        return None
    if len(info) < _BYTES_RECEIVED_OFFSET + _COUNTER.size:  # a kernel older than these counters
        return None
    return _COUNTER.unpack_from(info, _BYTES_ACKED_OFFSET)[0], _COUNTER.unpack_from(info, _BYTES_RECEIVED_OFFSET)[0]
