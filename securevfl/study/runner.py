"""Running a study: worker processes, one progress display, resume after any interruption.

Each run trains in a spawned worker process (SEAL holds the GIL, so threads would not
overlap) and writes into ``OUT/runs/<grid>/<cell>__seed<k>/``:

- ``result.json`` when it finished — the run is never trained again;
- ``failed.json`` when it stopped on a user-level error (a message left CKKS's precise
  range, training diverged): a deterministic outcome of that cell, kept as a result —
  ``retry_failed`` resets such runs (record and checkpoint) and trains them from epoch 1;
- ``checkpoint.pt`` after each epoch — an interrupted run continues from its last epoch.

A finished run whose config differs from what the study now asks for stops the study with
a clear error instead of being overwritten: nothing measured is lost silently.
"""

from __future__ import annotations

import json
import multiprocessing
import queue as queue_module
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from securevfl.attacks import MAIN_ACCURACY, attack_metrics
from securevfl.config import comparable_config
from securevfl.errors import ConfigError, SecureVFLError
from securevfl.files import atomic_write_text
from securevfl.study.spec import PlannedRun, import_plugins
from securevfl.study.status import RunStatus

__all__ = ["RunOutcome", "TrainJob", "reset_failed", "run_dir", "run_study"]

FAILED_NAME = "failed.json"
RESULT_NAME = "result.json"
CHECKPOINT_NAME = "checkpoint.pt"  # securevfl.checkpoint.CHECKPOINT_NAME, without importing torch here
CONFIG_KEYS_IGNORED = ("train.progress",)


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    status: RunStatus
    seconds: float
    detail: str = ""


def run_dir(out: Path, run: PlannedRun) -> Path:
    return out / "runs" / run.run_id


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    trimmed = comparable_config(json.loads(json.dumps(config)))
    for dotted in CONFIG_KEYS_IGNORED:
        section, key = dotted.split(".")
        trimmed.get(section, {}).pop(key, None)
    return trimmed


def _check_same_config(path: Path, run: PlannedRun) -> None:
    """Refuse to reuse (or reset) a stored record that another config produced."""
    stored = json.loads(path.read_text(encoding="utf-8")).get("config", {})
    if _comparable(stored) != _comparable(run.config):
        raise ConfigError(
            f"{path} was produced by a different config than the study now asks for; "
            f"use another --out, or delete {path.parent} to rerun that cell"
        )


def finished(out: Path, run: PlannedRun, log: Callable[[str], None] | None = None) -> bool:
    """True when the run has a result (or a recorded failure) for exactly this config.

    A record that cannot be read (torn by a crash of another tool, truncated, not UTF-8) is moved
    aside as ``<name>.unreadable`` and named, and the run trains again: it is not a result.
    """
    directory = run_dir(out, run)
    for name in (RESULT_NAME, FAILED_NAME):
        path = directory / name
        if path.is_file():
            if readable_record(path) is None:
                path.replace(path.with_name(path.name + ".unreadable"))
                (log or print)(f"{path} is torn or unreadable: moved aside, {run.run_id} trains again")
                return False
            _check_same_config(path, run)
            return True
    return False


