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

What is matched: the run id and the row's ``config_key`` (a fingerprint of the run's whole config,
:func:`~securevfl.study.runner.config_key`) against the planned run's. A table written before rows had
a key is matched by the columns the table derives from a config (scheme, key holder, preset, top,
attack and its knobs, defenses, epochs), which cannot see every setting (a learning rate, a data
limit): such restores say so in the log and in each record's note. Rows whose key or columns differ
are named and train again.

Nothing is written until every record is built and checked in a scratch folder: a row that cannot
be rebuilt (a malformed table) or does not give back its own row is named and trains again, and no
checkpoint is touched for it.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from securevfl.attacks import MAIN_ACCURACY, attack_metrics
from securevfl.errors import ConfigError
from securevfl.files import atomic_write_text
from securevfl.study.runner import CHECKPOINT_NAME, FAILED_NAME, RESULT_NAME, REUSED_NAME, config_key, readable_json, run_dir
from securevfl.study.spec import PlannedRun
from securevfl.study.status import AT_CHANCE_NOTE, STOP_OF_ERROR, RunStatus
from securevfl.study.table import at_stop_column, collect_rows, config_columns

__all__ = ["TABLE_NAME", "restore_from_table"]

TABLE_NAME = "study_runs.json"
#: What a record rebuilt from a table lacks (it is in the record, for a reader of the file).
LOST = ("timing.epoch_seconds (only their sum: timing.train_seconds), the per-phase and wall times",
        "messages_sent by kind (only the total)", "the attack's summary (only its kind)", "the data set's sizes (only its name)",
        "the privacy record's fields beyond the table's four", "visibility", "promises", "derivable", "provenance", "version",
        "per-sample attack artifacts")
#: how the table words a collapse it found by its own last-epoch rule (securevfl.study.status.collapse_reason), not training's
_LAST_EPOCH_RULE = "last-epoch main accuracy"
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
        "timing": {"mean_epoch_seconds": row.get("mean_epoch_seconds"), "train_seconds": row.get("train_seconds"),
                   "epoch_seconds": [], "summary": {}},
        "scheme": run.config["protection"]["scheme"],
        "key_holder": row.get("key_holder") or None,
        "attack": {"kind": run.config.get("attack", {}).get("kind", "none")},
        "defenses": run.config.get("defense", []),
        "dataset": {"name": run.config["data"]["name"]},
        "config": run.config,
    }
    at_chance = _at_chance_reason(row)
    if at_chance and not at_chance.startswith(_LAST_EPOCH_RULE):
        record.update(outcome="collapsed", outcome_reason=at_chance)  # training's own verdict (the table's rule recomputes)
    return record


def _at_chance_reason(row: dict[str, Any]) -> str:
    """Why the row's model sat at chance, as the table wrote it: a collapsed row's reason, or the reason inside a
    privacy-attack row's at-chance note (securevfl.study.status.private_read_note); '' for any other row."""
    reason = str(row.get("reason") or "")
    if row["status"] == RunStatus.COLLAPSED:
        return reason
    opening, closing = AT_CHANCE_NOTE
    if row["status"] == RunStatus.OK and reason.startswith(opening) and reason.endswith(closing):
        return reason[len(opening):-len(closing)]
    return ""


def _failure_record(row: dict[str, Any], history: list[dict[str, Any]], run: PlannedRun, note: dict[str, Any]) -> dict[str, Any]:
    stop = row.get("stopped_as") or row["status"]
    reason = str(row["reason"])
    if row.get("stopped_as") and _COLLAPSED_BEFORE_STOP in reason:
        reason = reason.split(_COLLAPSED_BEFORE_STOP, 1)[1]
    record: dict[str, Any] = {"restored": note, "error": reason, "type": _ERROR_OF_STOP[stop], "config": run.config}
    if row.get("stopped_at_epoch") is not None:
        record.update(stopped_at_epoch=row["stopped_at_epoch"], history=history, chance_accuracy=row.get("chance_accuracy"))
    at_stop = {spec.name: row[at_stop_column(spec.name)] for spec in attack_metrics() if row.get(at_stop_column(spec.name)) is not None}
    if at_stop:
        record["attack_at_stop"] = at_stop
    return record


def _comparable_row(row: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    """The row as the table shows it: ``reused_from`` aside (where a record came from is not what it says), and
    ``config_key`` when the original table had none (it predates the column)."""
    ignored = {"reused_from"} | (set() if "config_key" in original else {"config_key"})
    return {column: row.get(column) for column in set(row) | set(original) if column not in ignored}


def _read_table(table: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any], int | None, list[str]]:
    """Rows by run id, histories, the table's ``summary_epochs`` (None if it predates the field), duplicated ids."""
    payload = readable_json(table)
    if payload is None or not isinstance(payload.get("rows"), list) or not isinstance(payload.get("histories"), dict):
        raise ConfigError(f"study --reuse-from {table}: not a study table (no rows and histories inside)")
    rows: dict[str, dict[str, Any]] = {}
    duplicated: list[str] = []
    for row in payload["rows"]:
        run_id = row.get("run_id") if isinstance(row, dict) else None
        if not isinstance(run_id, str):
            continue
        if run_id in rows:
            duplicated.append(run_id)
        rows[run_id] = row
    summary = payload.get("summary_epochs")
    return rows, payload["histories"], summary if isinstance(summary, int) and summary >= 1 else None, duplicated


