"""Certificates for mutual TLS: a party without a certificate the plan names cannot pass the checks.

Covers the development CA and party certificates (``securevfl.pki``), every check that refuses a
certificate (wrong CA, expired, wrong party, missing usage, altered bytes, pin), key files
(mode 0600, encryption, passphrases), refusal to overwrite, and ``securevfl pki`` on the command
line (exit 2 with one ``error:`` line).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from securevfl import pki
from securevfl.cli import main
from securevfl.errors import PKIError

NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture(scope="module")
def ca() -> pki.CertificateAuthority:
    return pki.create_ca()


@pytest.fixture(scope="module")
def active(ca: pki.CertificateAuthority) -> pki.PartyCredentials:
    return pki.issue_party_certificate(ca, "active")


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 0, so a file mode seen in a test is the mode the code asked for, not the umask's doing."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _verify(credentials: pki.PartyCredentials, ca: pki.CertificateAuthority, party: str, **kwargs: object) -> pki.CertificateInfo:
    return pki.verify_party_certificate([credentials.certificate], [ca.certificate], party, **kwargs)  # type: ignore[arg-type]


def _leaf_signed_by(
    ca: pki.CertificateAuthority,
    party: str,
    usages: list[x509.ObjectIdentifier],
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
) -> x509.Certificate:
    """A certificate the CA signed but ``pki`` would never issue (no key identifiers, any usages or key): what another tool might make."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )


# --- the certificates ----------------------------------------------------------------------------


def test_the_ca_may_sign_party_certificates_and_nothing_below_them(ca: pki.CertificateAuthority) -> None:
    constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = ca.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert isinstance(ca.private_key, ec.EllipticCurvePrivateKey) and ca.private_key.curve.name == "secp256r1"
    assert ca.certificate.not_valid_after_utc - ca.certificate.not_valid_before_utc >= dt.timedelta(days=365)


def test_a_party_certificate_names_the_party_and_serves_both_tls_sides(
    ca: pki.CertificateAuthority, active: pki.PartyCredentials
) -> None:
    info = _verify(active, ca, "active")
    assert (info.common_name, info.dns_names, info.ip_addresses) == ("active", ("localhost",), ("127.0.0.1",))
    assert info.extended_key_usages == ("serverAuth", "clientAuth") and not info.is_ca
    assert info.fingerprint == pki.fingerprint(active.certificate) and len(info.fingerprint) == 64
    assert active.private_key.curve.name == "secp256r1"
    # without --days it ends with the CA at the latest, never after it
    assert info.not_after <= ca.certificate.not_valid_after_utc


def test_chosen_names_and_addresses_go_into_the_san(ca: pki.CertificateAuthority) -> None:
    credentials = pki.issue_party_certificate(ca, "passive_1", dns_names=["p1.example.org"], ip_addresses=["10.0.0.7", "::1"])
    info = pki.describe_certificate(credentials.certificate)
    assert info.dns_names == ("p1.example.org",) and info.ip_addresses == ("10.0.0.7", "::1")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"party": "../active"}, "party name '../active' must be"),
        ({"party": "p", "ip_addresses": ["10.0.0"]}, "'10.0.0' is not an IP address"),
        ({"party": "p", "dns_names": ["bad name"]}, "'bad name' is not a DNS name"),
        ({"party": "p", "dns_names": [], "ip_addresses": []}, "needs at least one DNS name or IP address"),
        ({"party": "p", "days": 0}, "--days must be between 1 and 3650"),
        ({"party": "p", "days": 3000}, "would outlive the CA"),
    ],
)
def test_bad_issue_requests_are_refused(ca: pki.CertificateAuthority, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PKIError, match=re.escape(message)):
        pki.issue_party_certificate(ca, **kwargs)  # type: ignore[arg-type]


# --- what the checks refuse ----------------------------------------------------------------------


def test_a_certificate_from_another_ca_is_refused(active: pki.PartyCredentials) -> None:
    with pytest.raises(PKIError, match="does not chain to the federation's CA: no CA in the bundle issued it"):
        pki.verify_party_certificate([active.certificate], [pki.create_ca().certificate], "active")


