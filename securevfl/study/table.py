"""The study's tidy table: one row per run, every axis value, metrics, bytes and times.

Rows are built from the files the runs left (``result.json`` / ``failed.json``) and from the
plan (refused runs have no files), so the table can be rebuilt at any time — mid-study
included — without training anything. Metrics (named by the attack registry) are last-epoch
values; a metric with a ``peak_column`` (``backdoor_peak``) also reports its best epoch, labelled as such.
A finished run whose last-epoch main accuracy is within 5 points of chance is ``collapsed``
(:func:`collapse_reason`), unless its attack reads private data: its numbers stand, the reason says the model is at chance. :class:`CellSummary` gives each cell's mean and 95 % t interval over
its finished seeds and counts the stopped ones.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from securevfl.attacks import MAIN_ACCURACY, attack_metrics
from securevfl.attacks.registry import attack_table_columns
from securevfl.config import ProtectionConfig
from securevfl.defenses.accounting import PRIVACY_COLUMNS, privacy_columns
from securevfl.defenses.registry import parse_defense_config
from securevfl.divergence import COLLAPSE_MARGIN
from securevfl.files import atomic_write_text
from securevfl.schemes import Scheme, scheme_for
from securevfl.study.runner import FAILED_NAME, RESULT_NAME, REUSED_NAME, config_key, readable_json, readable_record, run_dir
from securevfl.study.spec import PlannedRun
from securevfl.study.statistics import Interval, mean_interval
from securevfl.study.status import STOPPED, RunStatus, collapse_reason, failure_status, private_read_note, reads_private_data

__all__ = ["CellSummary", "at_stop_column", "base_columns", "collapse_reason", "collect_rows", "config_columns", "metric_names", "summarize_cells", "write_table"]

def metric_names() -> list[str]:
    """The main task's metric, then every registered attack's (the registry names them)."""
    return [MAIN_ACCURACY.name, *(spec.name for spec in attack_metrics())]


def _metric_columns() -> list[str]:
    columns = [MAIN_ACCURACY.name]
    for spec in attack_metrics():
        columns.append(spec.name)
        if spec.peak_column:
            columns += [spec.peak_column, f"{spec.peak_column}_epoch"]
    return columns


def base_columns() -> list[str]:
    """Columns every row has, in this order (axis columns follow ``run_id``..``seed``).

    Built from the registries each time, so an attack registered at run time gets its columns.
    """
    return [
        "run_id", "grid", "cell", "seed", "status", "reason", "stopped_at_epoch", "stopped_as",
        "scheme_label", "scheme", "key_holder", "preset", "top", "attack", *attack_table_columns(), "defenses",
        "epochs", *_metric_columns(), "chance_accuracy", "attack_feasible", "attack_infeasible_reason", *PRIVACY_COLUMNS,
        "mean_epoch_seconds", "train_seconds", "bytes_total", "bytes_per_epoch", "messages_total", "config_key",
    ]


def scheme_of(config: dict[str, Any]) -> Scheme:
    """The scheme object of a resolved run config (as stored in result.json)."""
    return scheme_for(ProtectionConfig.model_validate(config["protection"]))


def scheme_label(config: dict[str, Any]) -> str:
    return scheme_of(config).label()


def describe_defenses(defenses: Iterable[Mapping[str, Any]]) -> str:
    """Each defense's own label (``gaussian_noise(variance=0.0001, gradient, pre_encryption)``) joined by ' + '; 'none'.

    The dumped ``[[defense]]`` tables of a run config are parsed back into their models, so the
    table needs to know no defense's fields: each config says what to show
    (:meth:`~securevfl.defenses.base.DefenseConfigBase.label`).
    """
    return " + ".join(parse_defense_config(defense).label() for defense in defenses) or "none"


def config_columns(config: dict[str, Any]) -> dict[str, Any]:
    attack = config.get("attack", {"kind": "none"})
    protection, scheme = config["protection"], scheme_of(config)
    return {
        "scheme_label": scheme.label(),
        "scheme": protection["scheme"],
        "key_holder": scheme.key_holder or "",
        "preset": protection["preset"] if scheme.capabilities.ciphertexts else "",
        "top": config["model"]["top"],
        "attack": attack["kind"],
        **{column: attack.get(field) for column, field in attack_table_columns().items()},
        "defenses": describe_defenses(config.get("defense", [])),
        "epochs": config["train"]["epochs"],
    }


#: ``<peak>_epoch`` of a run whose attack metric was measured only in epochs at chance: no peak, for a stated reason.
AT_CHANCE = "at chance"


def _peak_columns(history: list[dict[str, Any]], chance: float | None = None) -> dict[str, Any]:
    """Each attack metric's best epoch value and its epoch (``backdoor_peak``, ``backdoor_peak_epoch``).

    With the data's ``chance`` accuracy known, epochs whose main accuracy is within
    :data:`~securevfl.divergence.COLLAPSE_MARGIN` of it do not count: a model at chance that sends
    everything to the target has a 100 % "backdoor" that is no success (issue 15, item 5), and a run
    that blew up passes through such epochs before it stops.
    """
    peaks: dict[str, Any] = {}
    usable = [h for h in history if chance is None or h.get("main_accuracy") is None or h["main_accuracy"] > chance + COLLAPSE_MARGIN]
    for spec in attack_metrics():
        if spec.peak_column:
            values = [(h[spec.name], h["epoch"]) for h in usable if h.get(spec.name) is not None]
            best = (max if spec.success == "higher" else min)(values) if values else (None, None)
            peaks[spec.peak_column], peaks[f"{spec.peak_column}_epoch"] = best
            if not values and any(h.get(spec.name) is not None for h in history):  # measured, but only at chance
                peaks[f"{spec.peak_column}_epoch"] = AT_CHANCE
    return peaks


def _summarized(history: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    """With ``epochs`` > 1: each metric as the mean over the run's last ``epochs`` epochs, the last
    epoch's value kept as ``<metric>_last_epoch`` (the study's ``summary_epochs``).

    Nothing changes with 1, or for a metric the last ``epochs`` epochs do not all carry.
    """
    if epochs <= 1 or len(history) < epochs:
        return {}
    window = history[-epochs:]
    columns: dict[str, Any] = {}
    for name in metric_names():
        values = [entry.get(name) for entry in window]
        if all(value is not None for value in values):
            columns[f"{name}_last_epoch"] = window[-1][name]
            columns[name] = statistics.fmean(float(value) for value in values)
    return columns


def _stop_columns(failure: dict[str, Any]) -> dict[str, Any]:
    """A stopped run: the epoch it stopped in and its peaks **before** the stop (descriptive: a stopped
    run has no last-epoch number, but a backdoor that reached 90 % before diverging is a finding)."""
    if failure.get("stopped_at_epoch") is None:
        return {}
    at_stop = failure.get("attack_at_stop") or {}
    return {"stopped_at_epoch": failure["stopped_at_epoch"], "chance_accuracy": failure.get("chance_accuracy"),
            **_peak_columns(failure.get("history") or [], failure.get("chance_accuracy")),
            # a running total only (MetricSpec.cumulative): a record written by older code may hold an epoch's part too
            **{at_stop_column(spec.name): at_stop[spec.name] for spec in attack_metrics() if spec.cumulative and at_stop.get(spec.name) is not None}}


def at_stop_column(metric: str) -> str:
    """The column of what a caught attacker had read when a check stopped its run (``detected``): its final success,
    which survival verdicts count for that seed (securevfl.study.verdicts); not a finished run's number."""
    return f"{metric}_at_stop"


