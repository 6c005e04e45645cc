"""Which cells of a study are still pending, for a folder that is committed while the study runs.

A long study's folder is meant to be committable at any time: its tables are rewritten after
every finished run (see :func:`securevfl.study.run_and_report`), and a reader of a partial
table must see at once that it is partial and what is missing. This module computes that from
the table rows alone (status ``pending``: nothing on disk yet, or an interrupted run that has a
checkpoint but no result), so ``--report-only`` on a half-finished folder says the same thing
as a snapshot written mid-study.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from securevfl.study.status import RunStatus

__all__ = ["GridProgress", "pending_by_grid", "pending_lines", "pending_summary"]


@dataclass(frozen=True)
class GridProgress:
    """One grid's progress: its runs, how many are pending, and its cells with pending seeds."""

    grid: str
    runs: int
    pending_runs: int
    cells: int
    pending_cells: dict[str, list[int]]  # cell -> its pending seeds, in plan order

    @property
    def complete(self) -> bool:
        return self.pending_runs == 0


def pending_by_grid(rows: list[dict[str, Any]]) -> list[GridProgress]:
    """Every grid of ``rows`` (study table rows, in plan order) with what it still lacks."""
    grids: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grids.setdefault(row["grid"], []).append(row)
    progress = []
    for grid, mine in grids.items():
        pending: dict[str, list[int]] = {}
        for row in mine:
            if row["status"] == RunStatus.PENDING:
                pending.setdefault(row["cell"], []).append(int(row["seed"]))
        cells = len(dict.fromkeys(row["cell"] for row in mine))
        progress.append(GridProgress(grid, len(mine), sum(map(len, pending.values())), cells, pending))
    return progress


def pending_summary(rows: list[dict[str, Any]]) -> str:
    """One line: ``complete`` or ``partial: 5 of 24 runs pending (grids gamma 3/12, defenses 2/12)``."""
    grids = pending_by_grid(rows)
    waiting = sum(grid.pending_runs for grid in grids)
    if not waiting:
        return "complete: every planned run has an outcome"
    per_grid = ", ".join(f"{grid.grid} {grid.pending_runs}/{grid.runs}" for grid in grids if not grid.complete)
    return f"partial: {waiting} of {len(rows)} runs pending (grids {per_grid})"


def pending_lines(rows: list[dict[str, Any]]) -> list[str]:
    """A Markdown section naming every pending cell per grid (empty when the study is complete).

    For the report (``report.md``): a table of a partial study is mean ± std over the seeds that
    finished, so the reader must see which cells and seeds are missing before comparing them.
    """
    grids = [grid for grid in pending_by_grid(rows) if not grid.complete]
    if not grids:
        return []
    lines = [
        "## Pending: this study is not finished",
        "",
        f"{pending_summary(rows)[len('partial: '):]}. Numbers above are over the seeds that finished; "
        "rerun the study's command to continue (finished runs are kept, interrupted runs resume from "
        "their last epoch).",
        "",
        "| grid | pending runs | cells with pending seeds | cells (pending seeds) |",
        "|---|---|---|---|",
    ]
    for grid in grids:
        named = "; ".join(f"{cell} ({', '.join(map(str, seeds))})" for cell, seeds in grid.pending_cells.items())
        lines.append(f"| {grid.grid} | {grid.pending_runs}/{grid.runs} | {len(grid.pending_cells)}/{grid.cells} | {named} |")
    return [*lines, ""]
