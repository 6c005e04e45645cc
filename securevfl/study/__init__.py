"""``securevfl study``: grids of trainings over attack x defense x scheme x seeds, and their report.

Modules, one job each:

- :mod:`~securevfl.study.spec`: the study file and its expansion into validated runs;
- :mod:`~securevfl.study.runner`: which runs still train, the local process pool, resume;
- :mod:`~securevfl.study.worker`: one run as every backend trains it, and the progress display;
- :mod:`~securevfl.study.ray_backend`: the same runs as Ray tasks, on this machine or a cluster;
- :mod:`~securevfl.study.pending`: which cells a partial study still lacks;
- :mod:`~securevfl.study.table`: one row per run (CSV, JSON) and mean / spread per cell;
- :mod:`~securevfl.study.plots`: the paper-style figures (PNG);
- :mod:`~securevfl.study.survival`: does each attack survive encryption, does each defense keep working;
- :mod:`~securevfl.study.report`: the Markdown report tying them together.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from securevfl.errors import ConfigError, SecureVFLError
from securevfl.files import atomic_write_text
from securevfl.study.pending import pending_by_grid, pending_summary
from securevfl.study.report import REPORT_NAME, write_report
from securevfl.study.reuse import reuse_finished_runs
from securevfl.study.runner import run_study
from securevfl.study.worker import RunOutcome
from securevfl.study.spec import PlannedRun, StudySpec, load_study, plan_runs
from securevfl.study.status import STOPPED, RunStatus
from securevfl.study.table import collect_rows, write_table

__all__ = ["PlannedRun", "StudySpec", "StudySummary", "load_study", "plan_runs", "run_and_report", "run_study"]

#: A study rewrites its tables after every finished run; its report (with plots) at most this often.
REPORT_EVERY_SECONDS = 300.0


def training_order(spec: StudySpec, runs: list[PlannedRun]) -> list[PlannedRun]:
    """Seed by seed, in file order: an interrupted study has whole seeds of every cell first."""
    seeds = sorted({run.seed for run in runs}, key=lambda seed: (seed not in spec.seeds, spec.seeds.index(seed) if seed in spec.seeds else seed))
    position = {seed: index for index, seed in enumerate(seeds)}
    return sorted(runs, key=lambda run: position[run.seed])  # stable: file order within a seed


def run_and_report(
    study_path: Path,
    out: Path | None = None,
    workers: int = 1,
    overrides: list[str] | tuple[str, ...] = (),
    train: bool = True,
    retry_failed: bool = False,
    show_progress: bool = True,
    command: str = "securevfl study",
    log: Callable[[str], None] = print,
    backend: str = "local",
    address: str | None = None,
    report_every: float = REPORT_EVERY_SECONDS,
    reuse_from: list[Path] | tuple[Path, ...] = (),
) -> StudySummary:
    """Train what is missing (unless ``train`` is false), then write table and report; return a summary.

    While runs train, the tables are rewritten (atomically) after every finished run and the
    report at most every ``report_every`` seconds, so the output folder of a long study can be
    committed at any time; a partial folder names its pending cells (:mod:`~securevfl.study.pending`).
    ``backend`` / ``address``: see :func:`~securevfl.study.runner.run_study`. ``reuse_from``: study
    folders whose finished runs of an identical config are copied instead of trained
    (:mod:`~securevfl.study.reuse`).
    """
    spec = load_study(study_path, overrides)
    runs = plan_runs(spec)
    out = out or Path("runs") / f"study-{spec.name}"
    if address is not None and backend != "ray":
        raise ConfigError("study --address names a Ray cluster; it needs --backend ray")
    if train and backend == "ray":
        from securevfl.study.ray_backend import require_ray

        require_ray()  # one error line before anything is written or loaded
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "study.toml", spec.source)
    plan = [{"run_id": r.run_id, "grid": r.grid, "cell": r.cell, "seed": r.seed, "levels": r.levels, "refused": r.refused} for r in runs]
    atomic_write_text(out / "plan.json", json.dumps(plan, indent=1) + "\n")
    meta = {"study": spec.name, "description": spec.description, "command": command, "study_file": str(study_path),
            "summary_epochs": spec.summary_epochs}  # how the rows' metrics were averaged: a restore from the table checks with it
    crashed: list[RunOutcome] = []
    if train:
        reuse_finished_runs(runs, out, list(reuse_from), log, summary_epochs=spec.summary_epochs)
        check_data(runs)
        last_report = [time.monotonic()]

        def snapshot(outcome: RunOutcome) -> None:
            with_report = time.monotonic() - last_report[0] >= report_every
            write_outputs(spec, runs, out, meta, command, report=with_report)
            if with_report:
                last_report[0] = time.monotonic()

        outcomes = run_study(
            training_order(spec, runs),
            out,
            workers=workers,
            log=log,
            show_progress=show_progress,
            retry_failed=retry_failed,
            plugins=spec.plugins,
            backend=backend,
            address=address,
            on_finished=snapshot,
        )
        crashed = [o for o in outcomes if o.status == RunStatus.CRASHED]
        for outcome in crashed:
            log(f"crashed: {outcome.run_id}: {outcome.detail}")
    rows, csv_path, json_path, report_path = write_outputs(spec, runs, out, meta, command, report=True)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    # A crash leaves no record a table counts (only crash.txt): the run reads as pending, and would
    # train again next time. Count this invocation's crashes here, so the exit code says 1.
    moved = min(len(crashed), counts.get(RunStatus.PENDING, 0))
    if moved:
        counts[RunStatus.CRASHED] = moved
        counts[RunStatus.PENDING] -= moved
        if not counts[RunStatus.PENDING]:
            del counts[RunStatus.PENDING]
    shown = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return StudySummary(
        f"study {spec.name}: {len(rows)} runs ({shown}); {pending_summary(rows)}\n"
        f"table: {csv_path}, {json_path}\nreport: {report_path}",
        counts,
    )


def write_outputs(
    spec: StudySpec, runs: list[PlannedRun], out: Path, meta: dict[str, Any], command: str, report: bool
) -> tuple[list[dict[str, Any]], Path, Path, Path]:
    """Write the tables (and, if ``report``, the report) from what the run folders hold now.

    The tables and ``report.md`` are replaced atomically, so a copy or commit taken at any moment
    has whole ones (the report's PNGs are rewritten in place by :mod:`~securevfl.study.plots`).
    The JSON table carries ``progress`` (one line) and ``pending`` (per grid: the cells with
    pending seeds), so a partial table says what it lacks.
    """
    rows, histories = collect_rows(runs, out, spec.summary_epochs)
    progress = {
        "progress": pending_summary(rows),
        "pending": {grid.grid: grid.pending_cells for grid in pending_by_grid(rows) if not grid.complete},
    }
    csv_path, json_path = write_table(rows, histories, out, {**meta, **progress})
    report_path = out / REPORT_NAME
    if report:
        report_path = write_report(spec, runs, rows, histories, out, command=command)
    return rows, csv_path, json_path, report_path


class StudySummary(str):
    """The summary line of a study, with how many runs ended in each status (for the exit code)."""

    counts: dict[str, int]

    def __new__(cls, text: str, counts: dict[str, int]) -> StudySummary:
        summary = super().__new__(cls, text)
        summary.counts = dict(counts)
        return summary

    @property
    def exit_code(self) -> int:
        """0: every run trained (or was refused/skipped by design; collapsed runs trained to the end); 1: a run crashed (a bug); 3: a run stopped."""
        if self.counts.get(RunStatus.CRASHED, 0):
            return 1
        if any(self.counts.get(status, 0) for status in STOPPED if status != RunStatus.COLLAPSED):  # collapsed trained to the end
            return 3
        return 0


def check_data(runs: list[PlannedRun]) -> None:
    """Load every distinct data set the runs need once, before any worker starts.

    A missing or corrupt data folder is one ``ConfigError`` line now, not one failed run per cell
    after the workers have started.
    """
    from securevfl.data import load_dataset
    from securevfl.data.config import DataConfig

    seen: set[str] = set()
    for run in runs:
        if run.refused is not None or "data" not in run.config:
            continue
        data = DataConfig.model_validate(run.config["data"])
        key = data.model_dump_json()
        if key in seen:
            continue
        seen.add(key)
        try:
            load_dataset(data)
        except SecureVFLError as exc:
            raise ConfigError(f"study run {run.run_id}: its data cannot be loaded: {exc}") from None
