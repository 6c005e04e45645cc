"""One OS process per party over gRPC (mutual TLS, 127.0.0.1) next to the in-process run of the same configuration,
per scheme, on digits and on MNIST.

Usage::

    SECUREVFL_DATA_DIR=/path/to/data python examples/multiprocess_runs.py \\
        [--only digits/plain,mnist/ckks/active,...] [--work runs/multiprocess_runs] \\
        [--json FILE.json] [--markdown FILE.md]

docs/results/transport_runs/transport_runs.{json,md} were written with the defaults (the command is
in the report). MNIST is read from ``--mnist-dir`` (default ``$SECUREVFL_DATA_DIR/mnist``).

Every configuration is an example configuration (``examples/digits_*.toml``, ``examples/mnist_*.toml``)
trained twice: ``transport.kind = "inprocess"`` (every party in this interpreter) and
``transport.kind = "grpc"`` (``securevfl train --set transport.kind=grpc``: one ``securevfl party``
process per party, :mod:`securevfl.launcher`). Sizes, chosen so the whole script stays within about
35 minutes of a shared 2-core machine:

* digits (the whole data set): plaintext and the receiver scheme 5 epochs; the one-key-holder
  schemes (``ckks/active``, ``ckks/coordinator``: homomorphic backpropagation, about 100x slower)
  2 epochs;
* MNIST: plaintext and the receiver scheme the whole data set (60,000 train / 10,000 test), 2
  epochs (about 1 and 8 s per epoch in one process); the one-key-holder schemes 2,000 train /
  500 test samples, 2 epochs (about 0.7 s per step: a whole epoch would take ~11 minutes per run).

For each pair the report gives the final accuracy of both, the largest absolute difference of
every history metric over all epochs (plaintext must be exactly 0; CKKS differs by its noise,
which is fresh randomness in every run, so two in-process CKKS runs differ too), whether the
messages per kind are equal (the gRPC run sends extra ``done`` frames at the end, counted
separately), the accounted bytes of both runs and the TCP bytes of the gRPC run, and wall
times (the gRPC wall time includes starting one interpreter per party).

Resumable: each run writes ``<work>/<config>/<transport>/result.json`` and a ``wall.json`` beside
it; a run whose two files exist is read, not repeated. A run that fails is reported with its error
line (for the gRPC run, the launcher's line naming the party and that party's last error line),
not retried within the invocation and never hidden.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from securevfl.launcher import TRANSPORT_KINDS
from securevfl.config import RunConfig, load_config  # noqa: E402
from securevfl.errors import SecureVFLError  # noqa: E402
from securevfl.files import atomic_write_text, write_report  # noqa: E402
from securevfl.training import run_training  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent
COMMON = ["train.progress=false", "train.checkpoint=false"]
MNIST_FULL = ["train.epochs=2"]
MNIST_TINY = ["data.train_limit=2000", "data.test_limit=500", "train.epochs=2"]
#: config key -> (example, overrides); the sizes of the module docstring
CONFIGS: dict[str, tuple[str, list[str]]] = {
    "digits/plain": ("digits_plain.toml", ["train.epochs=5"]),
    "digits/ckks/receiver": ("digits_ckks.toml", ["train.epochs=5"]),
    "digits/ckks/active": ("digits_ckks_active.toml", ["train.epochs=2"]),
    "digits/ckks/coordinator": ("digits_ckks_coordinator.toml", ["train.epochs=2"]),
    "mnist/plain": ("mnist_plain_sum.toml", MNIST_FULL),
    "mnist/ckks/receiver": ("mnist_ckks_receiver.toml", MNIST_FULL),
    "mnist/ckks/active": ("mnist_ckks_active.toml", MNIST_TINY),
    "mnist/ckks/coordinator": ("mnist_ckks_coordinator.toml", MNIST_TINY),
}
TRANSPORTS = ("inprocess", "grpc")
WALL_NAME = "wall.json"


def build_config(key: str, transport: str, extra: list[str]) -> RunConfig:
    example, overrides = CONFIGS[key]
    return load_config(EXAMPLES / example, [*COMMON, *overrides, *extra, f"transport.kind={transport}"])


def one_run(key: str, transport: str, config: RunConfig, out: Path, overrides: list[str], *, log: Any = print) -> dict[str, Any]:
    """The run's result and wall seconds (read back if this run was finished earlier with the same overrides), or its error line."""
    result_path, wall_path = out / "result.json", out / WALL_NAME
    if result_path.is_file() and wall_path.is_file():
        earlier = json.loads(wall_path.read_text())
        if earlier.get("overrides") == overrides:
            log(f"{key} {transport}: done earlier, read from {out}")
            return {"result": json.loads(result_path.read_text()), "wall_seconds": earlier["wall_seconds"], "resumed": True}
        log(f"{key} {transport}: the run in {out} had other settings ({earlier.get('overrides')}); running again")
    log(f"{key} {transport}: running into {out}")
    started = time.perf_counter()
    try:
        result = run_training(config, out_dir=out, overwrite=True)
    except Exception as error:  # noqa: BLE001 - every failure is reported, in one line, next to the other runs
        line = f"{type(error).__name__}: {' '.join(str(error).split())}"
        log(f"{key} {transport}: FAILED after {time.perf_counter() - started:.1f} s: {line}")
        return {"error": line, "wall_seconds": round(time.perf_counter() - started, 3)}
    wall = round(time.perf_counter() - started, 3)
    atomic_write_text(wall_path, json.dumps({"wall_seconds": wall, "overrides": overrides}) + "\n")
    log(f"{key} {transport}: {wall:.1f} s, accuracy {result['main_accuracy']:.4f}")
    return {"result": result, "wall_seconds": wall, "resumed": False}


