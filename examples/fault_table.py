"""Fault table: kill or stall each role's process at a random point, check everyone stops, resume, compare.

For each trial, every party of a small digits run starts as its own process on 127.0.0.1
(:class:`securevfl.launcher.PartyProcesses`). At a random moment during training the chosen
role's process is killed (SIGKILL: a crash) or stalled (SIGSTOP: a hang; it keeps its sockets
open and answers nothing). The trial then measures

* how long until every other process stopped by itself, against the configured bound (a crash:
  the liveness check, ``gone_after x liveness_interval`` plus one ping; a hang: ``receive_timeout``),
  and whether each one's last line is one ``error:`` line naming a party (no traceback, no hang);
* the stalled process is then killed (what an operator would do), every party is started again
  with ``--resume``, and the resumed run's history is compared with the uninterrupted one
  (plaintext: exactly equal; CKKS: within CKKS noise, the largest difference is recorded).

Trials are appended to ``trials.jsonl`` as they finish (rerunning the command continues where it
stopped); the table is rewritten from it. Loopback only, every wait bounded.

    python examples/fault_table.py --out docs/results/fault_table --trials 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from securevfl.config import RunConfig, load_config
from securevfl.files import atomic_write_text
from securevfl.launcher import LaunchError, PartyProcesses, free_port_base, last_error_line
from securevfl.loopback import write_loopback_plan
from securevfl.party_runner import ABORT_SECONDS
from securevfl.training import run_training

EXAMPLE = Path(__file__).resolve().parent / "digits_ckks.toml"
RECEIVE_TIMEOUT = 20.0
LIVENESS_INTERVAL = 1.0
GONE_AFTER = 2
LIVENESS_TIMEOUT = 3.0
#: Every role with the scheme that has it: a coordinator exists only when it holds the key.
ROLES = {
    "passive": ("plain", "passive_1"),
    "active": ("plain", "active"),
    "coordinator": ("ckks/coordinator", "coordinator"),
}
SCHEMES = {
    "plain": ["protection.scheme=plain"],
    "ckks/coordinator": ["protection.scheme=ckks", "protection.key_holder=coordinator", "protection.flooding_bits=0", "protection.preset=compute"],
}
FAULTS = {"kill": signal.SIGKILL, "stall": signal.SIGSTOP}
#: Epochs per scheme: enough that a fault lands mid-training, not after the end.
EPOCHS = {"plain": 40, "ckks/coordinator": 4}
#: Training samples per scheme: enough steps (48 per batch) that a fault lands mid-training, not after the end.
TRAIN_SAMPLES = {"plain": 1440, "ckks/coordinator": 480}


def config(scheme: str, transport: str) -> RunConfig:
    return load_config(EXAMPLE, [
        f"data.train_limit={TRAIN_SAMPLES[scheme]}", "data.test_limit=64", f"train.epochs={EPOCHS[scheme]}", "train.batch_size=48", "train.progress=false",
        f"transport.kind={transport}", f"transport.receive_timeout={RECEIVE_TIMEOUT}", "transport.connect_timeout=30",
        f"transport.liveness_interval={LIVENESS_INTERVAL}", f"transport.liveness_timeout={LIVENESS_TIMEOUT}",
        f"transport.gone_after={GONE_AFTER}", f"transport.send_timeout={RECEIVE_TIMEOUT}", *SCHEMES[scheme],
    ])


#: Seconds a failing party spends telling its peers (ABORT, :data:`securevfl.party_runner.ABORT_SECONDS`) and exiting.
STOPPING = ABORT_SECONDS + 10.0


def bound(fault: str) -> float:
    """Seconds within which every other party must have stopped: the configured detection, then telling the others and exiting."""
    if fault == "kill":
        return GONE_AFTER * LIVENESS_INTERVAL + LIVENESS_TIMEOUT + STOPPING  # the liveness check finds the process gone
    return RECEIVE_TIMEOUT + STOPPING  # a hung process answers nothing: a receive's (or a send's) deadline


def wait_for_training(parties: PartyProcesses, limit: float) -> float | None:
    """Seconds until every party's process has joined the attempt (its ``attempt`` line), or None if one exited or time ran out."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if all("attempt " in parties.log(name).read_text(errors="replace") for name in parties.processes):
            return time.monotonic() - started
        if any(process.poll() is not None for process in parties.processes.values()):
            return None
        time.sleep(0.05)
    return None


def history_difference(mine: list[dict[str, Any]], reference: list[dict[str, Any]]) -> float:
    """The largest absolute difference over every number of every epoch (inf if the epochs differ)."""
    if [entry["epoch"] for entry in mine] != [entry["epoch"] for entry in reference]:
        return float("inf")
    return max((abs(float(a[key]) - float(b[key])) for a, b in zip(mine, reference) for key in b if key != "epoch"), default=0.0)