def test_a_ca_of_the_same_name_with_another_key_is_refused(active: pki.PartyCredentials, ca: pki.CertificateAuthority) -> None:
    impostor = pki.create_ca(common_name=pki.describe_certificate(ca.certificate).common_name or "")
    with pytest.raises(PKIError, match="its signature does not verify"):
        pki.verify_party_certificate([active.certificate], [impostor.certificate], "active")


def test_an_expired_certificate_is_refused(ca: pki.CertificateAuthority) -> None:
    long_ago = NOW - dt.timedelta(days=400)
    old_ca = pki.create_ca(days=1000, now=long_ago)
    expired = pki.issue_party_certificate(old_ca, "active", days=30, now=long_ago)
    with pytest.raises(PKIError, match=r"certificate expired on \d{4}-\d\d-\d\d"):
        _verify(expired, old_ca, "active")
    assert _verify(expired, old_ca, "active", now=long_ago + dt.timedelta(days=1)).common_name == "active"


def test_a_certificate_not_yet_valid_is_refused(ca: pki.CertificateAuthority) -> None:
    future_ca = pki.create_ca(now=NOW + dt.timedelta(days=10))
    with pytest.raises(PKIError, match="is not valid before"):
        _verify(pki.issue_party_certificate(future_ca, "active", now=NOW + dt.timedelta(days=10)), future_ca, "active")


def test_a_valid_certificate_of_another_party_is_refused(ca: pki.CertificateAuthority, active: pki.PartyCredentials) -> None:
    with pytest.raises(PKIError, match="is for party 'active', not 'passive_1'"):
        _verify(active, ca, "passive_1")


@pytest.mark.parametrize(
    ("usages", "missing"),
    [
        ([ExtendedKeyUsageOID.SERVER_AUTH], "clientAuth"),
        ([ExtendedKeyUsageOID.CLIENT_AUTH], "serverAuth"),
        ([ExtendedKeyUsageOID.CODE_SIGNING], "serverAuth and clientAuth"),
    ],
)
def test_a_certificate_without_both_tls_usages_is_refused(
    ca: pki.CertificateAuthority, usages: list[x509.ObjectIdentifier], missing: str
) -> None:
    certificate = _leaf_signed_by(ca, "active", usages)
    with pytest.raises(PKIError, match=f"lacks extended key usage {missing} "):
        pki.verify_party_certificate([certificate], [ca.certificate], "active")


def test_a_weak_rsa_key_is_refused(ca: pki.CertificateAuthority) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    certificate = _leaf_signed_by(ca, "active", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], weak)
    with pytest.raises(PKIError, match="has a 1024-bit RSA key; at least 2048 bits are needed"):
        pki.verify_party_certificate([certificate], [ca.certificate], "active")


