"""Network attacks on the channel of a small federation, and what the signed frames cost.

Every attack puts a network attacker between the parties of a one-key-holder digits run
(``examples/digits_ckks_coordinator.toml``: a coordinator holds the CKKS key; 48 training and 16
test samples, batch 16, 3 training steps and one evaluation) from the run's very first frame
on, through the in-process channel's ``interceptor`` and ``inject`` (``protocols/channel.py``).
The attacker holds its own Ed25519 key, never a party's. An attack is *refused* when a receiver
refused its frame (the run then either stops at the receive that waited for that frame, with the
refusal's line, or goes on without it); *accepted* when the run used the attacker's frame.

The cost part times Ed25519 signing and verification of the run's own frames and compares the
frame bytes with wire version 1 (no session, sequence or signature; a 4-byte CRC).

Writes ``docs/results/channel_attacks/results.json`` and ``results.md``.

    python examples/channel_attacks.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from securevfl.config import RunConfig, load_config
from securevfl.crypto import SecretKeyring, get_preset
from securevfl.data import VFLDataset, load_dataset, partition_columns
from securevfl.federation import build_federation
from securevfl.files import atomic_write_text
from securevfl.protocols import (
    FrameAuthenticationError,
    FrameSigner,
    Identity,
    InProcessChannel,
    Interceptor,
    Message,
    MessageKind,
    ProtocolError,
    Roster,
    parse_frame,
)
from securevfl.protocols.wire import encode_raw
from securevfl.scheduler import Federation

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "channel_attacks"
CONFIG = ROOT / "examples" / "digits_ckks_coordinator.toml"
OVERRIDES = ["data.train_limit=48", "data.test_limit=16", "train.batch_size=16", "train.eval_batch_size=16", "train.progress=false"]
STEPS = 3
#: Wire version 1 framed the same header and body between an 18-byte prefix and a 4-byte CRC32.
V1_PREFIX_BYTES, V1_CRC_BYTES = 18, 4

MALLORY = Identity.generate("mallory")
"""The network attacker's own key (on no roster)."""

#: An attack: given the channel it sits on, the interceptor it installs.
Attack = Callable[[InProcessChannel], Interceptor]


# ---------------------------------------------------------------------------------------------- the attacker's tools
def impostor(name: str) -> Identity:
    """The attacker signing in ``name``'s name with its own key."""
    return Identity.from_private_bytes(name, MALLORY.private_bytes())


def forged(channel: InProcessChannel, message: Message, as_party: str | None = None) -> bytes:
    """A well-formed frame of ``message`` signed by the attacker (claiming ``message.sender``)."""
    return FrameSigner(impostor(as_party or message.sender), channel.session).seal(message, channel.codecs)


def rebuilt(frame: bytes, body: bytes, key: Identity | None) -> bytes:
    """``frame`` carrying another body, with its original signature (``key=None``) or re-signed by ``key``."""
    parsed = parse_frame(frame)
    unsigned = encode_raw(parsed.header_bytes, body, session=parsed.header.session, sequence=parsed.header.sequence)
    return unsigned + (parsed.signature if key is None else key.sign(unsigned))


def route(frame: bytes) -> tuple[MessageKind, str, str, int]:
    header = parse_frame(frame).header
    return header.kind, header.sender, header.receiver, header.step


def on(kind: MessageKind, sender: str, receiver: str, rewrite: Callable[[bytes], Iterable[bytes]]) -> Interceptor:
    """Rewrite the frames of ``kind`` from ``sender`` to ``receiver``; deliver every other frame as sent."""
    return lambda frame: rewrite(frame) if route(frame)[:3] == (kind, sender, receiver) else [frame]


def attackers_keyring() -> bytes:
    return SecretKeyring.generate(get_preset("compute")).public_keyring().to_bytes()


# ---------------------------------------------------------------------------------------------- the attacks
def substitute_key(channel: InProcessChannel) -> Interceptor:
    keyring = attackers_keyring()
    return on(MessageKind.PUBLIC_KEY, "coordinator", "passive_1",
              lambda frame: [forged(channel, Message(MessageKind.PUBLIC_KEY, "coordinator", "passive_1", 0, keyring, codec="key"))])


