"""The gRPC channel: parties exchange signed frames over mutual TLS on loopback, and every failure is one bounded line.

Each party is its own :class:`GrpcChannel` on its own free port, all in this test process (party
threads where they must wait for each other). Covers delivery both ways and among three parties,
order per sender, the receive deadline, a stopped peer, forged / replayed / relayed frames injected
at the gRPC level, clients without an acceptable certificate, frame size limits, and the byte counts.

No test can hang: every wait has a deadline, threads are joined with a timeout, and an alarm fails
a test that outlives :data:`TEST_SECONDS`.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TypeVar

import grpc
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from securevfl import pki
from securevfl.protocols import (
    FrameAuthenticationError,
    FrameSigner,
    Identity,
    IdentityError,
    Message,
    MessageKind,
    ProtocolError,
    Roster,
    fresh_identities,
    new_session_id,
)
from securevfl.protocols.errors import FrameTooLargeError, PeerTimeoutError, PeerUnavailableError, RequestRefusedError
from securevfl.protocols.grpc_channel import GrpcChannel
from securevfl.protocols.grpc_client import Liveness, PeerClient
from securevfl.protocols.grpc_settings import DELIVER_CHUNKS_METHOD, DELIVER_METHOD, ChannelTimeouts, PeerAddress
from securevfl.protocols.wire import FIXED_OVERHEAD_BYTES

TEST_SECONDS = 30
FAST = ChannelTimeouts(receive=5.0, connect=2.0, send=20.0, liveness_interval=0.2, liveness_timeout=1.0, gone_after=2)
_T = TypeVar("_T")


@pytest.fixture(autouse=True)
def hard_timeout() -> Iterator[None]:
    """Fail (rather than hang) a test that runs longer than TEST_SECONDS, and leave no thread behind."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"test ran longer than {TEST_SECONDS} s")

    before = {thread.ident for thread in threading.enumerate()}
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, TEST_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    left = [t.name for t in threading.enumerate() if t.ident not in before and not t.daemon]
    assert left == [], f"threads left running: {left}"


class Pki:
    """A development CA and TLS material for any party name (what ``securevfl pki`` would write)."""

    def __init__(self) -> None:
        self.ca = pki.create_ca()

    def material(self, party: str) -> pki.TLSMaterial:
        credentials = pki.issue_party_certificate(self.ca, party)
        return pki.TLSMaterial(
            root_certificates=_pem(self.ca.certificate),
            certificate_chain=_pem(credentials.certificate),
            private_key=credentials.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )

    def peer_check(self, certificate: bytes, party: str) -> None:
        pki.verify_peer_certificate(certificate, [self.ca.certificate], party)


def _pem(certificate: object) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def ca() -> Pki:
    return Pki()


class Federation:
    """Channels of named parties on loopback, each on a free port, every one knowing every other's address."""

    def __init__(self, ca: Pki, names: list[str], timeouts: ChannelTimeouts, **limits: int) -> None:
        self.identities = fresh_identities(names)
        self.roster = Roster.of(self.identities.values())
        self.session = new_session_id()
        self.ca = ca
        self.channels: dict[str, GrpcChannel] = {}
        self.tls = {name: ca.material(name) for name in names}
        for name in names:
            self.channels[name] = GrpcChannel(
                self.identities[name],
                self.roster,
                self.session,
                listen="127.0.0.1:0",
                tls=self.tls[name],
                peer_check=ca.peer_check,
                timeouts=timeouts,
                max_frame_bytes=limits.get(name, 64 * 1024 * 1024),
            )
        for name, channel in self.channels.items():
            for other in names:
                if other != name:
                    channel.add_peer(other, self.address(other))

    def address(self, party: str) -> PeerAddress:
        return PeerAddress(f"127.0.0.1:{self.channels[party].port}", tls_name="localhost")

    def __getitem__(self, party: str) -> GrpcChannel:
        return self.channels[party]

    def raw_client(self, as_party: str, to: str, tls: pki.TLSMaterial | None = None) -> PeerClient:
        """A bare gRPC client with ``as_party``'s certificate (or ``tls``): what an attacker holding it can send."""
        return PeerClient(as_party, to, self.address(to), tls or self.ca.material(as_party), max_frame_bytes=1 << 24, timeouts=FAST)

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


@contextmanager
def federation(ca: Pki, *names: str, timeouts: ChannelTimeouts = FAST, **limits: int) -> Iterator[Federation]:
    parties = Federation(ca, list(names), timeouts, **limits)
    try:
        yield parties
    finally:
        parties.close()


def message(kind: MessageKind, sender: str, receiver: str, step: int, values: int = 4) -> Message:
    return Message(kind, sender, receiver, step, np.arange(values, dtype=np.float32) + step)


