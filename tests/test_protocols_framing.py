"""Frame authentication: identities, the receiver's checks, the channel's refusals, and attacks on a federation.

Every test of an attack asserts the refusal and its exact error line: the frame never reaches
the party's code, and the party's receive that waited for it fails with that line.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable

import numpy as np
import pytest

from helpers import config, random_dataset
from securevfl.crypto import SecretKeyring, get_preset
from securevfl.federation import build_federation
from securevfl.protocols import (
    FrameAuthenticationError,
    FrameSigner,
    FrameVerifier,
    Identity,
    IdentityError,
    InProcessChannel,
    Message,
    MessageKind,
    ProtocolError,
    Roster,
    WireFormatError,
    decode_message,
    fingerprint,
    fresh_identities,
    new_session_id,
    parse_frame,
)
from helpers import signed_session
from securevfl.protocols.wire import encode_raw
from securevfl.scheduler import Federation

CODECS, IDENTITIES, ROSTER, SESSION = signed_session()
STRANGER = Identity.generate("mallory")
"""A network attacker's own key: not on any roster."""


def message(kind: str = "gradient", sender: str = "active", receiver: str = "passive_1", step: int = 0, payload: object = None) -> Message:
    if payload is None:
        payload = np.arange(4, dtype=np.float32)
    codec = "ckks" if isinstance(payload, bytes) else "ndarray"
    return Message(kind, sender, receiver, step, payload, codec=codec)  # type: ignore[arg-type]


def signer(name: str, session: str = SESSION) -> FrameSigner:
    return FrameSigner(IDENTITIES[name], session)


def verifier(name: str = "passive_1") -> FrameVerifier:
    return FrameVerifier(name, ROSTER, SESSION)


def rebuilt(frame: bytes, *, body: bytes | None = None, header: bytes | None = None, key: Identity | None = None) -> bytes:
    """``frame`` with its body or header bytes replaced, carrying its original signature or one by ``key``."""
    parsed = parse_frame(frame)
    header = parsed.header_bytes if header is None else header
    body = parsed.body if body is None else body
    unsigned = encode_raw(header, body, session=parsed.header.session, sequence=parsed.header.sequence)
    return unsigned + (parsed.signature if key is None else key.sign(unsigned))


def impostor(name: str, key_of: Identity = STRANGER) -> Identity:
    """An identity that claims ``name`` but signs with ``key_of``'s key."""
    return Identity.from_private_bytes(name, key_of.private_bytes())


def refused(action: Callable[[], object]) -> str:
    with pytest.raises(FrameAuthenticationError) as caught:
        action()
    return str(caught.value)


# ---------------------------------------------------------------------------------------------- identities


def test_a_fingerprint_is_the_sha256_of_the_raw_public_key_and_a_plan_pins_it() -> None:
    identity = IDENTITIES["active"]
    assert len(identity.public_key) == 32
    assert identity.fingerprint == fingerprint(identity.public_key) == hashlib.sha256(identity.public_key).hexdigest()
    ROSTER.pin(ROSTER.fingerprints())  # the plan's own fingerprints: accepted
    swapped = {**ROSTER.fingerprints(), "active": STRANGER.fingerprint}
    with pytest.raises(IdentityError, match=f"active's public key has fingerprint {identity.fingerprint}, the plan pins {STRANGER.fingerprint}"):
        ROSTER.pin(swapped)
    with pytest.raises(IdentityError, match="roster parties .* differ from the pinned parties"):
        ROSTER.pin({"active": identity.fingerprint})
    assert "private" not in repr(identity) and identity.private_bytes().hex() not in repr(identity)


def test_identities_and_rosters_refuse_bad_input_in_one_line() -> None:
    with pytest.raises(IdentityError, match="party name 'active' appears twice"):
        fresh_identities(["active", "active"])
    with pytest.raises(IdentityError, match="a party name must be a non-empty string, got ''"):
        Identity.generate("")
    with pytest.raises(IdentityError, match="an Ed25519 public key is 32 raw bytes"):
        Roster({"active": b"\x01" * 31})
    with pytest.raises(IdentityError, match="an Ed25519 private key is 32 raw bytes, got 5"):
        Identity.from_private_bytes("active", b"short")
    with pytest.raises(IdentityError, match="'active' is already on the roster"):
        ROSTER.with_party(Identity.generate("active"))
    with pytest.raises(IdentityError, match="'mallory' is not on the roster"):
        ROSTER.public_key("mallory")