def _result_columns(result: dict[str, Any]) -> dict[str, Any]:
    history = result.get("history", [])
    metrics: dict[str, Any] = {MAIN_ACCURACY.name: result.get(MAIN_ACCURACY.name), **_peak_columns(history, result.get("chance_accuracy"))}
    for spec in attack_metrics():
        metrics[spec.name] = result.get(spec.name)
    timing = result.get("timing", {})
    total_bytes = sum(result.get("bytes_sent", {}).values())
    epochs = max(1, len(history))
    return {
        **metrics,
        "chance_accuracy": result.get("chance_accuracy"),
        "attack_feasible": result.get("attack_feasible"),
        "attack_infeasible_reason": result.get("attack_infeasible_reason"),
        **privacy_columns(result.get("privacy")),
        "mean_epoch_seconds": timing.get("mean_epoch_seconds"),
        # a record rebuilt from a table (securevfl.study.restore) keeps only the sum
        "train_seconds": timing["train_seconds"] if "train_seconds" in timing else round(sum(timing.get("epoch_seconds", [])), 3),
        "bytes_total": total_bytes,
        "bytes_per_epoch": round(total_bytes / epochs),
        "messages_total": sum(result.get("messages_sent", {}).values()),
        **{f"bytes_{kind}": n for kind, n in result.get("bytes_sent", {}).items()},
    }


