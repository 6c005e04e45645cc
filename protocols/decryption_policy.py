"""What a key holder agrees to decrypt: the requests the protocol expects, nothing else.

An unrestricted key holder is a decryption oracle: it answers any ciphertext from anyone, in
any number, of any size (a refresh naming 40 layouts returned 50x its size). The policy is the
public protocol written as data: for each requester, the request kinds it sends in one step,
each with its shape, how many per step, and (refresh) the exact layouts. A request that does
not match is refused with a reason and gets no value in reply (only a ``request_refused`` message
with the reason); the key holder keeps serving.

What a policy cannot do: check *what* a matching ciphertext holds. A malicious requester may
put any linear function of the ciphertexts it holds into a request of an expected shape (see
docs/threat-model.md); the policy bounds how much it can learn per step, and noise flooding
(:mod:`securevfl.crypto.flooding`) keeps each answer from revealing the key. Each rule carries
the public noise bound the flooding is sized for (never the request's measured noise, which a
crafted request makes a function of the key).

**Steps follow the federation.** A sender's budget is per step, and the step is a number the
sender writes. Without a ceiling a requester that numbers its requests 0, 1, 2, ... gets a fresh
budget for each (50 decryptions in one real step, measured), so a step is admitted only up to one
past the latest step any *other* party has reached (another sender's request, or the step its host
party reports with :meth:`DecryptionPolicy.note_step`). Honest parties share one step counter
(the global batch index; evaluation requests carry the last training step), so none is ever
more than one ahead. Before anybody else has been heard from, a sender is held to the step of its
first request (a resumed run starts at any step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from securevfl.crypto.errors import CryptoError
from securevfl.crypto.wire import decode_tensor_bytes
from securevfl.protocols.messages import Message, MessageKind

__all__ = ["DecryptionPolicy", "RequestRefused", "RequestRule", "parse_layouts"]


class RequestRefused(Exception):
    """A request the key holder will not answer; the message says why."""


@dataclass(frozen=True)
class RequestRule:
    """One request a party may send in a step.

    ``rows`` is exact unless ``rows_up_to`` (a last batch may be shorter). ``what`` and
    ``per_sample`` are what the key holder records in its audit: the description of a rule of its
    own, never free text from the requester (which may only pick, among the rules its request's
    shape fits, the one it names; all such rules share bounds, layouts and amplification). ``amplification`` is the public factor a refresh re-encrypts
    its values with (the protocol's choice for precision, never the requester's).
    """

    kind: MessageKind
    what: str
    rows: int
    columns: int
    per_step: int
    per_sample: bool
    value_bound: float
    rows_up_to: bool = False
    layouts: tuple[tuple[str, int], ...] = ()
    amplification: float = 1.0
    noise_bound: float | None = None
    """Public bound (slot units) on the noise of an honest request of this rule: the key holder floods
    every answer for it and refuses a ciphertext noisier than it (None: measured, unhardened)."""

    def fits(self, shape: tuple[int, ...]) -> bool:
        if len(shape) != 2 or shape[1] != self.columns:
            return False
        return 1 <= shape[0] <= self.rows if self.rows_up_to else shape[0] == self.rows


def parse_layouts(message: Message) -> tuple[tuple[str, int], ...]:
    """The ``rows``/``rows_t`` layouts a refresh request names (``RequestRefused`` if malformed)."""
    spec = message.meta.get("strides", "") if isinstance(message.meta, Mapping) else ""
    if not isinstance(spec, str) or not spec or len(spec) > 256:
        raise RequestRefused("refresh request names no layouts")
    layouts = []
    for item in spec.split(","):
        kind, _, stride = item.partition(":")
        if kind not in ("rows", "rows_t") or not stride.isdigit() or len(stride) > 7:
            raise RequestRefused(f"refresh request has a malformed layout {item[:40]!r}")
        layouts.append((kind, int(stride)))
    return tuple(layouts)


class DecryptionPolicy:
    """Admits a request if it matches a rule of its sender with budget left in its step."""

    def __init__(self, rules: Mapping[str, Sequence[RequestRule]], max_payload_bytes: int) -> None:
        self.rules = {sender: tuple(sender_rules) for sender, sender_rules in rules.items()}
        self.max_payload_bytes = max_payload_bytes
        self._step: dict[str, int] = {}
        self._used: dict[tuple[str, int], int] = {}
        self._last_admitted: tuple[str, int] | None = None
        self._host_step: int | None = None
        self._first_step: dict[str, int] = {}

    def note_step(self, step: int) -> None:
        """The step the key holder's own host party has reached (an active party that holds the key)."""
        self._host_step = step if self._host_step is None else max(self._host_step, step)

    def _ceiling(self, sender: str) -> int | None:
        """The highest step ``sender`` may claim now (None: nobody has been heard from yet)."""
        others = [step for name, step in self._step.items() if name != sender]
        if self._host_step is not None:
            others.append(self._host_step)
        if others:
            return max(others) + 1
        return self._first_step.get(sender)

    def release_last(self) -> None:
        """Give back the slot of the request admitted last (it was refused after admission, unanswered)."""
        if self._last_admitted is not None and self._used.get(self._last_admitted, 0) > 0:
            self._used[self._last_admitted] -= 1
        self._last_admitted = None

    def admit(self, message: Message) -> tuple[RequestRule, tuple[int, ...]]:
        """The rule ``message`` matches and the shape it declares; ``RequestRefused`` otherwise."""
        self._last_admitted = None
        sender = message.sender
        rules = self.rules.get(sender)
        if rules is None:
            raise RequestRefused(f"{sender!r} may not send decryption requests")
        declared = message.meta.get("what") if isinstance(message.meta, dict) else None
        # the rule the request names first, when its shape fits (it picks among budgets it could reach in any case
        # by spending them in order); shapes alone confuse rules of different rows, e.g. H_k^T delta with a short batch
        candidates = sorted(
            (index for index, rule in enumerate(rules) if rule.kind == message.kind), key=lambda index: rules[index].what != declared
        )
        if not candidates:
            raise RequestRefused(f"{sender!r} may not send {message.kind}")
        step = message.step
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise RequestRefused(f"invalid step {step!r}")
        last = self._step.get(sender)
        if last is not None and step < last:
            raise RequestRefused(f"step {step} is behind step {last} already served (replayed or out of order)")
        ceiling = self._ceiling(sender)
        if ceiling is not None and step > ceiling:
            raise RequestRefused(f"step {step} is ahead of the federation (at most step {ceiling} now)")
        payload = message.payload
        if not isinstance(payload, (bytes, bytearray)) or len(payload) > self.max_payload_bytes:
            raise RequestRefused(f"payload is not ciphertext bytes of at most {self.max_payload_bytes} bytes")
        try:
            header, _ = decode_tensor_bytes(bytes(payload))
        except CryptoError as exc:
            raise RequestRefused(f"payload is not an encrypted tensor: {exc}") from None
        shape = tuple(header.shape)
        layouts = parse_layouts(message) if message.kind == MessageKind.REFRESH_REQUEST else ()
        self._first_step.setdefault(sender, step)
        if last is None or step > last:
            self._step[sender] = step
            self._used = {key: used for key, used in self._used.items() if key[0] != sender}
        for index in candidates:
            rule = rules[index]
            if not rule.fits(shape) or layouts != rule.layouts:
                continue
            used = self._used.get((sender, index), 0)
            if used < rule.per_step:
                self._used[(sender, index)] = used + 1
                self._last_admitted = (sender, index)
                return rule, shape
        expected = "; ".join(_describe(rules[index]) for index in candidates)
        raise RequestRefused(
            f"{message.kind} of shape {shape}{f' with layouts {list(layouts)}' if layouts else ''} matches no request "
            f"left for step {step} (expected: {expected})"
        )


def _describe(rule: RequestRule) -> str:
    rows = f"<={rule.rows}" if rule.rows_up_to else str(rule.rows)
    layouts = f" layouts {list(rule.layouts)}" if rule.layouts else ""
    return f"{rule.what} ({rows}, {rule.columns}){layouts} x{rule.per_step}"
