"""Figures in the style of the seed paper's: accuracy per epoch, and last-epoch accuracy vs a knob.

Every curve is the mean over seeds with the min-max range shaded (error bars on the knob
plots are one standard deviation). Runs that stopped early (failed) or were refused draw
nothing; the figure's footnote names them, so an empty spot is never mistaken for 0 %.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from securevfl.attacks import MAIN_ACCURACY, attack_metrics
from securevfl.study.spec import GridSpec
from securevfl.study.status import RunStatus

__all__ = ["plot_epochs", "plot_versus_axis"]

MAIN_STYLE = {"linestyle": "-", "marker": "o"}
#: Styles of the attack metrics' curves, in registry order (the backdoor dashed, label inference dotted...).
ATTACK_STYLES = ({"linestyle": "--", "marker": "s"}, {"linestyle": ":", "marker": "^"}, {"linestyle": "-.", "marker": "v"},
                 {"linestyle": (0, (1, 4)), "marker": "D"})


def curves() -> list[tuple[str, str, dict[str, Any]]]:
    """(metric, legend label, style) of every curve: the main task, then each registered attack metric."""
    attack = [(spec.name, spec.label, ATTACK_STYLES[index % len(ATTACK_STYLES)]) for index, spec in enumerate(attack_metrics())]
    return [(MAIN_ACCURACY.name, MAIN_ACCURACY.label, MAIN_STYLE), *attack]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class MaxNLocator:  # resolved lazily: matplotlib is imported only when a figure is drawn
    def __new__(cls, **kwargs: Any) -> Any:
        from matplotlib.ticker import MaxNLocator as locator

        return locator(**kwargs)


def _level_label(row: dict[str, Any]) -> str:
    parts = [str(v) if k == "axis:variant" else f"{k.removeprefix('axis:')}={v}"
             for k, v in row.items() if k.startswith("axis:") and k != "axis:scheme"]
    return ", ".join(parts) or "run"


def _not_drawn(rows: list[dict[str, Any]]) -> str:
    stopped = sorted({f"{r['axis:scheme']} {_level_label(r)}: {r['status']}" for r in rows if r["status"] not in (RunStatus.OK, RunStatus.PENDING)})
    return ("not drawn: " + "; ".join(stopped)) if stopped else ""


def plot_epochs(grid: GridSpec, rows: list[dict[str, Any]], histories: dict[str, list[dict[str, Any]]], path: Path) -> Path | None:
    """One panel per scheme; per cell, main accuracy (solid) and each attack metric (dashed, dotted...) per epoch."""
    rows = [row for row in rows if row["grid"] == grid.name]
    schemes = list(dict.fromkeys(row["axis:scheme"] for row in rows))
    if not any(row["run_id"] in histories for row in rows):
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(schemes), figsize=(5.2 * len(schemes), 4.2), sharey=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for panel, scheme in zip(axes[0], schemes, strict=True):
        cells: dict[str, list[list[dict[str, Any]]]] = {}
        for row in rows:
            if row["axis:scheme"] == scheme and row["run_id"] in histories:
                cells.setdefault(_level_label(row), []).append(histories[row["run_id"]])
        for index, (label, runs) in enumerate(cells.items()):
            color = colors[index % len(colors)]
            for metric, name, style in curves():
                series = _by_epoch(runs, metric)
                if not series:
                    continue
                epochs = sorted(series)
                means = [statistics.fmean(series[e]) * 100 for e in epochs]
                panel.plot(epochs, means, color=color, label=f"{label}: {name}", markersize=3, **style)
                if any(len(series[e]) > 1 for e in epochs):
                    panel.fill_between(epochs, [min(series[e]) * 100 for e in epochs], [max(series[e]) * 100 for e in epochs], color=color, alpha=0.15)
        panel.set_title(scheme)
        panel.set_xlabel("epoch")
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][0].set_ylim(-3, 103)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(3, max(1, len(labels))), fontsize=7, frameon=False)
    footnote = _not_drawn(rows)
    figure.suptitle(grid.title or grid.name, fontsize=10)
    if footnote:
        figure.text(0.01, 0.005, footnote[:220], fontsize=6, color="gray")
    rows_of_legend = -(-len(labels) // 3)
    figure.tight_layout(rect=(0, min(0.45, 0.04 + 0.045 * rows_of_legend), 1, 0.95))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _by_epoch(runs: list[list[dict[str, Any]]], metric: str) -> dict[int, list[float]]:
    series: dict[int, list[float]] = {}
    for history in runs:
        for entry in history:
            if entry.get(metric) is not None:
                series.setdefault(int(entry["epoch"]), []).append(float(entry[metric]))
    return series


def plot_versus_axis(grid: GridSpec, rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Last-epoch main and attack metrics against the grid's ``x`` axis, one colour per scheme."""
    if grid.x is None:
        return None
    rows = [row for row in rows if row["grid"] == grid.name]
    plt = _pyplot()
    figure, panel = plt.subplots(figsize=(6.4, 4.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    key = f"axis:{grid.x}"
    drew = False
    xs_all: list[float] = []
    groups: dict[tuple[str, str], dict[float, list[dict[str, Any]]]] = {}
    for row in rows:
        if row["status"] != RunStatus.OK:
            continue
        others = ", ".join(f"{k.removeprefix('axis:')}={v}" for k, v in row.items() if k.startswith("axis:") and k not in (key, "axis:scheme"))
        groups.setdefault((row["axis:scheme"], others), {}).setdefault(float(row[key]), []).append(row)
    for index, ((scheme, others), by_x) in enumerate(groups.items()):
        color = colors[index % len(colors)]
        xs = sorted(by_x)
        xs_all += xs
        for metric, name, style in curves():
            values = [[float(r[metric]) * 100 for r in by_x[x] if r.get(metric) is not None] for x in xs]
            points = [(x, v) for x, v in zip(xs, values, strict=True) if v]
            if not points:
                continue
            label = f"{scheme}{' ' + others if others else ''}: {name}"
            panel.errorbar([x for x, _ in points], [statistics.fmean(v) for _, v in points],
                           yerr=[statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in points],
                           color=color, label=label, capsize=3, markersize=4, **style)
            drew = True
    if not drew:
        plt.close(figure)
        return None
    positive = [x for x in xs_all if x > 0]
    log_x = grid.log_x if grid.log_x is not None else bool(positive) and len(positive) == len(xs_all) and max(positive) / min(positive) >= 100
    if log_x:
        panel.set_xscale("log")
    panel.set_xlabel(grid.x)
    panel.set_ylabel("accuracy at the last epoch (%)")
    panel.set_ylim(-3, 103)
    panel.grid(alpha=0.3)
    panel.set_title(grid.title or grid.name, fontsize=10)
    panel.legend(fontsize=7)
    footnote = _not_drawn(rows)
    if footnote:
        figure.text(0.01, 0.005, footnote[:200], fontsize=6, color="gray")
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
