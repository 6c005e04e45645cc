"""One run of a study, as every backend trains it, and the one progress display of a study.

Kept apart from :mod:`~securevfl.study.runner` so that each backend (the local process pool
there, Ray tasks in :mod:`~securevfl.study.ray_backend`) runs the very same per-run function
and reports to the same display, without the backends importing each other.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from securevfl.attacks import MAIN_ACCURACY, attack_metrics
from securevfl.errors import DeviationDetected, SecureVFLError, TrainingDiverged
from securevfl.files import atomic_write_text
from securevfl.provenance import provenance
from securevfl.study.spec import PlannedRun
from securevfl.study.status import RunStatus, collapse_reason, failure_status

__all__ = ["CHECKPOINT_NAME", "FAILED_NAME", "RESULT_NAME", "ProgressDisplay", "RunOutcome", "TrainJob", "run_dir", "train_one"]

FAILED_NAME = "failed.json"
RESULT_NAME = "result.json"
CHECKPOINT_NAME = "checkpoint.pt"  # securevfl.checkpoint.CHECKPOINT_NAME, without importing torch here


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    status: RunStatus
    seconds: float
    detail: str = ""


def run_dir(out: Path, run: PlannedRun) -> Path:
    return out / "runs" / run.run_id


class TrainJob(NamedTuple):
    """What a worker process needs to train one run (picklable: sent to spawned workers)."""

    run_id: str
    raw: dict[str, Any]  # the run config data to validate and train
    resolved: dict[str, Any]  # the resolved config, stored with a failure record
    directory: str  # the run's output directory
    progress: Any  # a Manager queue proxy for (run_id, epoch) ticks, or None


def train_one(job: TrainJob) -> RunOutcome:
    """Worker: train one run (resuming from its checkpoint), report epochs on the queue."""
    run_id, config_data, resolved, directory_name, progress = job
    from securevfl.config import validate_config
    from securevfl.training import EpochRecord, run_training

    directory = Path(directory_name)
    started = time.perf_counter()
    resume = (directory / CHECKPOINT_NAME).is_file()

    def tick(record: EpochRecord) -> None:
        if progress is not None:
            progress.put((run_id, record.epoch))

    try:
        config = validate_config(config_data)
        result = run_training(config, directory, resume=resume, on_epoch_end=[tick])
    except SecureVFLError as exc:
        directory.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {"error": str(exc), "type": type(exc).__name__, "config": resolved, "provenance": provenance()}
        if isinstance(exc, TrainingDiverged):  # what the run did before it stopped (curves, peak before the stop)
            record.update(stopped_at_epoch=exc.stopped_at_epoch, history=exc.history or [], chance_accuracy=exc.chance_accuracy)
        if isinstance(exc, DeviationDetected) and exc.attack_at_stop:  # what the caught attacker had read: its final success
            record["attack_at_stop"] = exc.attack_at_stop
        atomic_write_text(directory / FAILED_NAME, json.dumps(record, indent=1) + "\n")
        return RunOutcome(run_id, failure_status(type(exc).__name__), time.perf_counter() - started, str(exc))
    except Exception:  # noqa: BLE001 - any bug in one run must not stop the others
        # a bug, not a finding: keep the traceback next to the run, record nothing as finished
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / "crash.txt", traceback.format_exc())
        return RunOutcome(run_id, RunStatus.CRASHED, time.perf_counter() - started, traceback.format_exc(limit=3))
    (directory / CHECKPOINT_NAME).unlink(missing_ok=True)  # finished: the result is what counts
    shown = f"main {result[MAIN_ACCURACY.name]:.4f}"
    for spec in attack_metrics():
        if result.get(spec.name) is not None:
            shown += f", {spec.label} {result[spec.name]:.4f}"
    if result.get("attack_feasible") is False:
        shown += ", attack infeasible"
    collapsed = collapse_reason(result)
    if collapsed:  # the log line says what the table will say
        return RunOutcome(run_id, RunStatus.COLLAPSED, time.perf_counter() - started, f"{shown}; {collapsed}")
    return RunOutcome(run_id, RunStatus.OK, time.perf_counter() - started, shown)


class ProgressDisplay:
    """The one progress display of a study, whatever trains the runs: an epoch bar, a line per run.

    Backends report epoch ticks (:meth:`tick`) and finished runs (:meth:`finished`); this class
    keeps the outcomes and calls the study's ``on_finished`` hook, so both backends log and
    snapshot the same way.
    """

    def __init__(
        self,
        pending: list[PlannedRun],
        out: Path,
        log: Callable[[str], None],
        show_progress: bool,
        on_finished: Callable[[RunOutcome], None] | None = None,
    ) -> None:
        from tqdm import tqdm

        self.epochs = {run.run_id: int(run.config["train"]["epochs"]) for run in pending}
        self.done = {run.run_id: _epochs_done(run_dir(out, run)) for run in pending}
        self.outcomes: dict[str, RunOutcome] = {}
        self._log = log
        self._show = show_progress
        self._on_finished = on_finished
        self._bar = tqdm(
            total=sum(self.epochs.values()),
            initial=sum(self.done.values()),
            unit="epoch",
            desc=f"study: 0/{len(pending)} runs",
            disable=not show_progress,
            dynamic_ncols=True,
        )

    def tick(self, run_id: str, epoch: int) -> None:
        """A run finished ``epoch`` (epochs a resumed run already had are not counted twice)."""
        self._bar.update(max(0, epoch - self.done[run_id]))
        self.done[run_id] = max(self.done[run_id], epoch)

    def finished(self, outcome: RunOutcome) -> None:
        """A run ended (any status): count its remaining epochs as spent, log it, call the hook."""
        self.outcomes[outcome.run_id] = outcome
        self._bar.update(max(0, self.epochs[outcome.run_id] - self.done[outcome.run_id]))  # failed runs end early
        self.done[outcome.run_id] = self.epochs[outcome.run_id]
        self._bar.set_description(f"study: {len(self.outcomes)}/{len(self.epochs)} runs")
        first_line = outcome.detail.splitlines()[0] if outcome.detail else ""
        message = f"{outcome.status:>7}  {outcome.run_id}  ({outcome.seconds:.0f} s)  {first_line}"
        if self._show:
            self._bar.write(message)
        else:
            self._log(message)
        if self._on_finished is not None:
            try:
                self._on_finished(outcome)
            except Exception as exc:  # noqa: BLE001 - a snapshot that fails must not stop the runs
                self._log(f"could not rewrite the study's tables after {outcome.run_id}: {exc}")

    def close(self) -> None:
        self._bar.close()


def _epochs_done(directory: Path) -> int:
    """Epochs an interrupted run already has in its checkpoint (for the progress display)."""
    checkpoint = directory / CHECKPOINT_NAME
    if not checkpoint.is_file():
        return 0
    try:
        from securevfl.checkpoint import read_checkpoint_file  # torch loads only when a checkpoint exists

        return int(read_checkpoint_file(checkpoint)["epoch"])
    except Exception:  # noqa: BLE001 - only the progress display depends on it; never unpickles code
        return 0