def in_thread(work: Callable[[], _T], timeout: float = 15.0) -> Callable[[], _T]:
    """Start ``work`` in a thread; the returned call joins it (failing if it outlives ``timeout``) and returns its result or raises its error."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the joining test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join() -> _T:
        thread.join(timeout)
        assert not thread.is_alive(), f"party thread still running after {timeout} s"
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        return outcome["value"]  # type: ignore[return-value]

    return join


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


# ---------------------------------------------------------------------------------------------- delivery


def test_two_parties_exchange_signed_frames_both_ways(ca: Pki) -> None:
    with federation(ca, "active", "passive_1") as parties:
        active, passive = parties["active"], parties["passive_1"]
        passive.send(message(MessageKind.ACTIVATION, "passive_1", "active", 0))
        got = active.receive("active", MessageKind.ACTIVATION, "passive_1")
        np.testing.assert_array_equal(got.payload, np.arange(4, dtype=np.float32))
        assert (got.sender, got.receiver, got.step) == ("passive_1", "active", 0)
        active.send(message(MessageKind.GRADIENT, "active", "passive_1", 0))
        back = passive.receive("passive_1", MessageKind.GRADIENT, "active")
        np.testing.assert_array_equal(back.payload, np.arange(4, dtype=np.float32))
        assert passive.stats.messages_by_kind == {"activation": 1} and active.stats.messages_by_kind == {"gradient": 1}
        assert active.refusals == [] and passive.refusals == []
        assert active.check_peer("passive_1").liveness is Liveness.ALIVE


def test_three_parties_keep_order_per_sender_and_senders_do_not_block_each_other(ca: Pki) -> None:
    with federation(ca, "active", "passive_1", "passive_2") as parties:

        def send_six(sender: str) -> None:
            for step in range(6):
                parties[sender].send(message(MessageKind.ACTIVATION, sender, "active", step))

        joins = [in_thread(partial(send_six, name)) for name in ("passive_1", "passive_2")]  # both at once
        for join in joins:
            join()
        active = parties["active"]
        # the second sender's frames are there in full although the first sender's are queued before them
        assert [active.receive("active", MessageKind.ACTIVATION, "passive_2").step for _ in range(6)] == list(range(6))
        assert [active.receive("active", MessageKind.ACTIVATION, "passive_1").step for _ in range(6)] == list(range(6))
        assert active.poll("active", [MessageKind.ACTIVATION]) is None
        # a receive that waits is woken by a frame that arrives later, from a party thread
        waiting = in_thread(lambda: active.receive("active", MessageKind.GRADIENT, "passive_2"))
        time.sleep(0.3)
        parties["passive_2"].send(message(MessageKind.GRADIENT, "passive_2", "active", 6))
        assert waiting().step == 6


def test_a_send_waits_for_a_peer_that_starts_late(ca: Pki) -> None:
    identities = fresh_identities(["active", "passive_1"])
    roster, session = Roster.of(identities.values()), new_session_id()

    def channel(name: str, listen: str) -> GrpcChannel:
        return GrpcChannel(identities[name], roster, session, listen=listen, tls=ca.material(name), peer_check=ca.peer_check, timeouts=FAST)

    with channel("passive_1", "127.0.0.1:0") as passive:
        port = _free_port()
        passive.add_peer("active", PeerAddress(f"127.0.0.1:{port}", "localhost"))
        sending = in_thread(lambda: passive.send(message(MessageKind.ACTIVATION, "passive_1", "active", 0)))
        time.sleep(0.5)  # the active party is not up yet: the send retries its connection
        with channel("active", f"127.0.0.1:{port}") as active:
            sending()
            assert active.receive("active", MessageKind.ACTIVATION, "passive_1").step == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_20_megabyte_frame_gets_through(ca: Pki) -> None:
    with federation(ca, "active", "passive_1") as parties:
        big = np.random.default_rng(0).standard_normal(5_000_000).astype(np.float32)  # 20 MB
        parties["active"].send(Message(MessageKind.PUBLIC_KEY, "active", "passive_1", 0, big))
        got = parties["passive_1"].receive("passive_1", MessageKind.PUBLIC_KEY, "active")
        np.testing.assert_array_equal(got.payload, big)
        assert parties["active"].stats.bytes_by_kind["public_key"] > 20_000_000


def test_frames_over_the_size_limit_fail_with_one_line_on_either_side(ca: Pki) -> None:
    with federation(ca, "active", "passive_1", "passive_2", passive_1=200_000, passive_2=2_000_000) as parties:
        half_mb = np.zeros(125_000, dtype=np.float32)
        with pytest.raises(FrameTooLargeError) as own_limit:  # over the sender's own limit: not sent at all
            parties["passive_1"].send(Message(MessageKind.ACTIVATION, "passive_1", "active", 0, half_mb))
        assert "max_frame_bytes=200,000" in one_line(own_limit.value)
        three_mb = np.zeros(750_000, dtype=np.float32)  # 3 MB: within the active party's limit, over passive_2's
        with pytest.raises(FrameTooLargeError) as peer_limit:
            parties["active"].send(Message(MessageKind.GRADIENT, "active", "passive_2", 0, three_mb))
        assert "passive_2 at 127.0.0.1" in one_line(peer_limit.value) and "'gradient' frame (step 0)" in str(peer_limit.value)
        assert parties["passive_2"].pending("passive_2") == 0


# ---------------------------------------------------------------------------------------------- deadlines and liveness


def test_a_receive_deadline_names_receiver_kind_sender_and_last_step(ca: Pki) -> None:
    slow = ChannelTimeouts(receive=1.0, connect=2.0, liveness_interval=0.2, liveness_timeout=1.0)
    with federation(ca, "active", "passive_1", timeouts=slow) as parties:
        parties["passive_1"].send(message(MessageKind.ACTIVATION, "passive_1", "active", 7))
        active = parties["active"]
        active.receive("active", MessageKind.ACTIVATION, "passive_1")
        started = time.monotonic()
        with pytest.raises(PeerTimeoutError) as timeout:
            active.receive("active", MessageKind.ACTIVATION, "passive_1")  # passive_1 is alive but sends nothing more
        waited = time.monotonic() - started
        assert 1.0 <= waited < 3.0
        line = one_line(timeout.value)
        assert line.startswith("active waited 1.0 s for a 'activation' message from 'passive_1'")
        assert "passive_1 alive: answered a ping" in line and "last traffic: received 'activation' (step 7) from 'passive_1'" in line
        assert timeout.value.peer == "passive_1"


def test_a_refusal_or_an_abort_from_the_awaited_sender_ends_the_wait_at_once_with_the_reason(ca: Pki) -> None:
    patient = ChannelTimeouts(receive=30.0, connect=2.0, liveness_interval=0.2, liveness_timeout=1.0)
    with federation(ca, "coordinator", "passive_1", timeouts=patient) as parties:
        waiting = in_thread(lambda: parties["passive_1"].receive("passive_1", MessageKind.DECRYPT_REPLY, "coordinator"))
        time.sleep(0.3)  # the receive is waiting
        started = time.monotonic()
        parties["coordinator"].send(Message(
            MessageKind.REQUEST_REFUSED, "coordinator", "passive_1", 4, np.zeros(0, dtype=np.float32),
            meta={"reason": "matches no request left for step 4", "request": "decrypt_request"},
        ))
        with pytest.raises(RequestRefusedError) as refused:
            waiting()
        assert time.monotonic() - started < 5.0  # not the 30 s receive deadline
        assert one_line(refused.value) == (
            "passive_1 stopped waiting for a 'decrypt_reply' message from 'coordinator': "
            "coordinator refused its decrypt_request (step 4): matches no request left for step 4"
        )
        assert parties["passive_1"].pending("passive_1") == 0  # the refusal was consumed by the wait it ended
        # an ABORT from the awaited sender ends a wait the same way
        waiting = in_thread(lambda: parties["passive_1"].receive("passive_1", MessageKind.GRADIENT, "coordinator"))
        time.sleep(0.3)
        started = time.monotonic()
        parties["coordinator"].send(Message(MessageKind.ABORT, "coordinator", "passive_1", 5, np.zeros(0, dtype=np.float32), meta={"reason": "disk full"}))
        with pytest.raises(PeerUnavailableError) as aborted:
            waiting()
        assert time.monotonic() - started < 5.0
        assert one_line(aborted.value) == "passive_1 stopped waiting for a 'gradient' message from 'coordinator': coordinator aborted (disk full)"


def test_a_stopped_peer_ends_the_wait_and_the_send_within_the_timeouts(ca: Pki) -> None:
    patient = ChannelTimeouts(receive=20.0, connect=1.0, liveness_interval=0.2, liveness_timeout=1.0, gone_after=2)
    with federation(ca, "active", "passive_1", timeouts=patient) as parties:
        active, passive = parties["active"], parties["passive_1"]
        active.send(message(MessageKind.GRADIENT, "active", "passive_1", 3))
        passive.receive("passive_1", MessageKind.GRADIENT, "active")
        waiting = in_thread(lambda: active.receive("active", MessageKind.ACTIVATION, "passive_1"))
        time.sleep(0.3)
        started = time.monotonic()
        passive.close()  # the passive party's process stops
        with pytest.raises(PeerUnavailableError) as gone:
            waiting()
        assert time.monotonic() - started < 5.0  # long before the 20 s receive deadline
        line = one_line(gone.value)
        assert line.startswith("active stopped waiting for a 'activation' message from 'passive_1': passive_1 at 127.0.0.1:")
        assert "is gone" in line and "last traffic: sent 'gradient' (step 3) to 'passive_1'" in line and gone.value.peer == "passive_1"
        started = time.monotonic()
        with pytest.raises(PeerUnavailableError) as unreachable:
            active.send(message(MessageKind.GRADIENT, "active", "passive_1", 4))
        assert time.monotonic() - started < 3.0
        assert one_line(unreachable.value).startswith("active cannot reach passive_1 at 127.0.0.1:") and unreachable.value.peer == "passive_1"
        assert active.check_peer("passive_1").liveness is Liveness.GONE


# A party in a process of its own: prints its port, sends one activation to its peer, then lingers until killed (or stops by itself).
PARTY_PROCESS = """
import json, sys, time
import numpy as np
from cryptography import x509
from securevfl import pki
from securevfl.protocols import Identity, Message, MessageKind, Roster
from securevfl.protocols.grpc_channel import GrpcChannel
from securevfl.protocols.grpc_settings import ChannelTimeouts, PeerAddress

