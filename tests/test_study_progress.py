"""A long study's folder is committable mid-study: tables rewritten per run, pending cells named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import securevfl.study as study_module
from securevfl.study import run_and_report
from securevfl.study.pending import pending_by_grid, pending_lines, pending_summary

STUDY = """
[study]
name = "partial"
seeds = [0, 1]
[study.set]
"data.name" = "digits"
"data.train_limit" = 600
"data.test_limit" = 100
"train.epochs" = 4
[[grid]]
name = "g"
[grid.axes]
"train.lr" = [0.2, 0.3]
"""


def _row(grid: str, cell: str, seed: int, status: str) -> dict[str, Any]:
    return {"grid": grid, "cell": cell, "seed": seed, "status": status}


def test_pending_cells_are_counted_per_grid_and_named_with_their_seeds() -> None:
    rows = [
        _row("a", "x", 0, "ok"), _row("a", "y", 0, "pending"), _row("a", "x", 1, "failed"), _row("a", "y", 1, "pending"),
        _row("b", "z", 0, "ok"), _row("b", "z", 1, "refused"),
    ]
    a, b = pending_by_grid(rows)
    assert (a.grid, a.runs, a.pending_runs, a.cells, a.pending_cells) == ("a", 4, 2, 2, {"y": [0, 1]})
    assert b.complete and b.pending_cells == {}
    assert pending_summary(rows) == "partial: 2 of 6 runs pending (grids a 2/4)"
    section = pending_lines(rows)
    assert section[0] == "## Pending: this study is not finished"
    assert "| a | 2/4 | 1/2 | y (0, 1) |" in section and not any(line.startswith("| b ") for line in section)
    done = [{**row, "status": "ok"} for row in rows]
    assert pending_lines(done) == [] and pending_summary(done).startswith("complete")


def test_an_interrupted_study_leaves_tables_naming_its_pending_cells_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after the first finished run: the folder already has whole tables that say what is missing."""
    path = tmp_path / "study.toml"
    path.write_text(STUDY, encoding="utf-8")
    out = tmp_path / "out"
    original = study_module.write_outputs
    snapshots: list[dict[str, Any]] = []

    def interrupt_after_first_snapshot(*args: Any, **kwargs: Any) -> Any:
        original(*args, **kwargs)
        snapshots.append(json.loads((out / "study_runs.json").read_text(encoding="utf-8")))
        raise KeyboardInterrupt  # as Ctrl-C right after the first run finished

    monkeypatch.setattr(study_module, "write_outputs", interrupt_after_first_snapshot)
    with pytest.raises(KeyboardInterrupt):
        run_and_report(path, out, workers=1, show_progress=False, log=lambda _: None, report_every=0)
    monkeypatch.setattr(study_module, "write_outputs", original)

    (snapshot,) = snapshots  # written by the study itself, after its first run and before the interrupt
    rows = snapshot["rows"]
    finished = [(row["cell"], row["seed"]) for row in rows if row["status"] in ("ok", "collapsed")]  # a toy run may end at chance
    waiting = [(row["cell"], row["seed"]) for row in rows if row["status"] == "pending"]
    assert finished[0] == ("plain__train.lr=0.2", 0) and len(finished) + len(waiting) == 4 and waiting  # seed by seed
    assert snapshot["progress"] == f"partial: {len(waiting)} of 4 runs pending (grids g {len(waiting)}/4)"
    expected: dict[str, list[int]] = {}
    for cell, seed in waiting:
        expected.setdefault(cell, []).append(seed)
    assert snapshot["pending"] == {"g": expected}
    report = (out / "report.md").read_text(encoding="utf-8")
    pending = report[report.index("## Pending") : report.index("## Survival")]  # before the tables it qualifies
    named = "; ".join(f"{cell} ({', '.join(map(str, seeds))})" for cell, seeds in expected.items())
    assert f"| g | {len(waiting)}/4 | {len(expected)}/2 | {named} |" in pending

    # --report-only on the partial folder says what it lacks now (the worker may have finished more runs
    # while the snapshot was written, before the interrupt stopped it); the next invocation finishes the rest
    for run_id in ("g/plain__train.lr=0.3__seed1",):  # keep at least one run missing, as a kill mid-run would
        for leftover in (out / "runs" / run_id).glob("*"):
            leftover.unlink()
    on_disk = len(list((out / "runs").glob("**/result.json")))
    summary = run_and_report(path, out, train=False, show_progress=False, log=lambda _: None)
    assert f"partial: {4 - on_disk} of 4 runs pending" in summary
    assert "plain__train.lr=0.3 (" in (out / "report.md").read_text().split("## Pending")[1].split("## Survival")[0]
    summary = run_and_report(path, out, workers=1, show_progress=False, log=lambda _: None)
    assert "4 ok" in summary and "complete" in summary and summary.exit_code == 0
    assert "## Pending" not in (out / "report.md").read_text()
    assert json.loads((out / "study_runs.json").read_text())["pending"] == {}
