"""``securevfl train`` with ``transport.kind = "grpc"``: one ``securevfl party`` OS process per party on this machine.

:func:`run_grpc_training` writes a loopback plan (:func:`securevfl.loopback.write_loopback_plan`,
every party on 127.0.0.1 at free ports) into ``<out>/parties``, starts one process per party
(:class:`PartyProcesses`), waits for all of them under one global deadline and writes the active
party's result as the run's ``result.json``. Why separate OS processes and not threads: this is
the deployment's shape (each party holds only its own folder), so a one-machine run exercises
TLS, signing, deadlines and liveness exactly as a real federation does.

A failure never leaves a process behind: the first party that exits with an error (or the
global deadline) is reported in one line naming the party and its last error line, and every
process still running is killed (after ``grace`` seconds in which it may stop by itself: the
peers of a failed party see its ABORT or find it gone).
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, IO

from securevfl.attacks.setup import AttackSetup
from securevfl.config import RunConfig
from securevfl.data import VFLDataset
from securevfl.errors import ConfigError, DeviationDetected, OutOfRange, SecureVFLError, TrainingDiverged
from securevfl.files import atomic_write_text, readable_json
from securevfl.checkpoint import RESUMABLE_DIFFERENCES, config_differences
from securevfl.loopback import PLAN_NAME, PRIVATE_NAME, LoopbackFiles, write_loopback_plan
from securevfl.party_record import merge_party_facts
from securevfl.plan import load_plan
from securevfl.party_attack import experimenter_attack, merge_attack_results, score_attack_epochs
from securevfl.run_files import RESULT_NAME, STOP_NAME, check_output_directory

__all__ = ["PARTIES_DIR", "TRANSPORT_KINDS", "LaunchError", "PartyProcesses", "free_port_base", "run_grpc_training"]

#: Message kinds only a run of separate processes sends: the attempt handshake and the end of the run.
TRANSPORT_KINDS = ("hello", "ready", "done")
#: Where, inside the run's output directory, the loopback plan and every party's folder go.
PARTIES_DIR = "parties"
LOG_NAME = "party.log"
_POLL_SECONDS = 0.05
_KILL_WAIT_SECONDS = 5.0
# gRPC C-core log lines ("I1126 07:08:03.96 28976 file.cc:1403] ..."): never a party's own error line
_GRPC_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")


class LaunchError(SecureVFLError):
    """A party process failed or the run outlived its deadline (one line naming the party)."""


def free_port_base(count: int, *, attempts: int = 50) -> int:
    """A port from which ``count`` consecutive ports are free on 127.0.0.1 now (the plan numbers ports consecutively)."""
    low, high = _ports_outside_the_ephemeral_range(count)
    for _ in range(attempts):
        base = random.randint(low, high)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(listener)
                listener.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for listener in sockets:
                listener.close()
    raise LaunchError(f"found no {count} consecutive free ports on 127.0.0.1 in {attempts} attempts")


#: Linux's default ``net.ipv4.ip_local_port_range``, used when the running system does not say.
DEFAULT_EPHEMERAL = (32_768, 60_999)
LOWEST_PORT = 10_000


def _ports_outside_the_ephemeral_range(count: int, ephemeral: tuple[int, int] | None = None) -> tuple[int, int]:
    """The range to draw a base from: outside the kernel's ephemeral range (``ephemeral``, read from /proc when not
    given), where no outgoing connection can take a port between our check and the party process's bind (drawing
    inside it made such a clash possible). A system whose ephemeral range leaves no room gets the whole range."""
    if ephemeral is None:
        try:
            low, high = (int(part) for part in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2])
        except (OSError, ValueError):
            low, high = DEFAULT_EPHEMERAL
    else:
        low, high = ephemeral
    if low - count > LOWEST_PORT:
        return LOWEST_PORT, low - count
    if high + 1 <= 65_535 - count:
        return max(high + 1, LOWEST_PORT), 65_535 - count
    return LOWEST_PORT, 65_535 - count


def last_error_line(log: Path) -> str:
    """The last line a party process wrote that is its own (gRPC's C-core log lines skipped)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    own = [line.strip() for line in lines if line.strip() and not _GRPC_LOG.match(line)]
    return own[-1] if own else "(nothing written)"


@dataclass
class PartyProcesses:
    """One ``securevfl party`` OS process per party of a loopback plan; :meth:`close` kills what is left."""

    files: LoopbackFiles
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    killed: set[str] = field(default_factory=set)
    """Parties this supervisor had to kill (they did not stop by themselves)."""
    _logs: dict[str, IO[bytes]] = field(default_factory=dict)

    def out_dir(self, party: str) -> Path:
        return self.files.private[party].parent / "out"

    def log(self, party: str) -> Path:
        return self.files.private[party].parent / LOG_NAME

    def start(self, *, resume: bool = False, only: list[str] | None = None) -> None:
        """Start every party's process (stdout and stderr into its folder's ``party.log``, appended to when resuming).

        ``resume``: every party continues after the latest epoch they all have a checkpoint of;
        otherwise each starts from the beginning, replacing what its folder holds. ``only``: start
        just these parties (a test restarting some of them).
        """
        environment = {**os.environ, "GRPC_VERBOSITY": "ERROR"}
        for party, private in self.files.private.items():
            if only is not None and party not in only:
                continue
            log = self._logs[party] = self.log(party).open("ab" if resume else "wb")  # a fresh start never shows an earlier run's lines
            command = [
                sys.executable, "-m", "securevfl.cli", "party", "--plan", str(self.files.plan), "--party", party,
                "--private", str(private), "--out", str(self.out_dir(party)), "--resume" if resume else "--overwrite",
            ]
            self.processes[party] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True)

    def wait(self, timeout: float, *, grace: float = 0.0, progress: Callable[[str], None] | None = None) -> None:
        """Return once every process exited cleanly; else kill the rest and raise one line naming the first failure.

        After the first failure the others get ``grace`` seconds to stop by themselves before they are killed.
        ``progress`` is given every epoch line the active party's process writes, as it writes it.
        """
        deadline = time.monotonic() + timeout
        failed: str | None = None
        follow = _EpochLines(self.log(self.active_name())) if progress is not None else None
        while True:
            if follow is not None:
                for line in follow.new_lines():
                    progress(line)  # type: ignore[misc]
            running = [party for party, process in self.processes.items() if process.poll() is None]
            if failed is None:
                failed = next((party for party, process in self.processes.items() if process.returncode not in (None, 0)), None)
                if failed is not None:
                    deadline = min(deadline, time.monotonic() + grace)
            if not running:
                break
            if time.monotonic() >= deadline:
                self.close()
                if failed is None:
                    raise LaunchError(f"the gRPC run did not finish within {timeout:g} s; killed {', '.join(running)} (last line of {running[0]}: {last_error_line(self.log(running[0]))})")
                break
            time.sleep(_POLL_SECONDS)
        self._close_logs()
        if failed is not None:
            raise LaunchError(f"party {failed} failed ({_describe_exit(self.processes[failed].returncode)}): {last_error_line(self.log(failed))}")

    def active_name(self) -> str:
        plan = load_plan(self.files.plan)
        return next(party.name for party in plan.parties if party.role == "active")

    def close(self) -> None:
        """Kill every process still running (its whole process group) and wait for it. Idempotent."""
        for party, process in self.processes.items():
            if process.poll() is None:
                self.killed.add(party)
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for process in self.processes.values():
            try:
                process.wait(timeout=_KILL_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_logs()

    def _close_logs(self) -> None:
        for log in self._logs.values():
            log.close()


class _EpochLines:
    """The ``epoch ...`` lines a party's log gained since the last look (the log is appended to, never rewritten)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.offset = log.stat().st_size if log.exists() else 0
        self.partial = b""

    def new_lines(self) -> list[str]:
        try:
            with self.log.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return []
        self.offset += len(chunk)
        *complete, self.partial = (self.partial + chunk).split(b"\n")
        return [line.decode("utf-8", "replace").strip() for line in complete if line.startswith(b"epoch ")]


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"


def run_grpc_training(
    config: RunConfig,
    out_dir: Path,
    *,
    dataset: VFLDataset | None = None,
    overwrite: bool = False,
    resume: bool = False,
    timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``config`` as one process per party over gRPC on 127.0.0.1; write and return the run's result.

    ``resume`` restarts every party of the plan already in ``out_dir`` with ``--resume`` (the
    configuration must be the plan's). ``timeout`` (seconds, default: connect plus one receive
    deadline per epoch) bounds the whole run; at the deadline every process is killed.
    ``progress`` gets the active party's epoch lines as they come.
    """
    plan_dir = out_dir / PARTIES_DIR
    if resume:
        files = existing_loopback_plan(plan_dir, config)
    else:
        check_output_directory(out_dir, resume=False, overwrite=overwrite)
        if (plan_dir / PLAN_NAME).exists() and not overwrite:
            raise ConfigError(f"--out {out_dir} holds the parties of a gRPC run ({plan_dir}); use --resume to continue it or --overwrite to replace it")
        ports = free_port_base(config.parties.passive + 2)  # the passives, the active party, a coordinator
        files = write_loopback_plan(config, plan_dir, base_port=ports, dataset=dataset, overwrite=overwrite)
    transport = config.transport
    budget = timeout if timeout is not None else transport.connect_timeout + transport.receive_timeout * (config.train.epochs + 1)
    parties = PartyProcesses(files)
    for party in files.private:  # a stop an earlier attempt recorded says nothing about this one
        (parties.out_dir(party) / STOP_NAME).unlink(missing_ok=True)
    try:
        parties.start(resume=resume)
        parties.wait(budget, grace=STOP_GRACE_SECONDS, progress=progress)
    except LaunchError as failure:
        stop = training_stop(parties, config, lambda: files.attack if files.attack is not None else experimenter_attack(config, dataset))
        if stop is None:
            raise
        raise stop from failure
    finally:
        parties.close()
    records = {party: json.loads(_result_path(parties, party).read_text(encoding="utf-8")) for party in files.private}
    setup = files.attack if files.attack is not None else experimenter_attack(config, dataset)  # a resumed run: prepared again
    result = merge_attack_results(_run_record(records), records, setup, out_dir)  # the attack's metrics, scored by the experimenter
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / RESULT_NAME, json.dumps(result, indent=2) + "\n")
    return result