def forge_gradient(channel: InProcessChannel) -> Interceptor:
    def forge(frame: bytes) -> list[bytes]:
        _, sender, receiver, step = route(frame)
        return [forged(channel, Message(MessageKind.GRADIENT, sender, receiver, step, parse_frame(frame).body[::-1], codec="ckks"))]

    return on(MessageKind.GRADIENT, "active", "passive_1", forge)


def forge_decrypt_request(channel: InProcessChannel) -> Interceptor:
    """A decryption request in passive_1's name, injected next to its first genuine one."""
    def inject(frame: bytes) -> list[bytes]:
        if not injected:
            injected.append(frame)
            channel.inject("coordinator", forged(channel, Message(MessageKind.DECRYPT_REQUEST, "passive_1", "coordinator", route(frame)[3], parse_frame(frame).body, codec="ckks", meta=parse_frame(frame).header.meta)))
        return [frame]

    injected: list[bytes] = []
    return on(MessageKind.DECRYPT_REQUEST, "passive_1", "coordinator", inject)


def replay_activation(channel: InProcessChannel) -> Interceptor:
    recorded: list[bytes] = []

    def replay(frame: bytes) -> list[bytes]:
        recorded.append(frame)
        return [recorded[0]]  # step 0's encrypted activations in place of every later one

    return on(MessageKind.ACTIVATION, "passive_1", "active", replay)


def reorder_gradients(channel: InProcessChannel) -> Interceptor:
    held: list[bytes] = []

    def reorder(frame: bytes) -> list[bytes]:
        kind, sender, receiver, _ = route(frame)
        if (sender, receiver) != ("active", "passive_1"):
            return [frame]
        if kind == MessageKind.GRADIENT:
            held.append(frame)
            return []
        return [frame, *held] if kind == MessageKind.GRADIENT_BM else [frame]

    return reorder


def drop_gradient(channel: InProcessChannel) -> Interceptor:
    return on(MessageKind.GRADIENT, "active", "passive_1", lambda frame: [])


def redirect_gradient(channel: InProcessChannel) -> Interceptor:
    """passive_2's gradient frame is also delivered to passive_1."""
    def copy(frame: bytes) -> list[bytes]:
        channel.inject("passive_1", frame)
        return [frame]

    return on(MessageKind.GRADIENT, "active", "passive_2", copy)


def splice(key: Identity | None) -> Attack:
    def attack(channel: InProcessChannel) -> Interceptor:
        other: list[bytes] = []

        def rewrite(frame: bytes) -> list[bytes]:
            kind, sender, _, step = route(frame)
            if kind != MessageKind.ACTIVATION:
                return [frame]
            if sender == "passive_2" and not other:
                other.append(parse_frame(frame).body)
            if sender == "passive_1" and step == 1:
                return [rebuilt(frame, other[0], key)]
            return [frame]

        return rewrite

    return attack


ATTACKS: dict[str, tuple[str, Attack]] = {
    "substituted public key": ("the coordinator's CKKS public keyring to passive_1 replaced by the attacker's, in the coordinator's name", substitute_key),
    "forged gradient": ("active -> passive_1 gradient replaced by the attacker's ciphertext, in the active party's name", forge_gradient),
    "forged decryption request": ("an extra decrypt request in passive_1's name injected to the coordinator", forge_decrypt_request),
    "replayed activation": ("passive_1's encrypted activations of step 0 replayed in place of step 1's", replay_activation),
    "reordered gradients": ("active -> passive_1 feature-major gradient held back and delivered after the batch-major one", reorder_gradients),
    "dropped gradient": ("active -> passive_1 gradient dropped", drop_gradient),
    "redirected gradient": ("passive_2's gradient frame also delivered to passive_1", redirect_gradient),
    "spliced ciphertext": ("passive_2's encrypted activations put into passive_1's frame of step 1, original signature kept", splice(None)),
    "spliced ciphertext, re-signed": ("the same, re-signed by the attacker's key", splice(MALLORY)),
}