def one_trial(index: int, role: str, fault: str, reference: dict[str, Any], window: float, work: Path, draw: random.Random) -> dict[str, Any]:
    scheme, victim = ROLES[role]
    folder = work / f"trial-{index}"
    shutil.rmtree(folder, ignore_errors=True)  # a trial drawn again starts clean: its logs are read for the attempt line
    cfg = config(scheme, "grpc")
    files = write_loopback_plan(cfg, folder / "parties", base_port=free_port_base(cfg.parties.passive + 2), overwrite=True)
    parties = PartyProcesses(files)
    record: dict[str, Any] = {"trial": index, "role": role, "fault": fault, "scheme": scheme, "victim": victim}
    try:
        parties.start()
        started = time.monotonic()
        if wait_for_training(parties, 120.0) is None:
            record.update(outcome="FAILED: the parties did not start", stopped_within_bound=False)
            return record
        delay = draw.uniform(0.05, 0.8) * window
        time.sleep(delay)
        record["fault_after_seconds"] = round(delay, 2)
        record["fault_epoch_guess"] = round(1 + EPOCHS[scheme] * delay / window, 2)
        process = parties.processes[victim]
        if process.poll() is not None:
            record.update(outcome="FAILED: the run ended before the fault (choose a longer run)", stopped_within_bound=None)
            return record
        os.killpg(process.pid, FAULTS[fault])
        faulted = time.monotonic()
        others = {name: p for name, p in parties.processes.items() if name != victim}
        limit = faulted + bound(fault) + 30.0
        stopped_at: dict[str, float] = {}
        while len(stopped_at) < len(others) and time.monotonic() < limit:
            for name, other in others.items():
                if name not in stopped_at and other.poll() is not None:
                    stopped_at[name] = time.monotonic() - faulted
            time.sleep(0.05)
        hung = [name for name in others if name not in stopped_at]
        record["seconds_to_stop"] = {name: round(value, 2) for name, value in stopped_at.items()}
        record["slowest_stop_seconds"] = round(max(stopped_at.values()), 2) if stopped_at else None
        record["bound_seconds"] = bound(fault)
        record["hung"] = hung
        record["stopped_within_bound"] = not hung and max(stopped_at.values()) <= bound(fault)
        parties.close()  # kills the stalled victim (and anything hung)
        record["error_lines"] = {name: last_error_line(parties.log(name)) for name in others}
        record["one_error_line_each"] = all(
            line.startswith("error: ") and "Traceback" not in line for line in record["error_lines"].values()
        ) and not any("Traceback" in parties.log(name).read_text(errors="replace") for name in others)
        record["checkpoints"] = {name: sorted(p.name for p in parties.out_dir(name).glob("checkpoint-epoch*.pt")) for name in files.private}
        finished = parties.out_dir(ROLES["active"][1]) / "result.json"
        if finished.exists():  # the fault came after the active party closed the run: nothing to resume, the result stands
            history = json.loads(finished.read_text())["history"]
            difference = history_difference(history, reference["history"])
            record.update(
                history_max_difference=difference, resumed_equal=difference == 0.0 if scheme == "plain" else difference < 1e-3,
                one_error_line_each=None,  # the others finished cleanly: no error to report
                outcome="finished before the fault" if record["stopped_within_bound"] and difference < 1e-3 else "FAILED",
            )
            return record
        resumed_started = time.monotonic()
        try:
            resumed = run_training(cfg, out_dir=folder, resume=True)
        except Exception as exc:  # noqa: BLE001 - the trial records what went wrong instead of stopping the table
            record.update(outcome=f"resume failed: {' '.join(str(exc).split())[:300]}", resumed_equal=False)
            return record
        record["resume_seconds"] = round(time.monotonic() - resumed_started, 2)
        record["resumed_after"] = resumed.get("resumed_after")
        difference = history_difference(resumed["history"], reference["history"])
        record["history_max_difference"] = difference
        record["resumed_equal"] = difference == 0.0 if scheme == "plain" else difference < 1e-3
        record["outcome"] = "ok" if record["stopped_within_bound"] and record["one_error_line_each"] and record["resumed_equal"] else "FAILED"
        record["trial_seconds"] = round(time.monotonic() - started, 2)
        return record
    finally:
        parties.close()


