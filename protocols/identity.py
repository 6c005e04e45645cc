"""Who a party is on the wire: an Ed25519 identity key per party, and the roster that pins them.

A party's :class:`Identity` (its name and private signing key) never leaves it; it signs every
frame the party sends (:mod:`securevfl.protocols.framing`). The :class:`Roster` is public: party
name -> public key, what a deployment plan pins by :func:`fingerprint` (SHA-256 of the raw
32-byte public key, hex) so that every party checks its peers against the same keys before the
first frame travels. Nothing here is hand-rolled: keys, signatures and the hash come from the
``cryptography`` package.

A network transport gives each process its own identity and the run's roster; the in-process
channel holds every party's identity (it simulates them all) and hands each party only its
endpoint, so no party can sign as another (:func:`fresh_identities` makes them for one run).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from securevfl.protocols.errors import IdentityError

__all__ = ["PUBLIC_KEY_BYTES", "SIGNATURE_BYTES", "Identity", "Roster", "fingerprint", "fresh_identities"]

#: Raw Ed25519 public key length.
PUBLIC_KEY_BYTES = 32
#: Ed25519 signature length: what every frame carries in addition to its header and body.
SIGNATURE_BYTES = 64


def fingerprint(public_key: bytes) -> str:
    """SHA-256 of a raw public key, hex: what a deployment plan pins for each party."""
    return hashlib.sha256(public_key).hexdigest()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise IdentityError(f"a party name must be a non-empty string, got {name!r}")
    return name


class Identity:
    """A party's private identity: its name and Ed25519 signing key. Signs; never sent anywhere."""

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        self.name = _check_name(name)
        self._key = key
        self.public_key = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        """The raw 32-byte public key (what the roster holds)."""

    @classmethod
    def generate(cls, name: str) -> Identity:
        """A fresh identity from the operating system's CSPRNG."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, name: str, raw: bytes) -> Identity:
        """An identity kept by a deployment (the 32 raw private-key bytes of :meth:`private_bytes`)."""
        if not isinstance(raw, bytes) or len(raw) != 32:
            raise IdentityError(f"{name}: an Ed25519 private key is 32 raw bytes, got {len(raw) if isinstance(raw, bytes) else type(raw).__name__}")
        return cls(name, Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        """The 32 raw private-key bytes, for a deployment to store with the party (never to send)."""
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """The Ed25519 signature of ``data`` (64 bytes)."""
        return self._key.sign(data)

    def __repr__(self) -> str:  # never the key itself
        return f"Identity({self.name!r}, fingerprint={self.fingerprint[:16]}...)"


class Roster:
    """The public keys of every party of a run, by name; verifies that a party signed some bytes.

    Built from identities (in-process) or from public keys a deployment distributes, then
    checked against the fingerprints its plan pins (:meth:`pin`). Immutable: a party that is not
    on the roster when the run starts is never accepted.
    """

    def __init__(self, public_keys: Mapping[str, bytes]) -> None:
        keys: dict[str, Ed25519PublicKey] = {}
        raw: dict[str, bytes] = {}
        for name, key in public_keys.items():
            _check_name(name)
            if not isinstance(key, bytes) or len(key) != PUBLIC_KEY_BYTES:
                raise IdentityError(f"{name}: an Ed25519 public key is {PUBLIC_KEY_BYTES} raw bytes, got {key!r:.40}")
            keys[name] = Ed25519PublicKey.from_public_bytes(key)
            raw[name] = key
        self._keys = keys
        self._raw = raw

    @classmethod
    def of(cls, identities: Iterable[Identity]) -> Roster:
        """The roster of the given identities' public keys."""
        return cls({identity.name: identity.public_key for identity in identities})

    def __contains__(self, name: object) -> bool:
        return name in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def public_key(self, name: str) -> bytes:
        """The raw public key of ``name``; IdentityError if it is not on the roster."""
        try:
            return self._raw[name]
        except KeyError:
            raise IdentityError(f"{name!r} is not on the roster (known: {', '.join(self) or 'none'})") from None

    def fingerprints(self) -> dict[str, str]:
        """Party name -> fingerprint: what a deployment plan pins."""
        return {name: fingerprint(self._raw[name]) for name in self}

    def pin(self, expected: Mapping[str, str]) -> None:
        """Check the roster against pinned fingerprints: the same parties, each with the pinned key."""
        actual = self.fingerprints()
        if set(actual) != set(expected):
            raise IdentityError(f"roster parties {sorted(actual)} differ from the pinned parties {sorted(expected)}")
        for name, pinned in expected.items():
            if actual[name] != pinned.lower():
                raise IdentityError(f"{name}'s public key has fingerprint {actual[name]}, the plan pins {pinned}")

    def verify(self, name: str, data: bytes, signature: bytes) -> None:
        """Return if ``name``'s key signed ``data``; otherwise raise IdentityError saying why."""
        key = self._keys.get(name)
        if key is None:
            raise IdentityError(f"{name!r} is not on the roster")
        try:
            key.verify(signature, data)
        except InvalidSignature:
            raise IdentityError(f"bad signature: not made by {name}'s roster key (fingerprint {fingerprint(self._raw[name])[:16]})") from None

    def with_party(self, identity: Identity) -> Roster:
        """A new roster with ``identity``'s public key added (for enrolment before a run starts)."""
        if identity.name in self:
            raise IdentityError(f"{identity.name!r} is already on the roster")
        return Roster({**self._raw, identity.name: identity.public_key})


def fresh_identities(names: Iterable[str]) -> dict[str, Identity]:
    """A new identity for every party of an in-process run (names must be distinct)."""
    identities: dict[str, Identity] = {}
    for name in names:
        if name in identities:
            raise IdentityError(f"party name {name!r} appears twice")
        identities[name] = Identity.generate(name)
    return identities
