"""Channel attacks against the gRPC transport: each one tried on loopback, with the line that refuses it.

Two parties (``active``, ``passive_1``) each with its own :class:`GrpcChannel` on 127.0.0.1, a
development CA, and an attacker who holds, depending on the row, nothing, a certificate of
another CA, a valid certificate of its own, or even the active party's TLS key (but never a
party's Ed25519 identity key). Every attack aims a gradient frame at ``passive_1``; the table
says whether ``passive_1`` admitted it and the error line.

    python examples/channel_attacks_grpc.py --out docs/results/channel_attacks
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np
from cryptography.hazmat.primitives import serialization

from securevfl import pki
from securevfl.files import atomic_write_text
from securevfl.protocols import Identity, Message, MessageKind, Roster
from securevfl.protocols.attempt import start_attempt
from securevfl.protocols.framing import FrameSigner, new_session_id
from securevfl.protocols.grpc_channel import GrpcChannel
from securevfl.protocols.grpc_client import PeerClient
from securevfl.protocols.grpc_settings import DELIVER_METHOD, ChannelTimeouts, PeerAddress

FAST = ChannelTimeouts(receive=5.0, connect=3.0, send=5.0, liveness_interval=0.5, liveness_timeout=1.0)
NAMES = ("active", "passive_1")


def _pem(certificate: Any) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _material(ca: pki.CertificateAuthority, party: str, trusted: pki.CertificateAuthority | None = None) -> pki.TLSMaterial:
    credentials = pki.issue_party_certificate(ca, party)
    return pki.TLSMaterial(
        root_certificates=_pem((trusted or ca).certificate),
        certificate_chain=_pem(credentials.certificate),
        private_key=credentials.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


class Pair:
    """``active`` and ``passive_1`` on loopback, each knowing the other's address."""

    def __init__(self, ca: pki.CertificateAuthority) -> None:
        self.ca = ca
        self.identities = {name: Identity.generate(name) for name in NAMES}
        self.roster = Roster.of(self.identities.values())
        self.session = new_session_id()
        check = lambda pem, party: pki.verify_peer_certificate(pem, [ca.certificate], party)  # noqa: E731
        self.channels = {
            name: GrpcChannel(self.identities[name], self.roster, self.session, listen="127.0.0.1:0", tls=_material(ca, name), peer_check=check, timeouts=FAST)
            for name in NAMES
        }
        for name, channel in self.channels.items():
            for other in NAMES:
                if other != name:
                    channel.add_peer(other, self.address(other))

    def address(self, party: str) -> PeerAddress:
        return PeerAddress(f"127.0.0.1:{self.channels[party].port}", tls_name="localhost")

    def frame(self, step: int, signer: FrameSigner | None = None) -> bytes:
        signer = signer or FrameSigner(self.identities["active"], self.session)
        return signer.seal(Message(MessageKind.GRADIENT, "active", "passive_1", step, np.full(4, float(step), np.float32)), self.channels["passive_1"].codecs)

    def client(self, as_party: str, tls: pki.TLSMaterial) -> PeerClient:
        return PeerClient(as_party, "passive_1", self.address("passive_1"), tls, max_frame_bytes=1 << 24, timeouts=FAST)

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


def _deliver(client: PeerClient, frame: bytes) -> str | None:
    try:
        client.deliver(frame, "the attacker's frame")
        return None
    except Exception as exc:  # noqa: BLE001 - the table records the line
        return " ".join(str(exc).split())
    finally:
        client.close()


def no_certificate(pair: Pair) -> str | None:
    credentials = grpc.ssl_channel_credentials(root_certificates=_pem(pair.ca.certificate))  # trusts the CA, presents nothing
    with grpc.secure_channel(pair.address("passive_1").target, credentials, options=[("grpc.ssl_target_name_override", "localhost")]) as channel:
        try:
            channel.unary_unary(DELIVER_METHOD)(pair.frame(0), timeout=3.0)
            return None
        except grpc.RpcError as exc:
            return f"TLS handshake refused by passive_1: {exc.code().name}: {' '.join(str(exc.details()).split())[:160]}"  # type: ignore[attr-defined]


