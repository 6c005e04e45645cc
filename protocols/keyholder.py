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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from securevfl.crypto import CryptoError, EncryptedTensor, Layout, PublicKeyring, SecretKeyring
from securevfl.protocols.accounting import PhaseTimer
from securevfl.protocols.phases import Phase
from securevfl.protocols.audit import VisibilityLog
from securevfl.protocols.channel import Channel
from securevfl.protocols.errors import ProtocolError
from securevfl.protocols.masking import MaskSampler
from securevfl.protocols.messages import Message, MessageKind

DECRYPT_REQUEST = MessageKind.DECRYPT_REQUEST
DECRYPT_REPLY = MessageKind.DECRYPT_REPLY
REFRESH_REQUEST = MessageKind.REFRESH_REQUEST
REFRESH_REPLY = MessageKind.REFRESH_REPLY
#: What a key holder answers.
REQUEST_KINDS = (DECRYPT_REQUEST, REFRESH_REQUEST)


class KeyHolder:
    """Holds the only secret key; decrypts masked values and re-encrypts them on request."""

    def __init__(self, name: str, secret: SecretKeyring, timer: PhaseTimer, audit: VisibilityLog) -> None:
        self.name = name
        self._secret = secret
        self.timer = timer
        self.audit = audit
        self.observers: list[Callable[[Message, np.ndarray], None]] = []
        """See every request and the value decrypted for it, after it is audited (a study's curious key holder)."""

    @property
    def keyring(self) -> SecretKeyring:
        """The secret keyring, for the key holder's own decryptions (never sent anywhere)."""
        return self._secret

    def announcement(self) -> bytes:
        return self._secret.public_keyring().to_bytes()

    def handle(self, channel: Channel, message: Message) -> None:
        """Answer one request (decrypt or refresh) that ``message`` carries."""
        requester = message.sender
        if message.kind not in REQUEST_KINDS:
            raise ProtocolError(f"{self.name} expected a decrypt or refresh request from {requester}, got {message.kind!r}")
        try:
            with self.timer.phase(Phase.CIPHERTEXT_DESERIALIZE):
                encrypted = EncryptedTensor.from_bytes(self._secret, message.payload)
            with self.timer.phase(Phase.DECRYPT):
                values = encrypted.decrypt()
        except CryptoError as exc:
            raise ProtocolError(f"{self.name} could not decrypt a request from {requester}: {exc}") from exc
        self.audit.saw(
            str(message.meta.get("what", "unknown")),
            values.shape,
            per_sample=bool(message.meta.get("per_sample", False)),
            masked=True,
            source=requester,
        )
        for observer in self.observers:
            observer(message, values.copy())
        if message.kind == DECRYPT_REQUEST:
            channel.send(Message(DECRYPT_REPLY, self.name, requester, message.step, values.astype(np.float64)))
            return
        for index, layout in enumerate(_layouts(message)):
            values_out = values.T if layout.transpose else values
            with self.timer.phase(Phase.ENCRYPT):
                fresh = EncryptedTensor.encrypt(
                    self._secret, values_out, Layout.ROWS, stride=layout.stride, bound=layout.bound
                )
            with self.timer.phase(Phase.CIPHERTEXT_SERIALIZE):
                payload = fresh.to_bytes()
            channel.send(
                Message(REFRESH_REPLY, self.name, requester, message.step, payload, codec="ckks", meta={"index": index})
            )


@dataclass(frozen=True)
class RefreshLayout:
    """One re-encryption the requester wants: ROWS with ``stride``, of the value or its transpose."""

    stride: int
    transpose: bool
    bound: float


def _layouts(message: Message) -> list[RefreshLayout]:
    strides = str(message.meta.get("strides", ""))
    if not strides:
        raise ProtocolError(f"refresh request from {message.sender} names no layouts")
    bound = float(message.meta.get("bound", 0.0))
    layouts = []
    for item in strides.split(","):
        kind, _, stride = item.partition(":")
        if kind not in ("rows", "rows_t") or not stride.isdigit():
            raise ProtocolError(f"refresh request from {message.sender} has a malformed layout {item!r}")
        layouts.append(RefreshLayout(int(stride), kind == "rows_t", bound))
    return layouts


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
        reply = self.channel.receive(self.party, DECRYPT_REPLY, sender=self.key_holder)
        values = np.asarray(reply.payload, dtype=np.float64)
        if values.shape != encrypted.shape:
            raise ProtocolError(f"{self.key_holder} answered shape {values.shape} for {encrypted.shape}")
        return values - mask

    def refresh(
        self, encrypted: EncryptedTensor, step: int, what: str, layouts: list[tuple[str, int]], bound: float
    ) -> list[EncryptedTensor]:
        """Fresh ciphertexts of ``encrypted`` (or its transpose) in the named ROWS strides.

        ``bound`` is the public bound on the unmasked value; the key holder encrypts the masked
        value under ``bound + half_width`` and the result, once unmasked, carries ``bound`` again.
        """
        mask = self.masks.draw(encrypted.shape)
        spec = ",".join(f"{kind}:{stride}" for kind, stride in layouts)
        meta = {"what": what, "per_sample": True, "strides": spec, "bound": bound + self.masks.half_width}
        self._request(REFRESH_REQUEST, encrypted.add_plain(mask), step, meta)
        fresh = []
        for kind, _ in layouts:
            reply = self.channel.receive(self.party, REFRESH_REPLY, sender=self.key_holder)
            with self.timer.phase(Phase.CIPHERTEXT_DESERIALIZE):
                tensor = EncryptedTensor.from_bytes(self.public, reply.payload)
            fresh.append(tensor.add_plain(-(mask.T if kind == "rows_t" else mask), result_bound=bound))
        return fresh

    def _request(self, kind: str, masked: EncryptedTensor, step: int, meta: dict[str, object]) -> None:
        with self.timer.phase(Phase.CIPHERTEXT_SERIALIZE):
            payload = masked.to_bytes(mod_switch_to_last=True)
        self.channel.send(Message(kind, self.party, self.key_holder, step, payload, codec="ckks", meta=meta))  # type: ignore[arg-type]
