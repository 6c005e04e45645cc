"""Figures in the style of the seed paper's: accuracy per epoch, last-epoch accuracy vs a knob, trade-offs.

Rules every figure keeps (issue 15):

- **same seeds on both sides**: where a figure compares schemes (or a defense level with the
  undefended run), every mean is taken over the seeds that finished in *all* the compared runs;
  a seed left out is named in the figure's footnote;
- **spreads clipped to [0, 100]**: the shaded bands (min-max over seeds) and the error bars (95 %
  t interval over seeds) never leave the range of an accuracy;
- **log axes** for amplification, variances and norms (log) and drop rates (logit: 0.5, 0.9, 0.99,
  0.999 are evenly spaced), whenever every value allows it — otherwise linear, with a note;
- a **no-defense reference** (the undefended cell of the same setting, dashed) on the plots of a
  defense's knob;
- **nothing undrawn without a note**: runs that stopped (diverged, failed, collapsed), were
  refused or are pending are named in the footnote, so an empty spot is never read as 0 %.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securevfl.attacks import MAIN_ACCURACY, attack_metrics
from securevfl.study.spec import GridSpec
from securevfl.study.statistics import CONFIDENCE, mean_interval
from securevfl.study.status import RunStatus

__all__ = ["TradeoffPoint", "axis_scale", "clipped_errors", "common_seeds", "plot_epochs", "plot_tradeoff", "plot_versus_axis"]

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


LOG_KNOBS = ("gamma", "variance", "max_norm", "noise_multiplier", "scale")
"""Knobs (last part of the axis key) drawn on a log axis: they are swept over orders of magnitude."""
LOGIT_KNOBS = ("drop_rate",)
"""Knobs in (0, 1) whose interesting values approach 1 (0.9, 0.99, 0.999): a logit axis."""


def axis_scale(key: str, values: Iterable[float], forced: bool | None = None) -> tuple[str, str]:
    """(matplotlib scale, note) for an axis: ``log`` / ``logit`` by the knob's name when every value allows it.

    ``forced`` is the grid's ``log_x`` (True: log, False: linear). Other knobs get a log axis when
    their positive values span 100x or more. The note says why a knob that should be logarithmic
    is drawn linear (a value of 0, say).
    """
    values = [float(v) for v in values]
    name = key.rsplit(".", 1)[-1]
    positive = bool(values) and all(v > 0 for v in values)
    if forced is False:
        return "linear", ""
    if name in LOGIT_KNOBS and forced is None:
        if values and all(0 < v < 1 for v in values):
            return "logit", ""
        return "linear", f"{name}: linear axis (a value of 0 or 1 has no logit)"
    if name in LOG_KNOBS or forced:
        return ("log", "") if positive else ("linear", f"{name}: linear axis (a value <= 0 has no logarithm)")
    if positive and max(values) / min(values) >= 100:
        return "log", ""
    return "linear", ""


def dodge(scale: str, values: Sequence[float], index: int, count: int) -> Any:
    """A small horizontal offset for series ``index`` of ``count``, so identical points of two schemes both show.

    The offset is 1 % of the axis span in the axis's own scale (log, logit or linear); the tick
    labels stay at the true values.
    """
    offset = 0.012 * (index - (count - 1) / 2)
    if count < 2 or not values:
        return lambda x: x
    if scale == "log":
        span = math.log10(max(values) / min(values)) or 1.0
        return lambda x: x * 10 ** (offset * span)
    if scale == "logit":
        logits = [math.log(v / (1 - v)) for v in values]
        span = (max(logits) - min(logits)) or 1.0
        return lambda x: 1 / (1 + math.exp(-(math.log(x / (1 - x)) + offset * span)))
    span = (max(values) - min(values)) or 1.0
    return lambda x: x + offset * span


def clipped_errors(mean: float, low: float | None, high: float | None, floor: float = 0.0, ceiling: float = 100.0) -> tuple[float, float]:
    """(below, above) error-bar lengths for an interval clipped to ``[floor, ceiling]`` (0 without an interval)."""
    if low is None or high is None:
        return 0.0, 0.0
    return max(0.0, mean - max(low, floor)), max(0.0, min(high, ceiling) - mean)


def common_seeds(groups: Sequence[Iterable[dict[str, Any]]]) -> set[int]:
    """The seeds that finished (status ok) in every group of runs."""
    sets = [{int(row["seed"]) for row in group if row["status"] == RunStatus.OK} for group in groups]
    return set.intersection(*sets) if sets else set()


def _level_label(row: dict[str, Any]) -> str:
    parts = [str(v) if k == "axis:variant" else f"{k.removeprefix('axis:')}={v}"
             for k, v in row.items() if k.startswith("axis:") and k != "axis:scheme"]
    return ", ".join(parts) or "run"


def _not_drawn(rows: list[dict[str, Any]]) -> list[str]:
    """``not drawn: plain variance=0.001: seeds 0,1,2 collapsed; ...`` for every run without a number."""
    groups: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        if r["status"] != RunStatus.OK:
            groups.setdefault((f"{r['axis:scheme']} {_level_label(r)}", str(r["status"])), []).append(int(r["seed"]))
    parts = [f"{where}: seed{'s' if len(seeds) > 1 else ''} {','.join(map(str, sorted(seeds)))} {status}" for (where, status), seeds in sorted(groups.items())]
    return ["not drawn: " + "; ".join(parts)] if parts else []


def _footnote(figure: Any, notes: list[str], limit: int = 6) -> float:
    """Write the notes under the figure, wrapped; return the fraction of the height they take."""
    import textwrap

    lines: list[str] = []
    for note in notes:
        lines += textwrap.wrap(note, 150)
    if len(lines) > limit:
        lines = [*lines[: limit - 1], f"... and {len(lines) - limit + 1} more line(s): see the report's table of runs without a result"]
    if not lines:
        return 0.0
    figure.text(0.01, 0.005, "\n".join(lines), fontsize=6, color="dimgray", va="bottom")
    return 0.02 + 0.022 * len(lines)


def _same_seed_rows(rows: list[dict[str, Any]], key: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Keep, for each comparison group ``key(row)``, only the seeds finished in every member of the group.

    ``key`` maps a row to (group, member): e.g. (cell level, scheme). Returns the kept ok rows and
    one note per group that lost seeds.
    """
    groups: dict[Any, dict[Any, list[dict[str, Any]]]] = {}
    for row in rows:
        if row["status"] in (RunStatus.REFUSED,):
            continue
        group, member = key(row)
        groups.setdefault(group, {}).setdefault(member, []).append(row)
    kept: list[dict[str, Any]] = []
    notes: list[str] = []
    for group, members in groups.items():
        drawable = [m for m in members.values() if any(r["status"] == RunStatus.OK for r in m)]
        seeds = common_seeds(drawable)
        every = {int(r["seed"]) for m in drawable for r in m if r["status"] == RunStatus.OK}
        if every - seeds:
            notes.append(f"{group}: mean over seeds {','.join(map(str, sorted(seeds))) or 'none'} finished in every scheme (left out: {','.join(map(str, sorted(every - seeds)))})")
        kept += [r for m in drawable for r in m if r["status"] == RunStatus.OK and int(r["seed"]) in seeds]
    return kept, notes