def test_an_identity_kept_as_private_bytes_signs_as_before() -> None:
    kept = Identity.from_private_bytes("active", IDENTITIES["active"].private_bytes())
    assert kept.public_key == IDENTITIES["active"].public_key
    ROSTER.verify("active", b"data", kept.sign(b"data"))
    with pytest.raises(IdentityError, match="bad signature: not made by active's roster key"):
        ROSTER.verify("active", b"other data", kept.sign(b"data"))


# ---------------------------------------------------------------------------------------------- the receiver's checks


def test_frames_signed_by_their_sender_are_admitted_in_order_per_link() -> None:
    active, coordinator, passive_1 = signer("active"), signer("coordinator"), verifier()
    frames = [active.seal(message(step=0), CODECS), active.seal(message("gradient_bm", step=0), CODECS)]
    frames.append(coordinator.seal(message("decrypt_reply", "coordinator", step=0), CODECS))
    active.seal(message(receiver="passive_2"), CODECS)  # another link: numbered on its own
    frames.append(active.seal(message(step=1), CODECS))
    admitted = [passive_1.admit(frame).header for frame in frames]
    assert [(h.sender, h.sequence, h.step) for h in admitted] == [("active", 0, 0), ("active", 1, 0), ("coordinator", 0, 0), ("active", 2, 1)]
    assert {h.session for h in admitted} == {SESSION}
    np.testing.assert_array_equal(verifier().open(frames[0], CODECS).payload, np.arange(4))


def test_a_frame_claiming_another_sender_is_refused() -> None:
    forged = FrameSigner(impostor("active"), SESSION).seal(message(), CODECS)
    assert refused(lambda: verifier().admit(forged)) == (
        f"passive_1 refused gradient #0 (step 0) from 'active': bad signature: not made by active's roster key "
        f"(fingerprint {IDENTITIES['active'].fingerprint[:16]})"
    )


def test_a_frame_signed_with_another_roster_partys_key_is_refused() -> None:
    forged = FrameSigner(impostor("active", key_of=IDENTITIES["passive_2"]), SESSION).seal(message(), CODECS)
    assert "passive_1 refused gradient #0 (step 0) from 'active': bad signature: not made by active's roster key" in refused(
        lambda: verifier().admit(forged)
    )


def test_a_frame_from_a_party_outside_the_roster_is_refused() -> None:
    frame = FrameSigner(STRANGER, SESSION).seal(message(sender="mallory"), CODECS)
    assert refused(lambda: verifier().admit(frame)) == "passive_1 refused gradient #0 (step 0) from 'mallory': 'mallory' is not on the roster"


def test_a_replayed_frame_is_refused() -> None:
    passive_1, frame = verifier(), signer("active").seal(message(), CODECS)
    passive_1.admit(frame)
    assert refused(lambda: passive_1.admit(frame)) == (
        "passive_1 refused gradient #0 (step 0) from 'active': replayed: sequence 0 was already admitted, next expected 1"
    )


def test_an_out_of_order_frame_is_refused_and_the_link_stays_closed_after_it() -> None:
    active, passive_1 = signer("active"), verifier()
    first, second, third = (active.seal(message(step=step), CODECS) for step in range(3))
    assert refused(lambda: passive_1.admit(second)) == (
        "passive_1 refused gradient #1 (step 1) from 'active': out of order: sequence 1 but next expected 0 (a frame before it is missing)"
    )
    passive_1.admit(first)  # the refusal consumed nothing: the genuine next frame still comes in
    assert "out of order: sequence 2 but next expected 1" in refused(lambda: passive_1.admit(third))  # #1 is lost for good


