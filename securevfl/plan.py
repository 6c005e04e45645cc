"""The plan (the public agreement every party holds) and a party's private file.

The **plan** (TOML, the same file at every party) names the session, each party with its role,
address, identity-key fingerprint (SHA-256 of its raw Ed25519 public key,
:func:`securevfl.protocols.identity.fingerprint`) and TLS certificate fingerprint
(:func:`securevfl.pki.fingerprint`), the CA bundle, the run configuration (the same sections as a
config file), the public shape of the data (sample counts, classes, columns per block) and the
seed of the batch order. It holds no key, no data and no passphrase.

A party's **private file** (TOML, kept by that party only) says where its own data block is, where
its identity key, certificate and TLS key are, and where the passphrase of its keys comes from (an
environment variable or a file, never the file itself), and, for the party that runs the plan's
attack, where that attack's knowledge is (``[attack]``). Relative paths in either file are taken
relative to the file's own directory.

Every check fails with one line (:class:`~securevfl.errors.ConfigError`): an unknown party, two
parties at one address, a plan whose parties are not those of its configuration, a private file
of another party, or a key whose fingerprint is not the one the plan pins.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from securevfl import pki
from securevfl.agreement import digest_of
from securevfl.config import RunConfig, describe_validation_error
from securevfl.errors import ConfigError, PKIError
from securevfl.parties import RunShape
from securevfl.party_assembly import run_shape
from securevfl.protocols import Identity, Roster
from securevfl.protocols.identity import fingerprint

__all__ = [
    "PLAN_FORMAT",
    "AttackKnowledgeSource",
    "PassphraseSource",
    "Plan",
    "PlanParty",
    "PlanShape",
    "PrivateParty",
    "check_tls",
    "load_identity",
    "load_plan",
    "load_private",
]

PLAN_FORMAT = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>[0-9]{1,5})")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _fingerprint(value: str) -> str:
    cleaned = value.strip().lower().removeprefix("sha256:").replace(":", "")
    if not _HEX64.fullmatch(cleaned):
        raise ValueError(f"{value!r} is not a SHA-256 fingerprint (64 hex digits)")
    return cleaned


class PlanParty(_Strict):
    """One party as every other party knows it: name, role, address and the keys it must present."""

    name: str
    role: Literal["passive", "active", "coordinator"]
    address: str = Field(description="host:port the party's process listens at")
    identity_fingerprint: str = Field(description="SHA-256 of the party's raw Ed25519 identity public key (hex)")
    identity_public_key: str | None = Field(default=None, description="the raw Ed25519 public key itself (hex), if the plan carries it")
    tls_fingerprint: str | None = Field(default=None, description="SHA-256 of the party's TLS certificate (DER, hex)")
    tls_certificate: Path | None = Field(
        default=None,
        description=(
            "the party's TLS certificate itself (PEM file, relative to the plan); with it every other party trusts exactly "
            "this certificate when it dials the party, not any certificate of the CA (needs tls_fingerprint, which it must have)"
        ),
    )

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        match = _ADDRESS.fullmatch(value)
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ValueError(f"address {value!r} is not host:port with a port from 1 to 65535")
        return value

    @field_validator("identity_fingerprint", "tls_fingerprint")
    @classmethod
    def _check_fingerprint(cls, value: str | None) -> str | None:
        return None if value is None else _fingerprint(value)

    @model_validator(mode="after")
    def _certificate_is_pinned(self) -> PlanParty:
        if self.tls_certificate is not None and self.tls_fingerprint is None:
            raise ValueError(f"{self.name}: tls_certificate needs the tls_fingerprint it must have")
        return self

    @model_validator(mode="after")
    def _key_matches_fingerprint(self) -> PlanParty:
        if self.identity_public_key is not None:
            try:
                raw = bytes.fromhex(self.identity_public_key)
            except ValueError:
                raise ValueError(f"{self.name}: identity_public_key is not hex") from None
            if len(raw) != 32 or fingerprint(raw) != self.identity_fingerprint:
                raise ValueError(f"{self.name}: identity_public_key does not have the pinned identity_fingerprint")
        return self


class PlanShape(_Strict):
    """The public shape of the data: sizes only (every party checks its own block against them).

    Under ``alignment = "psi"`` the sample counts are what the private set intersection finds,
    so the plan leaves ``n_train`` and ``n_test`` out.
    """

    n_train: int | None = Field(default=None, ge=1)
    n_test: int | None = Field(default=None, ge=1)
    num_classes: int = Field(ge=2)
    block_widths: list[int] = Field(description="columns per block: passives in order, then the active party's own block")

    @field_validator("block_widths")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if not value or any(width < 1 for width in value):
            raise ValueError(f"block_widths must be positive column counts, got {value}")
        return value


class Plan(_Strict):
    """The public agreement of one run (see the module docstring); ``base`` resolves its relative paths."""

    format: Literal[1] = PLAN_FORMAT
    session: str = Field(description="this run's session id (32 hex digits), in every frame")
    batch_order_seed: int = Field(ge=0, description="seed of the batch order (the run's train.seed)")
    ca_bundle: Path | None = Field(default=None, description="CA certificate(s) every party's TLS certificate chains to")
    alignment: Literal["agreed", "psi"] = Field(
        default="agreed",
        description=(
            "agreed: every party's data block already holds the same samples in the same order; psi: each block holds "
            "its own rows and ids, and the parties align them by private set intersection before training"
        ),
    )
    parties: list[PlanParty]
    shape: PlanShape
    run: RunConfig
    base: Path = Field(default=Path("."), exclude=True)

    @field_validator("session")
    @classmethod
    def _check_session(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{32}", value):
            raise ValueError(f"session {value!r} is not 32 lowercase hex digits")
        return value

    @model_validator(mode="after")
    def _check_agreement(self) -> Plan:
        counted = self.shape.n_train is not None and self.shape.n_test is not None
        if self.alignment == "psi" and (self.shape.n_train is not None or self.shape.n_test is not None):
            raise ValueError("alignment = 'psi': the private set intersection decides the sample counts, so shape.n_train and shape.n_test must be left out")
        if self.alignment == "agreed" and not counted:
            raise ValueError("alignment = 'agreed': the plan must give shape.n_train and shape.n_test (the blocks' row counts)")
        names = [party.name for party in self.parties]
        for what, values in (("party name", names), ("address", [party.address for party in self.parties])):
            seen: set[str] = set()
            for value in values:
                if value in seen:
                    raise ValueError(f"two parties have the {what} {value!r}")
                seen.add(value)
        if self.batch_order_seed != self.run.train.seed:
            raise ValueError(f"batch_order_seed = {self.batch_order_seed} but run.train.seed = {self.run.train.seed}: the batch order is drawn from the run seed")
        expected = self.run_shape().party_names(self.run.scheme.key_holder_party)
        if sorted(names) != sorted(expected):
            raise ValueError(f"the plan's parties {sorted(names)} are not those of its run configuration {sorted(expected)}")
        roles = {party.name: party.role for party in self.parties}
        shape = self.run_shape()
        for name in expected:
            role = "passive" if name in shape.passive_names else "active" if name == shape.active_name else "coordinator"
            if roles[name] != role:
                raise ValueError(f"party {name!r} has role {roles[name]!r} in the plan, but is the {role} party of the run")
        return self

    def run_shape(self, *, n_train: int | None = None, n_test: int | None = None) -> RunShape:
        """The run's public shape; under ``alignment = "psi"`` with the counts the intersection found
        (before it, 1 stands in for them: names and roles do not depend on counts)."""
        shape = self.shape
        train = n_train if n_train is not None else shape.n_train if shape.n_train is not None else 1
        test = n_test if n_test is not None else shape.n_test if shape.n_test is not None else 1
        try:
            return run_shape(self.run, shape.block_widths, shape.num_classes, train, test)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    def party(self, name: str) -> PlanParty:
        """The plan's entry for ``name``; one line naming the plan's parties if there is none."""
        for party in self.parties:
            if party.name == name:
                return party
        raise ConfigError(f"the plan has no party {name!r} (parties: {', '.join(p.name for p in self.parties)})")

    def identity_fingerprints(self) -> dict[str, str]:
        """Party name -> pinned identity fingerprint (what :meth:`Roster.pin` checks)."""
        return {party.name: party.identity_fingerprint for party in self.parties}

    def roster(self) -> Roster:
        """The run's roster from the public keys the plan carries (checked against its fingerprints)."""
        missing = [party.name for party in self.parties if party.identity_public_key is None]
        if missing:
            raise ConfigError(f"the plan carries no identity public key for {', '.join(missing)}; a transport must learn them and pin the fingerprints")
        roster = Roster({party.name: bytes.fromhex(party.identity_public_key) for party in self.parties})  # type: ignore[arg-type]
        roster.pin(self.identity_fingerprints())
        return roster

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base / path

    def agreement(self) -> str:
        """SHA-256 (hex) of everything in the plan every party must hold alike, checked in every attempt's handshake.

        The roster (names, roles, addresses, pinned identity and TLS fingerprints), the run
        configuration (protection settings included), the shape, the alignment, the session and the
        CA bundle's bytes; not the local paths a party may keep its files at (the CA bundle's or a
        certificate's path, ``run.data.dir``). Why: each party checks only its own entry of the plan,
        so copies that differ elsewhere (a key holder told ``flooding_bits = 0`` while the passives'
        copies say 30, or another roster) would otherwise run together unnoticed.
        """
        ca = b""
        if self.ca_bundle is not None:
            try:
                ca = self.resolve(self.ca_bundle).read_bytes()
            except OSError as exc:
                raise ConfigError(f"plan: cannot read the CA bundle {self.resolve(self.ca_bundle)}: {exc.strerror or exc}") from None
        return digest_of("securevfl plan agreement v1", self, hashlib.sha256(ca).digest())

    def document(self) -> dict[str, Any]:
        """The plan as a TOML-ready mapping (``securevfl.toml_text.dumps``)."""
        data = self.model_dump(mode="json", exclude={"base"})
        data["run"] = self.run.resolved()
        return data


