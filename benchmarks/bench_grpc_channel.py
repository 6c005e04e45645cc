"""Benchmark of the gRPC channel over loopback with mutual TLS: frames per second, MB/s, bytes per layer.

Usage::

    python benchmarks/bench_grpc_channel.py [--sizes 130000,330000,6000000,60000000]
        [--seconds 3] [--compare-streaming] [--json FILE.json] [--markdown FILE.md]

docs/results/grpc_loopback.{json,md} were written with ``--compare-streaming`` and the defaults.

Two parties in two processes: this process is ``passive_1`` and sends; a child process is
``active`` and receives (:class:`~securevfl.protocols.grpc_channel.GrpcChannel` on both sides,
certificates from a development CA made for the run). For each frame size the sender sends frames
of that size one after another (a send returns once the receiver admitted the frame: TLS, gRPC,
the TLS-peer check, the signature and order checks and the payload decode are all inside), for
about ``--seconds`` seconds after two warm-up frames, split into ``--rounds`` rounds of which the
fastest gives the rates (the machine is shared: slower rounds measure the neighbours); the
receiver takes each frame from its mailbox as it comes. Payloads are random bytes in the ``ckks`` codec (opaque bytes, as CKKS ciphertexts and
keyrings travel). Frame sizes are whole frames (header and 64-byte signature included).

Bytes are reported at three layers for the sender (:class:`~securevfl.protocols.wire_bytes.WireBytes`):
the accounted frames (``TrafficStats``, what the in-process channel reports), the gRPC messages
(frames plus acknowledgements and pings) and the TCP payload the kernel counted on the sender's
connections (TLS records and HTTP/2 framing included, IP/TCP headers not).

``--compare-streaming`` adds the measurement behind the choice of methods (unary calls up to 4 MiB,
1 MiB chunks above): raw gRPC (no frames, no checks) over the same mutual TLS, one unary call per
message against a client-streaming call that sends it whole or in 1 MiB or 4 MiB chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

from securevfl.files import write_report
from securevfl import pki  # noqa: E402
from securevfl.protocols import Identity, Message, MessageKind, Roster, fresh_identities, new_session_id  # noqa: E402
from securevfl.protocols.grpc_channel import GrpcChannel  # noqa: E402
from securevfl.protocols.grpc_settings import ChannelTimeouts, PeerAddress, client_options  # noqa: E402

SENDER, RECEIVER = "passive_1", "active"
TIMEOUTS = ChannelTimeouts(receive=120.0, connect=20.0, send=120.0)
MAX_FRAME_BYTES = 128 * 1024 * 1024


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def tls_material(ca: pki.CertificateAuthority, party: str) -> pki.TLSMaterial:
    credentials = pki.issue_party_certificate(ca, party)
    key = credentials.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pki.TLSMaterial(_pem(ca.certificate), _pem(credentials.certificate), key)


def payload_for(frame_bytes: int) -> bytes:
    """Random bytes that make a frame of about ``frame_bytes`` (the header and signature take ~300 bytes)."""
    return secrets.token_bytes(max(0, frame_bytes - 300))


def frame_counts(size: int, seconds: float) -> int:
    """How many frames of ``size`` to time: about ``seconds`` at a conservative 100 MB/s, at least 3, at most 2000."""
    return max(3, min(2000, int(seconds * 100e6 / size)))


# ---------------------------------------------------------------------------------------------- receiver process


def serve(plan: dict[str, Any]) -> None:
    """The receiving party (child process): takes ``plan['frames']`` frames, then reports its byte counts."""
    ca = x509.load_pem_x509_certificate(plan["ca"].encode())
    identity = Identity.from_private_bytes(RECEIVER, bytes.fromhex(plan["key"]))
    roster = Roster({name: bytes.fromhex(key) for name, key in plan["roster"].items()})
    tls = pki.TLSMaterial(plan["ca"].encode(), plan["chain"].encode(), plan["private_key"].encode())
    with GrpcChannel(
        identity, roster, plan["session"], listen="127.0.0.1:0", tls=tls,
        peer_check=lambda pem, party: pki.verify_peer_certificate(pem, [ca], party),
        peers={SENDER: PeerAddress(plan["sender_address"], "localhost")}, timeouts=TIMEOUTS, max_frame_bytes=MAX_FRAME_BYTES,
    ) as channel:  # fmt: skip
        print(channel.port, flush=True)
        for _ in range(plan["frames"]):
            channel.receive(RECEIVER, MessageKind.ACTIVATION, SENDER)
        counts = channel.byte_counts().to_dict()
        channel.send(Message(MessageKind.GRADIENT, RECEIVER, SENDER, 0, b"", codec="ckks", meta=counts))
        channel.receive(RECEIVER, MessageKind.ACTIVATION, SENDER)  # the sender read its own counts: the connections may close
        time.sleep(0.5)  # ... once that frame's acknowledgement is out (closing at once cancelled it now and then: a failed run)


# ---------------------------------------------------------------------------------------------- sender


def measure_channel(sizes: list[int], seconds: float, rounds: int) -> dict[str, Any]:
    ca = pki.create_ca()
    identities = fresh_identities([SENDER, RECEIVER])
    roster, session = Roster.of(identities.values()), new_session_id()
    counts = {size: frame_counts(size, seconds / rounds) for size in sizes}
    runs: list[dict[str, Any]] = []
    with GrpcChannel(
        identities[SENDER], roster, session, listen="127.0.0.1:0", tls=tls_material(ca, SENDER),
        peer_check=lambda pem, party: pki.verify_peer_certificate(pem, [ca.certificate], party),
        timeouts=TIMEOUTS, max_frame_bytes=MAX_FRAME_BYTES,
    ) as channel:  # fmt: skip
        receiver_tls = tls_material(ca, RECEIVER)
        plan = {
            "key": identities[RECEIVER].private_bytes().hex(), "session": session,
            "roster": {name: identity.public_key.hex() for name, identity in identities.items()},
            "ca": receiver_tls.root_certificates.decode(), "chain": receiver_tls.certificate_chain.decode(),
            "private_key": receiver_tls.private_key.decode(), "sender_address": f"127.0.0.1:{channel.port}",
            "frames": sum(2 + n * rounds for n in counts.values()),
        }  # fmt: skip
        child = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(json.dumps(plan) + "\n")
            child.stdin.close()
            channel.add_peer(RECEIVER, PeerAddress(f"127.0.0.1:{int(child.stdout.readline())}", "localhost"))
            channel.wait_for_peers()
            step = 0
            for size in sizes:
                payload = payload_for(size)
                for _ in range(2):  # warm-up
                    channel.send(Message(MessageKind.ACTIVATION, SENDER, RECEIVER, step, payload, codec="ckks"))
                    step += 1
                before = channel.byte_counts()
                fastest = float("inf")  # seconds of the best round
                for _ in range(rounds):
                    started = time.perf_counter()
                    for _ in range(counts[size]):
                        channel.send(Message(MessageKind.ACTIVATION, SENDER, RECEIVER, step, payload, codec="ckks"))
                        step += 1
                    fastest = min(fastest, time.perf_counter() - started)
                after = channel.byte_counts()
                runs.append(row(counts[size], rounds, fastest, before.to_dict(), after.to_dict()))
                print_row(runs[-1])
            report = channel.receive(SENDER, MessageKind.GRADIENT, RECEIVER)
            receiver_counts = dict(report.meta)
            sender_counts = channel.byte_counts().to_dict()  # before the receiver may close its connections
            channel.send(Message(MessageKind.ACTIVATION, SENDER, RECEIVER, step, b"", codec="ckks"))
        finally:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
    return {"runs": runs, "totals": {"sender": sender_counts, "receiver": receiver_counts}}


def row(frames: int, rounds: int, elapsed: float, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Rates of the best round (``frames`` frames in ``elapsed`` seconds); bytes over all rounds."""
    delta = {key: (after[key] - before[key]) if after[key] is not None and before[key] is not None else None for key in after}
    accounted = int(after["accounted_sent"] - before["accounted_sent"])
    return {
        "frame_bytes": accounted // (frames * rounds),
        "frames": frames,
        "rounds": rounds,
        "seconds": round(elapsed, 4),
        "frames_per_second": round(frames / elapsed, 1),
        "megabytes_per_second": round(accounted / rounds / elapsed / 1e6, 1),
        "milliseconds_per_frame": round(1000 * elapsed / frames, 3),
        "accounted_sent": accounted,
        "grpc_sent": delta["grpc_sent"],
        "tcp_sent": delta["tcp_sent"],
        "tcp_received": delta["tcp_received"],
        "tcp_overhead_percent": round(100 * (delta["tcp_sent"] / accounted - 1), 3) if delta["tcp_sent"] is not None else None,
    }