# ---------------------------------------------------------------------------------------------- running them
def federation_under(attack: Attack | None, config: RunConfig, dataset: VFLDataset, channels: list[InProcessChannel]) -> Federation:
    """build_federation with the attacker on the wire from the key set-up on.

    build_federation exchanges the public keys before it returns, so the attacker is installed
    when that set-up starts (the only place this study reaches into the build).
    """
    connect = Federation.connect

    def connect_through(federation: Federation) -> None:
        channels.append(federation.channel)
        if attack is not None:
            federation.channel.interceptor = attack(federation.channel)
        connect(federation)

    with mock.patch.object(Federation, "connect", connect_through):
        return build_federation(config, dataset, partition_columns(dataset, config.parties))


def run(name: str, attack: Attack | None, config: RunConfig, dataset: VFLDataset) -> dict[str, Any]:
    channels: list[InProcessChannel] = []
    row: dict[str, Any] = {"attack": name}
    try:
        federation = federation_under(attack, config, dataset, channels)
        batch, n_train = config.train.batch_size, len(dataset.y_train)
        for step in range(STEPS):
            federation.train_batch(step, np.arange(step * batch, min((step + 1) * batch, n_train)))
        federation.evaluate(len(dataset.y_test), config.train.eval_batch_size, step=STEPS - 1)
    except FrameAuthenticationError as exc:
        row.update(outcome="refused", run="stopped at the receive that waited for the frame", error=str(exc))
    except ProtocolError as exc:
        row.update(outcome="failed otherwise", run="stopped", error=str(exc))
    else:
        refusals = channels[0].refusals
        row.update(
            outcome=("refused" if refusals else "accepted") if attack is not None else f"{len(refusals)} frames refused",
            run="completed without the attacker's frame" if refusals else "completed",
            error=str(refusals[0].error) if refusals else "",
        )
        if federation.key_holder is not None:
            row["key_holder_refusals"] = len(federation.key_holder.service.refusals)
    row["frames_refused"] = len(channels[0].refusals) if channels else 0
    return row


# ---------------------------------------------------------------------------------------------- costs
def costs(config: RunConfig, dataset: VFLDataset, repeats: int) -> dict[str, Any]:
    """Sign/verify time and added bytes for the frames of an honest run's first training step."""
    frames: list[bytes] = []
    federation = federation_under(lambda channel: lambda frame: frames.append(frame) or [frame], config, dataset, [])
    setup = len(frames)
    started = time.perf_counter()
    federation.train_batch(0, np.arange(config.train.batch_size))
    step_seconds = time.perf_counter() - started
    timing_key = Identity.generate("timing")  # the same kind of key as every party's: Ed25519 costs do not depend on it
    timing_roster = Roster.of([timing_key])
    by_kind: dict[str, dict[str, Any]] = {}
    step_auth_seconds = 0.0
    for index, frame in enumerate(frames):
        parsed = parse_frame(frame)
        header = parsed.header
        signature = timing_key.sign(parsed.signed)
        sign = _median_seconds(lambda: timing_key.sign(parsed.signed), repeats)
        verify = _median_seconds(lambda: timing_roster.verify("timing", parsed.signed, signature), repeats)
        if index >= setup:
            step_auth_seconds += sign + verify
        v1_bytes = V1_PREFIX_BYTES + len(parsed.header_bytes) + len(parsed.body) + V1_CRC_BYTES  # the same header and body
        entry = by_kind.setdefault(str(header.kind), {"frames": 0, "bytes": [], "added": [], "sign": [], "verify": []})
        entry["frames"] += 1
        entry["bytes"].append(len(frame))
        entry["added"].append(len(frame) - v1_bytes)
        entry["sign"].append(sign)
        entry["verify"].append(verify)
    kinds = {
        kind: {
            "frames": e["frames"],
            "frame_bytes": int(statistics.median(e["bytes"])),
            "bytes_added": int(statistics.median(e["added"])),
            "bytes_added_percent": round(100 * statistics.median(e["added"]) / statistics.median(e["bytes"]), 4),
            "sign_microseconds": round(1e6 * statistics.median(e["sign"]), 1),
            "verify_microseconds": round(1e6 * statistics.median(e["verify"]), 1),
        }
        for kind, e in sorted(by_kind.items())
    }
    return {
        "frames": {"key_setup": setup, "first_training_step": len(frames) - setup},
        "by_kind": kinds,
        "first_step_seconds": round(step_seconds, 4),
        "first_step_sign_and_verify_seconds": round(step_auth_seconds, 6),
        "first_step_sign_and_verify_percent": round(100 * step_auth_seconds / step_seconds, 3),
        "repeats": repeats,
    }