def test_a_missing_required_extension_is_named(ca: pki.CertificateAuthority) -> None:
    """What an organisation's CA might leave out: RFC 5280 wants the authority key identifier (``pki`` writes it)."""
    certificate = _leaf_signed_by(ca, "active", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    with pytest.raises(PKIError, match="lacks the required authority key identifier extension"):
        pki.verify_party_certificate([certificate], [ca.certificate], "active")


def test_the_ca_certificate_itself_is_not_a_party_certificate(ca: pki.CertificateAuthority) -> None:
    name = pki.describe_certificate(ca.certificate).common_name
    assert name is not None
    with pytest.raises(PKIError, match="is a CA certificate, not a party certificate"):
        pki.verify_party_certificate([ca.certificate], [ca.certificate], name)


def test_altered_certificate_bytes_are_refused(ca: pki.CertificateAuthority, active: pki.PartyCredentials) -> None:
    der = bytearray(active.certificate.public_bytes(serialization.Encoding.DER))
    serial = active.certificate.serial_number.to_bytes(20, "big").lstrip(b"\0")
    der[der.index(serial) + len(serial) - 1] ^= 0x01  # another serial number: same fields, new bytes to sign
    altered = x509.load_der_x509_certificate(bytes(der))
    assert altered.serial_number != active.certificate.serial_number
    with pytest.raises(PKIError, match="its signature does not verify"):
        pki.verify_party_certificate([altered], [ca.certificate], "active")


def test_a_pinned_fingerprint_must_match(ca: pki.CertificateAuthority, active: pki.PartyCredentials) -> None:
    pin = pki.fingerprint(active.certificate)
    openssl_style = ":".join(pin[i : i + 2] for i in range(0, 64, 2)).upper()
    assert _verify(active, ca, "active", pinned_fingerprint=openssl_style).fingerprint == pin
    reissued = pki.issue_party_certificate(ca, "active")  # valid, right name, but not the one the plan pinned
    with pytest.raises(PKIError, match=f"but the plan pins {pin}"):
        _verify(reissued, ca, "active", pinned_fingerprint=pin)
    with pytest.raises(PKIError, match="'abc' is not a SHA-256 fingerprint"):
        _verify(active, ca, "active", pinned_fingerprint="abc")


# --- files, keys, passphrases --------------------------------------------------------------------


def test_keys_are_written_0600_whatever_the_umask(
    tmp_path: Path, ca: pki.CertificateAuthority, active: pki.PartyCredentials, permissive_umask: None
) -> None:
    for written in (pki.write_ca(ca, tmp_path / "ca"), pki.write_party_credentials(active, tmp_path / "active", passphrase=b"pw")):
        assert written.private_key.stat().st_mode & 0o777 == 0o600
        assert written.certificate.stat().st_mode & 0o777 == 0o644
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["active", "active.crt", "active.key", "ca", "ca.crt", "ca.key"]


def test_an_encrypted_key_needs_its_passphrase(tmp_path: Path, active: pki.PartyCredentials) -> None:
    written = pki.write_party_credentials(active, tmp_path, passphrase=b"correct horse")
    assert written.encrypted and written.private_key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(PKIError, match="is encrypted, and no passphrase was given"):
        pki.load_private_key(written.private_key)
    with pytest.raises(PKIError, match="wrong passphrase for"):
        pki.load_private_key(written.private_key, b"battery staple")
    key = pki.load_private_key(written.private_key, b"correct horse")
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.private_numbers() == active.private_key.private_numbers()


def test_a_passphrase_for_a_key_that_has_none_is_an_error(tmp_path: Path, active: pki.PartyCredentials) -> None:
    written = pki.write_party_credentials(active, tmp_path)
    with pytest.raises(PKIError, match="is not encrypted, but a passphrase was given"):
        pki.load_private_key(written.private_key, b"pw")


def test_passphrases_come_from_the_environment_or_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECUREVFL_TEST_PASSPHRASE", "s3cret")
    (tmp_path / "pass").write_text("s3cret\n")
    assert pki.passphrase_from(environment_variable="SECUREVFL_TEST_PASSPHRASE") == b"s3cret"
    assert pki.passphrase_from(file=tmp_path / "pass") == b"s3cret"  # the editor's newline is not part of it
    assert pki.passphrase_from() is None
    monkeypatch.delenv("SECUREVFL_TEST_PASSPHRASE")
    with pytest.raises(PKIError, match="environment variable SECUREVFL_TEST_PASSPHRASE is not set"):
        pki.passphrase_from(environment_variable="SECUREVFL_TEST_PASSPHRASE")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(PKIError, match="is empty"):
        pki.passphrase_from(file=tmp_path / "empty")


def test_existing_files_are_never_replaced_silently(tmp_path: Path, ca: pki.CertificateAuthority) -> None:
    first = pki.write_ca(ca, tmp_path)
    before = (first.certificate.read_bytes(), first.private_key.read_bytes())
    other = pki.create_ca()
    with pytest.raises(PKIError, match="ca.crt already exists; use --overwrite to replace it"):
        pki.write_ca(other, tmp_path)
    assert (first.certificate.read_bytes(), first.private_key.read_bytes()) == before
    first.certificate.unlink()  # only the key is left: still refused, the key is not replaced
    with pytest.raises(PKIError, match="ca.key already exists"):
        pki.write_ca(other, tmp_path)
    assert first.private_key.read_bytes() == before[1] and not first.certificate.exists()
    replaced = pki.write_ca(other, tmp_path, overwrite=True)
    assert replaced.fingerprint == pki.fingerprint(other.certificate) != first.fingerprint
    assert not [path for path in tmp_path.iterdir() if path.name.endswith(".tmp")]


def test_tls_material_is_what_grpc_takes_after_checking_the_party_itself(
    tmp_path: Path, ca: pki.CertificateAuthority, active: pki.PartyCredentials
) -> None:
    ca_files = pki.write_ca(ca, tmp_path / "ca")
    own = pki.write_party_credentials(active, tmp_path / "active", passphrase=b"pw")
    material = pki.load_tls_material(ca_files.certificate, own.certificate, own.private_key, "active", passphrase=b"pw")
    assert material.root_certificates == ca_files.certificate.read_bytes()
    assert material.certificate_chain == own.certificate.read_bytes()
    key = serialization.load_pem_private_key(material.private_key, password=None)  # decrypted, in memory only
    assert key.public_key() == active.private_key.public_key()
    assert b"PRIVATE" not in repr(material).encode()
    # the peer side: a server ties the certificate a TLS peer presented to the party the plan expects
    info = pki.verify_peer_certificate(material.certificate_chain, ca_files.certificate, "active", pinned_fingerprint=own.fingerprint)
    assert info.fingerprint == own.fingerprint
    loaded_once = pki.load_ca_bundle(ca_files.certificate)
    assert pki.verify_peer_certificate(material.certificate_chain, loaded_once, "active").fingerprint == own.fingerprint
    with pytest.raises(PKIError, match="the peer's certificate is for party 'active', not 'coordinator'"):
        pki.verify_peer_certificate(material.certificate_chain, ca_files.certificate, "coordinator")
    with pytest.raises(PKIError, match="not readable PEM"):
        pki.verify_peer_certificate(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ca_files.certificate, "active")


def test_tls_material_refuses_a_key_that_is_not_the_certificates(
    tmp_path: Path, ca: pki.CertificateAuthority, active: pki.PartyCredentials
) -> None:
    ca_files = pki.write_ca(ca, tmp_path / "ca")
    own = pki.write_party_credentials(active, tmp_path / "active")
    other = pki.write_party_credentials(pki.issue_party_certificate(ca, "other"), tmp_path / "other")
    with pytest.raises(PKIError, match=f"{other.private_key} is not the key of {own.certificate}"):
        pki.load_tls_material(ca_files.certificate, own.certificate, other.private_key, "active")


@pytest.mark.parametrize(
    ("alter", "message"),
    [
        (lambda der: der[:-1] + bytes([der[-1] ^ 0x01]), "its signature does not verify"),  # last byte: the signature
        (lambda der: der[: len(der) // 2], "damaged certificate"),
    ],
    ids=["signature", "truncated"],
)
def test_an_altered_certificate_file_is_refused_at_load(
    alter: Callable[[bytes], bytes], message: str, tmp_path: Path, ca: pki.CertificateAuthority, active: pki.PartyCredentials
) -> None:
    ca_files = pki.write_ca(ca, tmp_path / "ca")
    own = pki.write_party_credentials(active, tmp_path / "active")
    body = base64.encodebytes(alter(active.certificate.public_bytes(serialization.Encoding.DER)))
    own.certificate.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n")
    with pytest.raises(PKIError, match=message):
        pki.load_tls_material(ca_files.certificate, own.certificate, own.private_key, "active")


# --- the command line ----------------------------------------------------------------------------


def _fingerprint_printed(out: str) -> str:
    last = out.strip().splitlines()[-1]
    assert last.startswith("fingerprint: ")
    return last.removeprefix("fingerprint: ")


def test_cli_init_issue_show_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SECUREVFL_TEST_CA_PASS", "ca secret")
    (tmp_path / "party-pass").write_text("party secret\n")
    assert main(["pki", "init", "--out", str(tmp_path / "ca"), "--days", "30", "--passphrase-env", "SECUREVFL_TEST_CA_PASS"]) == 0
    ca_fingerprint = _fingerprint_printed(capsys.readouterr().out)
    issue = ["pki", "issue", "--ca", str(tmp_path / "ca"), "--party", "passive_1", "--out", str(tmp_path / "p1")]
    secrets_ = ["--ca-passphrase-env", "SECUREVFL_TEST_CA_PASS", "--passphrase-file", str(tmp_path / "party-pass")]
    assert main([*issue, *secrets_, "--dns", "p1.example.org", "--ip", "10.0.0.7"]) == 0
    out = capsys.readouterr().out
    pinned = _fingerprint_printed(out)
    assert "encrypted with the passphrase" in out
    material = pki.load_tls_material(
        tmp_path / "ca" / "ca.crt", tmp_path / "p1" / "passive_1.crt", tmp_path / "p1" / "passive_1.key", "passive_1",
        passphrase=b"party secret",
    )
    info = pki.verify_peer_certificate(material.certificate_chain, tmp_path / "ca" / "ca.crt", "passive_1", pinned_fingerprint=pinned)
    assert info.dns_names == ("p1.example.org",) and info.ip_addresses == ("10.0.0.7",)
    assert info.not_after <= pki.load_certificates(tmp_path / "ca" / "ca.crt")[0].not_valid_after_utc
    assert main(["pki", "show", str(tmp_path / "ca" / "ca.crt")]) == 0
    shown = capsys.readouterr().out
    assert f"fingerprint: {ca_fingerprint}" in shown and "CA:          yes" in shown
    assert main(["pki", "show", str(tmp_path / "p1" / "passive_1.crt")]) == 0
    shown = capsys.readouterr().out
    assert "subject:     CN=passive_1" in shown and "SAN:         p1.example.org, 10.0.0.7" in shown and pinned in shown


def test_cli_refuses_to_overwrite_without_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pki", "init", "--out", str(tmp_path)]) == 0
    first = _fingerprint_printed(capsys.readouterr().out)
    assert main(["pki", "init", "--out", str(tmp_path)]) == 2
    assert "already exists; use --overwrite to replace it" in _one_error_line(capsys)
    assert pki.fingerprint(pki.load_certificates(tmp_path / "ca.crt")[0]) == first
    assert main(["pki", "init", "--out", str(tmp_path), "--overwrite"]) == 0
    assert _fingerprint_printed(capsys.readouterr().out) != first


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "ca.key is encrypted, and no passphrase was given for it"),
        (["--ca-passphrase-env", "SECUREVFL_TEST_WRONG"], "wrong passphrase for"),
        (["--ca-passphrase-env", "SECUREVFL_TEST_UNSET"], "environment variable SECUREVFL_TEST_UNSET is not set"),
        (["--ca-passphrase-env", "SECUREVFL_TEST_CA_PASS", "--ip", "300.1.1.1"], "'300.1.1.1' is not an IP address"),
        (["--ca-passphrase-env", "SECUREVFL_TEST_CA_PASS", "--days", "400"], "would outlive the CA"),
    ],
    ids=["no-ca-passphrase", "wrong-ca-passphrase", "unset-variable", "bad-ip", "outlives-ca"],
)
def test_cli_issue_errors_are_one_line(
    extra: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SECUREVFL_TEST_CA_PASS", "right")
    monkeypatch.setenv("SECUREVFL_TEST_WRONG", "wrong")
    monkeypatch.delenv("SECUREVFL_TEST_UNSET", raising=False)
    assert main(["pki", "init", "--out", str(tmp_path / "ca"), "--passphrase-env", "SECUREVFL_TEST_CA_PASS"]) == 0
    capsys.readouterr()
    assert main(["pki", "issue", "--ca", str(tmp_path / "ca"), "--party", "active", "--out", str(tmp_path / "a"), *extra]) == 2
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pki", "show", "{tmp}/missing.crt"], "certificate {tmp}/missing.crt does not exist"),
        (["pki", "show", "{tmp}/ca/ca.key"], "holds a private key, not a certificate"),
        (["pki", "issue", "--ca", "{tmp}/nowhere", "--party", "active", "--out", "{tmp}/a"], "does not exist"),
        (["pki", "issue", "--ca", "{tmp}/ca", "--party", "a/b", "--out", "{tmp}/a"], "party name 'a/b' must be"),
        (["pki", "init", "--out", "{tmp}/other", "--days", "0"], "--days must be between 1 and 3650"),
    ],
)
def test_cli_input_errors_are_one_line(argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pki", "init", "--out", str(tmp_path / "ca")]) == 0
    capsys.readouterr()
    assert main([arg.replace("{tmp}", str(tmp_path)) for arg in argv]) == 2
    assert message.replace("{tmp}", str(tmp_path)) in _one_error_line(capsys)


def test_cli_has_no_option_that_takes_a_passphrase_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["pki", "init", "--out", str(tmp_path), "--passphrase", "visible-in-ps"])
    assert refused.value.code == 2 and "--passphrase" in capsys.readouterr().err  # argparse: ambiguous or unrecognized
    assert not (tmp_path / "ca.key").exists()