def collect_rows(
    runs: list[PlannedRun], out: Path, summary_epochs: int = 1
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Rows for every planned run (status ``pending`` where nothing is there yet) and histories."""
    rows: list[dict[str, Any]] = []
    histories: dict[str, list[dict[str, Any]]] = {}
    chance_of_data: dict[str, float] = {}  # a stopped run's record has no chance accuracy: a finished run of the same data does
    stopped: list[tuple[dict[str, Any], list[dict[str, Any]], str, int]] = []
    for run in runs:
        row: dict[str, Any] = {"run_id": run.run_id, "grid": run.grid, "cell": run.cell, "seed": run.seed}
        row.update({f"axis:{name}": level for name, level in run.levels.items()})
        directory = run_dir(out, run)
        if run.refused is not None:
            row.update(status=RunStatus.REFUSED, reason=run.refused)
            if run.config:
                row.update(config_columns(run.config))
        elif (directory / RESULT_NAME).is_file() and (result := readable_record(directory / RESULT_NAME)) is not None:
            collapsed = collapse_reason(result)
            if collapsed:
                row.update(status=RunStatus.COLLAPSED, reason=collapsed)
            else:
                row.update(status=RunStatus.OK, reason=result.get("attack_infeasible_reason") or private_read_note(result))
            row.update(config_columns(result["config"]))
            row.update(_result_columns(result))
            row.update(_summarized(result.get("history", []), summary_epochs))
            histories[run.run_id] = result.get("history", [])
            if result.get("chance_accuracy") is not None:
                chance_of_data[_data_key(result["config"])] = float(result["chance_accuracy"])
            _note_reuse(row, directory)
        elif (directory / FAILED_NAME).is_file() and (failure := readable_record(directory / FAILED_NAME)) is not None:
            row.update(status=failure_status(failure.get("type")), reason=failure["error"])
            row.update(config_columns(failure["config"]))
            row.update(_stop_columns(failure))
            if failure.get("history"):  # what a stopped run did before the stop (drawn to its stop, never averaged)
                histories[run.run_id] = failure["history"]
                # a privacy attack's stop stays what it was: its model at chance collapses nothing (collapse_reason)
                collapse_epochs = 0 if reads_private_data(failure["config"]) else int(failure["config"].get("train", {}).get("collapse_epochs", 3))
                stopped.append((row, failure["history"], _data_key(failure["config"]), collapse_epochs))
            _note_reuse(row, directory)
        else:
            row.update(status=RunStatus.PENDING, reason="")
        if run.config and "scheme_label" not in row:
            row.update(config_columns(run.config))
        if run.config:  # the planned config: a stored record's was checked equal to it before it counted as finished
            row["config_key"] = config_key(run.config)
        rows.append(row)
    for row, history, data, epochs in stopped:
        chance = row.get("chance_accuracy")
        chance = float(chance) if chance is not None else chance_of_data.get(data)  # older records: a finished run of the same data
        if chance is not None:
            row["chance_accuracy"] = chance
            row.update(_peak_columns(history, chance))
            if epochs:
                row.update(_collapsed_before_the_stop(row, history, chance, epochs))
    return rows, histories


def _collapsed_before_the_stop(row: dict[str, Any], history: list[dict[str, Any]], chance: float, epochs: int) -> dict[str, Any]:
    """A run that diverged after its main accuracy had sat at chance for its last ``epochs`` epochs collapsed first:
    its status says so (a noise level that wrecks the model from the start is no "divergence" finding), and its
    reason keeps the divergence. Nothing changes for any other stop."""
    last = [entry.get("main_accuracy") for entry in history[-epochs:]]
    if row["status"] != RunStatus.DIVERGED or len(last) < epochs or any(a is None or a > chance + COLLAPSE_MARGIN for a in last):
        return {}
    return {"status": RunStatus.COLLAPSED, "stopped_as": RunStatus.DIVERGED,
            "reason": f"main accuracy within {100 * COLLAPSE_MARGIN:.0f} points of chance ({100 * chance:.1f} %) for its last {epochs} "
                      f"epoch(s) before it stopped: {row['reason']}"}


def _data_key(config: dict[str, Any]) -> str:
    """The data a run trained and was evaluated on (its chance accuracy depends on nothing else)."""
    return json.dumps(config.get("data", {}), sort_keys=True)


def _note_reuse(row: dict[str, Any], directory: Path) -> None:
    """``reused_from``: the record was copied from another study folder (``study --reuse-from``)."""
    note = readable_json(directory / REUSED_NAME)
    if note is not None:
        row["reused_from"] = str(note.get("from", "?"))


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    axis = sorted({key for row in rows for key in row if key.startswith("axis:")})
    base = base_columns()
    extra = sorted({key for row in rows for key in row if key.startswith("bytes_") and key not in base})
    at_stop = [column for column in map(at_stop_column, _metric_columns()) if any(column in row for row in rows)]
    reused = ["reused_from"] if any("reused_from" in row for row in rows) else []
    return base[:4] + axis + base[4:] + extra + at_stop + reused


def write_table(rows: list[dict[str, Any]], histories: dict[str, list[dict[str, Any]]], out: Path, meta: dict[str, Any]) -> tuple[Path, Path]:
    """``study_runs.csv`` (flat) and ``study_runs.json`` (rows, per-epoch histories, study metadata)."""
    columns = columns_of(rows)
    csv_path, json_path = out / "study_runs.csv", out / "study_runs.json"
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if row.get(key) is None else row.get(key)) for key in columns})
    atomic_write_text(csv_path, text.getvalue())
    payload = {**meta, "columns": columns, "rows": rows, "histories": histories}
    atomic_write_text(json_path, json.dumps(payload, indent=1) + "\n")
    return csv_path, json_path


class CellSummary:
    """Mean and 95 % t interval over the seeds of one cell that finished; how many stopped.

    Only ``ok`` runs give numbers; a stopped run (diverged, failed, collapsed) is counted as
    such (:meth:`stopped_text`), never averaged in and never silently left out.
    """

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.ok = [row for row in rows if row["status"] == RunStatus.OK]
        self.first = rows[0]

    @property
    def statuses(self) -> set[str]:
        return {row["status"] for row in self.rows}

    @property
    def stopped(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["status"] in STOPPED]

    @property
    def outcomes(self) -> list[dict[str, Any]]:
        """Runs with an outcome: finished or stopped (not pending, crashed or refused)."""
        return [row for row in self.rows if row["status"] == RunStatus.OK or row["status"] in STOPPED]

    def values(self, metric: str) -> list[float]:
        return [float(row[metric]) for row in self.ok if row.get(metric) is not None]

    def by_seed(self, metric: str) -> dict[int, float]:
        return {int(row["seed"]): float(row[metric]) for row in self.ok if row.get(metric) is not None}

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.fmean(values) if values else None

    def std(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)

    def interval(self, metric: str) -> Interval:
        """Mean over the finished seeds with its 95 % t interval."""
        by_seed = self.by_seed(metric)
        return mean_interval(list(by_seed.values()), list(by_seed))

    def peak_text(self, column: str, scale: float = 100.0) -> str:
        """Mean of a peak column over **every** run with an outcome, stopped ones included; ``-`` without one.

        A stopped run's peak is its best epoch before the stop (``failed.json`` keeps the history), so
        the seeds where an attack peaked and then blew training up are counted (the finished seeds
        alone would be those where it did not: survivor bias). When stopped runs contribute, it says
        so: ``64 (3 of 4 stopped, peaks 72-97)``.
        """
        with_peak = [row for row in self.outcomes if row.get(column) is not None]
        # runs with an outcome and a history but no epoch above chance: no success to average, but never silently gone
        at_chance = [row for row in self.outcomes if row.get(column) is None and row.get(f"{column}_epoch") == AT_CHANCE]
        notes = [f"{len(at_chance)} never above chance"] if at_chance else []
        if not with_peak:
            return f"- ({notes[0]})" if notes else "-"
        text = f"{scale * statistics.fmean(float(row[column]) for row in with_peak):.0f}"
        stopped = [float(row[column]) for row in with_peak if row["status"] != RunStatus.OK]
        if stopped:
            span = f"{scale * min(stopped):.0f}" if len(stopped) == 1 else f"{scale * min(stopped):.0f}-{scale * max(stopped):.0f}"
            notes.insert(0, f"{len(stopped)} of {len(with_peak)} stopped, peak{'s' if len(stopped) > 1 else ''} {span}")
        return text + (f" ({'; '.join(notes)})" if notes else "")

    def feasible(self) -> bool:
        return not any(row.get("attack_feasible") is False for row in self.ok)

    def reason(self) -> str:
        for row in self.rows:
            if row.get("reason"):
                return str(row["reason"])
        return ""

    def stopped_text(self) -> str:
        """``0/5``, or ``2/5 (1 diverged, 1 collapsed)``: the stopped runs among those with an outcome."""
        stopped = self.stopped
        counts: dict[str, int] = {}
        for row in stopped:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        detail = f" ({', '.join(f'{n} {status}' for status, n in sorted(counts.items()))})" if counts else ""
        return f"{len(stopped)}/{len(self.outcomes)}{detail}"

    def cell_text(self, metric: str, scale: float = 100.0, digits: int = 1) -> str:
        """``92.6 [91.2, 93.9]``: mean and 95 % t interval over the finished seeds; or what stopped the cell."""
        if not self.ok:
            return min(self.statuses)
        if metric != MAIN_ACCURACY.name and not self.feasible():
            return "infeasible"
        interval = self.interval(metric)
        if _is_fraction(metric):
            interval = interval.clipped(0.0, 1.0)
        if interval.mean is None or math.isnan(interval.mean):
            return "-"
        text = f"{scale * interval.mean:.{digits}f}"
        if interval.has_interval:
            assert interval.low is not None and interval.high is not None
            text += f" [{scale * interval.low:.{digits}f}, {scale * interval.high:.{digits}f}]"
        if len(self.ok) < len(self.rows):  # name the seeds: two schemes' means over different seeds are not like with like
            seeds = sorted(int(row["seed"]) for row in self.ok)
            text += f" (n={len(self.ok)}/{len(self.rows)}: seed{'s' if len(seeds) > 1 else ''} {','.join(map(str, seeds))})"
        return text


def _is_fraction(metric: str) -> bool:
    """Main accuracy and every higher-is-success attack metric are fractions in [0, 1]."""
    return metric == MAIN_ACCURACY.name or any(spec.name == metric and spec.success == "higher" for spec in attack_metrics())


def summarize_cells(rows: list[dict[str, Any]]) -> dict[tuple[str, str], CellSummary]:
    """(grid, cell) -> summary over seeds, in first-seen order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["grid"], row["cell"]), []).append(row)
    return {key: CellSummary(group) for key, group in groups.items()}
