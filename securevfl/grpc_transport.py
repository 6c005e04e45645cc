"""A party process's gRPC channel, built from its plan and its private file.

:func:`open_grpc_channel` is what :func:`securevfl.party_process.plan_channel` returns for
``transport.kind = "grpc"``: the party listens at the address the plan gives it, dials every other
party at theirs, signs with its identity key, checks frames against the plan's roster (identity
public keys pinned by their fingerprints) and ties every TLS peer to the plan's certificate pin
(:func:`securevfl.pki.verify_peer_certificate`). It returns once every peer is reachable, so the
schedule's first send does not race a peer still starting up.

Thread safety: :class:`~securevfl.protocols.grpc_channel.GrpcChannel` is safe to share between
the active party's training thread and its key holder's thread (sends to one receiver are
serialized per link, sequence numbers are drawn under that link's lock, the mailbox is one
condition), so no extra lock is added here; :class:`securevfl.party_runner.PartyEndpoint` keeps
the two threads from computing at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from securevfl import pki
from securevfl.errors import ConfigError, PKIError
from securevfl.plan import Plan, PrivateParty
from securevfl.protocols import Identity
from securevfl.protocols.grpc_channel import GrpcChannel
from securevfl.protocols.grpc_settings import ChannelTimeouts, PeerAddress

__all__ = ["open_grpc_channel"]


def open_grpc_channel(plan: Plan, private: PrivateParty, identity: Identity) -> GrpcChannel:
    """Party ``identity.name``'s channel: listening at its plan address, connected to every peer."""
    name = identity.name
    if plan.ca_bundle is None or private.tls_certificate is None or private.tls_key is None:
        raise ConfigError(f"transport.kind = 'grpc' needs mutual TLS: the plan's ca_bundle and {name}'s tls_certificate and tls_key")
    ca_bundle = plan.resolve(plan.ca_bundle)
    try:
        tls = pki.load_tls_material(
            ca_bundle, private.resolve(private.tls_certificate), private.resolve(private.tls_key), name,
            passphrase=private.passphrase_bytes(),
        )
        trusted = pki.load_ca_bundle(ca_bundle)
    except PKIError as exc:
        raise ConfigError(f"TLS: {exc}") from None
    pins = {party.name: party.tls_fingerprint for party in plan.parties}

    def peer_check(pem: bytes, party: str) -> None:
        """The TLS peer must hold ``party``'s certificate under the plan's CA (and its pin)."""
        pki.verify_peer_certificate(pem, trusted, party, pinned_fingerprint=pins.get(party))

    transport = plan.run.transport
    timeouts = ChannelTimeouts(
        receive=transport.receive_timeout, connect=transport.connect_timeout, send=transport.send_timeout,
        liveness_interval=transport.liveness_interval, liveness_timeout=transport.liveness_timeout, gone_after=transport.gone_after,
    )
    peers = {party.name: PeerAddress(party.address, pinned_certificate=_pinned_certificate(plan, party.name, trusted)) for party in plan.parties if party.name != name}
    channel = GrpcChannel(
        identity, plan.roster(), plan.session, listen=plan.party(name).address, tls=tls,
        peer_check=peer_check, peers=peers, timeouts=timeouts,
    )
    try:
        channel.wait_for_peers()
    except BaseException:
        channel.close()
        raise
    return channel


def _pinned_certificate(plan: Plan, party: str, trusted: Sequence[x509.Certificate]) -> bytes | None:
    """The certificate (PEM) the plan pins for ``party``, checked like a TLS peer's; None when the plan pins nothing.

    Dialling ``party``, the client then trusts exactly this certificate (PeerAddress), so a holder
    of another certificate of the CA cannot receive the frames meant for ``party``. A plan that
    pins the fingerprint without the certificate is refused: the dialling side could then only
    trust the CA, and the pin would protect one direction of the link while seeming to protect both.
    """
    entry = plan.party(party)
    if entry.tls_certificate is None:
        if entry.tls_fingerprint is not None:
            raise ConfigError(
                f"the plan pins {party}'s TLS fingerprint but gives no tls_certificate: a party dialling {party} could only trust "
                f"the CA; add tls_certificate = \"<path of {party}'s certificate, relative to the plan>\" to its [[parties]] entry"
            )
        return None
    path = plan.resolve(entry.tls_certificate)
    try:
        # the leaf alone: an intermediate in the trust root would let every certificate under it through
        leaf = pki.load_certificates(path)[0]
        pki.verify_party_certificate([leaf], trusted, party, pinned_fingerprint=entry.tls_fingerprint, label=str(path))
    except PKIError as exc:
        raise ConfigError(f"the plan's tls_certificate of {party}: {exc}") from None
    return leaf.public_bytes(serialization.Encoding.PEM)
