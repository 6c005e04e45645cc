"""Every passive trains on the same gradient: checked by the coordinator before the active party sees a sum again.

Why: under the sum top every passive's gradient is the same ``delta = dL/dS``. An active party that
sends them different ones can move one passive's model alone and read that passive's activations (its
features' Gram matrix) from the honest, mask-cancelled sums that follow: gradient steering, which the
pairwise activation masks (:mod:`.pairwise_masks`) do not stop (tests/test_pairwise_masks.py).

How: when the passives' gradient packings are the same, the active party encrypts the gradient once and
sends every passive the same bytes. Each passive sends the coordinator a SHA-256 digest of what it
received (kind, step, scale and ciphertext bytes) before it uses it. Before it answers any request of
the active party at step ``t``, the coordinator requires every passive's digest for every training step
of this attempt before ``t``, and all of a step's digests equal: a run with one passive steered stops
there, before any sum computed after the steered update is decrypted. The digests say nothing about the
gradient (a ciphertext's hash), and the coordinator decrypts nothing more.

A request that arrives before a passive's digest (separate network links have no common order) waits
in the coordinator's queue until the digest is in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from securevfl.protocols.errors import ProtocolError
from securevfl.protocols.messages import Message, MessageKind

__all__ = ["DIGEST_BYTES", "GradientAgreement", "GradientsDiffer", "gradient_digest"]

DIGEST_BYTES = 32
#: the messages that carry a passive's gradient under the label-private schemes
GRADIENT_KINDS = (MessageKind.GRADIENT, MessageKind.GRADIENT_BM)


def gradient_digest(messages: Sequence[Message]) -> bytes:
    """SHA-256 over each gradient message's kind, step, meta (the announced scale) and payload bytes."""
    digest = hashlib.sha256()
    for message in messages:
        header = json.dumps({"kind": str(message.kind), "step": message.step, "meta": dict(message.meta)}, sort_keys=True)
        digest.update(len(header).to_bytes(4, "big") + header.encode("utf-8"))
        payload = bytes(message.payload)
        digest.update(len(payload).to_bytes(8, "big") + payload)
    return digest.digest()


class GradientsDiffer(ProtocolError):
    """The passives received different gradients at one step: the active party deviated."""


class GradientAgreement:
    """The coordinator's record of the passives' gradient digests, step by step."""

    def __init__(self, passives: Sequence[str]) -> None:
        self.passives = tuple(passives)
        self._digests: dict[int, dict[str, bytes]] = {}
        self._first_step: int | None = None
        self.verified_through: int | None = None

    def record(self, message: Message) -> None:
        """A passive's digest of the gradient it received at ``message.step``."""
        payload = bytes(message.payload)
        if message.sender not in self.passives or len(payload) != DIGEST_BYTES:
            raise ProtocolError(f"a gradient digest must come from a passive and hold {DIGEST_BYTES} bytes (from {message.sender!r})")
        seen = self._digests.setdefault(message.step, {})
        if message.sender in seen:
            raise ProtocolError(f"{message.sender} sent two gradient digests for step {message.step}")
        seen[message.sender] = payload

    def ready_for(self, step: int) -> bool:
        """Whether every passive's digest of every training step of this attempt before ``step`` is in (then checked)."""
        if self._first_step is None:
            self._first_step = step  # the attempt's first request of the active party: no gradient before it
        start = self._first_step if self.verified_through is None else self.verified_through + 1
        for earlier in range(start, step):
            seen = self._digests.get(earlier, {})
            if len(seen) < len(self.passives):
                return False
            if len(set(seen.values())) != 1:
                groups: dict[bytes, list[str]] = {}
                for name, digest in sorted(seen.items()):
                    groups.setdefault(digest, []).append(name)
                shown = " vs ".join("+".join(names) for names in groups.values())
                raise GradientsDiffer(
                    f"the passives received different gradients at step {earlier} ({shown}): the active party sent them "
                    "different ones, which would let it read one passive's activations from the sums (gradient steering)"
                )
            self.verified_through = earlier
            del self._digests[earlier]
        return True