plan = json.loads(sys.stdin.readline())
ca = x509.load_pem_x509_certificate(plan["ca"].encode())
identity = Identity.from_private_bytes(plan["party"], bytes.fromhex(plan["key"]))
roster = Roster({name: bytes.fromhex(key) for name, key in plan["roster"].items()})
tls = pki.TLSMaterial(plan["ca"].encode(), plan["chain"].encode(), plan["private_key"].encode())
with GrpcChannel(
    identity, roster, plan["session"], listen="127.0.0.1:0", tls=tls,
    peer_check=lambda pem, party: pki.verify_peer_certificate(pem, [ca], party),
    peers={plan["peer"]: PeerAddress(plan["peer_address"], "localhost")}, timeouts=ChannelTimeouts(connect=5.0),
) as channel:
    print(channel.port, flush=True)
    channel.send(Message(MessageKind.ACTIVATION, plan["party"], plan["peer"], 0, np.ones(4, np.float32)))
    time.sleep(plan["linger"])
"""


def test_a_party_process_that_hangs_then_crashes_is_reported_each_time_in_one_line(ca: Pki) -> None:
    identities = fresh_identities(["active", "passive_1"])
    roster, session = Roster.of(identities.values()), new_session_id()
    quick = ChannelTimeouts(receive=2.0, connect=2.0, liveness_interval=0.2, liveness_timeout=0.5, gone_after=2)
    tls = ca.material("passive_1")
    with GrpcChannel(identities["active"], roster, session, listen="127.0.0.1:0", tls=ca.material("active"),
                     peer_check=ca.peer_check, timeouts=quick) as active:  # fmt: skip
        child = subprocess.Popen([sys.executable, "-c", PARTY_PROCESS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            plan = {
                "party": "passive_1", "key": identities["passive_1"].private_bytes().hex(), "session": session,
                "roster": {name: identity.public_key.hex() for name, identity in identities.items()},
                "ca": _pem(ca.ca.certificate).decode(), "chain": tls.certificate_chain.decode(), "private_key": tls.private_key.decode(),
                "peer": "active", "peer_address": f"127.0.0.1:{active.port}", "linger": TEST_SECONDS,
            }  # fmt: skip
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(json.dumps(plan) + "\n")
            child.stdin.flush()
            port = int(child.stdout.readline())  # (the alarm ends a child that never answers)
            active.add_peer("passive_1", PeerAddress(f"127.0.0.1:{port}", "localhost"))
            assert active.receive("active", MessageKind.ACTIVATION, "passive_1").step == 0  # the child is up and sent
            assert active.check_peer("passive_1").liveness is Liveness.ALIVE  # and the active party is connected to it
            child.send_signal(signal.SIGSTOP)  # hangs: its connections stay open, nothing answers
            with pytest.raises(PeerTimeoutError) as hung:
                active.receive("active", MessageKind.ACTIVATION, "passive_1")
            assert "(passive_1 not answering: no answer to a ping within 0.5 s" in one_line(hung.value)
            child.kill()  # crashes
            started = time.monotonic()
            with pytest.raises(PeerUnavailableError) as crashed:
                active.receive("active", MessageKind.ACTIVATION, "passive_1")
            assert time.monotonic() - started < 2.0 and "passive_1 at 127.0.0.1:" in one_line(crashed.value) and "is gone" in str(crashed.value)
        finally:
            child.kill()
            child.wait(10)


def test_closing_wakes_a_waiting_receive_and_is_idempotent(ca: Pki) -> None:
    with federation(ca, "active", "passive_1") as parties:
        active = parties["active"]
        waiting = in_thread(lambda: active.receive("active", MessageKind.ACTIVATION, "passive_1"))
        time.sleep(0.2)
        with active:  # leaving the block closes it
            pass
        with pytest.raises(ProtocolError, match="active's channel is closed while waiting for a 'activation' message"):
            waiting()
        active.close()
        with pytest.raises(ProtocolError, match="active's channel is closed"):
            active.send(message(MessageKind.GRADIENT, "active", "passive_1", 0))


# ---------------------------------------------------------------------------------------------- authentication


def test_forged_and_replayed_frames_injected_over_the_senders_tls_are_refused(ca: Pki) -> None:
    with federation(ca, "active", "passive_1") as parties:
        passive = parties["passive_1"]
        signer = FrameSigner(parties.identities["active"], parties.session)
        attacker = parties.raw_client("active", "passive_1")  # holds the active party's TLS key, not its identity key
        try:
            genuine = signer.seal(message(MessageKind.GRADIENT, "active", "passive_1", 0), passive.codecs)
            attacker.deliver(genuine, "a frame")
            with pytest.raises(ProtocolError, match=r"passive_1 refused gradient #0 \(step 0\) from 'active': replayed"):
                attacker.deliver(genuine, "a replay")
            forger = FrameSigner(Identity.generate("active"), parties.session)
            forger.seal(message(MessageKind.GRADIENT, "active", "passive_1", 0), passive.codecs)  # so the forgery is #1, next in line
            forged = forger.seal(message(MessageKind.GRADIENT, "active", "passive_1", 1), passive.codecs)
            # the forged frame came over the active party's own TLS connection: the receive that waits for it fails at once
            waiting = in_thread(lambda: [passive.receive("passive_1", MessageKind.GRADIENT, "active") for _ in range(2)])
            time.sleep(0.2)
            started = time.monotonic()
            with pytest.raises(ProtocolError, match="bad signature"):
                attacker.deliver(forged, "a forgery")
            with pytest.raises(FrameAuthenticationError, match="bad signature") as refused:
                waiting()
            assert time.monotonic() - started < 2.0 and one_line(refused.value)
            assert [r.error.reason.split(":")[0] for r in passive.refusals] == ["replayed", "bad signature"]
        finally:
            attacker.close()


@pytest.mark.parametrize("relay", ["passive_2", "mallory"])
def test_a_relay_with_its_own_certificate_cannot_deliver_another_partys_frame(ca: Pki, relay: str) -> None:
    with federation(ca, "active", "passive_1", "passive_2") as parties:
        passive = parties["passive_1"]
        genuine = FrameSigner(parties.identities["active"], parties.session).seal(
            message(MessageKind.GRADIENT, "active", "passive_1", 0), passive.codecs
        )
        relayer = parties.raw_client(relay, "passive_1")  # a valid certificate of the federation's CA, naming the relay
        # another party's certificate is refused once the frame names its sender; a non-party's before the frame is read
        reason = f"its TLS peer is not active: .*{relay}" if relay == "passive_2" else f"its TLS peer is none of the run's parties .*{relay}"
        try:
            with pytest.raises(ProtocolError, match=reason) as refused:
                relayer.deliver(genuine, "a relayed frame")
        finally:
            relayer.close()
        # (a non-party is refused at its first call already: the ping its client sends before delivering)
        assert one_line(refused.value) and passive.pending("passive_1") == 0 and len(passive.refusals) == (1 if relay == "passive_2" else 2)
        # nothing was used up: the same frame, delivered over the active party's own TLS connection, is admitted
        owner = parties.raw_client("active", "passive_1")
        try:
            owner.deliver(genuine, "the genuine frame")
        finally:
            owner.close()
        assert passive.receive("passive_1", MessageKind.GRADIENT, "active").step == 0


def test_a_non_partys_call_is_refused_before_its_frame_is_read(ca: Pki) -> None:
    """Red-team pass (2026-11-27): a unary call's message is read in full before its handler runs, so a holder of any
    certificate of the CA made a party buffer 20 frames of 120 MiB (3.4 GB) before each was refused. A unary message is
    now at most 4 MiB (larger: refused by gRPC unread), and a larger frame comes in chunks read only after the TLS peer
    is checked: a stranger's chunked call is refused while its frame has not even been sent (the request stream below
    blocks), and nothing of it is counted as received."""
    with federation(ca, "active", "passive_1") as parties:
        stranger = parties.raw_client("mallory", "passive_1")
        server = parties["passive_1"]._server  # noqa: SLF001 - its byte counter says what was read
        received_before = server.counter.received
        release = threading.Event()

        def frame_never_sent() -> Iterator[bytes]:
            release.wait(20)
            yield b"x" * 1024

        deliver = stranger._channel.stream_unary(DELIVER_CHUNKS_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)  # noqa: SLF001
        started = time.monotonic()
        try:
            with pytest.raises(grpc.RpcError) as refused:
                deliver(frame_never_sent(), timeout=15.0)
        finally:
            release.set()
            stranger.close()
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        assert "none of the run's parties" in refused.value.details()  # type: ignore[attr-defined]
        assert time.monotonic() - started < 10 and server.counter.received == received_before
        # a party's own call is still read and admitted
        owner = parties.raw_client("active", "passive_1")
        try:
            owner.deliver(FrameSigner(parties.identities["active"], parties.session).seal(
                message(MessageKind.GRADIENT, "active", "passive_1", 0), parties["passive_1"].codecs), "a frame")
        finally:
            owner.close()
        assert parties["passive_1"].receive("passive_1", MessageKind.GRADIENT, "active").step == 0


def test_a_client_without_a_certificate_cannot_connect(ca: Pki) -> None:
    with federation(ca, "active", "passive_1") as parties:
        target = parties.address("passive_1")
        credentials = grpc.ssl_channel_credentials(root_certificates=_pem(ca.ca.certificate))  # trusts the CA, presents nothing
        with grpc.secure_channel(target.target, credentials, options=[("grpc.ssl_target_name_override", "localhost")]) as channel:
            deliver = channel.unary_unary(DELIVER_METHOD)
            frame = FrameSigner(parties.identities["active"], parties.session).seal(
                message(MessageKind.GRADIENT, "active", "passive_1", 0), parties["passive_1"].codecs
            )
            with pytest.raises(grpc.RpcError) as failed:
                deliver(frame, timeout=3.0)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert parties["passive_1"].pending("passive_1") == 0 and parties["passive_1"].refusals == []


def test_a_certificate_of_another_ca_cannot_connect(ca: Pki) -> None:
    other = Pki()
    with federation(ca, "active", "passive_1") as parties:
        foreign = other.material("active")
        # it trusts the federation's CA (so it would accept the server), but presents a certificate of another CA
        impostor = pki.TLSMaterial(_pem(ca.ca.certificate), foreign.certificate_chain, foreign.private_key)
        client = parties.raw_client("active", "passive_1", tls=impostor)
        try:
            frame = FrameSigner(parties.identities["active"], parties.session).seal(
                message(MessageKind.GRADIENT, "active", "passive_1", 0), parties["passive_1"].codecs
            )
            with pytest.raises(PeerUnavailableError) as refused:
                client.deliver(frame, "a frame")
        finally:
            client.close()
        assert one_line(refused.value).startswith("active ")
        assert parties["passive_1"].pending("passive_1") == 0 and parties["passive_1"].refusals == []


@contextmanager
def recording_impostor(material: pki.TLSMaterial, answers_as: str) -> Iterator[tuple[PeerAddress, list[bytes]]]:
    """A server holding a valid certificate of the federation's CA that poses as ``answers_as`` and keeps every frame it gets.

    What a party whose certificate names another party's address (a CA that issued too broadly)
    could run after redirecting that address: it cannot forge a frame, but it reads what it is sent.
    """
    from concurrent import futures

    from securevfl.protocols.grpc_settings import PING_METHOD

    received: list[bytes] = []

    def deliver(frame: bytes, context: grpc.ServicerContext) -> bytes:
        received.append(frame)
        return b""

    def ping(request: bytes, context: grpc.ServicerContext) -> bytes:
        return answers_as.encode()

    methods = {DELIVER_METHOD: deliver, PING_METHOD: ping}

    class Handler(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
            method = methods.get(details.method)  # type: ignore[attr-defined]
            return None if method is None else grpc.unary_unary_rpc_method_handler(method)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((Handler(),))
    credentials = grpc.ssl_server_credentials([(material.private_key, material.certificate_chain)], root_certificates=material.root_certificates, require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield PeerAddress(f"127.0.0.1:{port}", tls_name="localhost"), received
    finally:
        server.stop(0).wait()


def test_a_pinned_certificate_keeps_frames_from_an_impostor_with_a_valid_certificate(ca: Pki) -> None:
    """passive_2's certificate is valid for the same host name; it answers at the address passive_1 dials for the active party.

    Trusting the CA alone, passive_1 hands it its activations (the frame cannot be forged, but it is read).
    With the active party's certificate pinned, the TLS handshake fails and nothing is sent.
    """
    genuine = ca.material("active")
    with federation(ca, "passive_1") as parties, recording_impostor(ca.material("passive_2"), answers_as="active") as (address, received):
        frame = FrameSigner(parties.identities["passive_1"], parties.session).seal(
            message(MessageKind.ACTIVATION, "passive_1", "active", 0), parties["passive_1"].codecs
        )
        trusting_the_ca = PeerClient("passive_1", "active", address, ca.material("passive_1"), max_frame_bytes=1 << 24, timeouts=FAST)
        try:
            trusting_the_ca.deliver(frame, "an activation")
        finally:
            trusting_the_ca.close()
        assert received == [frame]  # the attack: the impostor read the activation
        pinned = PeerAddress(address.target, tls_name="localhost", pinned_certificate=genuine.certificate_chain)
        pinning = PeerClient("passive_1", "active", pinned, ca.material("passive_1"), max_frame_bytes=1 << 24, timeouts=FAST)
        try:
            with pytest.raises(PeerUnavailableError) as refused:
                pinning.deliver(frame, "an activation")
        finally:
            pinning.close()
        assert received == [frame] and one_line(refused.value).startswith("passive_1 cannot reach active at 127.0.0.1:")
        assert "the certificate served there is not the one pinned for active (the plan's tls_certificate)" in str(refused.value)


def test_only_one_end_entity_certificate_can_be_pinned(ca: Pki) -> None:
    """A chain or a CA as the only trust root would let through every certificate it issued."""
    leaf, issuer = ca.material("active").certificate_chain, _pem(ca.ca.certificate)
    for pem, error in ((leaf + issuer, "exactly one certificate"), (issuer, "a CA certificate"), (b"no pem", "not a readable PEM")):
        with pytest.raises(ValueError, match=error):
            PeerAddress("127.0.0.1:1", pinned_certificate=pem)
    assert PeerAddress("127.0.0.1:1", pinned_certificate=leaf).pinned_certificate == leaf


def test_a_pinned_certificate_still_reaches_the_genuine_peer(ca: Pki) -> None:
    with federation(ca, "active", "passive_1") as parties:
        genuine = parties.address("active")
        pinned = PeerAddress(genuine.target, tls_name="localhost", pinned_certificate=parties.tls["active"].certificate_chain)
        client = PeerClient("passive_1", "active", pinned, parties.tls["passive_1"], max_frame_bytes=1 << 24, timeouts=FAST)
        frame = FrameSigner(parties.identities["passive_1"], parties.session).seal(
            message(MessageKind.ACTIVATION, "passive_1", "active", 0), parties["active"].codecs
        )
        try:
            client.deliver(frame, "an activation")
        finally:
            client.close()
        assert parties["active"].receive("active", MessageKind.ACTIVATION, "passive_1").step == 0


# ---------------------------------------------------------------------------------------------- bytes


def test_byte_counts_put_socket_bytes_next_to_the_accounted_frames(ca: Pki) -> None:
    with federation(ca, "active", "passive_1") as parties:
        active, passive = parties["active"], parties["passive_1"]
        for step in range(3):
            passive.send(message(MessageKind.ACTIVATION, "passive_1", "active", step, values=250_000))  # 1 MB each
            active.receive("active", MessageKind.ACTIVATION, "passive_1")
        sent, received = passive.byte_counts(), active.byte_counts()
        assert sent.accounted_sent == passive.stats.total_bytes > 3 * 1_000_000 + 3 * FIXED_OVERHEAD_BYTES
        assert sent.grpc_sent == sent.accounted_sent  # frames only: no ping was needed
        assert received.grpc_received == sent.accounted_sent and received.accounted_sent == 0
        assert sent.tcp_sent is not None and received.tcp_received is not None, "Linux exposes TCP_INFO"
        # TLS records, HTTP/2 frames and the handshake add a little; the kernel's count is never below gRPC's
        assert sent.grpc_sent < sent.tcp_sent < sent.grpc_sent * 1.02
        assert received.tcp_received == pytest.approx(sent.tcp_sent, rel=0.01)
        assert sent.to_dict()["tcp_connections"] == 1


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_configuration_and_misuse_get_one_clear_line(ca: Pki) -> None:
    for bad, expected in (
        (lambda: PeerAddress("no-port"), "peer address must be host:port"),
        (lambda: PeerAddress("host:70000"), "peer address must be host:port"),
        (lambda: ChannelTimeouts(receive=0), "timeout 'receive' must be a positive number"),
        (lambda: ChannelTimeouts(gone_after=0), "gone_after must be a positive number"),
    ):
        with pytest.raises(ValueError) as error:
            bad()
        assert one_line(error.value).startswith(expected)
    with federation(ca, "active", "passive_1") as parties:
        active = parties["active"]
        stranger = Identity.generate("active")
        with pytest.raises(IdentityError, match="active's identity key is not the one the roster holds"):
            GrpcChannel(stranger, parties.roster, parties.session, listen="127.0.0.1:0", tls=ca.material("active"), peer_check=ca.peer_check)
        with pytest.raises(ProtocolError, match=f"active cannot listen on 127.0.0.1:{active.port}"):
            GrpcChannel(
                parties.identities["active"], parties.roster, parties.session,
                listen=f"127.0.0.1:{active.port}", tls=ca.material("active"), peer_check=ca.peer_check,
            )  # fmt: skip
        with pytest.raises(ProtocolError, match="active cannot send a message as 'passive_1'"):
            active.send(message(MessageKind.GRADIENT, "passive_1", "active", 0))
        with pytest.raises(ProtocolError, match="active cannot receive the messages addressed to 'passive_1'"):
            active.receive("passive_1", MessageKind.GRADIENT)
        with pytest.raises(ProtocolError, match="'coordinator' is not a peer of active"):
            active.add_peer("coordinator", "127.0.0.1:1")
        with pytest.raises(ProtocolError, match="active already has an address for 'passive_1'"):
            active.add_peer("passive_1", "127.0.0.1:1")
        # a plan that gives passive_1's own address for the active party
        misdialled = PeerClient("passive_1", "active", parties.address("passive_1"), ca.material("passive_1"), max_frame_bytes=1 << 20, timeouts=FAST)
        try:
            with pytest.raises(PeerUnavailableError) as wrong:
                misdialled.wait_connected()
        finally:
            misdialled.close()
        assert one_line(wrong.value).endswith("but 'passive_1' answers there: check the address")


def test_a_party_flooding_another_with_frames_nobody_takes_waits_and_is_refused(ca: Pki) -> None:
    """Red-team pass (2026-11-27): a real party's frames of a kind its receiver never takes stayed queued without a bound
    (12 frames of 48 MiB: 889 MB). From ``max_queued_bytes`` of a sender's untaken frames its next frame is refused as busy
    at once (no server worker waits: a second pass blocked every worker that way) and the sender retries until the
    receiver takes one (back-pressure, as an honest sender running ahead gets), or gives up at its send deadline."""
    timeouts = ChannelTimeouts(receive=5.0, connect=2.0, send=2.0, liveness_interval=0.2, liveness_timeout=1.0, gone_after=2)
    with federation(ca, "active", "passive_1", timeouts=timeouts) as parties:
        passive = parties["passive_1"]
        payload = np.ones((64, 10), dtype=np.float32)  # a frame of about 2.7 kB
        parties["active"].send(Message(MessageKind.GRADIENT, "active", "passive_1", 0, payload))
        one_frame = passive._mailbox.queued_bytes("active")  # noqa: SLF001 - the count the bound applies to
        assert 64 * 10 * 4 < one_frame < 2 * 64 * 10 * 4
        passive.max_queued_bytes = 2 * one_frame
        parties["active"].send(Message(MessageKind.GRADIENT, "active", "passive_1", 1, payload))  # now at the bound
        # the receiver takes one while the next send waits: that send then goes through
        waiting = in_thread(lambda: parties["active"].send(Message(MessageKind.GRADIENT, "active", "passive_1", 2, payload)))
        time.sleep(0.5)
        assert passive.pending("passive_1") == 2
        assert passive.receive("passive_1", MessageKind.GRADIENT, "active").step == 0
        waiting()
        assert passive.pending("passive_1") == 2
        # nobody takes anything: the flood's next frame is refused at the send timeout, unread
        started = time.monotonic()
        with pytest.raises(PeerTimeoutError, match="'gradient' frame \\(step 3\\) of .* bytes to passive_1 at .* was not taken within 2 s: passive_1 has not taken") as refused:
            parties["active"].send(Message(MessageKind.GRADIENT, "active", "passive_1", 3, payload))
        assert one_line(refused.value) and time.monotonic() - started >= 1.5 and passive.pending("passive_1") == 2
        assert passive.refusals == []  # back-pressure is not a refusal of the frame


def test_a_frame_over_the_unary_size_travels_in_chunks_within_the_receivers_limit(ca: Pki) -> None:
    """Frames over 4 MiB (key announcements) go as a stream of 1 MiB chunks, which the receiver reads after checking the
    TLS peer; its own max_frame_bytes still bounds them, with the sender's one-line FrameTooLargeError."""
    with federation(ca, "active", "passive_1", "passive_2", passive_2=6_000_000) as parties:
        eight_mb = np.arange(2_000_000, dtype=np.float32)
        parties["active"].send(Message(MessageKind.GRADIENT, "active", "passive_1", 0, eight_mb))
        received = parties["passive_1"].receive("passive_1", MessageKind.GRADIENT, "active")
        assert np.array_equal(received.payload, eight_mb)
        with pytest.raises(FrameTooLargeError) as over:
            parties["active"].send(Message(MessageKind.GRADIENT, "active", "passive_2", 0, eight_mb))
        assert "passive_2 at 127.0.0.1" in one_line(over.value) and "max_frame_bytes=6,000,000" in one_line(over.value)
        assert parties["passive_2"].pending("passive_2") == 0