def test_a_frame_of_another_session_is_refused() -> None:
    other_run = new_session_id()
    frame = signer("active", session=other_run).seal(message(), CODECS)
    assert refused(lambda: verifier().admit(frame)) == (
        f"passive_1 refused gradient #0 (step 0) from 'active': session {other_run[:12]}... is not this run's ({SESSION[:12]}...)"
    )


def test_a_frame_for_another_receiver_is_refused() -> None:
    frame = signer("active").seal(message(receiver="passive_2"), CODECS)
    assert refused(lambda: verifier("passive_1").admit(frame)) == (
        "passive_1 refused gradient #0 (step 0) from 'active': addressed to 'passive_2', not to 'passive_1'"
    )


def test_a_sender_whose_step_goes_back_is_refused() -> None:
    active, passive_1 = signer("active"), verifier()
    passive_1.admit(active.seal(message(step=5), CODECS))
    late = active.seal(message(step=3), CODECS)
    assert refused(lambda: passive_1.admit(late)) == "passive_1 refused gradient #1 (step 3) from 'active': step 3 goes back from step 5"
    # the late frame was authentic and next in line: dropped, its number used up, the link goes on
    assert passive_1.admit(active.seal(message(step=6), CODECS)).header.sequence == 2


def test_a_spliced_ciphertext_is_refused_with_the_original_signature_and_when_re_signed_by_a_non_owner() -> None:
    """The body of passive_2's request spliced into passive_1's frame (same length, so only the signature can tell)."""
    own = signer("passive_1").seal(message("decrypt_request", "passive_1", "coordinator", payload=b"\x01" * 64), CODECS)
    other = signer("passive_2").seal(message("decrypt_request", "passive_2", "coordinator", payload=b"\x02" * 64), CODECS)
    spliced = rebuilt(own, body=parse_frame(other).body)
    line = refused(lambda: verifier("coordinator").admit(spliced))
    assert line.startswith("coordinator refused decrypt_request #0 (step 0) from 'passive_1': bad signature: not made by passive_1's roster key")
    for key in (STRANGER, IDENTITIES["passive_2"], IDENTITIES["coordinator"]):  # a relay, the body's owner, the receiver itself
        resigned = rebuilt(own, body=parse_frame(other).body, key=key)
        assert "from 'passive_1': bad signature" in refused(lambda: verifier("coordinator").admit(resigned))


def test_a_header_edit_under_the_original_signature_is_refused() -> None:
    frame = signer("active").seal(message(step=7), CODECS)
    header = parse_frame(frame).header_bytes.replace(b'"step":7', b'"step":9')
    assert refused(lambda: verifier().admit(rebuilt(frame, header=header))).startswith(
        "passive_1 refused gradient #0 (step 9) from 'active': bad signature"
    )


def test_a_refused_frame_leaves_the_receiver_as_it_was() -> None:
    passive_1 = verifier()
    forged = FrameSigner(impostor("active"), SESSION).seal(message(step=4), CODECS)
    stale = signer("active", session=new_session_id()).seal(message(step=9), CODECS)
    for frame in (forged, stale, b"SVFL\x02 truncated"):
        with pytest.raises((FrameAuthenticationError, WireFormatError)):
            passive_1.admit(frame)
    assert passive_1.admit(signer("active").seal(message(step=0), CODECS)).header.sequence == 0


# ---------------------------------------------------------------------------------------------- the channel


def pinned_channel() -> InProcessChannel:
    return InProcessChannel(identities=fresh_identities(["passive_1", "passive_2", "active", "coordinator"]))


def test_a_refused_frame_is_dropped_logged_and_fails_the_receive_that_waits_for_it(caplog: pytest.LogCaptureFixture) -> None:
    channel = pinned_channel()
    active, passive_1 = channel.endpoint("active"), channel.endpoint("passive_1")
    channel.interceptor = lambda frame: [FrameSigner(impostor("active"), channel.session).seal(message(payload=np.full(4, 9.0, np.float32)), channel.codecs)]
    with caplog.at_level(logging.WARNING, logger="securevfl.channel"):
        active.send(message())
    assert channel.pending("passive_1") == 0  # dropped, never queued
    (refusal,) = channel.refusals
    line = "passive_1 refused gradient #0 (step 0) from 'active': bad signature: not made by active's roster key"
    assert str(refusal.error).startswith(line) and (refusal.claimed_kind, refusal.claimed_sender) == ("gradient", "active")
    assert [record.getMessage() for record in caplog.records] == [str(refusal.error)]
    assert refused(lambda: passive_1.receive("passive_1", MessageKind.GRADIENT, sender="active")).startswith(line)
    with pytest.raises(ProtocolError, match="none is queued"):  # reported once; then the usual error
        passive_1.receive("passive_1", MessageKind.GRADIENT, sender="active")


