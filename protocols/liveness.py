"""Watching the peer a receive waits for, so that "gone" is told from "slow" long before the deadline.

While a receive waits, :class:`LivenessWatch` pings the awaited sender every
``liveness_interval`` seconds, without blocking the wait (the ping runs as a gRPC future whose
completion wakes the waiting receive). A peer is *gone* after ``gone_after`` consecutive pings
found it unreachable (connection refused or reset, TLS failure): its process crashed, was
stopped, or its machine dropped off the network. A peer that answers is *alive*, one that
does not answer in time is *not answering* (busy holding its interpreter, hung, or partitioned);
both are left to the receive's deadline, which then says which of the two it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from securevfl.protocols.grpc_client import Liveness, PeerClient, PeerStatus
from securevfl.protocols.grpc_settings import ChannelTimeouts

__all__ = ["LivenessWatch"]


class LivenessWatch:
    """Pings ``client``'s peer on a schedule while a receive waits; ``wake`` is called when a ping returns."""

    def __init__(self, client: PeerClient, timeouts: ChannelTimeouts, wake: Callable[[], None]) -> None:
        self._client = client
        self._timeouts = timeouts
        self._wake = wake
        self._next_ping = time.monotonic() + timeouts.liveness_interval
        self._pending: grpc.Future | None = None
        self._unreachable_in_a_row = 0
        self.last: PeerStatus | None = None
        """The latest ping's outcome (None before the first one returned)."""
        self._last_alive: float | None = None

    @property
    def gone(self) -> bool:
        return self._unreachable_in_a_row >= self._timeouts.gone_after

    def next_check(self, now: float) -> float:
        """When the waiting receive must call :meth:`update` at the latest (a returning ping also wakes it)."""
        if self._pending is None:
            return self._next_ping
        return now + self._timeouts.liveness_interval  # bounds a wake-up lost between check and wait

    def update(self, now: float) -> None:
        """Read a returned ping, or send the next one when it is due."""
        if self._pending is not None:
            if not self._pending.done():
                return
            status = self._client.ping_status(self._pending)
            self._pending = None
            self._record(status, now)
            self._next_ping = now + self._timeouts.liveness_interval
        elif now >= self._next_ping:
            self._pending = self._client.start_ping()
            self._pending.add_done_callback(lambda _ping: self._wake())

    def stop(self) -> None:
        """Cancel a ping in flight (the receive is over)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def describe(self, now: float) -> str:
        """The peer's state for an error line, e.g. ``alive: answered a ping 0.4 s ago``."""
        if self.last is None:
            return "not pinged yet"
        if self.last.liveness is Liveness.ALIVE and self._last_alive is not None:
            return f"alive: answered a ping {now - self._last_alive:.1f} s ago"
        answered = f"; last answered {now - self._last_alive:.1f} s ago" if self._last_alive is not None else "; no answer while waiting"
        return f"{self.last.liveness.value}: {self.last.cause}{answered}"

    def _record(self, status: PeerStatus, now: float) -> None:
        self.last = status
        if status.liveness is Liveness.GONE:
            self._unreachable_in_a_row += 1
        else:
            self._unreachable_in_a_row = 0
        if status.liveness is Liveness.ALIVE:
            self._last_alive = now