def _history(histories: dict[str, Any], run_id: str) -> list[dict[str, Any]]:
    history = histories.get(run_id, [])
    if not isinstance(history, list) or not all(isinstance(h, dict) and isinstance(h.get("epoch"), int) for h in history):
        raise ValueError("its history is not a list of epochs")
    return history


def restore_from_table(
    runs: list[PlannedRun], out: Path, table: Path, summary_epochs: int = 1, log: Callable[[str], None] = print
) -> int:
    """Write into ``out`` a record for every planned run that has none and that ``table`` holds finished or stopped.

    Each record is rebuilt and checked in a scratch folder first: the table code, averaging the
    table's own ``summary_epochs`` (``summary_epochs``, the study's setting, for a table that
    predates the field), must turn it back into the table's row (every column) and history. Only
    the records that pass are written; the others are named and their runs train again. Returns
    how many were written.
    """
    rows, histories, table_summary, duplicated = _read_table(table)
    keyed = any("config_key" in row for row in rows.values())
    note = {"from": str(table.resolve()), "copied_at": time.strftime("%Y-%m-%d %H:%M:%S"), "rebuilt_from_table": True,
            "matched_by": "config_key" if keyed else "run id and config columns (the table predates config keys)",
            "lost": list(LOST)}
    candidates: list[tuple[PlannedRun, str, dict[str, Any]]] = []
    differing: list[str] = []
    unusable: list[str] = []
    for run in runs:
        row = rows.get(run.run_id)
        directory = run_dir(out, run)
        if row is None or run.run_id in duplicated or run.refused is not None or row.get("status") not in _RESTORABLE:
            continue
        if any((directory / name).is_file() for name in (RESULT_NAME, FAILED_NAME)):
            continue
        if keyed:
            if row.get("config_key") != config_key(run.config):
                differing.append(run.run_id)
                continue
        elif any(row.get(column) != value for column, value in config_columns(run.config).items()):
            differing.append(run.run_id)
            continue
        try:
            history = _history(histories, run.run_id)
            finished = row["status"] in (RunStatus.OK, RunStatus.COLLAPSED) and not row.get("stopped_as")
            record = (_result_record if finished else _failure_record)(row, history, run, note)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            unusable.append(f"{run.run_id} ({type(exc).__name__}: {exc})")
            continue
        candidates.append((run, RESULT_NAME if finished else FAILED_NAME, record))
    checked = _round_trip(candidates, rows, histories, table_summary or summary_epochs, unusable)
    for run, name, record in checked:
        directory = run_dir(out, run)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / name, json.dumps(record, indent=1) + "\n")
        atomic_write_text(directory / REUSED_NAME, json.dumps(note, indent=1) + "\n")
        (directory / CHECKPOINT_NAME).unlink(missing_ok=True)  # an interrupted attempt of a run the table holds finished
    if duplicated:
        log(f"not restored from {table} (the table holds their run id twice): {', '.join(sorted(set(duplicated)))}")
    if differing:
        log(f"not restored from {table} (their config differs from the study's now): {', '.join(differing)}")
    if unusable:
        log(f"not restored from {table} (their row cannot be rebuilt into a record that gives it back): {'; '.join(unusable)}")
    how = "" if keyed else " (matched by run id and config columns: this table has no config keys)"
    log(f"restored {len(checked)} finished or stopped run(s) from the table {table}{how}")
    return len(checked)


def _round_trip(
    candidates: list[tuple[PlannedRun, str, dict[str, Any]]], rows: dict[str, dict[str, Any]], histories: dict[str, Any],
    summary_epochs: int, unusable: list[str],
) -> list[tuple[PlannedRun, str, dict[str, Any]]]:
    """The candidates whose record, written alone in a scratch folder, gives back the table's row and history."""
    passed = []
    with tempfile.TemporaryDirectory(prefix="securevfl-restore-") as scratch:
        for run, name, record in candidates:
            directory = run_dir(Path(scratch), run)
            directory.mkdir(parents=True, exist_ok=True)
            (directory / name).write_text(json.dumps(record), encoding="utf-8")
            try:
                (rebuilt,), rebuilt_histories = collect_rows([run], Path(scratch), summary_epochs=summary_epochs)
            except Exception as exc:  # noqa: BLE001 - a hostile row must cost its run a retraining, nothing more
                unusable.append(f"{run.run_id} ({type(exc).__name__}: {exc})")
                continue
            original = rows[run.run_id]
            if _comparable_row(rebuilt, original) != _comparable_row(original, original):
                changed = sorted(c for c, v in _comparable_row(rebuilt, original).items() if v != original.get(c))
                unusable.append(f"{run.run_id} (columns {', '.join(changed)})")
            elif rebuilt_histories.get(run.run_id, []) != histories.get(run.run_id, []):
                unusable.append(f"{run.run_id} (history)")
            else:
                passed.append((run, name, record))
    return passed
