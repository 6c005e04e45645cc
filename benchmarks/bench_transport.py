"""Epoch time in one process against one OS process per party over gRPC, per scheme, and the bytes on the sockets.

Usage::

    python benchmarks/bench_transport.py [--schemes plain,ckks/receiver,ckks/active,ckks/coordinator]
        [--rounds 3] [--epochs 2] [--set KEY=VALUE ...] [--work runs/bench_transport]
        [--json FILE.json] [--markdown FILE.md]

docs/results/transport_bench/transport_bench.{json,md} were written with the defaults: sized for about
10 minutes on the 2-core development machine when it is quiet (4 schemes x 2 transports x 3 rounds x 2 epochs;
the one-key-holder schemes take ~15-30 s per digits epoch and the multi-process start-up ~15 s per run);
the committed run took 15 minutes at a load average of 5-9 from other work.

For every scheme the same configuration (``examples/digits_*.toml``: the whole digits data set,
``--epochs`` epochs) is trained twice per round: in this process (``transport.kind = "inprocess"``,
every party in one interpreter, one channel) and as one ``securevfl party`` process per party over
mutual-TLS gRPC on 127.0.0.1 (``transport.kind = "grpc"``, :mod:`securevfl.launcher`). Rounds are
interleaved (round 1: every scheme in-process then multi-process, round 2 the same, ...) so a change
of the shared machine's load biases both sides alike; the tables give the medians over rounds, and the ratio is the median of the
rounds' own multi-process / in-process ratios (a round's two runs are back to back).

**Epoch seconds** are the active party's ``epoch_seconds`` (its epoch ends with the evaluation,
which needs every party's last answer, so it is the federation's epoch). The first epoch of a
multi-process run also contains the start-up skew of the processes (the active party starts its
first epoch while a passive may still be importing torch), so the *steady* epoch is the mean of
epochs 2..n (epoch 1 only if there is a single epoch, and then it says so); epoch 1 is reported
separately. The wall time of a multi-process run includes starting 3-4 interpreters.

**Critical path.** Every party process records its own phase seconds (``result["parties"][name]
["timing"]``, over the whole run, set-up included); a party's *busy* seconds are the sum of its
``timing.summary`` categories (compute, encrypted compute, keygen, encryption, (de)serialization,
decryption), the rest of its wall time it waits for messages. The party with the most busy
seconds is the critical path's owner. In one process the parties take turns
(``Scheduler.train_batch`` calls them one after another in one thread), so an in-process epoch
costs about the *sum* of the parties' busy seconds; in separate processes the passives' work can
overlap and the epoch can approach the *largest* party's busy seconds, plus the network.

**Bytes** at three layers, summed over the parties (``result["wire_bytes"]``): the accounted frames
(``TrafficStats``, what an in-process run reports in ``bytes_sent``), the gRPC messages (frames plus
acknowledgements and pings) and the TCP payload of the kernel's ``TCP_INFO`` counters. The TCP
counters are read from each process's open sockets when the party has finished; a connection its
peer already closed is no longer counted, so the sent and the received sums are each a lower bound
of the same total (every byte one party sends on loopback another one receives). The tables use
the larger of the two sums and flag a run where the sent sum is below the gRPC bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from securevfl.config import RunConfig, load_config  # noqa: E402
from securevfl.errors import SecureVFLError  # noqa: E402
from securevfl.files import write_report  # noqa: E402
from securevfl.training import run_training  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: scheme -> (example configuration, extra overrides); the configs the docs name for each scheme
SCHEMES: dict[str, tuple[str, list[str]]] = {
    "plain": ("digits_plain.toml", []),
    "ckks/receiver": ("digits_ckks.toml", []),
    "ckks/active": ("digits_ckks_active.toml", []),
    "ckks/coordinator": ("digits_ckks_coordinator.toml", []),
}
COMMON = ["train.progress=false", "train.checkpoint=false"]
TRANSPORTS = ("inprocess", "grpc")
BUSY = ("compute", "encrypted_compute", "keygen", "encode_encrypt", "serialize", "deserialize", "decrypt")


def build_config(example: Path, overrides: list[str], transport: str) -> RunConfig:
    return load_config(example, [*COMMON, *overrides, f"transport.kind={transport}"])


def timed_run(config: RunConfig, out_dir: Path) -> tuple[dict[str, Any], float]:
    """Train ``config`` into ``out_dir`` (replacing what is there); the result and the wall seconds of the call."""
    started = time.perf_counter()
    result = run_training(config, out_dir=out_dir, overwrite=True)
    return result, round(time.perf_counter() - started, 3)


def busy_seconds(timing: dict[str, Any]) -> float:
    """Seconds a party (or an in-process federation) spent working, from its ``timing.summary``."""
    summary = timing.get("summary", {})
    return round(sum(float(summary.get(key, 0.0)) for key in BUSY), 4)


def steady_epoch(epoch_seconds: list[float]) -> float:
    """Mean of epochs 2..n (epoch 1 alone if there is only one)."""
    later = epoch_seconds[1:] or epoch_seconds[:1]
    return round(sum(later) / len(later), 4)


def summarize(result: dict[str, Any], wall: float) -> dict[str, Any]:
    """What the report keeps of one run's result (enough to recompute every table cell)."""
    timing = result["timing"]
    epochs = list(timing["epoch_seconds"])
    row: dict[str, Any] = {
        "transport": result.get("transport", "inprocess"),
        "wall_seconds": wall,
        "epoch_seconds": epochs,
        "epoch1_seconds": epochs[0] if epochs else None,
        "steady_epoch_seconds": steady_epoch(epochs),
        "steady_basis": f"mean of epochs 2..{len(epochs)}" if len(epochs) > 1 else "epoch 1 only (includes start-up skew)",
        "history": result["history"],
        "main_accuracy": result["main_accuracy"],
        "bytes_sent": result["bytes_sent"],
        "messages_sent": result["messages_sent"],
        "accounted_bytes": sum(result["bytes_sent"].values()),
        "phases": {key: value for key, value in timing.items() if key not in ("epoch_seconds", "summary")},
        "summary": timing.get("summary", {}),
        "busy_seconds": busy_seconds(timing),
    }
    if "wire_bytes" in result:
        row["wire_bytes"] = result["wire_bytes"]
        row["parties"] = {
            name: {
                "epoch_seconds": party["timing"].get("epoch_seconds", []),
                "wall": party["timing"].get("wall"),
                "summary": party["timing"].get("summary", {}),
                "phases": {k: v for k, v in party["timing"].items() if k not in ("epoch_seconds", "summary", "wall")},
                "busy_seconds": busy_seconds(party["timing"]),
                "wire_bytes": party.get("wire_bytes"),
            }
            for name, party in result["parties"].items()
        }
    return row