#: Seconds the other processes get to stop by themselves after the first one failed (each writes its stop record)
STOP_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class _StopRecord:
    """One party's ``stopped.json``, checked field by field (a torn or malformed one is no record)."""

    party: str
    type: str
    error: str
    epoch: int
    step: int
    stage: str
    history: list[dict[str, Any]]
    chance_accuracy: float | None
    attack_record: dict[str, Any] = field(default_factory=dict)
    """What the attack's scoring needs of this party's epochs before the stop: the active party's raw split
    predictions (``eval_predictions``), an attacker's own metrics (``attack_history``) and what it had read at the
    stop (``attack_at_stop``)."""

    @classmethod
    def read(cls, party: str, path: Path) -> _StopRecord | None:
        record = readable_json(path)
        if record is None:
            return None
        kind, error, epoch, step, history = (record.get(key) for key in ("type", "error", "epoch", "step", "history"))
        chance = record.get("chance_accuracy")
        predictions, own, at_stop = (record.get(key, default) for key, default in (("eval_predictions", []), ("attack_history", []), ("attack_at_stop", {})))
        if not (isinstance(kind, str) and isinstance(error, str) and isinstance(epoch, int) and isinstance(step, int)
                and isinstance(history, list) and all(isinstance(entry, dict) for entry in history)
                and (chance is None or isinstance(chance, int | float))
                and isinstance(predictions, list) and all(entry is None or _split_predictions(entry) for entry in predictions)
                and isinstance(own, list) and all(isinstance(entry, dict) for entry in own)
                and isinstance(at_stop, dict) and all(isinstance(value, int | float) for value in at_stop.values())):
            return None
        stage = record.get("stage") if record.get("stage") in ("training", "evaluation") else "training"
        attack_record = {key: record[key] for key in ("eval_predictions", "attack_history", "attack_at_stop") if key in record}
        return cls(party, kind, error, epoch, step, str(stage), history, None if chance is None else float(chance), attack_record)

    def where(self) -> str:
        return f"at epoch {self.epoch}, step {self.step}" + ("" if self.stage == "training" else f" ({self.stage})")