# --- a real handshake ----------------------------------------------------------------------------


def _handshake(tmp_path: Path, server: pki.TLSMaterial, client: pki.TLSMaterial) -> bytes | BaseException:
    """Mutual TLS over localhost with the stdlib's OpenSSL (what gRPC will do with BoringSSL).

    Returns the certificate the server saw from the client (PEM), or the server's handshake error.
    """
    def context(side: int, material: pki.TLSMaterial, name: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(side)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=material.root_certificates.decode())
        (tmp_path / f"{name}.crt").write_bytes(material.certificate_chain)
        (tmp_path / f"{name}.key").write_bytes(material.private_key)
        ctx.load_cert_chain(tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
        return ctx

    server_context = context(ssl.PROTOCOL_TLS_SERVER, server, "server")
    client_context = context(ssl.PROTOCOL_TLS_CLIENT, client, "client")  # checks the server's SAN against "localhost"
    outcome: list[bytes | BaseException] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)

        def serve() -> None:
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True) as tls:
                    outcome.append(ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True) or b"").encode())
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                outcome.append(exc)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw:
                with client_context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.recv(2)
        except (ssl.SSLError, OSError):
            pass  # with TLS 1.3 the client may learn of its rejection only when it reads
        thread.join(timeout=10)
    return outcome[0]