class PassphraseSource(_Strict):
    """Where the passphrase of a party's keys comes from: an environment variable or a file (never inline)."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PassphraseSource:
        if (self.env is None) == (self.file is None):
            raise ValueError("passphrase: give exactly one of env (a variable name) or file (a path)")
        return self


class DataSource(_Strict):
    """Where a party's own data block is: an ``.npz`` file written by ``securevfl plan export-data``."""

    path: Path
    format: Literal["npz"] = "npz"


class AttackKnowledgeSource(_Strict):
    """``[attack]`` of an attacking party's private file: what it knows for the plan's attack, by the exporter.

    ``knowledge`` is the attack's prepared state (e.g. a backdoor's known target samples and
    trigger), an ``.npz`` read without pickle (:mod:`securevfl.party_attack`). ``evaluator_truth``
    is a simulation-harness file only: the evaluator's labels the party scores its attack's
    outputs against after each epoch (never handed to the attack itself); a deployment has none.
    """

    kind: str = Field(description="the attack kind this knowledge is for (must be the plan's run.attack.kind)")
    knowledge: Path = Field(description="the attack's prepared state (.npz, no pickled objects)")
    evaluator_truth: Path | None = Field(default=None, description="SIMULATION ONLY: the evaluator's truth to score the attack by")