def training_stop(parties: PartyProcesses, config: RunConfig, attack_setup: Callable[[], AttackSetup | None]) -> TrainingDiverged | None:
    """The in-process run's error for a gRPC run that stopped as an outcome (a party's ``stopped.json``), else None.

    Every party records its stop (any error) before it tells its peers. A party that diverged or left CKKS's range:
    the run raises the same error as in-process; a refused request is a detected deviation in a run whose attack may
    be refused (:meth:`Attack.may_be_refused`, as :func:`securevfl.training.stopped_cleanly` decides in-process),
    and in any other run stays the failed launch it is (a bug). The epochs before the stop and the chance accuracy
    are the active party's record's, whoever stopped first. Records are keyed by the folder they are in, and are
    the experimenter's simulation's: its parties run on this machine and their folders are trusted like their
    results (a real deployment has no launcher). With an attack, the epochs before the stop are scored as a finished
    run's (:func:`score_attack_epochs`: the experimenter's metrics of the active party's split predictions, each
    attacker's own); a stop that cannot be scored stays the failed launch.
    """
    active = parties.active_name()
    records = {party: record for party in parties.processes
               if (record := _StopRecord.read(party, parties.out_dir(party) / STOP_NAME)) is not None}
    mine = records.get(active)
    setup = functools.cache(attack_setup)  # prepared once, and only for a stop that needs it

    for record in sorted(records.values(), key=lambda r: r.party != active):
        stop: TrainingDiverged
        try:
            if record.type in ("TrainingDiverged", "OutOfRange"):
                stop = (OutOfRange if record.type == "OutOfRange" else TrainingDiverged)(f"{record.party}: {record.error}")
            elif record.type == "RequestRefusedError":
                refusable = setup()
                if refusable is None or refusable.attack is None or not refusable.attack.may_be_refused():
                    continue
                stop = DeviationDetected(f"a party's protocol check stopped the run {record.where()}: {record.error}")
                read = [r.attack_record["attack_at_stop"] for r in records.values() if r.attack_record.get("attack_at_stop")]
                stop.attack_at_stop = dict(read[0]) if read else None  # the caught attacker's read, as in-process
            else:
                continue
            history = [dict(entry) for entry in mine.history] if mine is not None else []
            scoring = setup() if config.attack.active and mine is not None else None
            if scoring is not None:  # the epochs before the stop carry the attack's metrics, as in-process
                score_attack_epochs(history, mine.attack_record, [r.attack_record for r in records.values()], scoring)
        except (SecureVFLError, OSError, KeyError, ValueError, TypeError, IndexError):  # the experimenter's attack cannot be
            return None  # prepared again, or a record does not fit it (a split it does not have): keep the launch error
        stop.history, stop.stopped_at_epoch = history, record.epoch
        stop.chance_accuracy = mine.chance_accuracy if mine is not None else None
        return stop
    return None