def history_differences(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, float] | None:
    """Max absolute difference per history metric over all epochs; None if the epochs or metrics differ."""
    if [e.get("epoch") for e in mine] != [e.get("epoch") for e in theirs] or any(set(a) != set(b) for a, b in zip(mine, theirs)):
        return None
    differences: dict[str, float] = {}
    for a, b in zip(mine, theirs):
        for metric, value in b.items():
            if metric == "epoch" or not isinstance(value, (int, float)) or not isinstance(a[metric], (int, float)):
                continue
            differences[metric] = max(differences.get(metric, 0.0), abs(float(a[metric]) - float(value)))
    return differences


def tcp_total(wire: dict[str, Any]) -> int | None:
    """The larger of the parties' summed TCP sent and received bytes (each a lower bound of the same loopback total)."""
    sent, received = wire.get("tcp_sent"), wire.get("tcp_received")
    return None if sent is None or received is None else max(int(sent), int(received))


def complete_tcp(parties: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """TCP bytes sent against accounted bytes over the parties whose TCP count is complete.

    A party whose TCP bytes sent are below its gRPC bytes lost connections before it read its
    counters (a peer that finished first closed them): its count is short and left out.
    """
    complete, short = [], []
    for name, party in parties.items():
        wire = party.get("wire_bytes") or {}
        ok = wire.get("tcp_sent") is not None and int(wire["tcp_sent"]) >= int(wire.get("grpc_sent", 0))
        (complete if ok else short).append(name)
    sent = sum(int(parties[name]["wire_bytes"]["tcp_sent"]) for name in complete)
    accounted = sum(int(parties[name]["wire_bytes"]["accounted_sent"]) for name in complete)
    return {
        "tcp_complete_parties": complete,
        "tcp_short_parties": {name: (parties[name].get("wire_bytes") or {}).get("tcp_sent") for name in short},
        "tcp_complete_sent": sent,
        "tcp_complete_accounted": accounted,
        "tcp_overhead_percent": round(100 * (sent / accounted - 1), 2) if accounted else None,
    }


def compare(key: str, config: RunConfig, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One row of the report: the two runs side by side."""
    row: dict[str, Any] = {
        "config": key,
        "example": CONFIGS[key][0],
        "overrides": CONFIGS[key][1],
        "data": config.data.name,
        "train_limit": config.data.train_limit,
        "test_limit": config.data.test_limit,
        "epochs": config.train.epochs,
        "scheme": None,
        "errors": {t: runs[t]["error"] for t in TRANSPORTS if "error" in runs[t]},
        "wall_seconds": {t: runs[t]["wall_seconds"] for t in TRANSPORTS},
    }
    if row["errors"]:
        row["status"] = "failed"
        for transport in TRANSPORTS:
            if "result" in runs[transport]:
                row[f"{transport}_accuracy"] = runs[transport]["result"]["main_accuracy"]
        return row
    inproc, grpc = runs["inprocess"]["result"], runs["grpc"]["result"]
    row["scheme"] = inproc.get("scheme")
    row["samples"] = {"train": inproc["dataset"].get("n_train"), "test": inproc["dataset"].get("n_test")} if isinstance(inproc.get("dataset"), dict) else None
    differences = history_differences(grpc["history"], inproc["history"])
    messages = dict(grpc["messages_sent"])
    done_frames = sum(messages.pop(kind, 0) for kind in TRANSPORT_KINDS)  # the attempt handshake and the closing DONE frames
    grpc_bytes = dict(grpc["bytes_sent"])
    done_bytes = sum(grpc_bytes.pop(kind, 0) for kind in TRANSPORT_KINDS)
    wire = grpc.get("wire_bytes", {})
    plaintext = inproc.get("scheme") == "plain"
    row.update({
        "status": "ok",
        "plaintext": plaintext,
        "inprocess_accuracy": inproc["main_accuracy"],
        "grpc_accuracy": grpc["main_accuracy"],
        "history_max_abs": differences,
        "history_max_abs_loss": None if differences is None else differences.get("loss"),
        "history_max_abs_accuracy": None if differences is None else differences.get("main_accuracy"),
        "history_identical": differences is not None and all(value == 0.0 for value in differences.values()),
        "messages_equal": messages == inproc["messages_sent"],
        "messages_inprocess": inproc["messages_sent"],
        "messages_grpc": grpc["messages_sent"],
        "done_frames": done_frames,
        "bytes_inprocess": sum(inproc["bytes_sent"].values()),
        "bytes_grpc_accounted": sum(grpc["bytes_sent"].values()),
        "bytes_grpc_accounted_without_done": sum(grpc_bytes.values()),
        "done_bytes": done_bytes,
        "bytes_by_kind_equal": grpc_bytes == inproc["bytes_sent"],
        "wire_bytes": wire,
        "tcp_bytes_run_max": tcp_total(wire),
        **complete_tcp(grpc.get("parties", {})),
        "tcp_sent_below_grpc": wire.get("tcp_sent") is not None and int(wire["tcp_sent"]) < int(wire.get("grpc_sent", 0)),
        "epoch_seconds": {"inprocess": inproc["timing"]["epoch_seconds"], "grpc": grpc["timing"]["epoch_seconds"]},
    })  # fmt: skip
    problems = []
    if differences is None:
        problems.append("histories have different epochs or metrics")
    elif plaintext and not row["history_identical"]:
        problems.append("plaintext histories differ")
    if not row["messages_equal"]:
        problems.append("messages per kind differ")
    row["problems"] = problems
    if problems:
        row["status"] = "mismatch"
    return row


def run_all(keys: list[str], work: Path, extra: dict[str, list[str]], *, log: Any = print) -> dict[str, Any]:
    configs = {key: {t: build_config(key, t, extra.get(key.split("/")[0], [])) for t in TRANSPORTS} for key in keys}  # all checked first
    started = time.perf_counter()
    load_before = [round(value, 2) for value in os.getloadavg()]
    rows = []
    for key in keys:
        overrides = [*CONFIGS[key][1], *extra.get(key.split("/")[0], [])]
        runs = {t: one_run(key, t, configs[key][t], work / key.replace("/", "-") / t, overrides, log=log) for t in TRANSPORTS}
        rows.append(compare(key, configs[key]["inprocess"], runs))
        rows[-1]["resumed"] = {t: bool(runs[t].get("resumed")) for t in TRANSPORTS}
    return {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": [round(value, 2) for value in os.getloadavg()],
        },
        "seconds_this_invocation": round(time.perf_counter() - started, 1),
        "compute_seconds": round(sum(sum(row["wall_seconds"].values()) for row in rows), 1),
        "runs": rows,
    }


def _num(value: float | None, pattern: str = ".4f") -> str:
    return "—" if value is None else format(value, pattern)


def _size(row: dict[str, Any]) -> str:
    if not row["train_limit"] and not row["test_limit"]:
        return "all"
    return f"{row['train_limit']:,} / {row['test_limit']:,}"


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        "# One process per party over gRPC next to the in-process run",
        "",
        f"`{report.get('command', 'python examples/multiprocess_runs.py')}`",
        "",
        f"Python {machine['python']}, {machine['cpus']} cores shared with other work (load average {machine['load_average_before']} "
        f"before, {machine['load_average_after']} after the last invocation). Compute: {report['compute_seconds']:.0f} s of runs "
        "(walls summed, over every invocation of the resumable script).",
        "",
        "Multi-process = `transport.kind=grpc` (one `securevfl party` process per party, mutual TLS on 127.0.0.1). Samples = train / test "
        "(\"all\" = the whole data set). History diff = max |multi − in-process| over every epoch, for the loss and the test accuracy. "
        "Messages equal = messages per kind identical once the gRPC run's handshake (`hello`, `ready`) and closing `done` frames are set aside. TCP = the kernel's TCP "
        "payload bytes sent (`TCP_INFO`; TLS, HTTP/2, gRPC framing, handshakes) against the accounted bytes, over the parties whose count "
        "is complete (see notes).",
        "",
        "| config | samples | epochs | accuracy in / multi | history diff loss | history diff accuracy | messages equal (+handshake, done) | accounted bytes in / multi (−handshake, done) | TCP sent / accounted, complete parties (overhead) | wall in / multi (s) | status |",
        "|---|---|---:|---|---:|---:|---|---|---|---|---|",
    ]
    notes = []
    for row in report["runs"]:
        wall = f"{row['wall_seconds']['inprocess']:.1f} / {row['wall_seconds']['grpc']:.1f}"
        if row["status"] == "failed":
            accuracy = f"{_num(row.get('inprocess_accuracy'))} / {_num(row.get('grpc_accuracy'))}"
            lines.append(f"| {row['config']} | {_size(row)} | {row['epochs']} | {accuracy} | — | — | — | — | — | {wall} | **FAILED** |")
            notes += [f"- **{row['config']}** {transport} run failed: `{error}`" for transport, error in row["errors"].items()]
            continue
        status = "ok" if row["status"] == "ok" else f"**{row['status']}**: {'; '.join(row['problems'])}"
        tcp = "—" if not row["tcp_complete_accounted"] else f"{row['tcp_complete_sent']:,} / {row['tcp_complete_accounted']:,} ({row['tcp_overhead_percent']:+.2f}%)"
        lines.append(
            f"| {row['config']} | {_size(row)} | {row['epochs']} | {row['inprocess_accuracy']:.4f} / {row['grpc_accuracy']:.4f} | "
            f"{_num(row['history_max_abs_loss'], '.3g')} | {_num(row['history_max_abs_accuracy'], '.3g')} | "
            f"{'yes' if row['messages_equal'] else '**no**'} (+{row['done_frames']}) | {row['bytes_inprocess']:,} / {row['bytes_grpc_accounted_without_done']:,} | "
            f"{tcp} | {wall} | {status} |"
        )
        if not row["bytes_by_kind_equal"]:
            diff = row["bytes_grpc_accounted_without_done"] - row["bytes_inprocess"]
            notes.append(f"- {row['config']}: accounted bytes differ by {diff:+,} ({100 * diff / row['bytes_inprocess']:+.3f}%) with equal message counts")
        if row["tcp_short_parties"]:
            short = ", ".join(f"{name} ({sent if sent is None else format(sent, ',')})" for name, sent in row["tcp_short_parties"].items())
            notes.append(f"- {row['config']}: short TCP count (TCP sent below gRPC sent: connections closed by a peer before the party read its counters), "
                         f"left out of the TCP column: {short}; result.json's summed tcp_sent / tcp_received: {row['wire_bytes'].get('tcp_sent')} / {row['wire_bytes'].get('tcp_received')}")  # fmt: skip
    lines += ["", "Notes:", "", *(notes or ["- none"]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(CONFIGS), help=f"comma-separated, of: {', '.join(CONFIGS)}")
    parser.add_argument("--work", type=Path, default=Path("runs/multiprocess_runs"), help="the runs' output directories (kept: a rerun resumes)")
    default_mnist = Path(os.environ["SECUREVFL_DATA_DIR"]) / "mnist" if os.environ.get("SECUREVFL_DATA_DIR") else None
    parser.add_argument("--mnist-dir", type=Path, default=default_mnist, help="MNIST directory (default $SECUREVFL_DATA_DIR/mnist)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    parser.add_argument("--json", type=Path, help="write the report as JSON")
    parser.add_argument("--markdown", type=Path, help="write the table as Markdown")
    args = parser.parse_args(argv)
    keys = [key.strip() for key in args.only.split(",") if key.strip()]
    unknown = [key for key in keys if key not in CONFIGS]
    if unknown or not keys:
        parser.error(f"unknown config {', '.join(unknown) or '(none given)'}; choose from {', '.join(CONFIGS)}")
    extra = {"digits": list(args.overrides), "mnist": list(args.overrides)}
    if any(key.startswith("mnist/") for key in keys):
        if args.mnist_dir is None or not args.mnist_dir.is_dir():
            parser.error(f"MNIST runs need --mnist-dir or $SECUREVFL_DATA_DIR/mnist (got {args.mnist_dir})")
        extra["mnist"].append(f"data.dir={args.mnist_dir}")
    try:
        report = run_all(keys, args.work, extra)
    except SecureVFLError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    ran = any(not resumed for row in report["runs"] for resumed in row["resumed"].values())
    if not ran and args.json is not None and args.json.is_file():  # nothing ran: keep the load of the invocation that computed
        report["machine"] = json.loads(args.json.read_text()).get("machine", report["machine"])
    given = sys.argv[1:] if argv is None else argv
    environment = f"SECUREVFL_DATA_DIR={os.environ['SECUREVFL_DATA_DIR']} " if "--mnist-dir" not in given and os.environ.get("SECUREVFL_DATA_DIR") else ""
    report["command"] = f"{environment}python examples/multiprocess_runs.py " + " ".join(given)
    text = markdown(report)
    print(text)
    write_report(report, args.json, text, args.markdown)
    failed = [row["config"] for row in report["runs"] if row["status"] != "ok"]
    if failed:
        print(f"not ok: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