class PrivateParty(_Strict):
    """A party's private file: its data, its keys and where their passphrase comes from."""

    party: str
    data: DataSource | None = Field(default=None, description="the party's own block (none for a coordinator)")
    identity_key: Path = Field(description="PEM PKCS#8 Ed25519 private key that signs this party's frames")
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    passphrase: PassphraseSource | None = Field(default=None, description="decrypts identity_key and tls_key when they are encrypted")
    attack: AttackKnowledgeSource | None = Field(default=None, description="an attacking party's knowledge of the plan's attack")
    base: Path = Field(default=Path("."), exclude=True)

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base / path

    def passphrase_bytes(self) -> bytes | None:
        source = self.passphrase
        if source is None:
            return None
        return pki.passphrase_from(environment_variable=source.env, file=None if source.file is None else self.resolve(source.file))


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _validated(model: type[_Strict], raw: dict[str, Any], path: Path) -> Any:
    try:
        return model.model_validate({**raw, "base": path.parent})
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_validation_error(exc).removeprefix('config error: ')}") from None


def load_plan(path: Path) -> Plan:
    """Read and check a plan file (one :class:`ConfigError` line for anything wrong in it)."""
    raw = _read_toml(Path(path), "plan file")
    if "base" in raw:
        raise ConfigError(f"{path}: unknown key 'base'")
    return _validated(Plan, raw, Path(path))  # type: ignore[no-any-return]


def load_private(path: Path, party: str) -> PrivateParty:
    """Read party ``party``'s private file; refused if it is another party's."""
    raw = _read_toml(Path(path), "party file")
    if "base" in raw:
        raise ConfigError(f"{path}: unknown key 'base'")
    private: PrivateParty = _validated(PrivateParty, raw, Path(path))
    if private.party != party:
        raise ConfigError(f"{path} is the private file of party {private.party!r}, not of {party!r}")
    return private


def load_identity(plan: Plan, private: PrivateParty) -> Identity:
    """The party's identity key, decrypted, checked against the fingerprint its plan pins."""
    entry = plan.party(private.party)
    path = private.resolve(private.identity_key)
    try:
        key = pki.load_private_key(path, private.passphrase_bytes())
    except PKIError as exc:
        raise ConfigError(f"identity key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key (an identity key signs frames with Ed25519)")
    identity = Identity(private.party, key)
    if identity.fingerprint != entry.identity_fingerprint:
        raise ConfigError(
            f"{path}: the identity key of {private.party} has fingerprint {identity.fingerprint}, the plan pins {entry.identity_fingerprint}"
        )
    return identity


def check_tls(plan: Plan, private: PrivateParty) -> None:
    """The party's TLS certificate chains to the plan's CA, names the party, fits its key and has the pinned fingerprint."""
    entry = plan.party(private.party)
    if private.tls_certificate is None or private.tls_key is None or plan.ca_bundle is None:
        if entry.tls_fingerprint is not None:
            raise ConfigError(f"the plan pins a TLS certificate for {private.party}, but its party file or the plan names no certificate, key or CA bundle")
        return
    certificate = private.resolve(private.tls_certificate)
    try:
        pki.load_tls_material(plan.resolve(plan.ca_bundle), certificate, private.resolve(private.tls_key), private.party, passphrase=private.passphrase_bytes())
        actual = pki.fingerprint(pki.load_certificates(certificate)[0])
    except PKIError as exc:
        raise ConfigError(f"TLS: {exc}") from None
    if entry.tls_fingerprint is not None and actual != entry.tls_fingerprint:
        raise ConfigError(f"{certificate}: the certificate of {private.party} has fingerprint {actual}, the plan pins {entry.tls_fingerprint}")