def test_a_genuine_frame_still_arrives_next_to_an_injected_forgery() -> None:
    channel = pinned_channel()
    active, passive_1 = channel.endpoint("active"), channel.endpoint("passive_1")
    channel.inject("passive_1", FrameSigner(impostor("active"), channel.session).seal(message(payload=np.full(4, 9.0, np.float32)), channel.codecs))
    active.send(message())
    np.testing.assert_array_equal(passive_1.receive("passive_1", MessageKind.GRADIENT, sender="active").payload, np.arange(4))
    assert len(channel.refusals) == 1  # the forgery is on record, never delivered


def test_poll_never_raises_for_a_refused_frame_so_a_server_keeps_serving() -> None:
    channel = pinned_channel()
    coordinator, passive_1 = channel.endpoint("coordinator"), channel.endpoint("passive_1")
    channel.inject("coordinator", FrameSigner(STRANGER, channel.session).seal(message("decrypt_request", "mallory", "coordinator", payload=b"\x00"), channel.codecs))
    channel.inject("coordinator", b"not a frame at all")
    assert coordinator.poll("coordinator", [MessageKind.DECRYPT_REQUEST]) is None
    passive_1.send(message("decrypt_request", "passive_1", "coordinator", payload=b"\x01"))
    assert coordinator.poll("coordinator", [MessageKind.DECRYPT_REQUEST]).sender == "passive_1"  # type: ignore[union-attr]
    assert [type(r.error) for r in channel.refusals] == [FrameAuthenticationError, WireFormatError]


def test_a_dropped_frame_closes_its_link_and_the_waiting_receive_names_the_gap() -> None:
    channel = pinned_channel()
    active, passive_1 = channel.endpoint("active"), channel.endpoint("passive_1")
    dropped: list[bytes] = []
    channel.interceptor = lambda frame: [] if not dropped and not dropped.append(frame) else [frame]
    active.send(message("gradient"))
    active.send(message("gradient_bm"))
    assert refused(lambda: passive_1.receive("passive_1", MessageKind.GRADIENT, sender="active")) == (
        "passive_1 refused gradient_bm #1 (step 0) from 'active': out of order: sequence 1 but next expected 0 (a frame before it is missing)"
    )


def test_the_roster_is_pinned_strangers_are_refused_and_parties_hold_only_their_endpoint() -> None:
    channel = pinned_channel()
    with pytest.raises(ProtocolError, match="'mallory' is not a party of this run"):
        channel.endpoint("mallory")
    with pytest.raises(ProtocolError, match="cannot inject a frame for 'mallory': not a party of this run"):
        channel.inject("mallory", b"")
    with pytest.raises(ProtocolError, match="identity of 'active' was given for party 'passive_1'"):
        InProcessChannel(identities={"passive_1": IDENTITIES["active"]})
    channel.enrol(Identity.generate("auditor"))  # before the session starts: allowed
    channel.endpoint("active").send(message())
    with pytest.raises(ProtocolError, match="cannot enrol 'late': the session has started and its roster is fixed"):
        channel.enrol(Identity.generate("late"))


def test_taps_and_the_interceptor_see_the_signed_frames_the_stats_count() -> None:
    channel = pinned_channel()
    tapped: list[bytes] = []
    intercepted: list[bytes] = []
    channel.taps.append(tapped.append)
    channel.interceptor = lambda frame: intercepted.append(frame) or [frame]
    channel.endpoint("active").send(message())
    assert tapped == intercepted and channel.stats.total_bytes == len(tapped[0])
    assert parse_frame(tapped[0]).header.session == channel.session and len(parse_frame(tapped[0]).signature) == 64
    # signing hides nothing: an eavesdropper reads the payload (TLS's job, not the frame's)
    np.testing.assert_array_equal(decode_message(tapped[0], channel.codecs).payload, np.arange(4))


