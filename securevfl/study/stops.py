"""Where a stopped run stood, and whether its plaintext twin stood there too.

Intent to treat makes a stopped run an outcome (diverged, out_of_range, detected, collapsed), never
a number in a mean. Two things a reader still needs to know about it, which the status alone hides:

- what it had reached at its last evaluated epoch: a backdoor at 93 % before a CKKS range stop is
  an attack that *succeeded* and then stopped the run, not an attack that encryption defeated;
- for an encrypted run, whether the plaintext run of the same cell and seed (its *twin*) behaved
  the same up to the stop: if the two histories agree epoch by epoch, the encrypted run trained
  the plaintext model until it stopped, so the stop is where plaintext's own values left the
  scheme's range (``examples/activation_peaks.py`` measures those values), not an effect of
  encryption on training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from securevfl.attacks import MAIN_ACCURACY, attack_metrics, success_metric
from securevfl.schemes import PlainScheme
from securevfl.study.spec import PlannedRun
from securevfl.study.status import RunStatus
from securevfl.study.verdicts import WORKING_ATTACK, _pct

__all__ = ["StopContext", "stop_context"]


def _twin_key(run: PlannedRun) -> tuple[str, tuple[tuple[str, str], ...], int]:
    return run.grid, tuple(sorted((k, str(v)) for k, v in run.levels.items() if k != "scheme")), run.seed


@dataclass(frozen=True)
class StopContext:
    """A stopped run's last evaluated epoch and its comparison with its plaintext twin (both texts for a table cell)."""

    at_stop: str
    twin: str


def _metric_of(row: dict[str, Any]) -> tuple[str | None, str, bool]:
    """(history key, label, lower is success) of the row's attack success metric; (None, '', False) without an attack."""
    name = success_metric(str(row.get("attack") or "none"))
    spec = next((spec for spec in attack_metrics() if spec.name == name), None)
    if name is None or spec is None:
        return None, "", False
    return name, spec.label, spec.success == "lower"


def stop_context(runs: list[PlannedRun], rows: list[dict[str, Any]], histories: dict[str, list[dict[str, Any]]]) -> dict[str, StopContext]:
    """run_id -> :class:`StopContext` for every stopped (not refused, not pending) run."""
    by_id = {row["run_id"]: row for row in rows}
    plain_twin = {_twin_key(run): by_id.get(run.run_id) for run in runs if run.levels.get("scheme") == PlainScheme.name}
    found = {}
    for run in runs:
        row = by_id.get(run.run_id)
        if row is None or row["status"] in (RunStatus.OK, RunStatus.PENDING, RunStatus.REFUSED, RunStatus.FAILED):
            continue
        metric, label, lower = _metric_of(row)
        history = histories.get(run.run_id) or []
        at_stop = _at_stop(row, history, metric, label, lower)
        twin = plain_twin.get(_twin_key(run)) if run.levels.get("scheme") != PlainScheme.name else None
        found[run.run_id] = StopContext(at_stop, _twin_text(row, history, twin, histories, metric, label) if twin is not None else "-")
    return found


def _at_stop(row: dict[str, Any], history: list[dict[str, Any]], metric: str | None, label: str, lower: bool) -> str:
    stop = row.get("stopped_at_epoch")
    if not history:
        return f"none: stopped in epoch {stop}" if stop is not None else "none recorded"
    last = history[-1]
    text = f"epoch {last['epoch']}: main {_pct(last.get(MAIN_ACCURACY.name))}"
    if metric is not None and metric in last:
        text += f" / {label} {_pct(last[metric])}"
        if not lower and float(last[metric]) >= WORKING_ATTACK:
            text += f" (≥ {100 * WORKING_ATTACK:.0f} % before the stop)"
    return text


def _twin_text(
    row: dict[str, Any],
    history: list[dict[str, Any]],
    twin: dict[str, Any],
    histories: dict[str, list[dict[str, Any]]],
    metric: str | None,
    label: str,
) -> str:
    """``ok; tracked over 13 epochs within 0.01 / 0.00 points (main / backdoor); at epoch 14, the stop: main 89.0 / 92.0``."""
    if twin["status"] == RunStatus.PENDING:
        return "pending"
    twin_history = {entry["epoch"]: entry for entry in histories.get(twin["run_id"]) or []}
    stop = row.get("stopped_at_epoch")
    twin_stop = twin.get("stopped_at_epoch")
    status = str(twin["status"]) + (f" at epoch {twin_stop}" if twin_stop is not None else "")
    shared = [(entry, twin_history[entry["epoch"]]) for entry in history if entry["epoch"] in twin_history]
    parts = [f"{status}"]
    if shared:
        keys = [MAIN_ACCURACY.name] + ([metric] if metric is not None else [])
        labels = ["main"] + ([label] if metric is not None else [])
        gaps = []
        for key in keys:
            diffs = [abs(float(a[key]) - float(b[key])) for a, b in shared if key in a and key in b]
            gaps.append(f"{100 * max(diffs):.2f}" if diffs else "-")
        parts.append(f"tracked over {len(shared)} epoch(s) within {' / '.join(gaps)} points ({' / '.join(labels)})")
    elif history:
        parts.append("no epoch evaluated by both")
    if stop is not None and int(stop) in twin_history:
        entry = twin_history[int(stop)]
        shown = f"main {_pct(entry.get(MAIN_ACCURACY.name))}" + (f" / {_pct(entry[metric])}" if metric is not None and metric in entry else "")
        parts.append(f"at epoch {stop}, the stop: {shown}")
    return "; ".join(parts)