def test_the_certificates_carry_a_real_mutual_tls_handshake(tmp_path: Path, ca: pki.CertificateAuthority) -> None:
    ca_file = pki.write_ca(ca, tmp_path / "ca").certificate
    material = {}
    for party in ("active", "passive_1"):
        written = pki.write_party_credentials(pki.issue_party_certificate(ca, party), tmp_path / party)
        material[party] = pki.load_tls_material(ca_file, written.certificate, written.private_key, party)
    seen = _handshake(tmp_path, server=material["active"], client=material["passive_1"])
    assert isinstance(seen, bytes), seen
    assert pki.verify_peer_certificate(seen, ca_file, "passive_1").fingerprint == pki.fingerprint(
        x509.load_pem_x509_certificate(material["passive_1"].certificate_chain)
    )
    # a client whose certificate another CA issued does not get through the handshake
    outsider_ca = pki.create_ca()
    outsider_dir = tmp_path / "outsider"
    pki.write_ca(outsider_ca, outsider_dir)
    outsider = pki.write_party_credentials(pki.issue_party_certificate(outsider_ca, "passive_1"), outsider_dir)
    intruder = pki.load_tls_material(outsider_dir / "ca.crt", outsider.certificate, outsider.private_key, "passive_1")
    intruder = pki.TLSMaterial(material["active"].root_certificates, intruder.certificate_chain, intruder.private_key)
    refused = _handshake(tmp_path, server=material["active"], client=intruder)
    assert isinstance(refused, ssl.SSLError) and "certificate verify failed" in str(refused), refused