# ---------------------------------------------------------------------------------------------- attacks on a federation


Interceptor = Callable[[bytes], Iterable[bytes]]


def federation(scheme: dict, attacker: Interceptor | None, monkeypatch: pytest.MonkeyPatch) -> Federation:
    """A small federation with ``attacker`` on the wire from its very first frame (the key set-up)."""
    connect = Federation.connect

    def connect_through(self: Federation) -> None:
        self.channel.interceptor = attacker
        connect(self)

    monkeypatch.setattr(Federation, "connect", connect_through)
    run = config(
        parties={"passive": 2, "split": "even"},
        model={"top": "sum", "bottom_hidden": [4]},
        train={"batch_size": 8, "seed": 0},
        protection=scheme,
    )
    return build_federation(run, random_dataset(24, 8, 6, 3, seed=0), [np.arange(0, 3), np.arange(3, 6)])


COORDINATOR = {"scheme": "ckks", "key_holder": "coordinator"}
RECEIVER = {"scheme": "ckks", "key_holder": "receiver", "preset": "transport"}


def on_link(kind: MessageKind, sender: str, receiver: str, rewrite: Callable[[bytes], Iterable[bytes]]) -> Interceptor:
    """Rewrite the frames of ``kind`` from ``sender`` to ``receiver``; pass every other frame."""

    def intercept(frame: bytes) -> Iterable[bytes]:
        header = parse_frame(frame).header
        return rewrite(frame) if (header.kind, header.sender, header.receiver) == (kind, sender, receiver) else [frame]

    return intercept


def attackers_keyring() -> bytes:
    return SecretKeyring.generate(get_preset("transport")).public_keyring().to_bytes()