def render(trials: list[dict[str, Any]]) -> str:
    lines = [
        "# Fault table: kill and stall of each role, then --resume",
        "",
        "`python examples/fault_table.py --out docs/results/fault_table --trials 10` "
        f"(digits, {TRAIN_SAMPLES['plain']} (plain) or {TRAIN_SAMPLES['ckks/coordinator']} (CKKS) train / 64 test samples, batch 48, {EPOCHS['plain']} (plain) or {EPOCHS['ckks/coordinator']} (CKKS) epochs; receive_timeout {RECEIVE_TIMEOUT:g} s, "
        f"liveness every {LIVENESS_INTERVAL:g} s, gone after {GONE_AFTER} unreachable pings). Kill = SIGKILL (a crash), "
        "stall = SIGSTOP (a hang: sockets stay open, nothing answers); the fault lands at a uniformly random moment "
        "between 5 % and 90 % of an uninterrupted run's training time, counted from the moment every party joined the attempt "
        "(start-up faults are connection failures, bounded by connect_timeout). The bound is the configured detection "
        f"(kill: {GONE_AFTER} unreachable pings {LIVENESS_INTERVAL:g} s apart, each up to {LIVENESS_TIMEOUT:g} s; stall: receive_timeout) "
        f"plus {STOPPING:g} s to tell the others (ABORT) and exit. Plaintext resumes must equal the uninterrupted "
        "history exactly; the coordinator trials run CKKS without flooding and must agree within 1e-3.",
        "",
        "| role | fault | trials | everyone stopped within the bound | slowest stop (s, median / max) | bound (s) | one error line each | resumed equal | max history difference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for role in ROLES:
        for fault in FAULTS:
            rows = [t for t in trials if t["role"] == role and t["fault"] == fault]
            if not rows:
                continue
            stops = sorted(t["slowest_stop_seconds"] for t in rows if t.get("slowest_stop_seconds") is not None)
            median = stops[len(stops) // 2] if stops else float("nan")
            worst = max(stops) if stops else float("nan")
            differences = [t.get("history_max_difference", float("inf")) for t in rows]
            lines.append(
                f"| {role} | {fault} | {len(rows)} | {sum(bool(t.get('stopped_within_bound')) for t in rows)}/{len(rows)} | "
                f"{median:.1f} / {worst:.1f} | {bound(fault):g} | {sum(bool(t.get('one_error_line_each')) for t in rows)}/{len(rows)} | "
                f"{sum(bool(t.get('resumed_equal')) for t in rows)}/{len(rows)} | {max(differences):.2g} |"
            )
    failed = [t for t in trials if t.get("outcome") not in ("ok", "finished before the fault")]
    lines += ["", f"{len(trials)} trials, {len(failed)} not ok." + ("" if not failed else " Not ok:")]
    for t in failed:
        lines.append(f"- trial {t['trial']} ({t['role']} {t['fault']}): {t.get('outcome')}; hung {t.get('hung')}; errors {t.get('error_lines')}")
    examples = {}
    for t in trials:
        examples.setdefault((t["role"], t["fault"]), t.get("error_lines", {}))
    lines += ["", "## One trial's error lines per role and fault", ""]
    for (role, fault), errors in examples.items():
        lines.append(f"- **{role} {fault}**:")
        lines += [f"  - `{name}`: `{line}`" for name, line in errors.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=10, help="trials per role and fault")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder for the runs (default: OUT/work, not committed)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path("runs") / "fault_table_work"
    log = args.out / "trials.jsonl"
    trials = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    references, windows = {}, {}
    for scheme in SCHEMES:
        references[scheme] = run_training(config(scheme, "inprocess"))
        cfg = config(scheme, "grpc")
        shutil.rmtree(work / f"reference-{scheme.replace('/', '-')}", ignore_errors=True)
        files = write_loopback_plan(cfg, work / f"reference-{scheme.replace('/', '-')}" / "parties", base_port=free_port_base(cfg.parties.passive + 2), overwrite=True)
        parties = PartyProcesses(files)
        try:
            parties.start()
            joined = wait_for_training(parties, 120.0)
            if joined is None:
                raise SystemExit(f"{scheme}: the reference run's parties did not start: {[last_error_line(parties.log(n)) for n in parties.processes]}")
            training_started = time.monotonic()
            finished = parties.out_dir(ROLES["active"][1]) / "result.json"
            while not finished.exists() and time.monotonic() - training_started < 600:
                time.sleep(0.02)
            windows[scheme] = time.monotonic() - training_started  # until the active party closed the run (exiting is not training)
            parties.wait(600.0)
        finally:
            parties.close()
        print(f"{scheme}: start-up {joined:.1f} s, then training {windows[scheme]:.1f} s (uninterrupted gRPC run)", flush=True)
    plan = [(role, fault) for _ in range(args.trials) for role in ROLES for fault in FAULTS]
    for index, (role, fault) in enumerate(plan):
        if any(t["trial"] == index for t in trials):
            continue
        scheme = ROLES[role][0]
        draw = random.Random(args.seed * 100_003 + index)
        window = windows[scheme]
        for _ in range(3):  # a run faster than the reference (the machine's load varies) may end before the fault: draw again, earlier
            record = one_trial(index, role, fault, references[scheme], window, work, draw)
            outcome = str(record.get("outcome", ""))
            if not (outcome.startswith("FAILED: the run ended before the fault") or outcome == "finished before the fault"):
                break
            window /= 2
        trials.append(record)
        with log.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(f"trial {index} {role} {fault}: {record.get('outcome')} (stop {record.get('slowest_stop_seconds')} s)", flush=True)
        atomic_write_text(args.out / "fault_table.md", render(trials))
    atomic_write_text(args.out / "fault_table.md", render(trials))
    return 0 if all(t.get("outcome") in ("ok", "finished before the fault") for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