def print_row(run: dict[str, Any]) -> None:
    print(
        f"{run['frame_bytes']:>12,} B x {run['frames']:>5}: {run['frames_per_second']:>8.1f} frames/s "
        f"{run['megabytes_per_second']:>7.1f} MB/s {run['milliseconds_per_frame']:>8.2f} ms/frame "
        f"tcp +{run['tcp_overhead_percent']}%",
        flush=True,
    )


# ---------------------------------------------------------------------------------------------- unary vs streaming


def _identity(data: bytes) -> bytes:
    return data


def raw_server(tls: pki.TLSMaterial) -> tuple[grpc.Server, int]:
    # raw gRPC with the whole frame limit (the channel's own servers cap unary messages at UNARY_FRAME_BYTES)
    options = [("grpc.max_receive_message_length", MAX_FRAME_BYTES), ("grpc.max_send_message_length", MAX_FRAME_BYTES), ("grpc.so_reuseport", 0)]
    server = grpc.server(ThreadPoolExecutor(4), options=options)

    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        return len(request).to_bytes(8, "little")

    def stream(chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        return len(b"".join(chunks)).to_bytes(8, "little")

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, _identity, _identity),
        "Stream": grpc.stream_unary_rpc_method_handler(stream, _identity, _identity),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Raw", handlers),))
    credentials = grpc.ssl_server_credentials([(tls.private_key, tls.certificate_chain)], tls.root_certificates, require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, port


def serve_raw(plan: dict[str, Any]) -> None:
    """The raw gRPC server (child process) of the unary-vs-streaming comparison; stops when stdin closes."""
    tls = pki.TLSMaterial(plan["ca"].encode(), plan["chain"].encode(), plan["private_key"].encode())
    server, port = raw_server(tls)
    print(port, flush=True)
    sys.stdin.read()  # the parent closes stdin when it is done (or dies)
    server.stop(1).wait(5)


def measure_streaming(sizes: list[int], seconds: float, rounds: int) -> list[dict[str, Any]]:
    ca = pki.create_ca()
    server_tls, client_tls = tls_material(ca, RECEIVER), tls_material(ca, SENDER)
    plan = {"ca": server_tls.root_certificates.decode(), "chain": server_tls.certificate_chain.decode(), "private_key": server_tls.private_key.decode()}
    child = subprocess.Popen([sys.executable, __file__, "--serve-raw"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    rows: list[dict[str, Any]] = []
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(plan) + "\n")
        child.stdin.flush()
        port = int(child.stdout.readline())
        credentials = grpc.ssl_channel_credentials(client_tls.root_certificates, client_tls.private_key, client_tls.certificate_chain)
        with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=client_options(MAX_FRAME_BYTES, "localhost")) as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            unary = channel.unary_unary("/bench.Raw/Unary", _identity, _identity)
            stream = channel.stream_unary("/bench.Raw/Stream", _identity, _identity)
            for size in sizes:
                data = payload_for(size)
                methods: dict[str, Callable[[], bytes]] = {
                    "unary": partial(unary, data, timeout=120),
                    "stream, one message": partial(_stream_in_chunks, stream, data, len(data)),  # the transport's calls since 2026-11-27
                    "stream 1 MiB chunks": partial(_stream_in_chunks, stream, data, 1 << 20),
                    "stream 4 MiB chunks": partial(_stream_in_chunks, stream, data, 4 << 20),
                }
                frames = frame_counts(size, seconds / rounds)
                best = dict.fromkeys(methods, 0.0)  # messages per second, best round
                for _ in range(rounds):  # methods interleaved, so a change of the machine's load hits them alike
                    for method, call in methods.items():
                        call()
                        started = time.perf_counter()
                        for _ in range(frames):
                            if int.from_bytes(call(), "little") != len(data):
                                raise AssertionError("the server received a different number of bytes")
                        best[method] = max(best[method], frames / (time.perf_counter() - started))
                for method, rate in best.items():
                    rows.append({"bytes": len(data), "method": method, "messages": frames, "rounds": rounds,
                                 "messages_per_second": round(rate, 1), "megabytes_per_second": round(len(data) * rate / 1e6, 1)})  # fmt: skip
                    print(f"{len(data):>12,} B {method:>20}: {rate:>8.1f} msg/s {len(data) * rate / 1e6:>7.1f} MB/s", flush=True)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
    return rows


def _stream_in_chunks(stream: grpc.StreamUnaryMultiCallable, data: bytes, size: int) -> bytes:
    return stream(_chunks(data, size), timeout=120)  # type: ignore[no-any-return]


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start : start + size])


