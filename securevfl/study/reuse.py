"""Reuse the finished runs of another study folder whose config is exactly a planned run's.

Why: the converged paper study is three files whose plaintext cells overlap (part 2 repeats part
1's seeds 0-2 so that its paired comparisons need nothing from another folder). A plaintext run is
bit-identical for the same config (README, *Reproducibility*), so training it twice spends an hour
of a two-core machine to write the same bytes; a CKKS run of the same config is another sample of
the same experiment, equally valid. ``securevfl study --reuse-from DIR`` copies such a record
instead of training it, and says so: the copy's folder holds ``reused.json`` naming the source, and
the report counts the reused runs.

What is reused: a ``result.json``, or a ``failed.json`` of a run that diverged or left CKKS's range (an outcome of the
config). Never a failure of another kind (a missing data folder says nothing about the config), a
checkpoint, or a record whose config differs in anything but ``train.progress``. Nothing already in
the study's own folder is replaced.

A folder's committed table (``study_runs.json``) then fills what its ``runs/`` did not hold (a
snapshot committed without its run folders, or a study folder a machine lost): read by
:mod:`~securevfl.study.restore`: records rebuilt from the table's rows, matched by run id and config
columns, and checked to give back the same rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from securevfl.errors import ConfigError
from securevfl.files import atomic_write_text
from securevfl.study.runner import CHECKPOINT_NAME, FAILED_NAME, RESULT_NAME, REUSED_NAME, comparable_key, readable_record, run_dir
from securevfl.study.restore import TABLE_NAME, restore_from_table
from securevfl.study.spec import PlannedRun
from securevfl.study.status import RunStatus, failure_status

__all__ = ["reuse_finished_runs"]


def _index(folders: Iterable[Path]) -> dict[str, Path]:
    """comparable config -> the first reusable record under each folder's ``runs/<grid>/<cell>/``."""
    index: dict[str, Path] = {}
    for folder in folders:
        for path in sorted((folder / "runs").glob(f"*/*/{RESULT_NAME}")) + sorted((folder / "runs").glob(f"*/*/{FAILED_NAME}")):
            record = readable_record(path)
            if record is None or (path.name == FAILED_NAME and failure_status(record.get("type")) == RunStatus.FAILED):
                continue
            index.setdefault(comparable_key(record["config"]), path)
    return index


def _check_folders(folders: Iterable[Path]) -> None:
    for folder in folders:
        if not (folder / "runs").is_dir() and not (folder / TABLE_NAME).is_file():
            raise ConfigError(f"study --reuse-from {folder}: not a study output folder (no runs/ or {TABLE_NAME} inside)")


def reuse_finished_runs(
    runs: list[PlannedRun], out: Path, folders: list[Path], log: Callable[[str], None] = print, summary_epochs: int = 1
) -> int:
    """Copy into ``out`` the record of every run that has none yet and whose exact config another folder finished.

    Folders with ``runs/`` come first (their records are the runs' own); a folder with only a
    table then fills what is still missing (:func:`~securevfl.study.restore.restore_from_table`,
    whose round-trip check uses ``summary_epochs``). Returns how many were copied or rebuilt.
    Call before training: a copied run then counts as finished.
    """
    if not folders:
        return 0
    _check_folders(folders)
    index = _index(folder for folder in folders if (folder / "runs").is_dir())
    copied = 0
    for run in runs:
        directory = run_dir(out, run)
        if run.refused is not None or any((directory / name).is_file() for name in (RESULT_NAME, FAILED_NAME)):
            continue
        source = index.get(comparable_key(run.config))
        if source is None:
            continue
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / source.name, source.read_text(encoding="utf-8"))
        note: dict[str, Any] = {"from": str(source.resolve()), "copied_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write_text(directory / REUSED_NAME, json.dumps(note, indent=1) + "\n")
        (directory / CHECKPOINT_NAME).unlink(missing_ok=True)  # an interrupted attempt of the same run: superseded
        copied += 1
    with_runs = [folder for folder in folders if (folder / "runs").is_dir()]
    if with_runs:
        log(f"reused {copied} finished run(s) with identical configs from {', '.join(map(str, with_runs))}")
    for folder in folders:  # a table fills what the folders' run records did not (a partial commit may hold both)
        if (folder / TABLE_NAME).is_file():
            copied += restore_from_table(runs, out, folder / TABLE_NAME, summary_epochs, log)
    return copied