def plot_epochs(grid: GridSpec, rows: list[dict[str, Any]], histories: dict[str, list[dict[str, Any]]], path: Path) -> Path | None:
    """One panel per scheme; per cell, main accuracy (solid) and each attack metric (dashed, dotted...) per epoch.

    Each cell's curves in every panel are means over the same seeds (those finished in every scheme).
    """
    rows = [row for row in rows if row["grid"] == grid.name]
    schemes = list(dict.fromkeys(row["axis:scheme"] for row in rows))
    if not any(row["run_id"] in histories for row in rows):
        return None
    kept, notes = _same_seed_rows([r for r in rows if r["status"] != RunStatus.OK or r["run_id"] in histories], lambda r: (_level_label(r), r["axis:scheme"]))
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(schemes), figsize=(5.2 * len(schemes), 4.2), sharey=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels_in_order = list(dict.fromkeys(_level_label(row) for row in rows))
    for panel, scheme in zip(axes[0], schemes, strict=True):
        cells: dict[str, list[list[dict[str, Any]]]] = {}
        for row in kept:
            if row["axis:scheme"] == scheme:
                cells.setdefault(_level_label(row), []).append(histories[row["run_id"]])
        for label, runs in cells.items():
            color = colors[labels_in_order.index(label) % len(colors)]
            for metric, name, style in curves():
                series = _by_epoch(runs, metric)
                if not series:
                    continue
                epochs = sorted(series)
                means = [statistics.fmean(series[e]) * 100 for e in epochs]
                panel.plot(epochs, means, color=color, label=f"{label}: {name}", markersize=3, **style)
                if any(len(series[e]) > 1 for e in epochs):
                    low = [max(0.0, min(series[e]) * 100) for e in epochs]
                    high = [min(100.0, max(series[e]) * 100) for e in epochs]
                    panel.fill_between(epochs, low, high, color=color, alpha=0.15)
        panel.set_title(scheme)
        panel.set_xlabel("epoch")
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%): mean over seeds, min-max shaded")
    axes[0][0].set_ylim(-3, 103)
    handles, labels = [], []
    for panel in axes[0]:
        for handle, label in zip(*panel.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    figure.legend(handles, labels, loc="lower center", ncol=min(3, max(1, len(labels))), fontsize=7, frameon=False,
                  bbox_to_anchor=(0.5, 0.0))
    figure.suptitle(grid.title or grid.name, fontsize=10)
    note_height = _footnote(figure, notes + _not_drawn(rows))
    rows_of_legend = -(-len(labels) // 3)
    legend_height = 0.045 * rows_of_legend
    if note_height:  # the legend sits above the notes
        for legend in figure.legends:
            legend.set_bbox_to_anchor((0.5, note_height))
    figure.tight_layout(rect=(0, min(0.6, 0.04 + legend_height + note_height), 1, 0.95))
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


def _errorbar_points(values: list[list[float]]) -> tuple[list[float], list[list[float]]]:
    """Means (points) and clipped 95 % interval bars of lists of fractions."""
    means, below, above = [], [], []
    for group in values:
        interval = mean_interval([100 * v for v in group])
        assert interval.mean is not None
        lo, hi = clipped_errors(interval.mean, interval.low, interval.high)
        means.append(interval.mean)
        below.append(lo)
        above.append(hi)
    return means, [below, above]


def plot_versus_axis(
    grid: GridSpec, rows: list[dict[str, Any]], path: Path, reference: dict[str, list[dict[str, Any]]] | None = None
) -> Path | None:
    """Last-epoch main and attack metrics against the grid's ``x`` axis, one colour per scheme.

    At each x every scheme's mean is over the same seeds (those finished in every scheme there);
    error bars are the 95 % t interval over those seeds, clipped to [0, 100]. ``reference``
    (scheme -> the undefended cell's rows) draws the no-defense level as dashed lines.
    """
    if grid.x is None:
        return None
    rows = [row for row in rows if row["grid"] == grid.name]
    key = f"axis:{grid.x}"

    def others_of(row: dict[str, Any]) -> str:
        return ", ".join(f"{k.removeprefix('axis:')}={v}" for k, v in row.items() if k.startswith("axis:") and k not in (key, "axis:scheme"))

    kept, notes = _same_seed_rows(rows, lambda r: (f"{grid.x}={r[key]}{' ' + others_of(r) if others_of(r) else ''}", r["axis:scheme"]))
    plt = _pyplot()
    figure, panel = plt.subplots(figsize=(6.8, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drew = False
    xs_all: list[float] = []
    groups: dict[tuple[str, str], dict[float, list[dict[str, Any]]]] = {}
    for row in kept:
        groups.setdefault((row["axis:scheme"], others_of(row)), {}).setdefault(float(row[key]), []).append(row)
    every_x = sorted({x for by_x in groups.values() for x in by_x})
    scale, scale_note = axis_scale(grid.x, every_x, grid.log_x)
    for index, ((scheme, others), by_x) in enumerate(groups.items()):
        color = colors[index % len(colors)]
        xs = sorted(by_x)
        xs_all += xs
        shift = dodge(scale, every_x, index, len(groups))
        for metric, name, style in curves():
            values = [[float(r[metric]) for r in by_x[x] if r.get(metric) is not None] for x in xs]
            points = [(x, v) for x, v in zip(xs, values, strict=True) if v]
            if not points:
                continue
            means, errors = _errorbar_points([v for _, v in points])
            label = f"{scheme}{' ' + others if others else ''}: {name}"
            panel.errorbar([shift(x) for x, _ in points], means, yerr=errors, color=color, label=label, capsize=3, markersize=4, **style)
            drew = True
            ref_rows = [r for r in (reference or {}).get(scheme, []) if r["status"] == RunStatus.OK and r.get(metric) is not None]
            if ref_rows:
                used = {int(r["seed"]) for x in xs for r in by_x[x]}
                same = [float(r[metric]) * 100 for r in ref_rows if int(r["seed"]) in used] or [float(r[metric]) * 100 for r in ref_rows]
                panel.axhline(statistics.fmean(same), color=color, linestyle=(0, (4, 3)), linewidth=0.9, alpha=0.8,
                              label=f"{scheme}: {name}, no defense")
    if not drew:
        plt.close(figure)
        return None
    panel.set_xscale(scale)
    if scale in ("log", "logit"):  # ticks at the swept values: 10^0 and 10^1 alone say little about gamma 3
        from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

        ticks = sorted(set(xs_all))
        panel.xaxis.set_major_locator(FixedLocator(ticks))
        panel.xaxis.set_major_formatter(lambda value, _: f"{value:g}")
        panel.xaxis.set_minor_locator(NullLocator())
        panel.xaxis.set_minor_formatter(NullFormatter())
    panel.set_xlabel(grid.x + (" (logit scale)" if scale == "logit" else " (log scale)" if scale == "log" else ""))
    panel.set_ylabel(f"accuracy at the last epoch (%), mean and {100 * CONFIDENCE:.0f} % CI")
    panel.set_ylim(-3, 103)
    panel.grid(alpha=0.3)
    panel.set_title(grid.title or grid.name, fontsize=10)
    panel.legend(fontsize=6)
    note_height = _footnote(figure, ([scale_note] if scale_note else []) + notes + _not_drawn(rows))
    figure.tight_layout(rect=(0, note_height, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


@dataclass
class TradeoffPoint:
    """One defense level (or the undefended cell) of one scheme: its finished runs and what to print beside it."""

    scheme: str
    label: str
    rows: list[dict[str, Any]]
    undefended: bool = False
    notes: list[str] = field(default_factory=list)


def _epsilon_text(rows: list[dict[str, Any]]) -> str:
    """``eps 2.31`` from the accountant's record (PLD, else RDP), if the runs recorded one; else ''."""
    for column in ("dp_epsilon_pld", "dp_epsilon_rdp"):
        values = [float(r[column]) for r in rows if r.get(column) not in (None, "")]
        if values:
            value = statistics.fmean(values)
            return f"eps {value:.3g}" if math.isfinite(value) else "eps inf"
    return ""


def plot_tradeoff(title: str, metric: str, metric_label: str, points: list[TradeoffPoint], path: Path) -> Path | None:
    """Attack success against main accuracy: one point per defense level, the undefended point marked.

    Per scheme, every point is a mean over the same seeds (those finished at every level of that
    scheme, the undefended one included); error bars are 95 % t intervals over those seeds in both
    directions, clipped to [0, 100]. A level recorded with an accountant's epsilon (``label_dp``)
    shows it beside its point; levels whose runs stopped are named in the footnote.
    """
    by_scheme: dict[str, list[TradeoffPoint]] = {}
    for point in points:
        by_scheme.setdefault(point.scheme, []).append(point)
    plt = _pyplot()
    figure, panel = plt.subplots(figsize=(6.8, 5.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    notes: list[str] = []
    drew = False
    for index, (scheme, mine) in enumerate(by_scheme.items()):
        color = colors[index % len(colors)]
        drawable = [p for p in mine if any(r["status"] == RunStatus.OK and r.get(metric) is not None for r in p.rows)]
        for point in mine:
            if point not in drawable:
                statuses = sorted({str(r["status"]) for r in point.rows}) or ["no run"]
                notes.append(f"{scheme} {point.label}: not drawn ({', '.join(statuses)})")
            stopped = [r for r in point.rows if r["status"] not in (RunStatus.OK, RunStatus.PENDING, RunStatus.REFUSED)]
            if stopped and point in drawable:
                notes.append(f"{scheme} {point.label}: {len(stopped)} run(s) stopped ({', '.join(sorted({str(r['status']) for r in stopped}))})")
        seeds = common_seeds([p.rows for p in drawable])
        every = {int(r["seed"]) for p in drawable for r in p.rows if r["status"] == RunStatus.OK}
        if every - seeds:
            notes.append(f"{scheme}: means over seeds {','.join(map(str, sorted(seeds))) or 'none'} (finished at every level)")
        coords = []
        for point in drawable:
            used = [r for r in point.rows if r["status"] == RunStatus.OK and int(r["seed"]) in seeds and r.get(metric) is not None]
            if not used:
                continue
            main = mean_interval([100 * float(r[MAIN_ACCURACY.name]) for r in used])
            attack = mean_interval([100 * float(r[metric]) for r in used])
            assert main.mean is not None and attack.mean is not None
            xerr = clipped_errors(main.mean, main.low, main.high)
            yerr = clipped_errors(attack.mean, attack.low, attack.high)
            marker = "*" if point.undefended else "o"
            panel.errorbar([main.mean], [attack.mean], xerr=[[xerr[0]], [xerr[1]]], yerr=[[yerr[0]], [yerr[1]]], color=color,
                           marker=marker, markersize=12 if point.undefended else 5, capsize=3, linestyle="none",
                           label=f"{scheme}: no defense" if point.undefended else None)
            text = "no defense" if point.undefended else point.label
            epsilon = _epsilon_text(used)
            panel.annotate(f"{text}{', ' + epsilon if epsilon else ''}", (main.mean, attack.mean), fontsize=6,
                           xytext=(4, 4), textcoords="offset points", color=color)
            coords.append((main.mean, attack.mean, point.undefended))
            drew = True
        defended = sorted((x, y) for x, y, undefended in coords if not undefended)
        if defended:
            panel.plot([x for x, _ in defended], [y for _, y in defended], color=color, linewidth=0.8, alpha=0.6, label=f"{scheme}: defense levels")
    if not drew:
        plt.close(figure)
        return None
    panel.set_xlabel(f"main accuracy at the last epoch (%), mean and {100 * CONFIDENCE:.0f} % CI")
    panel.set_ylabel(f"{metric_label} at the last epoch (%)")
    panel.set_xlim(-3, 103)
    panel.set_ylim(-3, 103)
    panel.grid(alpha=0.3)
    panel.set_title(title, fontsize=10)
    panel.legend(fontsize=7)
    note_height = _footnote(figure, notes)
    figure.tight_layout(rect=(0, note_height, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