# ---------------------------------------------------------------------------------------------- report


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        "# gRPC channel over loopback with mutual TLS",
        "",
        f"`benchmarks/bench_grpc_channel.py`: `{SENDER}` sends to `active` in another process, one frame after another, "
        f"each send returning once the receiver admitted the frame (TLS-peer check, Ed25519 signature, order, decode). "
        f"grpcio {report['grpcio']}, Python {machine['python']}, {machine['cpus']} cores shared by both processes "
        f"(load average {machine['load_average_1min']} at the start: the machine was shared with other work).",
        "",
        "Rates are the fastest of the rounds; bytes are summed over all rounds.",
        "",
        "| frame bytes | frames × rounds | frames/s | MB/s | ms/frame | accounted bytes | gRPC bytes | TCP bytes sent | TCP overhead |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in report["channel"]["runs"]:
        lines.append(
            f"| {run['frame_bytes']:,} | {run['frames']} × {run.get('rounds', 1)} | {run['frames_per_second']:.1f} | {run['megabytes_per_second']:.1f} | "
            f"{run['milliseconds_per_frame']:.2f} | {run['accounted_sent']:,} | {run['grpc_sent']:,} | {run['tcp_sent']:,} | "
            f"+{run['tcp_overhead_percent']:.2f}% |"
        )
    totals = report["channel"]["totals"]
    lines += [
        "",
        "Accounted bytes are the frames (`TrafficStats`, the numbers the in-process channel reports); gRPC bytes are "
        "every message the sender's gRPC layer serialized (the frames; acknowledgements are empty); TCP bytes are the "
        "payload the kernel counted on the sender's connection (`TCP_INFO` bytes_acked): TLS 1.3 records "
        "(about 22 bytes per 16 KiB record), HTTP/2 DATA frame headers (9 bytes per 16 KiB frame), the 5-byte gRPC "
        "message prefix and per-call headers, window updates and pings; IP and TCP headers are not included.",
        "",
        f"Whole run, sender: {totals['sender']['accounted_sent']:,} accounted, {totals['sender']['grpc_sent']:,} gRPC, "
        f"{totals['sender']['tcp_sent']:,} TCP bytes sent, {totals['sender']['tcp_received']:,} TCP bytes received "
        f"(acknowledgements, HTTP/2 window updates, the handshake). Receiver: {totals['receiver']['grpc_received']:,} gRPC bytes "
        f"received, {totals['receiver']['tcp_received']:,} TCP bytes received.",
        "",
    ]
    if report.get("streaming"):
        lines += [
            "## Why unary calls for the frames of a step, chunks for the largest",
            "",
            "Raw gRPC over the same mutual TLS (no frames, no checks), server in another process: one unary call per "
            "message against a client-streaming call carrying it in chunks; each method's best of "
            f"{report['streaming'][0].get('rounds', 1)} interleaved rounds (the machine was shared).",
            "",
            "| message bytes | method | messages/s | MB/s |",
            "|---:|---|---:|---:|",
        ]
        lines += [f"| {r['bytes']:,} | {r['method']} | {r['messages_per_second']:.1f} | {r['megabytes_per_second']:.1f} |" for r in report["streaming"]]
        lines += [
            "",
            streaming_verdict(report["streaming"], report["channel"]["runs"]),
            "",
        ]
    return "\n".join(lines)