def readable_record(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if it is torn, truncated or not JSON."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and "config" in record else None


def reset_failed(out: Path, run: PlannedRun) -> bool:
    """Forget a recorded failure of this run so it trains again from epoch 1; True if there was one.

    The checkpoint goes too: it holds the state just before the failure, and resuming from
    it would replay the same last epoch instead of retrying the run (a retry is for after
    something outside the config changed: the code, the data directory, the machine).
    A failure recorded for another config is refused like a mismatched result.
    """
    directory = run_dir(out, run)
    failed = directory / FAILED_NAME
    if not failed.is_file() or readable_record(failed) is None:  # an unreadable one is moved aside by `finished`
        return False
    _check_same_config(failed, run)
    failed.unlink()
    (directory / CHECKPOINT_NAME).unlink(missing_ok=True)
    return True


class TrainJob(NamedTuple):
    """What a worker process needs to train one run (picklable: sent to spawned workers)."""

    run_id: str
    raw: dict[str, Any]  # the run config data to validate and train
    resolved: dict[str, Any]  # the resolved config, stored with a failure record
    directory: str  # the run's output directory
    progress: Any  # a Manager queue proxy for (run_id, epoch) ticks, or None


def _train_one(job: TrainJob) -> RunOutcome:
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
        record = {"error": str(exc), "type": type(exc).__name__, "config": resolved}
        atomic_write_text(directory / FAILED_NAME, json.dumps(record, indent=1) + "\n")
        return RunOutcome(run_id, RunStatus.FAILED, time.perf_counter() - started, str(exc))
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
    return RunOutcome(run_id, RunStatus.OK, time.perf_counter() - started, shown)


def run_study(
    runs: list[PlannedRun],
    out: Path,
    workers: int = 1,
    log: Callable[[str], None] = print,
    show_progress: bool = True,
    retry_failed: bool = False,
    plugins: list[str] | tuple[str, ...] = (),
) -> list[RunOutcome]:
    """Train every run that has no result yet; return what happened to each, in plan order.

    ``retry_failed`` resets the runs with a recorded failure first (see :func:`reset_failed`);
    ``plugins`` are imported in every worker (attacks and defenses registered outside securevfl).
    """
    if workers < 1:
        raise ConfigError("study --workers must be at least 1")
    outcomes: dict[str, RunOutcome] = {}
    pending: list[PlannedRun] = []
    reset = 0
    for run in runs:
        if run.refused is not None:
            outcomes[run.run_id] = RunOutcome(run.run_id, RunStatus.REFUSED, 0.0, run.refused)
            continue
        if retry_failed:
            reset += reset_failed(out, run)
        if finished(out, run, log):
            outcomes[run.run_id] = RunOutcome(run.run_id, RunStatus.SKIPPED, 0.0, "finished earlier")
            continue
        pending.append(run)
    log(
        f"{len(runs)} runs: {len(pending)} to train, "
        f"{sum(o.status == 'skipped' for o in outcomes.values())} finished earlier, "
        f"{sum(o.status == 'refused' for o in outcomes.values())} refused by the config rules"
        f"{f', {reset} failed earlier and reset' if retry_failed else ''}; "
        f"{min(workers, max(len(pending), 1))} worker(s) -> {out}"
    )
    if pending:
        outcomes.update(_train_pending(pending, out, workers, log, show_progress, tuple(plugins)))
    return [outcomes[run.run_id] for run in runs]


def _train_pending(
    pending: list[PlannedRun],
    out: Path,
    workers: int,
    log: Callable[[str], None],
    show_progress: bool,
    plugins: tuple[str, ...],
) -> dict[str, RunOutcome]:
    from tqdm import tqdm

    context = multiprocessing.get_context("spawn")
    total_epochs = sum(int(run.config["train"]["epochs"]) for run in pending)
    done_epochs = {run.run_id: _epochs_done(run_dir(out, run)) for run in pending}
    outcomes: dict[str, RunOutcome] = {}
    with context.Manager() as manager, context.Pool(min(workers, len(pending)), initializer=import_plugins, initargs=(plugins,)) as pool:
        progress = manager.Queue()
        handles = {
            run.run_id: pool.apply_async(_train_one, (TrainJob(run.run_id, run.raw, run.config, str(run_dir(out, run)), progress),))
            for run in pending
        }
        bar = tqdm(
            total=total_epochs,
            initial=sum(done_epochs.values()),
            unit="epoch",
            desc=f"study: 0/{len(pending)} runs",
            disable=not show_progress,
            dynamic_ncols=True,
        )
        try:
            while len(outcomes) < len(handles):
                try:
                    run_id, epoch = progress.get(timeout=0.5)
                    bar.update(max(0, epoch - done_epochs[run_id]))
                    done_epochs[run_id] = max(done_epochs[run_id], epoch)
                except queue_module.Empty:
                    pass
                for run_id, handle in handles.items():
                    if run_id in outcomes or not handle.ready():
                        continue
                    outcome = handle.get()
                    outcomes[run_id] = outcome
                    run = next(r for r in pending if r.run_id == run_id)
                    remaining = int(run.config["train"]["epochs"]) - done_epochs[run_id]
                    bar.update(max(0, remaining))  # failed runs end early: count their epochs as spent
                    done_epochs[run_id] = int(run.config["train"]["epochs"])
                    bar.set_description(f"study: {len(outcomes)}/{len(pending)} runs")
                    message = f"{outcome.status:>7}  {run_id}  ({outcome.seconds:.0f} s)  {outcome.detail.splitlines()[0] if outcome.detail else ''}"
                    if show_progress:
                        bar.write(message)
                    else:
                        log(message)
        finally:
            bar.close()
    return outcomes


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