@pytest.mark.parametrize("case", ["another sender", "not a frame"])
def test_a_chunked_frame_is_refused_on_its_first_chunk(ca: Pki, case: str) -> None:
    """Second red-team pass (2026-11-27): a party's chunked frames were buffered in full (twice, joined) before any check,
    so concurrent ones held about workers x 2 x max_frame_bytes. The first chunk's declared sender must be the TLS peer
    and its declared length within the limits (held as in flight until handed over) before the body is read: here the
    rest of the frame is never even sent."""
    with federation(ca, "active", "passive_1", "passive_2") as parties:
        genuine = FrameSigner(parties.identities["active"], parties.session).seal(
            Message(MessageKind.GRADIENT, "active", "passive_1", 0, np.zeros(2_000_000, dtype=np.float32)), parties["passive_1"].codecs)
        first = genuine[:1 << 20] if case == "another sender" else b"\x00" * (1 << 20)
        relay = parties.raw_client("passive_2", "passive_1")
        release = threading.Event()

        def body_never_sent() -> Iterator[bytes]:
            yield first
            release.wait(20)
            yield genuine[1 << 20:]

        started = time.monotonic()
        try:
            with pytest.raises(grpc.RpcError) as refused:
                relay._deliver_chunks(body_never_sent(), timeout=15.0)  # noqa: SLF001
        finally:
            release.set()
            relay.close()
        reason = "its TLS peer is not active" if case == "another sender" else "not a securevfl message"
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED and reason in refused.value.details()  # type: ignore[attr-defined]
        assert time.monotonic() - started < 10 and parties["passive_1"].pending("passive_1") == 0