def tcp_total(wire: dict[str, Any]) -> int | None:
    """The larger of the summed TCP sent and received counters (each a lower bound of the same total); None if unreadable."""
    values = [wire.get("tcp_sent"), wire.get("tcp_received")]
    if any(value is None for value in values):
        return None
    return max(int(value) for value in values)


def party_tcp(parties: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per party: accounted, gRPC and TCP bytes sent, and whether its TCP count is complete.

    A party's TCP sent bytes below its gRPC bytes are impossible for what crossed its sockets: some
    of its connections were closed (by a peer that finished first) before it read the counters.
    The overhead is computed over the parties whose count is not short in that way.
    """
    rows = {}
    for name, party in parties.items():
        wire = party.get("wire_bytes") or {}
        tcp = wire.get("tcp_sent")
        complete = tcp is not None and int(tcp) >= int(wire["grpc_sent"])
        rows[name] = {
            "accounted_sent": int(wire["accounted_sent"]), "grpc_sent": int(wire["grpc_sent"]), "tcp_sent": tcp,
            "tcp_connections": wire.get("tcp_connections"), "complete": complete,
            "tcp_overhead_percent": overhead_percent(int(tcp), int(wire["accounted_sent"])) if complete else None,
        }  # fmt: skip
    complete = [row for row in rows.values() if row["complete"]]
    accounted = sum(row["accounted_sent"] for row in complete)
    return {
        "parties": rows,
        "complete_parties": [name for name, row in rows.items() if row["complete"]],
        "incomplete_parties": [name for name, row in rows.items() if not row["complete"]],
        "complete_accounted": accounted,
        "complete_tcp_sent": sum(int(row["tcp_sent"]) for row in complete),
        "complete_tcp_overhead_percent": overhead_percent(sum(int(row["tcp_sent"]) for row in complete), accounted) if complete else None,
    }


def overhead_percent(layer: int | None, accounted: int) -> float | None:
    return None if layer is None or accounted == 0 else round(100 * (layer / accounted - 1), 2)


def aggregate(scheme: str, rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The scheme's table row from its rounds: medians of the steady epochs, the critical path of the median multi-process round."""
    inproc = [r["inprocess"]["steady_epoch_seconds"] for r in rounds]
    multi = [r["grpc"]["steady_epoch_seconds"] for r in rounds]
    in_median, multi_median = statistics.median(inproc), statistics.median(multi)
    # the multi-process round whose steady epoch is the median (the lower middle for an even count)
    order = sorted(range(len(rounds)), key=lambda i: multi[i])
    typical = rounds[order[(len(order) - 1) // 2]]["grpc"]
    epochs = max(1, len(typical["epoch_seconds"]))
    busy = {name: round(party["busy_seconds"] / epochs, 4) for name, party in typical["parties"].items()}
    critical = max(busy, key=lambda name: busy[name])
    wire = typical["wire_bytes"]
    tcp = tcp_total(wire)
    accounted = int(wire["accounted_sent"])
    return {
        "scheme": scheme,
        "rounds": len(rounds),
        "steady_basis": typical["steady_basis"],
        "inprocess_steady_epoch_seconds": inproc,
        "grpc_steady_epoch_seconds": multi,
        "inprocess_epoch_median": round(in_median, 4),
        "grpc_epoch_median": round(multi_median, 4),
        "round_ratios": [round(m / i, 3) for i, m in zip(inproc, multi, strict=True)],
        "ratio": round(statistics.median(m / i for i, m in zip(inproc, multi, strict=True)), 3),
        "ratio_of_medians": round(multi_median / in_median, 3),
        "inprocess_epoch1_median": round(statistics.median(r["inprocess"]["epoch1_seconds"] for r in rounds), 4),
        "grpc_epoch1_median": round(statistics.median(r["grpc"]["epoch1_seconds"] for r in rounds), 4),
        "inprocess_wall_median": round(statistics.median(r["inprocess"]["wall_seconds"] for r in rounds), 3),
        "grpc_wall_median": round(statistics.median(r["grpc"]["wall_seconds"] for r in rounds), 3),
        "grpc_startup_seconds_median": round(statistics.median(r["grpc"]["wall_seconds"] - sum(r["grpc"]["epoch_seconds"]) for r in rounds), 2),
        "inprocess_startup_seconds_median": round(statistics.median(r["inprocess"]["wall_seconds"] - sum(r["inprocess"]["epoch_seconds"]) for r in rounds), 2),
        "inprocess_busy_per_epoch": round(statistics.median(r["inprocess"]["busy_seconds"] for r in rounds) / epochs, 4),
        "party_busy_per_epoch": busy,
        "party_busy_sum_per_epoch": round(sum(busy.values()), 4),
        "critical_party": critical,
        "critical_busy_per_epoch": busy[critical],
        "critical_phases": {k: v for k, v in typical["parties"][critical]["summary"].items() if v},
        "bytes": {
            "inprocess_accounted": rounds[0]["inprocess"]["accounted_bytes"],
            "accounted": accounted,
            "grpc": int(wire["grpc_sent"]),
            "tcp_sent": wire.get("tcp_sent"),
            "tcp_received": wire.get("tcp_received"),
            "tcp": tcp,
            "grpc_overhead_percent": overhead_percent(int(wire["grpc_sent"]), accounted),
            "tcp_overhead_percent": overhead_percent(tcp, accounted),
            "tcp_sent_below_grpc": wire.get("tcp_sent") is not None and int(wire["tcp_sent"]) < int(wire["grpc_sent"]),
            "per_party": party_tcp(typical["parties"]),
        },
    }


def run_bench(schemes: list[str], rounds: int, epochs: int, overrides: list[str], work: Path, *, log: Any = print) -> dict[str, Any]:
    configs = {
        scheme: {transport: build_config(EXAMPLES / SCHEMES[scheme][0], [*SCHEMES[scheme][1], f"train.epochs={epochs}", *overrides], transport) for transport in TRANSPORTS}
        for scheme in schemes
    }  # fmt: skip  (every configuration is checked before the first run)
    started = time.perf_counter()
    load_before = [round(value, 2) for value in os.getloadavg()]
    measured: dict[str, list[dict[str, dict[str, Any]]]] = {scheme: [] for scheme in schemes}
    for round_index in range(rounds):
        for scheme in schemes:
            pair: dict[str, dict[str, Any]] = {}
            for transport in TRANSPORTS:
                out = work / scheme.replace("/", "-") / transport
                result, wall = timed_run(configs[scheme][transport], out)
                pair[transport] = summarize(result, wall)
                log(
                    f"round {round_index + 1}/{rounds} {scheme:>17} {transport:>9}: epochs {pair[transport]['epoch_seconds']} s, "
                    f"wall {wall:.1f} s, accuracy {pair[transport]['main_accuracy']:.4f}"
                )
            measured[scheme].append(pair)
    load_after = [round(value, 2) for value in os.getloadavg()]
    any_config = next(iter(configs.values()))["inprocess"]
    first = measured[schemes[0]][0]["inprocess"]
    return {
        "workload": {
            "data": any_config.data.name,
            "train_limit": any_config.data.train_limit,
            "test_limit": any_config.data.test_limit,
            "epochs": epochs,
            "rounds": rounds,
            "overrides": overrides,
            "examples": {scheme: SCHEMES[scheme][0] for scheme in schemes},
            "history_length": len(first["history"]),
        },
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "bench_seconds": round(time.perf_counter() - started, 1),
        "schemes": {scheme: aggregate(scheme, measured[scheme]) for scheme in schemes},
        "raw": measured,
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _bytes(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def sizes(work: dict[str, Any]) -> str:
    if not work["train_limit"] and not work["test_limit"]:
        return "the whole data set"
    return f"{work['train_limit'] or 'all'} train / {work['test_limit'] or 'all'} test samples"


def _percent(value: float | None, sign: str = "+", digits: int = 2) -> str:
    return "—" if value is None else format(value, f"{sign}.{digits}f") + "%"


def markdown(report: dict[str, Any]) -> str:
    work, machine = report["workload"], report["machine"]
    lines = [
        "# Epoch time in one process against one process per party (gRPC, mutual TLS, 127.0.0.1)",
        "",
        f"`benchmarks/bench_transport.py`: {work['data']} ({sizes(work)}), "
        f"{work['epochs']} epochs per run, {work['rounds']} interleaved rounds (every scheme in-process then multi-process, round after round), "
        f"medians over rounds. Python {machine['python']}, {machine['cpus']} cores shared with other work; load average "
        f"(1/5/15 min) {machine['load_average_before']} before, {machine['load_average_after']} after. The whole bench took "
        f"{report['bench_seconds']:.0f} s.",
        "",
        f"Command: `{report.get('command', 'python benchmarks/bench_transport.py')}` (tables recomputable from the raw runs in the JSON with "
        "`--rebuild-from`).",
        "",
        "Steady epoch: the active party's mean of epochs 2..n (epoch 1 of a multi-process run contains the processes' start-up skew). "
        "Ratio = the median over rounds of each round's multi-process / in-process steady epoch (the two runs of a round are back to back, "
        "so the pair shares the machine's load; the medians of the two columns can come from different rounds). Outside the epochs: wall time of the run minus its epochs (set-up: for multi-process, "
        "writing the plan and the parties' certificates, starting one interpreter per party, imports, TLS connections, key exchange). Busy: seconds per epoch a party spent in its timed phases (compute, encrypted compute, "
        "encryption, (de)serialization, decryption, keygen), from the party records of the median multi-process round.",
        "",
        "| scheme | in-process s/epoch | multi-process s/epoch | ratio | epoch 1 in / multi (s) | wall in / multi (s) | outside the epochs in / multi (s) | in-process busy s/epoch | parties' busy s/epoch (multi-process) | critical path |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in report["schemes"].values():
        parties = ", ".join(f"{name} {seconds:.3f}" for name, seconds in row["party_busy_per_epoch"].items())
        top_phase = max(row["critical_phases"].items(), key=lambda item: item[1])[0] if row["critical_phases"] else "—"
        lines.append(
            f"| {row['scheme']} | {_fmt(row['inprocess_epoch_median'])} | {_fmt(row['grpc_epoch_median'])} | {row['ratio']:.2f}x | "
            f"{_fmt(row['inprocess_epoch1_median'], 2)} / {_fmt(row['grpc_epoch1_median'], 2)} | {_fmt(row['inprocess_wall_median'], 1)} / {_fmt(row['grpc_wall_median'], 1)} | "
            f"{_fmt(row['inprocess_startup_seconds_median'], 1)} / {_fmt(row['grpc_startup_seconds_median'], 1)} | "
            f"{_fmt(row['inprocess_busy_per_epoch'])} | {parties} (sum {row['party_busy_sum_per_epoch']:.3f}) | "
            f"{row['critical_party']} ({row['critical_busy_per_epoch']:.3f} s/epoch, mostly {top_phase}) |"
        )
    lines += [
        "",
        "Per round (steady s/epoch, in-process → multi-process, ratio):",
        "",
    ]
    for row in report["schemes"].values():
        pairs = ", ".join(f"{a:.3f} → {b:.3f} ({b / a:.2f}x)" for a, b in zip(row["inprocess_steady_epoch_seconds"], row["grpc_steady_epoch_seconds"], strict=True))
        lines.append(f"- {row['scheme']}: {pairs}")
    lines += [
        "",
        "## Bytes: accounted frames against what crossed the sockets",
        "",
        "The median multi-process round. Accounted = `TrafficStats` frames as each party counted them when its end of the run began (the gRPC run's include the attempt handshake, `hello`/`ready`, not the closing `done` frames); "
        "gRPC = serialized gRPC messages (frames, acknowledgements, pings), every party summed; TCP = payload bytes the kernel "
        "counted (`TCP_INFO` bytes_acked: TLS records, HTTP/2 frames, gRPC prefixes and headers, handshakes; no IP/TCP headers) on "
        "the connections of the parties whose count is complete, against those parties' accounted bytes. A party's count is short "
        "when its TCP bytes sent are below its gRPC bytes (impossible for what crossed its sockets): its connections were closed by "
        "peers that finished first, before it read the counters after the run. The run-level `wire_bytes` sums in result.json "
        "include those short counts.",
        "",
        "| scheme | in-process accounted | multi-process accounted | gRPC messages | gRPC overhead | TCP sent (complete parties) | their accounted | TCP overhead | short TCP count | result.json tcp_sent / tcp_received sums |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    short_runs = []
    for row in report["schemes"].values():
        b = row["bytes"]
        per = b["per_party"]
        if per["incomplete_parties"]:
            short_runs.append(row["scheme"])
        short = ", ".join(f"{name} ({per['parties'][name]['tcp_sent'] or 0:,} of {per['parties'][name]['grpc_sent']:,})" for name in per["incomplete_parties"]) or "none"
        lines.append(
            f"| {row['scheme']} | {_bytes(b['inprocess_accounted'])} | {_bytes(b['accounted'])} | {_bytes(b['grpc'])} | "
            f"{_percent(b['grpc_overhead_percent'], '+', 3)} | {_bytes(per['complete_tcp_sent'])} | {_bytes(per['complete_accounted'])} | "
            f"{_percent(per['complete_tcp_overhead_percent'])} | {short} | {_bytes(b['tcp_sent'])} / {_bytes(b['tcp_received'])} |"
        )
    lines += ["", "Per party (median multi-process round): TCP sent / accounted sent, connections open when counted.", ""]
    for row in report["schemes"].values():
        per = row["bytes"]["per_party"]["parties"]
        cells = "; ".join(
            f"{name} {_bytes(p['tcp_sent'])} / {p['accounted_sent']:,} ({_percent(p['tcp_overhead_percent']) if p['complete'] else 'short'}, {p['tcp_connections']} conn.)"
            for name, p in per.items()
        )
        lines.append(f"- {row['scheme']}: {cells}")
    if short_runs:
        lines += [
            "",
            f"**Short TCP counts** in {', '.join(short_runs)}: a party's socket counters of a connection the peer already closed "
            "are gone (the kernel forgets them); parties count before the closing `done` frames, so this should not happen; "
            "only the complete parties give an overhead.",
        ]
    lines += ["", "## Reading", "", *reading(report), ""]
    return "\n".join(lines)


def reading(report: dict[str, Any]) -> list[str]:
    """What the numbers say, per scheme, in sentences built from them (no claim the numbers do not carry)."""
    out = []
    cpus = report["machine"]["cpus"]
    for row in report["schemes"].values():
        in_epoch, multi_epoch, ratio = row["inprocess_epoch_median"], row["grpc_epoch_median"], row["ratio"]
        busy_sum, busy_max, in_busy = row["party_busy_sum_per_epoch"], row["critical_busy_per_epoch"], row["inprocess_busy_per_epoch"]
        processes = len(row["party_busy_per_epoch"])
        pairs = list(zip(row["inprocess_steady_epoch_seconds"], row["grpc_steady_epoch_seconds"], strict=True))
        faster_rounds = sum(multi < inproc for inproc, multi in pairs)
        facts = (
            f"in-process {in_epoch:.3f} s/epoch, multi-process {multi_epoch:.3f} s/epoch, multi-process faster in {faster_rounds} of {len(pairs)} rounds; "
            f"timed phases per epoch (whole run / epochs): in-process {in_busy:.3f} s, multi-process parties {busy_sum:.3f} s summed, "
            f"the largest {busy_max:.3f} s ({row['critical_party']})"
        )
        consistent = faster_rounds == len(pairs) if ratio < 1 else faster_rounds == 0
        if ratio < 0.95 and consistent and multi_epoch < 0.8 * busy_sum:
            why = (
                f"**faster** ({ratio:.2f}x) in every round, and the multi-process epoch is well below the parties' summed work and close to "
                f"the largest party's: the passives' work overlapped in their own processes. In one process the parties take turns "
                f"(`Scheduler.train_batch` calls them one after another in one thread), so an in-process epoch costs about the sum."
            )
        elif ratio > 1.05 and consistent:
            extra = multi_epoch - busy_max
            why = (
                f"**slower** ({ratio:.2f}x) in every round: {processes} processes on {cpus} cores; the epoch is {extra:.3f} s above the busiest "
                f"party's timed work: time the phase timers do not see (gRPC and TLS, frame signing and checks, waiting for the peer's "
                f"message, process scheduling). The per-message cost of the network path dominates when the parties' own work is small."
            )
        elif ratio < 0.95 or ratio > 1.05:
            why = (
                f"{'faster' if ratio < 1 else 'slower'} in the median ({ratio:.2f}x), but not in every round or without a clear overlap "
                f"in the phase timers: on this loaded machine the difference is within the round-to-round variation, no claim is made."
            )
        else:
            why = f"**about the same** ({ratio:.2f}x)."
        if row["steady_basis"].startswith("epoch 1 only"):
            why += " (One epoch per run: the multi-process epoch includes the processes' start-up skew; use --epochs 2 or more.)"
        out.append(f"- {row['scheme']}: {why} ({facts}.)")
    loads = [report["machine"]["load_average_before"][0], report["machine"]["load_average_after"][0]]
    if cpus and max(loads) > cpus:
        out += [
            "",
            f"Load: the 1-minute load average was {loads[0]} before and {loads[1]} after, on {cpus} cores: other work competed for the "
            "cores throughout. A multi-process run has 3-4 runnable processes against the in-process run's one, so under contention "
            "the scheduler gives it a larger share of the contested cores; part of a multi-process speed-up measured under load can be "
            "that share rather than the overlap alone, and a quiet machine can give other ratios.",
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schemes", default=",".join(SCHEMES), help=f"comma-separated, of: {', '.join(SCHEMES)}")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the tables give medians)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (>= 2 gives a steady epoch without start-up skew)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override for every run (e.g. data.train_limit=96)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench_transport"), help="where the runs' output directories go (replaced each round)")
    parser.add_argument("--json", type=Path, help="write the report as JSON")
    parser.add_argument("--markdown", type=Path, help="write the tables as Markdown")
    parser.add_argument("--rebuild-from", type=Path, help="only recompute the tables from the raw runs of a JSON report written earlier (then --json/--markdown)")
    args = parser.parse_args(argv)
    if args.rebuild_from:
        report = json.loads(args.rebuild_from.read_text())
        report["schemes"] = {scheme: aggregate(scheme, rounds) for scheme, rounds in report["raw"].items()}
        write_report(report, args.json, markdown(report), args.markdown)
        return 0
    schemes = [scheme.strip() for scheme in args.schemes.split(",") if scheme.strip()]
    unknown = [scheme for scheme in schemes if scheme not in SCHEMES]
    if unknown or not schemes:
        parser.error(f"unknown scheme {', '.join(unknown) or '(none given)'}; choose from {', '.join(SCHEMES)}")
    if args.rounds < 1 or args.epochs < 1:
        parser.error("--rounds and --epochs must be at least 1")
    try:
        report = run_bench(schemes, args.rounds, args.epochs, args.overrides, args.work)
    except SecureVFLError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    report["command"] = "python benchmarks/bench_transport.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = markdown(report)
    print(text)
    write_report(report, args.json, text, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
