"""Rebuild a study's run records from a committed table (``study_runs.json``) when the run folders are gone.

Why: a long study trains across sessions on machines that do not keep their disks; what survives is
what was committed. A snapshot that holds ``study_runs.json`` but not ``runs/`` (or a machine that lost
its study folder) must not cost the hours its finished runs took. The table holds, per run, every
number the study's tables, report and figures read (last-epoch metrics, per-epoch histories, the
stop's epoch and reason, bytes, times): enough to write a record that the table code turns back into
the very same row, which :func:`restore_from_table` checks for every run it writes.

What is not in a table, and so not in a rebuilt record: the per-epoch seconds (only their sum), the
messages per kind (only their total), the per-party visibility and provenance records, and the
attacks' per-sample artifacts. The rebuilt record says so (``restored.lost``) and its folder holds
``reused.json`` naming the table, so the report counts the run as reused, not trained here.

What is matched: the run id, and every column the table derives from a run's config (scheme, key
holder, preset, top, attack and its knobs, defenses, epochs) against the planned run's config. A
table row whose columns differ (the study file changed since) is not restored, and is named.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from securevfl.attacks import MAIN_ACCURACY, attack_metrics
from securevfl.errors import ConfigError
from securevfl.files import atomic_write_text
from securevfl.study.runner import CHECKPOINT_NAME, FAILED_NAME, RESULT_NAME, REUSED_NAME, readable_json, run_dir
from securevfl.study.spec import PlannedRun
from securevfl.study.status import RunStatus, STOP_OF_ERROR
from securevfl.study.table import config_columns, collect_rows

__all__ = ["TABLE_NAME", "restore_from_table"]

TABLE_NAME = "study_runs.json"
#: What a record rebuilt from a table lacks (it is in the record, for a reader of the file).
LOST = ("timing.epoch_seconds (only their sum: timing.train_seconds)", "messages_sent by kind (only the total)",
        "visibility", "promises", "derivable", "provenance", "per-sample attack artifacts")
_ERROR_OF_STOP = {status: error for error, status in STOP_OF_ERROR.items()}
_RESTORABLE = (RunStatus.OK, RunStatus.COLLAPSED, *_ERROR_OF_STOP)
#: the prefix the table puts before a stop's own reason when the run sat at chance before it stopped
_COLLAPSED_BEFORE_STOP = "before it stopped: "


def _last_epoch(row: dict[str, Any], name: str) -> Any:
    """A metric's last-epoch value: the table's ``<name>_last_epoch`` when it averaged several epochs."""
    return row.get(f"{name}_last_epoch", row.get(name))


def _result_record(row: dict[str, Any], history: list[dict[str, Any]], run: PlannedRun, note: dict[str, Any]) -> dict[str, Any]:
    privacy = {"epsilon_pld": row.get("dp_epsilon_pld"), "epsilon_rdp": row.get("dp_epsilon_rdp"),
               "delta": row.get("dp_delta"), "reason": row.get("dp_unclaimed_reason")}
    record: dict[str, Any] = {
        "restored": note,
        "seed": run.seed,
        MAIN_ACCURACY.name: _last_epoch(row, MAIN_ACCURACY.name),
        **{spec.name: _last_epoch(row, spec.name) for spec in attack_metrics()},
        "chance_accuracy": row.get("chance_accuracy"),
        "attack_feasible": row.get("attack_feasible"),
        "attack_infeasible_reason": row.get("attack_infeasible_reason"),
        "privacy": privacy if any(value is not None for value in privacy.values()) else None,
        "epochs_completed": len(history),
        "history": history,
        "bytes_sent": {key.removeprefix("bytes_"): value for key, value in row.items()
                       if key.startswith("bytes_") and key not in ("bytes_total", "bytes_per_epoch") and value is not None},
        "messages_sent": {"all kinds": row.get("messages_total") or 0},
        "timing": {"mean_epoch_seconds": row.get("mean_epoch_seconds"), "train_seconds": row.get("train_seconds")},
        "config": run.config,
    }
    if row["status"] == RunStatus.COLLAPSED:
        record.update(outcome="collapsed", outcome_reason=row["reason"])
    return record


def _failure_record(row: dict[str, Any], history: list[dict[str, Any]], run: PlannedRun, note: dict[str, Any]) -> dict[str, Any]:
    stop = row.get("stopped_as") or row["status"]
    reason = str(row["reason"])
    if row.get("stopped_as") and _COLLAPSED_BEFORE_STOP in reason:
        reason = reason.split(_COLLAPSED_BEFORE_STOP, 1)[1]
    record: dict[str, Any] = {"restored": note, "error": reason, "type": _ERROR_OF_STOP[stop], "config": run.config}
    if row.get("stopped_at_epoch") is not None:
        record.update(stopped_at_epoch=row["stopped_at_epoch"], history=history, chance_accuracy=row.get("chance_accuracy"))
    return record


def _comparable_row(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """The row as the table shows it, ``reused_from`` aside (where a record came from is not what it says)."""
    return {column: row.get(column) for column in columns if column != "reused_from"}


def restore_from_table(
    runs: list[PlannedRun], out: Path, table: Path, summary_epochs: int = 1, log: Callable[[str], None] = print
) -> int:
    """Write into ``out`` a record for every planned run that has none and that ``table`` holds finished or stopped.

    Each rebuilt record is checked: the table code (averaging the last ``summary_epochs`` epochs, the
    study's setting) must turn it back into the table's own row (every column); a record that would not is removed again and the study stops with the run's name,
    since that means the table and this code disagree on what a row is. Returns how many were written.
    """
    payload = readable_json(table)
    if payload is None or not isinstance(payload.get("rows"), list) or not isinstance(payload.get("histories"), dict):
        raise ConfigError(f"study --reuse-from {table}: not a study table (no rows and histories inside)")
    rows = {row.get("run_id"): row for row in payload["rows"] if isinstance(row, dict)}
    histories: dict[str, list[dict[str, Any]]] = payload["histories"]
    note = {"from": str(table.resolve()), "copied_at": time.strftime("%Y-%m-%d %H:%M:%S"), "rebuilt_from_table": True, "lost": list(LOST)}
    written: list[PlannedRun] = []
    differing: list[str] = []
    for run in runs:
        row = rows.get(run.run_id)
        directory = run_dir(out, run)
        if row is None or run.refused is not None or row.get("status") not in _RESTORABLE:
            continue
        if any((directory / name).is_file() for name in (RESULT_NAME, FAILED_NAME)):
            continue
        planned = config_columns(run.config)
        if any(row.get(column) != value for column, value in planned.items()):
            differing.append(run.run_id)
            continue
        history = histories.get(run.run_id, [])
        finished = row["status"] in (RunStatus.OK, RunStatus.COLLAPSED) and not row.get("stopped_as")
        name = RESULT_NAME if finished else FAILED_NAME
        record = (_result_record if finished else _failure_record)(row, history, run, note)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / name, json.dumps(record, indent=1) + "\n")
        atomic_write_text(directory / REUSED_NAME, json.dumps(note, indent=1) + "\n")
        (directory / CHECKPOINT_NAME).unlink(missing_ok=True)  # an interrupted attempt of a run the table holds finished
        written.append(run)
    _check_round_trip(written, out, rows, histories, summary_epochs)
    if differing:
        log(f"not restored from {table} (their config columns differ from the study's now): {', '.join(differing)}")
    log(f"restored {len(written)} finished or stopped run(s) from the table {table}")
    return len(written)


def _check_round_trip(
    written: list[PlannedRun], out: Path, rows: dict[str, dict[str, Any]], histories: dict[str, Any], summary_epochs: int
) -> None:
    """Every rebuilt record must give back the table's row and history; else undo them all and say which run."""
    rebuilt, rebuilt_histories = collect_rows(written, out, summary_epochs=summary_epochs)
    for run, row in zip(written, rebuilt, strict=True):
        original = rows[run.run_id]
        columns = sorted(set(original) | set(row))
        if _comparable_row(row, columns) != _comparable_row(original, columns) or rebuilt_histories.get(run.run_id, []) != histories.get(run.run_id, []):
            changed = [c for c in columns if c != "reused_from" and row.get(c) != original.get(c)]
            for undone in written:
                for name in (RESULT_NAME, FAILED_NAME, REUSED_NAME):
                    (run_dir(out, undone) / name).unlink(missing_ok=True)
            raise ConfigError(f"study --reuse-from: the record rebuilt for {run.run_id} does not give back its table row "
                              f"(columns {', '.join(changed) or 'history'}); nothing was restored")