def _median_seconds(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------- report
def markdown(rows: list[dict[str, Any]], cost: dict[str, Any]) -> str:
    lines = [
        "# Channel attacks against signed frames",
        "",
        "`python examples/channel_attacks.py`: a one-key-holder digits run (`examples/digits_ckks_coordinator.toml`: a",
        f"coordinator holds the CKKS key; 48 training and 16 test samples, batch 16, {STEPS} training steps and one",
        "evaluation) with a network attacker on the in-process channel from its first frame on",
        "(`InProcessChannel.interceptor` / `inject`). The attacker has its own Ed25519 key, never a party's.",
        "*refused*: a receiver refused the attacker's frame; *accepted*: the run used it.",
        "",
        "| attack | what the attacker does | outcome | run | error line |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        what = ATTACKS[row["attack"]][0] if row["attack"] in ATTACKS else "nothing"
        error = f"`{row['error']}`" if row["error"] else "—"
        lines.append(f"| {row['attack']} | {what} | **{row['outcome']}** | {row['run']} | {error} |")
    lines += [
        "",
        "A refused frame is dropped and logged; the receive that waits for it fails with the line above. Where the",
        "genuine frame still arrives (an injected extra frame) the run completes and the key holder never sees the",
        "forgery. Lost frames are not made up for: after a dropped or reordered frame the link from that sender stays",
        "closed for the session. A frame recorded in another run is refused as well: each run draws fresh identity keys,",
        "so its signature does not verify; where a deployment keeps its keys across runs, the session id refuses it",
        "(`tests/test_protocols_framing.py`).",
        "",
        "## Cost",
        "",
        f"Frames of an honest run of the same configuration: {cost['frames']['key_setup']} in the key set-up,",
        f"{cost['frames']['first_training_step']} in the first training step. Sign and verify are Ed25519 (`cryptography`)",
        f"over the whole frame, median of {cost['repeats']} repetitions on this machine; bytes added are relative to wire",
        "version 1 (no session id, sequence number or signature, a 4-byte CRC).",
        "",
        "| kind | frames | frame bytes | bytes added | added % | sign µs | verify µs |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, c in cost["by_kind"].items():
        lines.append(
            f"| {kind} | {c['frames']} | {c['frame_bytes']:,} | {c['bytes_added']} | {c['bytes_added_percent']} | "
            f"{c['sign_microseconds']} | {c['verify_microseconds']} |"
        )
    typical = cost["by_kind"]["activation"]
    lines += [
        "",
        f"A typical CKKS message (a passive's encrypted activations, {typical['frame_bytes']:,} bytes): signing takes "
        f"{typical['sign_microseconds'] / 1000:.2f} ms, verifying {typical['verify_microseconds'] / 1000:.2f} ms, and the frame "
        f"grows by {typical['bytes_added']} bytes ({typical['bytes_added_percent']} %): the 64-byte signature, the 16-byte "
        "session id and the 8-byte sequence number, less the 4-byte CRC, whatever the frame. Both times grow with the",
        "frame (Ed25519 hashes all of it), so the public keyring announcements (megabytes, once per run) cost the most.",
        "",
        f"First training step: {cost['first_step_seconds']} s in all, of which signing and verifying its frames take "
        f"{cost['first_step_sign_and_verify_seconds'] * 1000:.2f} ms ({cost['first_step_sign_and_verify_percent']} %).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--repeats", type=int, default=50, help="timing repetitions per frame")
    args = parser.parse_args(argv)
    config = load_config(CONFIG, OVERRIDES)
    dataset = load_dataset(config.data)
    rows = [run("none (honest run)", None, config, dataset)]
    for name, (_, attack) in ATTACKS.items():
        print("attack:", name, flush=True)
        rows.append(run(name, attack, config, dataset))
        print("  ->", rows[-1]["outcome"], rows[-1]["error"], flush=True)
    cost = costs(config, dataset, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "results.json", json.dumps({"config": str(CONFIG.relative_to(ROOT)), "overrides": OVERRIDES, "steps": STEPS, "attacks": rows, "cost": cost}, indent=2) + "\n")
    atomic_write_text(args.out / "results.md", markdown(rows, cost))
    print(f"wrote {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