@pytest.mark.parametrize("scheme, owner", [(COORDINATOR, "coordinator"), (RECEIVER, "active")], ids=["coordinator", "receiver"])
def test_a_substituted_key_announcement_is_refused_in_a_federation_run(scheme: dict, owner: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A man in the middle replaces the owner's CKKS public keyring with its own, in the owner's name."""
    substitute = attackers_keyring()

    def swap(frame: bytes) -> list[bytes]:
        forged = Message(MessageKind.PUBLIC_KEY, owner, "passive_1", 0, substitute, codec="key")
        return [FrameSigner(impostor(owner), parse_frame(frame).header.session).seal(forged, CODECS)]

    line = refused(lambda: federation(scheme, on_link(MessageKind.PUBLIC_KEY, owner, "passive_1", swap), monkeypatch))
    assert line.startswith(f"passive_1 refused public_key #0 (step 0) from '{owner}': bad signature: not made by {owner}'s roster key")


def _mallorys_announcement(frame: bytes) -> list[bytes]:
    """The coordinator's key announcement to passive_1, replaced by the attacker's under its own name."""
    forged = Message(MessageKind.PUBLIC_KEY, "mallory", "passive_1", 0, attackers_keyring(), codec="key")
    return [FrameSigner(STRANGER, parse_frame(frame).header.session).seal(forged, CODECS)]


def test_a_key_announcement_relayed_under_the_attackers_own_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # without pairwise activation masks: with them the coordinator's next frame to passive_1 (its mask keys) arrives
    # first and is refused as the sequence gap the swap leaves (test_a_frame_after_a_swapped_key_announcement_*)
    unmasked = {**COORDINATOR, "activation_masks": "none"}
    line = refused(lambda: federation(unmasked, on_link(MessageKind.PUBLIC_KEY, "coordinator", "passive_1", _mallorys_announcement), monkeypatch))
    assert line == "passive_1 refused public_key #0 (step 0) from 'mallory': 'mallory' is not on the roster"


def test_a_frame_after_a_swapped_key_announcement_is_refused_as_a_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    """With pairwise masks the coordinator sends passive_1 its mask keys right after its public key: the swapped
    announcement leaves a gap in the coordinator's sequence, and the next frame is refused for it."""
    line = refused(lambda: federation(COORDINATOR, on_link(MessageKind.PUBLIC_KEY, "coordinator", "passive_1", _mallorys_announcement), monkeypatch))
    assert line.startswith("passive_1 refused mask_keys #1 (step 0) from 'coordinator'") and "a frame before it is missing" in line


def test_a_forged_gradient_is_refused_in_training(monkeypatch: pytest.MonkeyPatch) -> None:
    run = federation(COORDINATOR, None, monkeypatch)

    def forge(frame: bytes) -> list[bytes]:
        header = parse_frame(frame).header
        forged = Message(header.kind, "active", "passive_1", header.step, parse_frame(frame).body[::-1], codec="ckks")
        return [FrameSigner(impostor("active"), header.session).seal(forged, CODECS)]

    run.channel.interceptor = on_link(MessageKind.GRADIENT, "active", "passive_1", forge)
    line = refused(lambda: run.train_batch(0, np.arange(8)))
    assert line.startswith("passive_1 refused gradient #0 (step 0) from 'active': bad signature: not made by active's roster key")


def test_a_replayed_activation_is_refused_in_training(monkeypatch: pytest.MonkeyPatch) -> None:
    run = federation(COORDINATOR, None, monkeypatch)
    recorded: list[bytes] = []

    def replay(frame: bytes) -> list[bytes]:
        recorded.append(frame)
        return [recorded[0]]  # step 0's activations again, in place of every later one

    run.channel.interceptor = on_link(MessageKind.ACTIVATION, "passive_1", "active", replay)
    run.train_batch(0, np.arange(8))
    line = refused(lambda: run.train_batch(1, np.arange(8, 16)))
    assert line == "active refused activation #0 (step 0) from 'passive_1': replayed: sequence 0 was already admitted, next expected 1"


def test_reordered_gradients_are_refused_in_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay holds the feature-major gradient back and delivers it after the batch-major one."""
    run = federation(COORDINATOR, None, monkeypatch)
    held: list[bytes] = []

    def reorder(frame: bytes) -> list[bytes]:
        kind = parse_frame(frame).header.kind
        if kind == MessageKind.GRADIENT:
            held.append(frame)
            return []
        if kind == MessageKind.GRADIENT_BM:
            return [frame, *held]
        return [frame]

    run.channel.interceptor = lambda frame: (
        reorder(frame) if parse_frame(frame).header.receiver == "passive_1" and parse_frame(frame).header.sender == "active" else [frame]
    )
    line = refused(lambda: run.train_batch(0, np.arange(8)))
    assert line == (
        "passive_1 refused gradient_bm #1 (step 0) from 'active': out of order: sequence 1 but next expected 0 (a frame before it is missing)"
    )


def test_a_ciphertext_spliced_from_another_message_is_refused_in_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """passive_2's encrypted activations of step 0 put into passive_1's frame of step 1, signature kept or re-signed."""
    for key in (None, STRANGER):
        run = federation(COORDINATOR, None, monkeypatch)
        other: list[bytes] = []

        def splice(frame: bytes) -> list[bytes]:
            header = parse_frame(frame).header
            if header.sender == "passive_2" and not other:
                other.append(parse_frame(frame).body)
            if header.sender == "passive_1" and header.step == 1:
                return [rebuilt(frame, body=other[0], key=key)]
            return [frame]

        run.channel.interceptor = lambda frame: splice(frame) if parse_frame(frame).header.kind == MessageKind.ACTIVATION else [frame]
        run.train_batch(0, np.arange(8))
        line = refused(lambda: run.train_batch(1, np.arange(8, 16)))
        assert line.startswith("active refused activation #1 (step 1) from 'passive_1': bad signature: not made by passive_1's roster key")


def test_an_honest_run_refuses_nothing_and_counts_the_signed_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    run = federation(COORDINATOR, lambda frame: sizes.append(len(frame)) or [frame], monkeypatch)
    run.train_batch(0, np.arange(8))
    run.evaluate(8, 8, step=0)
    assert run.channel.refusals == [] and run.channel.stats.total_bytes == sum(sizes) > 0
