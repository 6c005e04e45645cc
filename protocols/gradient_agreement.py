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
    """The coordinator's record of the passives' gradient digests, step by step.

    The active party writes the step numbers of its gradients and requests, so none of them is trusted
    alone (red-team pass, 2026-11-27): the passives refuse a gradient labelled with another step than
    their own; a digest for a step already checked, or a second one from a passive, is a deviation;
    the checked range starts at the earliest step anyone reported; and whatever a request's label, every
    step any passive reported is checked before it is answered (a passive reports a gradient before it
    sends the activations that use it, so a request can only hold sums computed after the gradients
    already reported).
    """

    def __init__(self, passives: Sequence[str]) -> None:
        self.passives = tuple(passives)
        self._digests: dict[int, dict[str, bytes]] = {}
        self._first_step: int | None = None
        self._latest_reported: int | None = None
        self._deviation: str | None = None
        self.verified_through: int | None = None

    def record(self, message: Message) -> None:
        """A passive's digest of the gradient it received at ``message.step``."""
        payload = bytes(message.payload)
        if message.sender not in self.passives or len(payload) != DIGEST_BYTES:
            self._deviation = self._deviation or (
                f"a gradient digest came from {message.sender!r} with {len(payload)} bytes (only a passive sends one, of {DIGEST_BYTES})"
            )
            return
        step = message.step
        self._first_step = step if self._first_step is None else min(self._first_step, step)
        self._latest_reported = step if self._latest_reported is None else max(self._latest_reported, step)
        seen = self._digests.setdefault(step, {})
        if message.sender in seen or (self.verified_through is not None and step <= self.verified_through):
            self._deviation = self._deviation or (
                f"{message.sender} reported a second gradient for step {step}: the active party sent it gradients out of step"
            )
            return
        seen[message.sender] = payload

    def ready_for(self, step: int) -> bool:
        """Whether the active party's request labelled ``step`` may be answered: every passive's digest of every
        step from the earliest reported one up to ``step - 1``, or up to the latest any passive reported if that is
        later, is in and all agree (False: wait for the rest).

        Raises :class:`GradientsDiffer` when the active party deviated (differing or out-of-step gradients).
        """
        if self._deviation is not None:
            raise GradientsDiffer(self._deviation)
        if self._first_step is None:
            self._first_step = step  # the attempt's first request, before any gradient: nothing before it to check
        start = self._first_step if self.verified_through is None else self.verified_through + 1
        # every step before the label, and every step any passive reported whatever the label says: a request can
        # only hold sums computed after the gradients its passives reported before sending their activations
        through = max(step - 1, self._latest_reported if self._latest_reported is not None else step - 1)
        for earlier in range(start, through + 1):
            seen = self._digests.get(earlier, {})
            if len(seen) < len(self.passives):
                return False
            if len(set(seen.values())) != 1:
                groups: dict[bytes, list[str]] = {}
                for name, digest in sorted(seen.items()):
                    groups.setdefault(digest, []).append(name)
                shown = " vs ".join("+".join(names) for names in groups.values())
                self._deviation = (
                    f"the passives received different gradients at step {earlier} ({shown}): the active party sent them "
                    "different ones, which would let it read one passive's activations from the sums (gradient steering)"
                )
                raise GradientsDiffer(self._deviation)
            self.verified_through = earlier
            del self._digests[earlier]
        return True
