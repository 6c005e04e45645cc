"""The key holder of a label-private scheme, and the masked requests it answers.

With ``key_holder = "active"`` or ``"coordinator"`` exactly one party holds the CKKS secret
key. Everybody else encrypts under its public keyring and can compute on ciphertexts, but
can only learn a result by *masked decryption*: add a fresh random mask under encryption,
send the ciphertext to the key holder, receive the decrypted (still masked) value, subtract
the mask. The key holder sees nothing but masked values; the requester sees only what it
asked for.

A *refresh* is the same round trip returning new ciphertexts instead of plaintext: the key
holder decrypts the masked value and re-encrypts it, fresh (all levels) and in the layouts
the requester names, which both restores multiplicative depth and changes packing — the two
things a deep homomorphic backpropagation cannot do on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from securevfl.crypto import CryptoError, EncryptedTensor, Layout, PublicKeyring, SecretKeyring
from securevfl.crypto.flooding import NoiseBoundExceeded, NoiseFlooding, flooded_decrypt
from securevfl.protocols.accounting import PhaseTimer
from securevfl.protocols.phases import Phase
from securevfl.protocols.audit import VisibilityLog
from securevfl.protocols.channel import Channel
from securevfl.protocols.decryption_policy import DecryptionPolicy, RequestRefused, parse_layouts
from securevfl.protocols.errors import ProtocolError, RequestRefusedError
from securevfl.protocols.masking import MaskSampler
from securevfl.protocols.messages import Message, MessageKind

DECRYPT_REQUEST = MessageKind.DECRYPT_REQUEST
DECRYPT_REPLY = MessageKind.DECRYPT_REPLY
REFRESH_REQUEST = MessageKind.REFRESH_REQUEST
REFRESH_REPLY = MessageKind.REFRESH_REPLY
REQUEST_REFUSED = MessageKind.REQUEST_REFUSED
_EMPTY = np.zeros(0, dtype=np.float32)  # the payload of a refusal: the reason travels in meta
#: What a key holder answers.
REQUEST_KINDS = (DECRYPT_REQUEST, REFRESH_REQUEST)

#: The one reason a request refused on its decrypted content is given (no number, nothing of the value).
CONTENT_REFUSAL = "the decrypted request failed the key holder's content checks (its slot is used up)"
#: Content refusals after which a sender is answered no more in the run. The first is refused like any
#: request (an attack that is detected may give up and its party train on); the second cuts it off.
#: Whether a crafted request fails is one bit, so a run leaks at most the position of two failures.
CONTENT_STRIKES = 2

#: Largest re-encryption factor a requester may name without a policy (the top levels' room).
MAX_AMPLIFICATION = 2.0**20

_LOG = logging.getLogger("securevfl.keyholder")


class KeyHolder:
    """Holds the only secret key; answers the masked requests its policy admits, flooded.

    Three rules make it something other than a decryption oracle (docs/threat-model.md):

    - a :class:`~securevfl.protocols.decryption_policy.DecryptionPolicy` admits only the request
      kinds, senders, shapes, layouts and counts per step the protocol expects;
    - every decryption that leaves is noise-flooded (:mod:`securevfl.crypto.flooding`), so no
      answer reveals the key;
    - the audit records the key holder's own description of each value (from the rule it
      matched: the requester may only pick the named one among those its shape fits) and whether
      it *was* masked (measured), never free text from the request.

    A request that fails a check on what the requester sent in public (kind, sender, step, shape,
    layouts, bytes) is refused with a logged reason and answered only with a small
    ``request_refused`` message carrying that reason (no value), so an honest requester fails at
    once instead of waiting out its receive deadline; its slot stays unused.

    A request that fails a check on its *decrypted content* (noisier than its rule's public bound,
    not masked, outside the range its refresh is re-encrypted in) is different: whether it fails,
    and any number in the reason, is a function of the plaintext, so a reason and a free retry
    would make the check an oracle. A sealed passive with no decryption rule read every gradient
    entry, and so every label, from the magnitude a refused refresh's reason quoted (640 free
    probes in one step, measured). Such a request uses up its slot, its reply carries one fixed
    reason (:data:`CONTENT_REFUSAL`), and after :data:`CONTENT_STRIKES` of them the key holder
    answers that sender no more in this run (an honest request fails them only if its noise exceeds
    its rule's public bound, with features far larger than the measured ones: docs/threat-model.md). The detailed reason stays in the key holder's own log. A hostile request never stops the key holder. ``policy=None`` and
    ``NoiseFlooding(0)`` give the unhardened key holder, kept only to measure the attacks that
    motivate the rules.
    """

    def __init__(
        self,
        name: str,
        secret: SecretKeyring,
        timer: PhaseTimer,
        audit: VisibilityLog,
        *,
        policy: DecryptionPolicy | None = None,
        flooding: NoiseFlooding | None = None,
        mask_half_width: float | None = None,
    ) -> None:
        self.name = name
        self._secret = secret
        self.timer = timer
        self.audit = audit
        self.policy = policy
        self.flooding = flooding if flooding is not None else NoiseFlooding()
        self.mask_half_width = mask_half_width
        self.refusals: list[str] = []
        """Every refused request, as one line naming sender, kind, step and reason (the key holder's own log)."""
        self.content_refusals: dict[str, list[str]] = {}
        """Per sender, the detailed reason of every request refused on its decrypted content."""
        self.flooding_sigmas: list[float] = []
        """The flooding standard deviation of every answer (slot units), for reports."""
        self._decrypted = False
        self.observers: list[Callable[[Message, np.ndarray], None]] = []
        """See every admitted request and the exact value decrypted for it (a study's curious key holder)."""

    @property
    def keyring(self) -> SecretKeyring:
        """The secret keyring, for the key holder's own decryptions (never sent anywhere)."""
        return self._secret

    def note_step(self, step: int) -> None:
        """The step the key holder's host party has reached (an active party holding the key): requests
        may claim at most one step beyond the federation's (:class:`DecryptionPolicy`)."""
        if self.policy is not None:
            self.policy.note_step(step)

    def announcement(self) -> bytes:
        return self._secret.public_keyring().to_bytes()

    def handle(self, channel: Channel, message: Message) -> bool:
        """Answer one request if admitted; otherwise log why and send nothing. True if answered."""
        sender = getattr(message, "sender", None)
        told: str | None = None
        if isinstance(sender, str) and len(self.content_refusals.get(sender, ())) >= CONTENT_STRIKES:
            reason = told = f"{sender!r} is answered no more in this run ({CONTENT_STRIKES} requests failed the content checks)"
        else:
            self._decrypted = False
            try:
                self._answer(channel, message)
                return True
            except Exception as exc:  # noqa: BLE001 - a hostile request must never stop the key holder
                failure: Exception = exc
            if self._decrypted and not isinstance(failure, _ContentRefused):  # its text could carry plaintext
                failure = _ContentRefused(f"failed after decryption ({type(failure).__name__}: {str(failure)[:200]})")
            if isinstance(failure, _ContentRefused):
                reason, told = f"{failure} (detail, kept here: {failure.detail})", str(failure)
                if isinstance(sender, str):
                    self.content_refusals.setdefault(sender, []).append(failure.detail)
            elif isinstance(failure, RequestRefused):
                reason = str(failure)
            else:
                reason = f"malformed request ({type(failure).__name__}: {str(failure)[:200]})"
            if told is None and self.policy is not None:
                self.policy.release_last()  # a request refused on what it sent in public does not use up its slot
        self.refuse(message, reason, channel, told=told)
        return False

    def refuse(self, message: Message, reason: str, channel: Channel | None = None, *, told: str | None = None) -> None:
        """Record (and log) a request left unanswered, naming sender, kind, step and reason; with a
        ``channel``, tell the requester (best effort: a requester that cannot be reached just waits)
        ``told`` if given (a content refusal's fixed reason), else ``reason``."""
        kind, sender, step = (getattr(message, field, "?") for field in ("kind", "sender", "step"))
        line = f"{self.name} refused {kind} from {sender!r} at step {step}: {reason}"
        self.refusals.append(line)
        _LOG.warning(line)
        if channel is None or not isinstance(sender, str) or sender == self.name or not isinstance(step, int):
            return
        meta = {"reason": " ".join((told if told is not None else reason).split())[:300], "request": str(getattr(kind, "value", kind))}
        try:
            channel.send(Message(REQUEST_REFUSED, self.name, sender, step, _EMPTY, meta=meta))
        except Exception as exc:  # noqa: BLE001 - an unknown or gone requester must not stop the key holder
            _LOG.warning("%s could not tell %r its request was refused: %s", self.name, sender, exc)

    def _answer(self, channel: Channel, message: Message) -> None:
        requester = message.sender
        if message.kind not in REQUEST_KINDS:
            raise RequestRefused(f"expected a decrypt or refresh request, got {message.kind!r}")
        half_width = self.mask_half_width or 0.0
        noise_bound: float | None = None
        if self.policy is not None:
            rule, _ = self.policy.admit(message)
            what, per_sample, layouts, bound = rule.what, rule.per_sample, rule.layouts, rule.value_bound
            amplification, noise_bound = rule.amplification, rule.noise_bound
        else:
            what = str(message.meta.get("what", "unknown"))
            per_sample = bool(message.meta.get("per_sample", False))
            layouts = parse_layouts(message) if message.kind == REFRESH_REQUEST else ()
            bound = max(float(message.meta.get("bound", 0.0)) - half_width, 1.0)
            amplification = float(message.meta.get("amplification", 1.0))
            if not 1.0 <= amplification <= MAX_AMPLIFICATION:
                raise RequestRefused(f"amplification must be in [1, {MAX_AMPLIFICATION:g}], got {amplification!r}")
        try:
            with self.timer.phase(Phase.CIPHERTEXT_DESERIALIZE):
                encrypted = EncryptedTensor.from_bytes(self._secret, message.payload)
        except CryptoError as exc:
            raise RequestRefused(f"could not load the ciphertext: {exc}") from None
        try:
            with self.timer.phase(Phase.DECRYPT):
                decrypted = flooded_decrypt(encrypted, self._secret, self.flooding, noise_bound)
            self._decrypted = True  # from here on every failure is about the plaintext
        except NoiseBoundExceeded:
            raise _ContentRefused(f"its ciphertext is noisier than the public bound of {what!r}") from None
        except CryptoError as exc:
            raise RequestRefused(f"could not decrypt: {exc}") from None
        masked = self._looks_masked(decrypted.exact)
        if self.policy is not None and masked is False:
            raise _ContentRefused(f"{what} is not masked: a requester must hide its value behind a fresh mask")
        self.audit.saw(what, decrypted.values.shape, per_sample=per_sample, masked=masked is not False, source=requester)
        self.flooding_sigmas.append(decrypted.sigma)
        for observer in self.observers:
            observer(message, decrypted.exact.copy())
        values = decrypted.values
        if message.kind == DECRYPT_REQUEST:
            channel.send(Message(DECRYPT_REPLY, self.name, requester, message.step, values.astype(np.float64)))
            return
        payloads = []  # every layout first: a refresh that fails part-way sends nothing
        for kind, stride in layouts:
            values_out = (values.T if kind == "rows_t" else values) * amplification
            with self.timer.phase(Phase.ENCRYPT):  # values outside the rule's range fail here: a content refusal (handle)
                fresh = EncryptedTensor.encrypt(
                    self._secret, values_out, Layout.ROWS, stride=stride, bound=(bound + half_width) * amplification
                )
            with self.timer.phase(Phase.CIPHERTEXT_SERIALIZE):
                payloads.append(fresh.to_bytes())
        for index, payload in enumerate(payloads):
            channel.send(
                Message(REFRESH_REPLY, self.name, requester, message.step, payload, codec="ckks", meta={"index": index})
            )

    def _looks_masked(self, values: np.ndarray) -> bool | None:
        """Whether ``values`` look like uniform masks of the agreed half-width (None: too few to tell).

        A masked value is uniform on [-r, r] shifted by at most its public bound (far below r/2), so
        each of ``n`` masked values exceeds r/2 in magnitude with probability ~1/2 and all of them
        stay below with probability ~2^-n; an unmasked value never exceeds its bound. With 20
        values or more an honest request is refused with probability below 1e-6.
        """
        if self.mask_half_width is None or values.size < 20:
            return None
        return bool(np.max(np.abs(values)) > self.mask_half_width / 2)


class _ContentRefused(RequestRefused):
    """A request refused on its decrypted content: the requester is told one fixed reason, and it counts a strike."""

    def __init__(self, detail: str) -> None:
        super().__init__(CONTENT_REFUSAL)
        self.detail = detail


class MaskedKeyHolderClient:
    """What a party without the secret key uses to learn (or refresh) a value it computed.

    It only sends a request and waits for the reply on the channel; the key holder answers
    from its own loop (on the in-process channel: as an attached server).
    """

    def __init__(
        self,
        party: str,
        key_holder: str,
        public: PublicKeyring,
        channel: Channel,
        masks: MaskSampler,
        timer: PhaseTimer,
    ) -> None:
        self.party = party
        self.key_holder = key_holder
        self.public = public
        self.channel = channel
        self.masks = masks
        self.timer = timer

    def reveal(self, encrypted: EncryptedTensor, step: int, what: str, per_sample: bool) -> np.ndarray:
        """Plaintext of ``encrypted``, learnt through masked decryption."""
        mask = self.masks.draw(encrypted.shape)
        self._request(DECRYPT_REQUEST, encrypted.add_plain(mask), step, {"what": what, "per_sample": per_sample})
        reply = self._receive(DECRYPT_REPLY)
        values = np.asarray(reply.payload, dtype=np.float64)
        if values.shape != encrypted.shape:
            raise ProtocolError(f"{self.key_holder} answered shape {values.shape} for {encrypted.shape}")
        return values - mask

    def refresh(
        self,
        encrypted: EncryptedTensor,
        step: int,
        what: str,
        layouts: list[tuple[str, int]],
        bound: float,
        amplification: float = 1.0,
    ) -> list[EncryptedTensor]:
        """Fresh ciphertexts of ``encrypted`` (or its transpose) in the named ROWS strides.

        ``bound`` is the public bound on the unmasked value; the key holder encrypts the masked
        value under ``bound + half_width`` and the result, once unmasked, carries ``bound`` again.
        With ``amplification`` (the protocol's public factor, see the decryption policy's rules)
        the fresh ciphertexts hold the value times that factor.
        """
        mask = self.masks.draw(encrypted.shape)
        spec = ",".join(f"{kind}:{stride}" for kind, stride in layouts)
        meta = {
            "what": what, "per_sample": True, "strides": spec, "bound": bound + self.masks.half_width,
            "amplification": amplification,
        }
        self._request(REFRESH_REQUEST, encrypted.add_plain(mask), step, meta)
        fresh = []
        for kind, _ in layouts:
            reply = self._receive(REFRESH_REPLY)
            with self.timer.phase(Phase.CIPHERTEXT_DESERIALIZE):
                tensor = EncryptedTensor.from_bytes(self.public, reply.payload)
            unmask = -(mask.T if kind == "rows_t" else mask) * amplification
            fresh.append(tensor.add_plain(unmask, result_bound=bound * amplification))
        return fresh

    def _receive(self, kind: MessageKind) -> Message:
        """The key holder's reply; a content refusal of this party's own (honest) request says what to check."""
        try:
            return self.channel.receive(self.party, kind, sender=self.key_holder)
        except RequestRefusedError as exc:
            if exc.reason == CONTENT_REFUSAL:
                exc.args = (f"{exc.args[0]}. An honest request fails this only if its ciphertext is noisier than its rule's "
                            "public bound (very large features) or holds a value this party cannot see beyond the rule's "
                            "range (gradients the active party sent beyond protection.gradient_bound, sealed activations "
                            "or weights that outgrew theirs): docs/threat-model.md, 'Where an honest run can still be "
                            "refused'; the key holder's log names the check",)
            raise

    def _request(self, kind: str, masked: EncryptedTensor, step: int, meta: dict[str, object]) -> None:
        # the header declares the mask's public width, not the tracked bound: that one follows this party's own
        # weights and features (and the largest mask entry), which the key holder would read off (review, 2026-11-27)
        with self.timer.phase(Phase.CIPHERTEXT_SERIALIZE):
            payload = masked.to_bytes(mod_switch_to_last=True, declared_bound=2.0 * self.masks.half_width)
        self.channel.send(Message(kind, self.party, self.key_holder, step, payload, codec="ckks", meta=meta))  # type: ignore[arg-type]
