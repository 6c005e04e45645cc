"""Byte and time accounting shared by channels and the training loop.

Every scheme is measured by the same counters, so plaintext and encrypted runs can be
compared phase by phase and byte by byte.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from securevfl.protocols.phases import Phase


@dataclass
class PhaseTimer:
    """Accumulates wall-clock seconds per :class:`~securevfl.protocols.phases.Phase`.

    A name that is not a phase raises ``ValueError`` at once: an untyped name would be timed but
    belong to no cost group, and its seconds would be missing from every summary.
    """

    seconds: Counter[str] = field(default_factory=Counter)

    @contextmanager
    def phase(self, name: Phase) -> Iterator[None]:
        name = Phase(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def add(self, name: Phase, seconds: float) -> None:
        self.seconds[Phase(name)] += seconds

    def to_dict(self) -> dict[str, float]:
        return {str(name): round(value, 6) for name, value in sorted(self.seconds.items())}

    def load(self, values: dict[str, float]) -> None:
        """Restore totals from :meth:`to_dict` output (used when a run resumes)."""
        self.seconds = Counter({k: float(v) for k, v in values.items()})


@dataclass
class TrafficStats:
    """Bytes and message counts per message kind, plus serialization time per phase."""

    bytes_by_kind: Counter[str] = field(default_factory=Counter)
    messages_by_kind: Counter[str] = field(default_factory=Counter)
    timer: PhaseTimer = field(default_factory=PhaseTimer)

    def record(self, kind: str, num_bytes: int) -> None:
        self.bytes_by_kind[kind] += num_bytes
        self.messages_by_kind[kind] += 1

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_by_kind.values())

    def to_dict(self) -> dict[str, object]:
        return {  # plain strings: result files and checkpoints hold no enum objects
            "bytes_by_kind": {str(kind): n for kind, n in sorted(self.bytes_by_kind.items())},
            "messages_by_kind": {str(kind): n for kind, n in sorted(self.messages_by_kind.items())},
            "seconds_by_phase": self.timer.to_dict(),
        }

    def absorb(self, values: dict[str, object]) -> None:
        """Add the counters of :meth:`to_dict` output to these (a resumed party: what it sent before its checkpoint was loaded)."""
        self.bytes_by_kind.update(values.get("bytes_by_kind", {}))  # type: ignore[arg-type]
        self.messages_by_kind.update(values.get("messages_by_kind", {}))  # type: ignore[arg-type]
        for phase, seconds in values.get("seconds_by_phase", {}).items():  # type: ignore[union-attr]
            self.timer.add(Phase(phase), float(seconds))

    def load(self, values: dict[str, object]) -> None:
        """Restore counters from :meth:`to_dict` output (used when a run resumes)."""
        self.bytes_by_kind = Counter(values.get("bytes_by_kind", {}))  # type: ignore[arg-type]
        self.messages_by_kind = Counter(values.get("messages_by_kind", {}))  # type: ignore[arg-type]
        self.timer.load(values.get("seconds_by_phase", {}))  # type: ignore[arg-type]
