"""Certificates for mutual TLS between party processes: a development CA, party certificates, checks.

A federation's parties will talk gRPC over mutual TLS, and a party without a certificate the plan
names must not be able to connect. This module provides what that rests on:

* a development CA (:func:`create_ca`, :func:`write_ca`, :func:`load_ca`) and party certificates
  it signs (:func:`issue_party_certificate`, :func:`write_party_credentials`), so a federation can
  be tried without an organisation's PKI;
* fingerprints (:func:`fingerprint`) a deployment plan pins;
* checks (:func:`verify_party_certificate`, :func:`verify_peer_certificate`) that a certificate
  chains to the federation's CA, is within its validity, names the expected party and may be
  used on both TLS sides, each failure one :class:`~securevfl.errors.PKIError` line;
* the PEM bytes gRPC's credentials take (:func:`load_tls_material`).

Keys are ECDSA P-256: small, fast, and accepted by every TLS stack gRPC uses. Chain building and
signature checks are ``cryptography``'s own verifier; this module adds the federation's rules
(party name, both TLS usages, pins) and errors that say which rule failed. Private keys are
written 0600, encrypted when a passphrase is given (read from an environment variable or a file,
never from the command line), atomically, and never over an existing file unless asked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from securevfl.files import atomic_write
from securevfl.errors import PKIError

__all__ = [
    "CA_CERTIFICATE_NAME",
    "CA_KEY_NAME",
    "CertificateAuthority",
    "CertificateInfo",
    "PartyCredentials",
    "TLSMaterial",
    "WrittenFiles",
    "create_ca",
    "describe_certificate",
    "fingerprint",
    "issue_party_certificate",
    "load_ca",
    "load_ca_bundle",
    "load_certificates",
    "load_private_key",
    "load_tls_material",
    "normalize_fingerprint",
    "party_file_names",
    "passphrase_from",
    "verify_party_certificate",
    "verify_peer_certificate",
    "write_ca",
    "write_party_credentials",
]

CA_CERTIFICATE_NAME = "ca.crt"
CA_KEY_NAME = "ca.key"
DEFAULT_DNS_NAMES = ("localhost",)
DEFAULT_IP_ADDRESSES = ("127.0.0.1",)
DEFAULT_DAYS = 365
MAX_DAYS = 3650
CA_COMMON_NAME = "securevfl development CA"
CLOCK_SKEW = dt.timedelta(minutes=5)
"""Certificates start this long before they are made, so a peer whose clock is a little behind accepts them."""

_PARTY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DNS_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
MIN_RSA_BITS = 2048
_ACCEPTED_CURVES = ("secp256r1", "secp384r1", "secp521r1")
_EXTENSION_NAMES = {
    oid.dotted_string: name.lower().replace("_", " ") for name, oid in vars(ExtensionOID).items() if isinstance(oid, x509.ObjectIdentifier)
}
_TLS_USAGES = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}
_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o644
_ENCRYPTED_PEM_MARKERS = (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", b"Proc-Type: 4,ENCRYPTED")
_Extension = TypeVar("_Extension", bound=x509.ExtensionType)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate with its private key, able to sign party certificates."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = field(repr=False)


@dataclass(frozen=True)
class PartyCredentials:
    """A party's certificate and the private key it was issued for."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)


@dataclass(frozen=True)
class WrittenFiles:
    """Where a certificate and its key went, and the fingerprint a plan pins."""

    certificate: Path
    private_key: Path
    fingerprint: str
    encrypted: bool


@dataclass(frozen=True)
class TLSMaterial:
    """PEM bytes in the shape ``grpc.ssl_server_credentials`` and ``grpc.ssl_channel_credentials`` take.

    ``private_key`` is decrypted, in memory only; it is left out of ``repr`` so a log line never
    shows it.
    """

    root_certificates: bytes
    certificate_chain: bytes
    private_key: bytes = field(repr=False)


