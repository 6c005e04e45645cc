"""Tie a TLS peer to a party: the certificate a connection presented must name the frame's claimed sender.

TLS proves that the peer holds the private key of a certificate the federation's CA issued. That
is not yet "this frame comes from its sender": any party (or a relay holding some party's
certificate) could deliver a frame that claims another sender. The receiving side therefore asks
the injected :data:`PeerCheck` whether the presented certificate is the claimed sender's; a frame
whose TLS peer is not its sender is refused before its signature or sequence number is looked at,
so a relayed genuine frame consumes nothing and the sender's own delivery still gets through.

The check itself (chain, validity, name, usages, pinned fingerprint) belongs to the deployment's
PKI (``securevfl.pki.verify_peer_certificate``); this layer only calls it and remembers its
positive answers for a while, since the same connection presents the same certificate with every
frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["CachedPeerCheck", "PeerCheck", "PeerMismatchError"]

#: Raises (any exception, one line) unless the PEM certificate is a valid certificate of the named party.
PeerCheck = Callable[[bytes, str], object]

_DEFAULT_TTL_SECONDS = 60.0


class PeerMismatchError(Exception):
    """The TLS peer's certificate does not name the party a frame claims to come from (one line)."""


class CachedPeerCheck:
    """Runs a :data:`PeerCheck` and remembers (certificate, party) pairs that passed for ``ttl`` seconds.

    Refusals are never cached: a certificate that failed is checked again next time (and fails
    again). The time limit bounds how long a certificate that expires mid-run is still accepted.
    """

    def __init__(self, check: PeerCheck, *, ttl: float = _DEFAULT_TTL_SECONDS) -> None:
        self._check = check
        self._ttl = ttl
        self._lock = threading.Lock()
        self._passed: dict[tuple[bytes, str], float] = {}

    def require(self, certificate: bytes | None, party: str) -> None:
        """Return if ``certificate`` is ``party``'s; raise :class:`PeerMismatchError` saying why not."""
        if certificate is None:
            raise PeerMismatchError("the connection presented no client certificate")
        key = (certificate, party)
        now = time.monotonic()
        with self._lock:
            checked_at = self._passed.get(key)
        if checked_at is not None and now - checked_at < self._ttl:
            return
        try:
            self._check(certificate, party)
        except Exception as exc:  # the injected check may raise its own error type; any exception refuses
            raise PeerMismatchError(" ".join(str(exc).split()) or type(exc).__name__) from None
        with self._lock:
            self._passed[key] = now
