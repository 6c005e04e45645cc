"""Running a study: which runs still train, on which backend, resume after any interruption.

Each run trains in a spawned worker process (SEAL holds the GIL, so threads would not
overlap) — or, with ``backend = "ray"``, as a Ray task in its own Ray worker process
(:mod:`~securevfl.study.ray_backend`); both run :func:`securevfl.study.worker.train_one`, which
writes into ``OUT/runs/<grid>/<cell>__seed<k>/``:

- ``result.json`` when it finished — the run is never trained again;
- ``failed.json`` when it stopped on a user-level error (a message left CKKS's precise
  range, training diverged): a deterministic outcome of that cell, kept as a result —
  ``retry_failed`` resets such runs (record and checkpoint) and trains them from epoch 1;
- ``checkpoint.pt`` after each epoch — an interrupted run continues from its last epoch.

A finished run whose config differs from what the study now asks for stops the study with
a clear error instead of being overwritten: nothing measured is lost silently.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import queue as queue_module
from collections.abc import Callable
from pathlib import Path
from typing import Any

from securevfl.config import comparable_config
from securevfl.errors import ConfigError
from securevfl.files import readable_json
from securevfl.study.spec import PlannedRun, import_plugins
from securevfl.study.status import RunStatus
from securevfl.study.worker import (
    CHECKPOINT_NAME,
    FAILED_NAME,
    RESULT_NAME,
    ProgressDisplay,
    RunOutcome,
    TrainJob,
    _epochs_done,  # noqa: F401 - re-exported: the progress display's reader, tested by tests/test_safe_runs.py
    run_dir,
)
from securevfl.study.worker import train_one as _train_one

__all__ = [
    "BACKENDS", "CHECKPOINT_NAME", "FAILED_NAME", "RESULT_NAME", "ProgressDisplay", "RunOutcome", "TrainJob",
    "REUSED_NAME", "comparable_key", "config_key", "readable_json", "readable_record", "reset_failed", "run_dir", "run_study",
]

CONFIG_KEYS_IGNORED = ("train.progress",)
#: A run folder's note that its record was copied from another study folder (:mod:`~securevfl.study.reuse`).
REUSED_NAME = "reused.json"


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    trimmed = comparable_config(json.loads(json.dumps(config)))
    for dotted in CONFIG_KEYS_IGNORED:
        section, key = dotted.split(".")
        trimmed.get(section, {}).pop(key, None)
    return trimmed


def comparable_key(config: dict[str, Any]) -> str:
    """One string per run config, equal exactly when two configs train the same run."""
    return json.dumps(_comparable(config), sort_keys=True)


@functools.cache
def _default_comparable() -> str:
    from securevfl.config import validate_config

    return json.dumps(_comparable(validate_config({}).resolved()))


def _without_defaults(values: Any, defaults: Any) -> Any:
    """``values`` without the leaves equal to ``defaults`` at the same place (a section or table kept if anything remains)."""
    if not isinstance(values, dict) or not isinstance(defaults, dict):
        return values
    kept = {}
    for key, value in values.items():
        if key in defaults and value == defaults[key]:
            continue
        trimmed = _without_defaults(value, defaults.get(key))
        if trimmed != {}:
            kept[key] = trimmed
    return kept


def config_key(config: dict[str, Any]) -> str:
    """A short fingerprint of a run config (the study table's ``config_key``), stable across code versions that only add settings.

    It hashes the comparable config without the values every config has by default, so a later
    version that adds a setting whose default keeps the old behaviour gives the same key, as the
    resume check compares (a stored config is validated again, the new setting at its default);
    any other difference gives another key (``data.dir`` aside: where a machine keeps the data). A table row can then be matched to a planned run by
    its config, not only by the columns the table shows (:mod:`~securevfl.study.restore`).
    """
    trimmed = _without_defaults(_comparable(config), json.loads(_default_comparable()))
    trimmed.get("data", {}).pop("dir", None)  # where this machine keeps the data set, not which data it is
    return hashlib.sha256(json.dumps(trimmed, sort_keys=True).encode("utf-8")).hexdigest()[:16]


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
    """The run record (result or failure) in ``path``, or None if it is torn, truncated or not one."""
    record = readable_json(path)
    return record if record is not None and "config" in record else None


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
    (directory / REUSED_NAME).unlink(missing_ok=True)  # it trains here now: no longer a copy
    return True


BACKENDS = ("local", "ray")
"""Where the runs train: ``local`` spawned worker processes, ``ray`` Ray tasks (one process each)."""


def run_study(
    runs: list[PlannedRun],
    out: Path,
    workers: int = 1,
    log: Callable[[str], None] = print,
    show_progress: bool = True,
    retry_failed: bool = False,
    plugins: list[str] | tuple[str, ...] = (),
    backend: str = "local",
    address: str | None = None,
    on_finished: Callable[[RunOutcome], None] | None = None,
) -> list[RunOutcome]:
    """Train every run that has no result yet; return what happened to each, in plan order.

    ``retry_failed`` resets the runs with a recorded failure first (see :func:`reset_failed`);
    ``plugins`` are imported in every worker (attacks and defenses registered outside securevfl).
    ``backend`` ``"ray"`` trains each run as a Ray task (:mod:`securevfl.study.ray_backend`) on the
    cluster at ``address`` (a local instance of ``workers`` CPUs without one); both backends run the
    same :func:`_train_one`, so the files, resume and failure records are the same. ``on_finished``
    is called in this process after each run ends (the study rewrites its tables there).
    """
    if workers < 1:
        raise ConfigError("study --workers must be at least 1")
    if backend not in BACKENDS:
        raise ConfigError(f"study --backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if address is not None and backend != "ray":
        raise ConfigError("study --address names a Ray cluster; it needs --backend ray")
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
    where = f"{min(workers, max(len(pending), 1))} worker(s)" if backend == "local" else f"ray ({address or f'local, {workers} CPU(s)'})"
    log(
        f"{len(runs)} runs: {len(pending)} to train, "
        f"{sum(o.status == 'skipped' for o in outcomes.values())} finished earlier, "
        f"{sum(o.status == 'refused' for o in outcomes.values())} refused by the config rules"
        f"{f', {reset} failed earlier and reset' if retry_failed else ''}; "
        f"{where} -> {out}"
    )
    if pending:
        display = ProgressDisplay(pending, out, log, show_progress, on_finished)
        try:
            if backend == "ray":
                from securevfl.study.ray_backend import train_with_ray

                train_with_ray(pending, out, workers, address, display, tuple(plugins))
            else:
                _train_pending(pending, out, workers, display, tuple(plugins))
        finally:
            display.close()
        outcomes.update(display.outcomes)
    return [outcomes[run.run_id] for run in runs]


def _train_pending(
    pending: list[PlannedRun],
    out: Path,
    workers: int,
    display: ProgressDisplay,
    plugins: tuple[str, ...],
) -> None:
    """The local backend: a pool of spawned worker processes on this machine."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(min(workers, len(pending)), initializer=import_plugins, initargs=(plugins,)) as pool:
        progress = manager.Queue()
        handles = {
            run.run_id: pool.apply_async(_train_one, (TrainJob(run.run_id, run.raw, run.config, str(run_dir(out, run)), progress),))
            for run in pending
        }
        while len(display.outcomes) < len(handles):
            try:
                display.tick(*progress.get(timeout=0.5))
            except queue_module.Empty:
                pass
            for run_id, handle in handles.items():
                if run_id not in display.outcomes and handle.ready():
                    display.finished(handle.get())