@dataclass(frozen=True)
class CertificateInfo:
    """What a person checks before trusting a certificate (``securevfl pki show``)."""

    subject: str
    issuer: str
    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint: str
    is_ca: bool
    extended_key_usages: tuple[str, ...]

    def lines(self) -> list[str]:
        """The fields, one per line, as ``pki show`` prints them."""
        names = [*self.dns_names, *self.ip_addresses]
        return [
            f"subject:     {self.subject}",
            f"issuer:      {self.issuer}",
            f"CA:          {'yes' if self.is_ca else 'no'}",
            f"SAN:         {', '.join(names) if names else '(none)'}",
            f"usages:      {', '.join(self.extended_key_usages) if self.extended_key_usages else '(no extended key usage)'}",
            f"not before:  {self.not_before.isoformat()}",
            f"not after:   {self.not_after.isoformat()}",
            f"fingerprint: {self.fingerprint}",
        ]


# --- creating -------------------------------------------------------------------------------------


def create_ca(*, days: int = DEFAULT_DAYS, common_name: str | None = None, now: dt.datetime | None = None) -> CertificateAuthority:
    """A fresh self-signed CA that may sign party certificates and nothing else (path length 0).

    Without ``common_name`` the name is ``securevfl development CA`` and 8 random hex digits, so two
    development CAs never share a name: a certificate from the other one is then reported as
    "not issued by this CA" rather than as a bad signature, and ``pki show`` tells them apart.
    """
    moment = _utc(now)
    _check_days(days)
    if common_name is None:
        common_name = f"{CA_COMMON_NAME} {secrets.token_hex(4)}"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - CLOCK_SKEW)
        .not_valid_after(moment + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(key_id, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(certificate, key)


def issue_party_certificate(
    ca: CertificateAuthority,
    party: str,
    *,
    dns_names: Sequence[str] = DEFAULT_DNS_NAMES,
    ip_addresses: Sequence[str] = DEFAULT_IP_ADDRESSES,
    days: int | None = None,
    now: dt.datetime | None = None,
) -> PartyCredentials:
    """A certificate naming ``party`` (subject CN), usable as TLS server and client, signed by ``ca``.

    The SAN carries the host names and addresses peers dial, so the party can also serve. ``now``
    moves the validity window (tests issue certificates that have already expired). Without
    ``days`` the certificate lasts :data:`DEFAULT_DAYS` or until the CA expires, whichever comes
    first; an explicit ``days`` past the CA's expiry is refused rather than silently shortened.
    """
    moment = _utc(now)
    _check_party_name(party)
    alternative_names = _subject_alternative_names(dns_names, ip_addresses)
    ca_certificate = ca.certificate
    _check_within_validity(ca_certificate, moment, "the CA certificate")
    if days is None:
        not_after = min(moment + dt.timedelta(days=DEFAULT_DAYS), ca_certificate.not_valid_after_utc)
    else:
        _check_days(days)
        not_after = moment + dt.timedelta(days=days)
    if not_after > ca_certificate.not_valid_after_utc:
        raise PKIError(
            f"a {days}-day certificate would outlive the CA (it expires {ca_certificate.not_valid_after_utc:%Y-%m-%d}); "
            "issue for fewer days or create a new CA"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key_id = _extension(ca_certificate, x509.SubjectKeyIdentifier) or x509.SubjectKeyIdentifier.from_public_key(
        ca_certificate.public_key()
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(moment - CLOCK_SKEW, ca_certificate.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(_TLS_USAGES)), critical=False)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_key_id), critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )
    return PartyCredentials(certificate, key)


# --- writing and reading files --------------------------------------------------------------------


def party_file_names(party: str) -> tuple[str, str]:
    """File names of a party's certificate and key: ``NAME.crt`` and ``NAME.key``."""
    _check_party_name(party)
    return f"{party}.crt", f"{party}.key"


def write_ca(ca: CertificateAuthority, out_dir: Path, *, passphrase: bytes | None = None, overwrite: bool = False) -> WrittenFiles:
    """Write ``ca.crt`` and ``ca.key`` (0600, encrypted with ``passphrase`` when given) into ``out_dir``."""
    return _write_pair(
        ca.certificate, ca.private_key, Path(out_dir), (CA_CERTIFICATE_NAME, CA_KEY_NAME), passphrase=passphrase, overwrite=overwrite
    )


def write_party_credentials(
    credentials: PartyCredentials, out_dir: Path, *, passphrase: bytes | None = None, overwrite: bool = False
) -> WrittenFiles:
    """Write ``NAME.crt`` and ``NAME.key`` (0600, encrypted with ``passphrase`` when given) into ``out_dir``."""
    party = _common_name(credentials.certificate) or ""
    return _write_pair(
        credentials.certificate, credentials.private_key, Path(out_dir), party_file_names(party), passphrase=passphrase, overwrite=overwrite
    )


def load_ca(ca_dir: Path, *, passphrase: bytes | None = None, now: dt.datetime | None = None) -> CertificateAuthority:
    """The CA in ``ca_dir`` (as :func:`write_ca` left it), checked to be a valid CA whose key matches."""
    ca_dir = Path(ca_dir)
    certificate_path = ca_dir / CA_CERTIFICATE_NAME
    certificate = load_certificates(certificate_path)[0]
    _check_is_ca(certificate, certificate_path)
    _check_within_validity(certificate, _utc(now), f"CA certificate {certificate_path}")
    key_path = ca_dir / CA_KEY_NAME
    key = load_private_key(key_path, passphrase)
    _check_key_matches(certificate, key, certificate_path, key_path)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise PKIError(f"{key_path} holds a {type(key).__name__}; a CA key here must be ECDSA or RSA (signed with SHA-256)")
    return CertificateAuthority(certificate, key)


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every PEM certificate in ``path``, in file order (a party's own first, then any intermediates)."""
    data = _read(Path(path), "certificate")
    if b"-----BEGIN CERTIFICATE-----" not in data:
        held = "a private key, not a certificate" if b"PRIVATE KEY-----" in data else "no PEM certificate"
        raise PKIError(f"{path} holds {held}")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise PKIError(f"{path} holds a damaged certificate (the PEM or DER inside does not decode)") from None


def load_ca_bundle(path: Path) -> list[x509.Certificate]:
    """The CA certificates a federation trusts, each checked to be a CA."""
    certificates = load_certificates(path)
    for certificate in certificates:
        _check_is_ca(certificate, Path(path))
        _check_key_strength(certificate, f"CA certificate {certificate.subject.rfc4514_string()} in {path}")
    return certificates


def load_private_key(path: Path, passphrase: bytes | None = None) -> PrivateKeyTypes:
    """The PEM private key in ``path``, decrypted with ``passphrase`` (which it must need exactly when given)."""
    data = _read(Path(path), "private key")
    encrypted = any(marker in data for marker in _ENCRYPTED_PEM_MARKERS)
    if encrypted and passphrase is None:
        raise PKIError(f"{path} is encrypted, and no passphrase was given for it")
    if not encrypted and passphrase is not None:
        raise PKIError(f"{path} is not encrypted, but a passphrase was given")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except ValueError:
        if encrypted:
            raise PKIError(f"wrong passphrase for {path}") from None
        raise PKIError(f"{path} is not a readable PEM private key (damaged, or a key type cryptography does not load)") from None
    except TypeError as exc:  # cryptography's answer to a passphrase mismatch the header check above missed
        raise PKIError(f"{path}: {_one_line(exc)}") from None
    return key


def passphrase_from(*, environment_variable: str | None = None, file: Path | None = None) -> bytes | None:
    """The passphrase held by an environment variable or a file (one trailing newline dropped); None if neither is named.

    Never a command-line argument: those are visible to every user of the machine (``ps``) and
    land in shell history.
    """
    if environment_variable is not None and file is not None:
        raise PKIError("give the passphrase by environment variable or by file, not both")
    if environment_variable is not None:
        value = os.environ.get(environment_variable)
        if value is None:
            raise PKIError(f"environment variable {environment_variable} is not set (it should hold the passphrase)")
        secret = value.encode("utf-8")
        source = f"environment variable {environment_variable}"
    elif file is not None:
        secret = _read(Path(file), "passphrase file")
        secret = secret.removesuffix(b"\n").removesuffix(b"\r")
        source = f"passphrase file {file}"
    else:
        return None
    if not secret:
        raise PKIError(f"{source} is empty")
    if len(secret) > 1023:
        raise PKIError(f"{source} holds more than 1023 bytes, more than a key file's encryption takes")
    return secret


# --- checking -------------------------------------------------------------------------------------


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER encoding, lowercase hex: what a plan pins."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def normalize_fingerprint(text: str) -> str:
    """A pinned fingerprint in the form :func:`fingerprint` returns (accepts ``sha256:`` and ``AB:CD:..``)."""
    cleaned = text.strip().lower().removeprefix("sha256:").replace(":", "")
    if not re.fullmatch(r"[0-9a-f]{64}", cleaned):
        raise PKIError(f"{text!r} is not a SHA-256 fingerprint (64 hex digits)")
    return cleaned


def describe_certificate(certificate: x509.Certificate) -> CertificateInfo:
    """The fields of ``certificate`` a person or a plan checks."""
    alternative = _extension(certificate, x509.SubjectAlternativeName)
    constraints = _extension(certificate, x509.BasicConstraints)
    usages = _extension(certificate, x509.ExtendedKeyUsage)
    return CertificateInfo(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        common_name=_common_name(certificate),
        dns_names=tuple(alternative.get_values_for_type(x509.DNSName)) if alternative else (),
        ip_addresses=tuple(str(ip) for ip in alternative.get_values_for_type(x509.IPAddress)) if alternative else (),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        fingerprint=fingerprint(certificate),
        is_ca=bool(constraints and constraints.ca),
        extended_key_usages=tuple(_TLS_USAGES.get(oid, oid.dotted_string) for oid in usages) if usages else (),
    )


def verify_party_certificate(
    chain: Sequence[x509.Certificate],
    trusted: Sequence[x509.Certificate],
    party: str,
    *,
    pinned_fingerprint: str | None = None,
    now: dt.datetime | None = None,
    label: str = "certificate",
) -> CertificateInfo:
    """Check that ``chain[0]`` is ``party``'s certificate under the CAs in ``trusted``; raise :class:`PKIError` if not.

    ``chain[1:]`` are intermediates (an organisation's PKI may issue through one). The checks: the
    subject CN is ``party``; it is within its validity at ``now``; it is not a CA; its usages allow
    TLS server and client with a signing key; it chains to ``trusted`` (signature, CA constraints,
    validity of the whole chain, by ``cryptography``'s verifier); and its fingerprint equals
    ``pinned_fingerprint`` when the plan pins one. The content checks come first only to give
    clearer messages: nothing is accepted before the chain check passes too.
    """
    if not chain:
        raise PKIError(f"{label}: no certificate to check")
    if not trusted:
        raise PKIError(f"{label}: no CA certificate to check it against")
    pin = None if pinned_fingerprint is None else normalize_fingerprint(pinned_fingerprint)
    leaf, intermediates = chain[0], list(chain[1:])
    moment = _utc(now)
    name = _common_name(leaf)
    if name is None:
        raise PKIError(f"{label} has no single subject common name (CN) to name its party; {party!r} was expected")
    if name != party:
        raise PKIError(f"{label} is for party {name!r}, not {party!r}")
    _check_within_validity(leaf, moment, label)
    _check_key_strength(leaf, label)
    constraints = _extension(leaf, x509.BasicConstraints)
    if constraints is not None and constraints.ca:
        raise PKIError(f"{label} is a CA certificate, not a party certificate")
    key_usage = _extension(leaf, x509.KeyUsage)
    if key_usage is not None and not key_usage.digital_signature:
        raise PKIError(f"{label} lacks key usage digitalSignature (TLS signs with the party key)")
    usages = _extension(leaf, x509.ExtendedKeyUsage)
    missing = [text for oid, text in _TLS_USAGES.items() if usages is None or oid not in usages]
    if missing:
        raise PKIError(f"{label} lacks extended key usage {' and '.join(missing)} (a party is TLS server and client)")
    verifier = PolicyBuilder().store(Store(list(trusted))).time(moment).build_client_verifier()
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise PKIError(f"{label} does not chain to the federation's CA: {_chain_failure(exc)}") from None
    if pin is not None and fingerprint(leaf) != pin:
        raise PKIError(f"{label} has fingerprint {fingerprint(leaf)}, but the plan pins {pin}")
    return describe_certificate(leaf)


def verify_peer_certificate(
    peer_certificate_pem: bytes,
    ca_bundle: Path | Sequence[x509.Certificate],
    expected_party: str,
    *,
    pinned_fingerprint: str | None = None,
    now: dt.datetime | None = None,
) -> CertificateInfo:
    """Tie a TLS peer to the party the plan expects, from the certificate it presented.

    ``peer_certificate_pem`` is what gRPC reports for the peer (``context.auth_context()
    ["x509_pem_cert"][0]``). TLS already checked that the peer holds the certificate's key; this
    checks that the certificate is ``expected_party``'s under the CA bundle (and the plan's pin),
    so a party cannot speak in another's name with its own valid certificate. ``ca_bundle`` is
    the bundle's file, or its certificates from :func:`load_ca_bundle` (a server loads them once).
    """
    try:
        presented = x509.load_pem_x509_certificates(peer_certificate_pem)
    except ValueError:
        raise PKIError("the peer's certificate is not readable PEM") from None
    return verify_party_certificate(
        presented,
        load_ca_bundle(ca_bundle) if isinstance(ca_bundle, (str, os.PathLike)) else ca_bundle,
        expected_party,
        pinned_fingerprint=pinned_fingerprint,
        now=now,
        label="the peer's certificate",
    )


def load_tls_material(
    ca_bundle: Path,
    certificate: Path,
    private_key: Path,
    party: str,
    *,
    passphrase: bytes | None = None,
    now: dt.datetime | None = None,
) -> TLSMaterial:
    """The PEM bytes a party hands to gRPC, after checking its own certificate and that the key is its key.

    Checking its own certificate first turns an expired or misissued certificate into one clear
    line at start-up instead of a TLS handshake failure on the peer's side.
    """
    trusted = load_ca_bundle(ca_bundle)
    chain = load_certificates(certificate)
    verify_party_certificate(chain, trusted, party, now=now, label=f"certificate {certificate}")
    key = load_private_key(private_key, passphrase)
    _check_key_matches(chain[0], key, Path(certificate), Path(private_key))
    return TLSMaterial(
        root_certificates=b"".join(_pem(ca) for ca in trusted),
        certificate_chain=b"".join(_pem(cert) for cert in chain),
        private_key=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


# --- helpers --------------------------------------------------------------------------------------


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.timezone.utc)
    return now.replace(tzinfo=dt.timezone.utc) if now.tzinfo is None else now.astimezone(dt.timezone.utc)


def _check_days(days: int) -> None:
    if not 1 <= days <= MAX_DAYS:
        raise PKIError(f"--days must be between 1 and {MAX_DAYS} (got {days})")


def _check_party_name(party: str) -> None:
    if not _PARTY_NAME.fullmatch(party):
        raise PKIError(f"party name {party!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")


def _subject_alternative_names(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for dns_name in dns_names:
        if not _DNS_NAME.fullmatch(dns_name):
            raise PKIError(f"{dns_name!r} is not a DNS name")
        names.append(x509.DNSName(dns_name.lower()))
    for text in ip_addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(text)))
        except ValueError:
            raise PKIError(f"{text!r} is not an IP address") from None
    if not names:
        raise PKIError("a party certificate needs at least one DNS name or IP address (--dns, --ip)")
    return names


def _key_usage(*, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _extension(certificate: x509.Certificate, kind: type[_Extension]) -> _Extension | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _common_name(certificate: x509.Certificate) -> str | None:
    values = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if len(values) == 1 else None


def _check_is_ca(certificate: x509.Certificate, path: Path) -> None:
    constraints = _extension(certificate, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        raise PKIError(f"{path} holds {certificate.subject.rfc4514_string()}, which is not a CA certificate")


def _check_within_validity(certificate: x509.Certificate, moment: dt.datetime, label: str) -> None:
    if moment < certificate.not_valid_before_utc:
        raise PKIError(f"{label} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    if moment > certificate.not_valid_after_utc:
        raise PKIError(f"{label} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


def _check_key_strength(certificate: x509.Certificate, label: str) -> None:
    """RSA of at least 2048 bits or a NIST curve: ``cryptography``'s verifier alone lets RSA-1024 through."""
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise PKIError(f"{label} has a {key.key_size}-bit RSA key; at least {MIN_RSA_BITS} bits are needed")
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in _ACCEPTED_CURVES:
        raise PKIError(f"{label} has a key on curve {key.curve.name}; use P-256, P-384 or P-521")


def _check_key_matches(certificate: x509.Certificate, key: PrivateKeyTypes, certificate_path: Path, key_path: Path) -> None:
    def spki(public_key: x509.CertificatePublicKeyTypes | object) -> bytes:
        return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[union-attr]

    if spki(key.public_key()) != spki(certificate.public_key()):
        raise PKIError(f"{key_path} is not the key of {certificate_path}")


def _chain_failure(exc: VerificationError) -> str:
    """``cryptography``'s reason, without its prefixes, in words a user can act on."""
    text = _one_line(exc).removeprefix("validation failed: ").removeprefix("candidates exhausted: ")
    if "no interior errors" in text:
        return "no CA in the bundle issued it"
    if "signature does not match" in text:
        return "its signature does not verify (altered, or signed by another CA of the same name)"
    text = text.split(" (encountered processing")[0]
    missing = re.fullmatch(r"invalid extension: ([0-9.]+): Certificate is missing required extension", text)
    if missing:
        return f"a certificate in the chain lacks the required {_EXTENSION_NAMES.get(missing[1], missing[1])} extension"
    return text


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PKIError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise PKIError(f"cannot read {what} {path}: {exc.strerror}") from None


def _write_pair(
    certificate: x509.Certificate,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    out_dir: Path,
    names: tuple[str, str],
    *,
    passphrase: bytes | None,
    overwrite: bool,
) -> WrittenFiles:
    """Write a certificate (0644) and its key (0600), refusing to replace either unless ``overwrite``."""
    certificate_path, key_path = out_dir / names[0], out_dir / names[1]
    if out_dir.exists() and not out_dir.is_dir():
        raise PKIError(f"--out {out_dir} is a file, not a directory")
    if not overwrite:
        for path in (certificate_path, key_path):
            if os.path.lexists(path):
                raise PKIError(f"{path} already exists; use --overwrite to replace it")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase is not None else serialization.NoEncryption()
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # the key first: a certificate on disk without its key would look like a finished issue
    _write_atomically(key_path, key_pem, _PRIVATE_MODE, overwrite=overwrite)
    _write_atomically(certificate_path, _pem(certificate), _PUBLIC_MODE, overwrite=overwrite)
    return WrittenFiles(certificate_path, key_path, fingerprint(certificate), encrypted=passphrase is not None)


def _write_atomically(path: Path, data: bytes, mode: int, *, overwrite: bool) -> None:
    """:func:`securevfl.files.atomic_write` with the file's mode set at creation, and no-clobber unless ``overwrite``."""
    try:
        atomic_write(path, data, mode=mode, replace=overwrite)
    except FileExistsError:
        raise PKIError(f"{path} already exists; use --overwrite to replace it") from None


