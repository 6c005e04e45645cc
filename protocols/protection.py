"""Protection schemes: how a party turns an outgoing array into a payload, and back.

Each party owns one :class:`PartyProtection`. It holds only that party's own key material
plus the public keys its peers announced, exactly as a deployed party would; the
in-process simulation never gives one party another's secret key.

- :class:`PlainProtection`: arrays travel as they are (``ndarray`` codec).
- :class:`ReceiverKeyProtection`: every party has its own CKKS key pair and announces its
  public keyring; a sender encrypts under the *receiver's* public key (``ckks`` codec), and
  only the receiver can decrypt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from securevfl.crypto import CryptoError, EncryptedTensor, Layout, PrecisionError, PublicKeyring, SecretKeyring, get_preset
from securevfl.protocols.accounting import PhaseTimer
from securevfl.protocols.phases import Phase
from securevfl.protocols.errors import NonFiniteError, PayloadRangeError, ProtocolError
from securevfl.protocols.messages import Message


#: A homomorphic operation on a message's ciphertext (e.g. a defense placed under encryption).
CiphertextTransform = Callable[[EncryptedTensor], EncryptedTensor]


class PartyProtection(Protocol):
    """One party's view of a protection scheme."""

    scheme: str
    announces: bool
    """Whether this party has public material to announce (and so expects its peers' too)."""

    def announcement(self) -> bytes | None:
        """Public material peers need before they can send to this party (None: nothing)."""

    def learn_peer(self, peer: str, announcement: bytes) -> None:
        """Record a peer's announced public material."""

    def seal(self, values: np.ndarray, receiver: str, transform: CiphertextTransform | None = None) -> tuple[str, Any]:
        """Turn an outgoing array into ``(codec name, payload)`` for ``receiver``.

        ``transform`` is applied to the ciphertext between encryption and serialization.
        """

    def open(self, message: Message, transform: CiphertextTransform | None = None) -> np.ndarray:
        """Recover the array carried by an incoming message addressed to this party.

        ``transform`` is applied to the ciphertext between deserialization and decryption.
        """


class PlainProtection:
    """No protection: the array is the payload."""

    scheme = "plain"
    announces = False

    def announcement(self) -> bytes | None:
        return None

    def learn_peer(self, peer: str, announcement: bytes) -> None:
        raise ProtocolError(f"the plain scheme expects no key announcement (got one from {peer})")

    def seal(self, values: np.ndarray, receiver: str, transform: CiphertextTransform | None = None) -> tuple[str, Any]:
        _no_ciphertext(transform)
        return "ndarray", values

    def open(self, message: Message, transform: CiphertextTransform | None = None) -> np.ndarray:
        _no_ciphertext(transform)
        if message.codec != "ndarray":
            raise ProtocolError(f"plain scheme received a {message.codec!r} payload from {message.sender}")
        return np.asarray(message.payload)


def _no_ciphertext(transform: CiphertextTransform | None) -> None:
    if transform is not None:
        raise ProtocolError("the plain scheme has no ciphertext to transform")


class ReceiverKeyProtection:
    """CKKS with ``key_holder = receiver``: encrypt to the receiver, decrypt your own mail.

    Messages are encrypted at the last level (no one multiplies them on the way), in the
    ``flat`` layout that fills every slot, which is the smallest wire form for a sender that
    only holds the receiver's public key. Their bound is the preset's ``transport_bound`` (half
    the decryptable ceiling: 2^18 under ``transport``), not its ``max_magnitude`` (2^9), whose
    room for a product such a ciphertext never uses: a value is refused only where CKKS could
    no longer decrypt it precisely, so a range stop under this scheme is CKKS's limit, not a
    margin of this library.
    """

    scheme = "ckks"
    announces = True

    def __init__(self, party: str, preset: str, timer: PhaseTimer, layout: Layout = Layout.FLAT) -> None:
        self.party = party
        self.timer = timer
        self.layout = layout
        with timer.phase(Phase.KEYGEN):
            self._secret = SecretKeyring.generate(get_preset(preset))
        self._peers: dict[str, PublicKeyring] = {}

    def announcement(self) -> bytes:
        return self._secret.public_keyring().to_bytes()

    def learn_peer(self, peer: str, announcement: bytes) -> None:
        try:
            self._peers[peer] = PublicKeyring.from_bytes(announcement)
        except CryptoError as exc:
            raise ProtocolError(f"{self.party} rejected the public keyring announced by {peer}: {exc}") from exc

    def seal(self, values: np.ndarray, receiver: str, transform: CiphertextTransform | None = None) -> tuple[str, Any]:
        public = self._peers.get(receiver)
        if public is None:
            raise ProtocolError(f"{self.party} has no public key of {receiver}; keys must be announced first")
        if not np.isfinite(values).all():
            raise NonFiniteError(f"{self.party} refuses to encrypt NaN/Inf values for {receiver}")
        try:
            with self.timer.phase(Phase.ENCRYPT):
                encrypted = EncryptedTensor.encrypt(public, values, self.layout, bound=public.params.transport_bound, levels=0)
            if transform is not None:
                with self.timer.phase(Phase.DEFENSE_ENCRYPTED):
                    encrypted = transform(encrypted)
            with self.timer.phase(Phase.CIPHERTEXT_SERIALIZE):
                # after a transform (noise drawn under encryption) the tracked bound is transport_bound + max |noise|: a
                # header carrying it would tell the receiver the noise's size, so the public ceiling is declared instead
                declared = public.params.decrypt_ceiling if transform is not None else None
                return "ckks", encrypted.to_bytes(declared_bound=declared)
        except PrecisionError as exc:
            params = public.params
            raise PayloadRangeError(
                f"{self.party} -> {receiver}: {exc} (the bound: half the decryptable ceiling 2^{params.headroom_bits} of "
                f"preset {params.name!r}, the most a fresh encryption of any row holds; CKKS cannot decrypt beyond the ceiling)"
            ) from exc

    def open(self, message: Message, transform: CiphertextTransform | None = None) -> np.ndarray:
        if message.codec != "ckks":
            raise ProtocolError(
                f"{self.party} expected CKKS ciphertexts from {message.sender}, got a {message.codec!r} payload"
            )
        try:
            with self.timer.phase(Phase.CIPHERTEXT_DESERIALIZE):
                encrypted = EncryptedTensor.from_bytes(self._secret, message.payload)
            if transform is not None:
                with self.timer.phase(Phase.DEFENSE_ENCRYPTED):
                    encrypted = transform(encrypted)
            with self.timer.phase(Phase.DECRYPT):
                values = encrypted.decrypt()
            # a value beyond the bound the header declares is no honest encryption in range: a forged header, or a value
            # that wrapped around the modulus and decrypted to garbage; refused, never used
            limit = encrypted.value_bound + encrypted.keyring.params.expected_precision
            peak = float(np.max(np.abs(values))) if values.size else 0.0
            if not peak <= limit:
                raise PayloadRangeError(
                    f"{self.party} <- {message.sender}: a decrypted value of magnitude {peak:.6g} exceeds the bound "
                    f"{encrypted.value_bound:g} its sender declared; refused (a forged header or a value outside CKKS's range)"
                )
            return values.astype(np.float32)
        except PrecisionError as exc:  # the receiver's own transform took it past the ceiling: a range stop, not a protocol fault
            raise PayloadRangeError(f"{self.party} <- {message.sender}: {exc}") from exc
        except CryptoError as exc:
            raise ProtocolError(f"{self.party} could not decrypt a {message.kind} from {message.sender}: {exc}") from exc
