"""Visibility audit: which plaintext values each party has held.

Every time a party obtains a plaintext array from another party — by receiving it, by
decrypting it, or by removing its own mask from a decrypted value — it records what kind of
value it was, its shape, whether it was per-sample (one row per training sample) and whether
it was still hidden by someone else's random mask. Tests assert the protection table of
``docs/protection.md`` against these records instead of trusting the code's intent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Sighting:
    """One plaintext value a party held."""

    kind: str
    shape: tuple[int, ...]
    per_sample: bool
    masked: bool
    source: str


@dataclass
class VisibilityLog:
    """The plaintext sightings of one party, aggregated by (kind, per_sample, masked, source)."""

    party: str
    counts: dict[Sighting, int] = field(default_factory=dict)

    def saw(self, kind: str, shape: tuple[int, ...], *, per_sample: bool, masked: bool, source: str) -> None:
        sighting = Sighting(kind, tuple(int(d) for d in shape), per_sample, masked, source)
        self.counts[sighting] = self.counts.get(sighting, 0) + 1

    def sightings(self) -> list[Sighting]:
        return list(self.counts)

    def kinds(self, *, per_sample: bool | None = None, masked: bool | None = None) -> set[str]:
        return {
            s.kind
            for s in self.counts
            if (per_sample is None or s.per_sample == per_sample) and (masked is None or s.masked == masked)
        }

    def to_rows(self) -> list[dict[str, object]]:
        """One JSON-ready row per distinct sighting, with how often it happened."""
        rows = []
        for sighting, count in sorted(self.counts.items(), key=lambda item: (item[0].kind, item[0].source)):
            row = asdict(sighting)
            row["shape"] = list(sighting.shape)
            row["count"] = count
            rows.append(row)
        return rows