def _split_predictions(entry: object) -> bool:
    """An epoch's raw split predictions as the active party records them: split name -> predicted classes."""
    return isinstance(entry, dict) and all(
        isinstance(split, str) and isinstance(values, list) and all(isinstance(value, int) for value in values)
        for split, values in entry.items()
    )


def existing_loopback_plan(plan_dir: Path, config: RunConfig) -> LoopbackFiles:
    """The plan and party files of an interrupted gRPC run in ``plan_dir``, checked against ``config``."""
    plan_path = plan_dir / PLAN_NAME
    if not plan_path.is_file():
        raise ConfigError(f"--resume: {plan_dir} holds no plan of a gRPC run to continue")
    plan = load_plan(plan_path)
    differences = [key for key in config_differences(plan.run.resolved(), config.resolved()) if key not in RESUMABLE_DIFFERENCES]
    if differences:
        raise ConfigError(f"--resume: the run in {plan_dir.parent} was planned with a different config ({', '.join('.'.join(key) for key in differences)})")
    if plan.run.train.epochs != config.train.epochs:
        raise ConfigError(f"--resume: the run in {plan_dir.parent} was planned for {plan.run.train.epochs} epochs; every party holds that plan")
    return LoopbackFiles(plan=plan_path, private={party.name: plan_dir / party.name / PRIVATE_NAME for party in plan.parties})


def _result_path(parties: PartyProcesses, party: str) -> Path:
    for name in (RESULT_NAME, "party_result.json"):
        path = parties.out_dir(party) / name
        if path.is_file():
            return path
    raise LaunchError(f"party {party} exited cleanly but wrote no result in {parties.out_dir(party)}")


def _run_record(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The active party's record, with every party's frames summed (as the in-process ``result.json`` counts them)."""
    active = next(record for record in records.values() if record["role"] == "active")
    bytes_sent: dict[str, int] = {}
    messages_sent: dict[str, int] = {}
    for record in records.values():
        for kind, count in record["bytes_sent"].items():
            bytes_sent[kind] = bytes_sent.get(kind, 0) + count
        for kind, count in record["messages_sent"].items():
            messages_sent[kind] = messages_sent.get(kind, 0) + count
    partial = {name: record["traffic_from_epoch"] for name, record in records.items() if record.get("traffic_from_epoch", 0) > 0}
    epoch_seconds = active["timing"]["epoch_seconds"]
    timing = {**active["timing"], "mean_epoch_seconds": round(sum(epoch_seconds) / len(epoch_seconds), 4) if epoch_seconds else 0.0}
    return {
        **{key: value for key, value in active.items() if key not in ("party", "role", "traffic_from_epoch")},
        "transport": "grpc",
        "bytes_sent": bytes_sent,
        "messages_sent": messages_sent,
        # the totals leave out what these parties sent before the epoch given (a coordinator keeps no checkpoint)
        **({"traffic_counted_from_epoch": partial} if partial else {}),
        "timing": timing,
        **merge_party_facts(records),
        "wire_bytes": _wire_totals(records),
        "parties": {
            name: {key: record[key] for key in ("bytes_sent", "messages_sent", "traffic_from_epoch", "timing", "wire_bytes") if key in record}
            for name, record in records.items()
        },
    }


def _wire_totals(records: dict[str, dict[str, Any]]) -> dict[str, int | None]:
    """Every party's bytes at each layer (accounted frames, gRPC messages, TCP payload) summed; None where a party could not read its TCP counters."""
    totals: dict[str, int | None] = {}
    for record in records.values():
        for layer, count in record.get("wire_bytes", {}).items():
            if layer in totals and (totals[layer] is None or count is None):
                totals[layer] = None
            else:
                totals[layer] = (totals.get(layer) or 0) + count if count is not None else None
    return totals