def streaming_verdict(rows: list[dict[str, Any]], channel_runs: list[dict[str, Any]]) -> str:
    """What the comparison says, from its numbers: unary against the better chunk size, per message size."""
    by_size: dict[int, dict[str, float]] = {}
    for r in rows:
        by_size.setdefault(r["bytes"], {})[r["method"]] = r["megabytes_per_second"]
    best_stream = {size: max(v for k, v in rates.items() if k != "unary") for size, rates in by_size.items()}
    ratios = "; ".join(f"{size / 1e6:.2g} MB: {by_size[size]['unary'] / best_stream[size]:.2f}" for size in sorted(by_size))
    largest = max(by_size)
    saved = largest / 1e6 / by_size[largest]["unary"] - largest / 1e6 / best_stream[largest]  # seconds per message
    channel_largest = max(channel_runs, key=lambda run: run["frame_bytes"])
    return (
        f"Unary MB/s divided by the best streaming variant's, per message size: {ratios} (above 1: unary is "
        "faster). The frames of a training step (130-330 KB) are much faster as one unary call each: a stream, even of "
        "one message, costs about twice the time per call. For the largest messages streaming in chunks is about as "
        f"fast or ahead (at {largest / 1e6:.2g} MB it saves about {max(saved, 0.0):.2f} s per message in raw gRPC, against "
        f"the {channel_largest['milliseconds_per_frame'] / 1000:.2f} s the channel spends per frame of that size), and "
        "only a stream lets the server check the TLS peer before it reads the message: gRPC reads a unary message in "
        "full before the handler runs, so a holder of any certificate of the CA could make a party buffer whole frames "
        "(a red-team pass, 2026-11-27: 3.4 GB). So the transport sends a frame of at most 4 MiB (every per-step message) "
        "as one unary call, which the server caps at 4 MiB, and a larger one (a CKKS keyring, once per run) as a stream "
        "of 1 MiB chunks read only after the peer is admitted."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="130000,330000,6000000,60000000", help="frame sizes in bytes, comma-separated")
    parser.add_argument("--seconds", type=float, default=3.0, help="about how long to send frames of each size")
    parser.add_argument("--compare-streaming", action="store_true", help="also measure raw unary against client-streaming gRPC")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per frame size (the tables show the best round's rate)")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--markdown", type=Path, help="write the table as Markdown")
    parser.add_argument("--markdown-from", type=Path, help="only rewrite --markdown from a JSON report written earlier")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-raw", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(json.loads(sys.stdin.readline()))
        return 0
    if args.serve_raw:
        serve_raw(json.loads(sys.stdin.readline()))
        return 0
    if args.markdown_from:
        if not args.markdown:
            parser.error("--markdown-from needs --markdown")
        args.markdown.write_text(markdown(json.loads(args.markdown_from.read_text())))
        print(f"wrote {args.markdown}")
        return 0
    sizes = [int(size) for size in args.sizes.split(",")]
    if any(size > MAX_FRAME_BYTES for size in sizes):
        parser.error(f"frame sizes must be at most {MAX_FRAME_BYTES:,} bytes")
    report: dict[str, Any] = {
        "grpcio": grpc.__version__,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
        "channel": measure_channel(sizes, args.seconds, args.rounds),
    }
    if args.compare_streaming:
        report["streaming"] = measure_streaming(sizes, args.seconds, args.rounds)
    write_report(report, args.json, markdown(report), args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
