"""``securevfl study``: grids of trainings over attack x defense x scheme x seeds, and their report.

Modules, one job each:

- :mod:`~securevfl.study.spec`: the study file and its expansion into validated runs;
- :mod:`~securevfl.study.runner`: worker processes, progress, resume;
- :mod:`~securevfl.study.table`: one row per run (CSV, JSON) and mean / spread per cell;
- :mod:`~securevfl.study.plots`: the paper-style figures (PNG);
- :mod:`~securevfl.study.survival`: does each attack survive encryption, does each defense keep working;
- :mod:`~securevfl.study.report`: the Markdown report tying them together.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from securevfl.files import atomic_write_text
from securevfl.study.report import write_report
from securevfl.study.runner import run_study
from securevfl.study.spec import PlannedRun, StudySpec, load_study, plan_runs
from securevfl.study.status import RunStatus
from securevfl.study.table import collect_rows, write_table

__all__ = ["PlannedRun", "StudySpec", "load_study", "plan_runs", "run_and_report", "run_study"]


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
) -> str:
    """Train what is missing (unless ``train`` is false), then write table and report; return a summary."""
    spec = load_study(study_path, overrides)
    runs = plan_runs(spec)
    out = out or Path("runs") / f"study-{spec.name}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "study.toml", spec.source)
    plan = [{"run_id": r.run_id, "grid": r.grid, "cell": r.cell, "seed": r.seed, "levels": r.levels, "refused": r.refused} for r in runs]
    atomic_write_text(out / "plan.json", json.dumps(plan, indent=1) + "\n")
    if train:
        outcomes = run_study(
            training_order(spec, runs),
            out,
            workers=workers,
            log=log,
            show_progress=show_progress,
            retry_failed=retry_failed,
            plugins=spec.plugins,
        )
        crashed = [o for o in outcomes if o.status == RunStatus.CRASHED]
        for outcome in crashed:
            log(f"crashed: {outcome.run_id}: {outcome.detail}")
    rows, histories = collect_rows(runs, out)
    meta = {"study": spec.name, "description": spec.description, "command": command, "study_file": str(study_path)}
    csv_path, json_path = write_table(rows, histories, out, meta)
    report_path = write_report(spec, runs, rows, histories, out, command=command)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    shown = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"study {spec.name}: {len(rows)} runs ({shown})\ntable: {csv_path}, {json_path}\nreport: {report_path}"