def another_ca(pair: Pair) -> str | None:
    return _deliver(pair.client("active", _material(pki.create_ca(), "active", trusted=pair.ca)), pair.frame(0))


def relay_with_own_certificate(pair: Pair) -> str | None:
    return _deliver(pair.client("mallory", _material(pair.ca, "mallory")), pair.frame(0))


def forged_with_senders_tls_key(pair: Pair) -> str | None:
    forger = FrameSigner(Identity.generate("active"), pair.session)
    return _deliver(pair.client("active", _material(pair.ca, "active")), pair.frame(0, forger))


def replayed(pair: Pair) -> str | None:
    genuine = pair.frame(0)
    pair.client("active", _material(pair.ca, "active")).deliver(genuine, "the genuine frame")
    return _deliver(pair.client("active", _material(pair.ca, "active")), genuine)


def out_of_order(pair: Pair) -> str | None:
    signer = FrameSigner(pair.identities["active"], pair.session)
    pair.frame(0, signer)  # sealed, never delivered: the next frame is a gap
    return _deliver(pair.client("active", _material(pair.ca, "active")), pair.frame(1, signer))


def from_an_earlier_attempt(pair: Pair) -> str | None:
    recorded = pair.frame(0)  # a genuine frame of the plan's session, as an earlier attempt sent it
    attempts: dict[str, Any] = {}

    def join(name: str) -> None:
        other = next(peer for peer in NAMES if peer != name)
        attempts[name] = start_attempt(pair.channels[name], name, [other], pair.session, [0])

    threads = [threading.Thread(target=join, args=(name,)) for name in NAMES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert attempts["active"].session == attempts["passive_1"].session != pair.session
    # the recorded frame is sequence 0 from active, which is next in line again in the new attempt
    return _deliver(pair.client("active", _material(pair.ca, "active")), recorded)


ATTACKS: list[tuple[str, str, Callable[[Pair], str | None]]] = [
    ("party without a certificate", "connects with no client certificate", no_certificate),
    ("certificate of another CA", "presents a certificate naming `active` issued by a CA the plan does not name", another_ca),
    ("relay with its own certificate", "a valid certificate of the federation's CA naming `mallory`, delivering a genuine frame of `active`", relay_with_own_certificate),
    ("forged frame", "holds `active`'s TLS key but not its identity key; signs a gradient with its own key", forged_with_senders_tls_key),
    ("replayed frame", "delivers a genuine frame of `active` a second time", replayed),
    ("out-of-order frame", "delivers `active`'s frame #1 while #0 is missing", out_of_order),
    ("frame of an earlier attempt", "after the parties restart (attempt handshake), delivers a genuine frame recorded before", from_an_earlier_attempt),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    ca = pki.create_ca()
    rows = []
    for name, what, attack in ATTACKS:
        pair = Pair(ca)
        try:
            error = attack(pair)
            admitted = pair.channels["passive_1"].pending("passive_1")
        finally:
            pair.close()
        refused = error is not None and admitted == 0 if name != "replayed frame" else error is not None and admitted == 1
        rows.append({"attack": name, "what": what, "refused": refused, "error": error, "frames_admitted": admitted})
        print(f"{name}: {'refused' if refused else 'ACCEPTED'}: {error}")
    lines = [
        "# Channel attacks against the gRPC transport",
        "",
        "`python examples/channel_attacks_grpc.py --out docs/results/channel_attacks`: two party processes' channels",
        "(`GrpcChannel`, mutual TLS, signed frames) on 127.0.0.1; the attacker aims a gradient frame at `passive_1`.",
        "*frames admitted*: what `passive_1` took into its mailbox (the replay row: only the genuine first delivery).",
        "",
        "| attack | what the attacker does | outcome | frames admitted | error line |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['attack']} | {row['what']} | **{'refused' if row['refused'] else 'ACCEPTED'}** | {row['frames_admitted']} | `{row['error']}` |")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "grpc.json", json.dumps(rows, indent=2) + "\n")
    atomic_write_text(args.out / "grpc.md", "\n".join(lines) + "\n")
    return 0 if all(row["refused"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
