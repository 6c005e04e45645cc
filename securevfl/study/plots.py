"""Figures in the style of the seed paper's: accuracy per epoch, last-epoch accuracy vs a knob, trade-offs.

Rules every figure keeps (issue 15):

- **same seeds on both sides**: where a figure compares schemes (or a defense level with the
  undefended run), every mean is taken over the seeds that finished in *all* the compared runs;
  a seed left out is named in the figure's footnote;
- **spreads clipped to [0, 100]**: the shaded bands (min-max over seeds) and the error bars (95 %
  t interval over seeds) never leave the range of an accuracy;
- **log axes** for amplification, variances and norms (log) and drop rates (logit: 0.5, 0.9, 0.99,
  0.999 are evenly spaced), whenever every value allows it — otherwise linear, with a note;
- a **no-defense reference** (the undefended cell of the same setting, dashed markers) on the plots
  of a defense's knob, one marker per level over exactly that level's seeds;
- **one series per level of the other axes** (``residual = sample``), ordered along ``x``;
- **nothing undrawn without a note**: runs that stopped (diverged, failed, collapsed), were
  refused or are pending are named in the footnote, so an empty spot is never read as 0 %; a
  figure with nothing to draw returns why (:attr:`Figure.absent`), which the report prints; a
  trade-off figure also draws each stopped seed as an x where it stood at its last epoch before
  the stop (lettered, in no mean);
- **epsilon beside each trade-off point** that recorded one, and a note when none means anything.

Every plot function returns a :class:`Figure` holding the drawn series as data, so tests check
what a figure shows against hand computations, not its pixels.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securevfl.attacks import MAIN_ACCURACY, attack_metrics
from securevfl.study.spec import GridSpec
from securevfl.study.statistics import CONFIDENCE, mean_interval
from securevfl.study.status import STOPPED, WAITING, RunStatus

__all__ = [
    "DrawnPoint", "Figure", "Series", "TradeoffPoint", "absent_reason", "axis_scale", "clipped_errors", "common_seeds", "epsilon_notes", "group_label",
    "plot_epochs", "plot_tradeoff", "plot_versus_axis", "tradeoff_series", "versus_series",
]

MAIN_STYLE = {"linestyle": "-", "marker": "o", "markersize": 2.5}
#: Styles of the attack metrics' curves, in registry order (the backdoor dashed, label inference dotted...).
ATTACK_STYLES = ({"linestyle": "--", "marker": "s", "markersize": 2.5}, {"linestyle": ":", "marker": "^", "markersize": 2.5},
                 {"linestyle": "-.", "marker": "v", "markersize": 2.5}, {"linestyle": (0, (1, 4)), "marker": "D", "markersize": 2.5})


#: how the axes name a run's number; a study with ``summary_epochs`` > 1 passes ``over the last N epochs``
LAST_EPOCH = "at the last epoch"


def when_reported(summary_epochs: int) -> str:
    """The axis words for a study's ``summary_epochs``."""
    return LAST_EPOCH if summary_epochs <= 1 else f"over the last {summary_epochs} epochs"


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
    """``not drawn: plain variance=0.001: seeds 0,1,2 collapsed; ...`` for every run that stopped, and one line for
    the runs not trained yet (``pending: 15 runs (seed 4 of every level)``): the stops are findings a reader must
    see, the pending seeds only say the figure is provisional, and listed level by level they pushed the stops
    out of the footnote."""
    groups: dict[tuple[str, str], list[int]] = {}
    waiting: dict[int, int] = {}
    for r in rows:
        if r["status"] in WAITING:
            waiting[int(r["seed"])] = waiting.get(int(r["seed"]), 0) + 1
        elif r["status"] != RunStatus.OK:
            groups.setdefault((f"{r['axis:scheme']} {_short_level(_level_label(r))}", str(r["status"])), []).append(int(r["seed"]))
    parts = [f"{where}: seed{'s' if len(seeds) > 1 else ''} {','.join(map(str, sorted(seeds)))} {status}" for (where, status), seeds in sorted(groups.items())]
    notes = ["not drawn: " + "; ".join(parts)] if parts else []
    if waiting:
        levels = len({(r["axis:scheme"], _level_label(r)) for r in rows})
        per_seed = ", ".join(f"seed {seed} of {'every level' if count == levels else f'{count} level(s)'}" for seed, count in sorted(waiting.items()))
        notes.append(f"pending (not trained yet, so this figure is provisional): {sum(waiting.values())} run(s): {per_seed}")
    return notes


#: Lines of footnote a figure holds; the report prints the notes of a figure that needs more in full beside it.
FOOTNOTE_LINES = 6


def _wrapped(notes: list[str], width: int) -> list[str]:
    import textwrap

    return [line for note in notes for line in textwrap.wrap(note, width)]


def notes_fit(notes: list[str], figure_width: float = 6.8) -> bool:
    """Whether a figure's notes fit its footnote whole (else it ends in "... and k more line(s)")."""
    return len(_wrapped(notes, int(135 * figure_width / 6.8))) <= FOOTNOTE_LINES


def _footnote(figure: Any, notes: list[str], limit: int = FOOTNOTE_LINES) -> float:
    """Write the notes under the figure, wrapped; return the fraction of the height they take."""
    width = int(135 * figure.get_figwidth() / 6.8)  # 135 characters of 6-point text fit a 6.8-inch figure
    lines = _wrapped(notes, width)
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


def plot_epochs(grid: GridSpec, rows: list[dict[str, Any]], histories: dict[str, list[dict[str, Any]]], path: Path) -> Figure:
    """Small multiples: one panel per cell level; in it, per scheme (a colour), main accuracy (solid) and each
    attack metric (dashed, dotted...) per epoch, mean over seeds with the min-max shaded.

    Why one panel per level and not per scheme: a grid of 15 levels drew 30 curves in one panel
    under a legend taller than the panel (a referee could read nothing); a level's panel holds at
    most a few curves, and the schemes of a level — the comparison part 2 is for — sit side by
    side in it. Each level's curves in a panel are means over the same seeds (those finished in
    every scheme); a stopped seed is drawn dotted up to its stop, never averaged.
    """
    rows = [row for row in rows if row["grid"] == grid.name]
    schemes = list(dict.fromkeys(row["axis:scheme"] for row in rows))
    if not any(row["run_id"] in histories for row in rows):
        return Figure(None, absent=absent_reason(rows, "a per-epoch history"))
    kept, notes = _same_seed_rows([r for r in rows if r["status"] != RunStatus.OK or r["run_id"] in histories], lambda r: (_level_label(r), r["axis:scheme"]))
    plt = _pyplot()
    levels = list(dict.fromkeys(_level_label(row) for row in rows))
    columns = min(EPOCH_PANEL_COLUMNS, len(levels))
    panel_rows = -(-len(levels) // columns)
    figure, axes = plt.subplots(panel_rows, columns, figsize=(3.3 * columns + 0.6, 2.3 * panel_rows + 1.4), sharex=True, sharey=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color_of = {scheme: colors[index % len(colors)] for index, scheme in enumerate(schemes)}
    handles: dict[str, Any] = {}
    for index, level in enumerate(levels):
        panel = axes[index // columns][index % columns]
        for order, scheme in enumerate(schemes):
            # each later scheme a thinner line: a CKKS curve that repeats plaintext's (as it should) leaves plaintext's
            # wider stroke visible around it instead of hiding it
            width = max(0.7, 2.4 - 0.8 * order) if len(schemes) > 1 else 1.5
            runs = [histories[row["run_id"]] for row in kept if row["axis:scheme"] == scheme and _level_label(row) == level]
            for metric, name, style in curves():
                series = _by_epoch(runs, metric)
                if not series:
                    continue
                epochs = sorted(series)
                means = [statistics.fmean(series[e]) * 100 for e in epochs]
                (line,) = panel.plot(epochs, means, color=color_of[scheme], **{**style, "linewidth": width, "markersize": 1.7 * width})
                handles.setdefault(f"{scheme}: {name}" if len(schemes) > 1 else name, line)
                if any(len(series[e]) > 1 for e in epochs):
                    panel.fill_between(epochs, [max(0.0, min(series[e]) * 100) for e in epochs],
                                       [min(100.0, max(series[e]) * 100) for e in epochs], color=color_of[scheme], alpha=0.15)
            for history in _stopped_histories(rows, histories, scheme).get(level, []):
                stop = _draw_until_stop(panel, history, color_of[scheme])
                if stop is not None:
                    handles.setdefault("a stopped seed, to its last evaluated epoch (x)", stop)
        panel.set_title(_short_level(level), fontsize=7)
        panel.grid(alpha=0.3)
        panel.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
    for index in range(len(levels), panel_rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    for panel in axes[-1]:
        panel.set_xlabel("epoch", fontsize=8)
    for panel_row in axes:
        panel_row[0].set_ylabel("%", fontsize=8)
    axes[0][0].set_ylim(-3, 103)
    title = textwrap.fill(grid.title or grid.name, width=int(14 * figure.get_figwidth()))  # a long title is wrapped, not cut
    legend_rows = -(-len(handles) // 3)
    title_height = 0.42 + 0.14 * title.count("\n")  # inches: the suptitle (tight_layout keeps room for it itself)
    header = title_height + 0.13 * legend_rows + 0.05  # and the legend's rows under it
    figure.set_figheight(2.3 * panel_rows + 0.5 + header)  # the panels keep their height however long the header
    figure.suptitle(f"{title}\naccuracy per epoch: mean over seeds, min-max shaded", fontsize=9)
    figure.legend(list(handles.values()), list(handles), loc="upper center", fontsize=7, frameon=False, ncol=min(3, len(handles)),
                  bbox_to_anchor=(0.5, 1.0 - title_height / figure.get_figheight()))
    notes += _not_drawn(rows)
    if any(_stopped_histories(rows, histories, scheme) for scheme in schemes):
        notes.append("dotted to an x: a stopped seed's attack success (main accuracy without an attack) up to its last evaluated epoch, the one before its stop, not in the means; each later scheme is drawn thinner, so a curve that repeats plaintext's shows plaintext's around it")
    note_height = _footnote(figure, notes)
    figure.tight_layout(rect=(0, note_height, 1, 1.0 - (header - title_height) / figure.get_figheight()))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Figure(path, notes=notes)


#: Panels per row of an epochs figure (one panel per cell level).
EPOCH_PANEL_COLUMNS = 4


def _short_level(label: str) -> str:
    """``defense.0.drop_rate=0.9, defense.0.residual=row`` -> ``drop_rate=0.9, residual=row`` for a panel title."""
    return ", ".join(f"{_short(part.split('=', 1)[0])}={part.split('=', 1)[1]}" if "=" in part else part for part in label.split(", "))


def _stopped_histories(
    rows: list[dict[str, Any]], histories: dict[str, list[dict[str, Any]]], scheme: str
) -> dict[str, list[list[dict[str, Any]]]]:
    """level label -> the histories of this scheme's stopped runs (kept in their ``failed.json``), one per seed.

    A stopped run has no last-epoch number, but what it did before the stop is a finding (a backdoor
    at 93 % that then diverged): each is drawn on its own, never averaged with finished seeds.
    """
    stopped: dict[str, list[list[dict[str, Any]]]] = {}
    for row in rows:
        if row["axis:scheme"] == scheme and row["status"] in STOPPED and histories.get(row["run_id"]):
            stopped.setdefault(_level_label(row), []).append(histories[row["run_id"]])
    return stopped


def _draw_until_stop(panel: Any, history: list[dict[str, Any]], color: str) -> Any:
    """One stopped seed: its attack's success (or main accuracy without an attack) up to the stop, thin, ended by an x.

    Returns the drawn line (for the legend), or None when the history holds no value.
    """
    metric = next((name for name, _, _ in curves()[1:] if any(h.get(name) is not None for h in history)), MAIN_ACCURACY.name)
    points = [(int(h["epoch"]), 100 * float(h[metric])) for h in history if h.get(metric) is not None]
    if not points:
        return None
    epochs, values = zip(*points, strict=True)
    (line,) = panel.plot(epochs, values, color=color, linewidth=0.8, alpha=0.6, linestyle=(0, (1, 1)), marker="x", markevery=[len(epochs) - 1],
                         markersize=6)
    return line


def _by_epoch(runs: list[list[dict[str, Any]]], metric: str) -> dict[int, list[float]]:
    series: dict[int, list[float]] = {}
    for history in runs:
        for entry in history:
            if entry.get(metric) is not None:
                series.setdefault(int(entry["epoch"]), []).append(float(entry[metric]))
    return series


@dataclass
class DrawnPoint:
    """One drawn point: where it sits, its clipped error bars, the text beside it and the seeds its means are over."""

    x: float
    y: float
    xerr: tuple[float, float] = (0.0, 0.0)
    yerr: tuple[float, float] = (0.0, 0.0)
    text: str = ""
    seeds: tuple[int, ...] = ()
    planned: int = 0
    """The seeds planned for this point (0: not counted); more than ``seeds``: the rest stopped or are pending, and
    the point is a mean over the survivors (a trade-off plot rings it)."""

    @property
    def fewer_seeds(self) -> bool:
        return self.planned > len(self.seeds)


@dataclass
class Series:
    """One drawn series, kept as data so tests (and readers) check what a figure shows, not its pixels.

    ``kind`` is ``metric`` (a line of a metric against the axis), ``reference`` (the no-defense
    level of the same setting, one marker per level over that level's seeds), ``levels`` (a
    trade-off line of defense levels), ``undefended`` (the trade-off's marked star), ``paired`` (the
    undefended run over each point's own seeds) or ``stopped`` (one level's stopped seeds, one
    point each at its last epoch before the stop).
    """

    label: str
    kind: str
    points: list[DrawnPoint]
    scheme: str = ""
    group: str = ""
    metric: str = ""


@dataclass
class Figure:
    """What a plot function drew: the file (None when nothing could be drawn), its series, its notes and why it is absent."""

    path: Path | None
    series: list[Series] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    absent: str = ""
    key: list[str] = field(default_factory=list)


def absent_reason(rows: list[dict[str, Any]], what: str = "a result") -> str:
    """``not drawn: every seed of every level stopped (diverged 5, collapsed 5)``: why a figure has nothing to show.

    The report prints it in place of the figure, so a missing picture is never silent.
    """
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["status"])] = counts.get(str(row["status"]), 0) + 1
    shown = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
    if not rows:
        return "not drawn: no run of this figure is in the table"
    if RunStatus.OK not in counts:
        if set(counts) == {RunStatus.PENDING}:
            return f"not drawn: no run has finished yet ({shown})"
        if all(status in STOPPED for status in counts):
            return f"not drawn: every seed of every level stopped ({shown})"
        return f"not drawn: no seed of any level has finished ({shown})"
    return f"not drawn: no finished run recorded {what} ({shown})"


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


def _mean_point(x: float, values: list[float], seeds: Iterable[int], text: str = "") -> DrawnPoint:
    """A point at ``x``: the mean of fractions (in %) with its 95 % t interval clipped to [0, 100]."""
    means, errors = _errorbar_points([values])
    return DrawnPoint(x, means[0], yerr=(errors[0][0], errors[1][0]), text=text, seeds=tuple(sorted(seeds)))


def _short(key: str) -> str:
    """``defense.0.residual`` -> ``residual``: the knob's own name reads better in a legend."""
    return key.removeprefix("axis:").rsplit(".", 1)[-1]


def group_label(levels: dict[str, Any], skip: Iterable[str]) -> str:
    """``residual = sample``: the levels of a run's other axes (not ``x``, not the scheme), one series per value."""
    skipped = {"scheme", *skip}
    parts = [str(v) if k == "variant" else f"{_short(k)} = {v}" for k, v in levels.items() if k not in skipped]
    return ", ".join(parts)


def _row_levels(row: dict[str, Any]) -> dict[str, Any]:
    return {k.removeprefix("axis:"): v for k, v in row.items() if k.startswith("axis:")}


def _ok_seeds(rows: Iterable[dict[str, Any]]) -> set[int]:
    return {int(r["seed"]) for r in rows if r["status"] == RunStatus.OK}


def _seeds_text(seeds: Iterable[int]) -> str:
    return ",".join(map(str, sorted(seeds))) or "none"


def versus_series(
    grid: GridSpec, rows: list[dict[str, Any]], reference: dict[str, list[dict[str, Any]]] | None = None
) -> tuple[list[Series], list[str]]:
    """The series of :func:`plot_versus_axis`: per scheme and per level of the other axes, each metric against ``x``.

    Seeds, per level (an x value and a value of the other axes): the seeds finished in every
    scheme there and, with a ``reference``, in the scheme's undefended cell too, so the level's
    means and the no-defense marker drawn at it are over the same seeds. A level whose seeds the
    reference never finished keeps its own seeds, draws no marker, and says so in a note.
    """
    assert grid.x is not None
    key = f"axis:{grid.x}"
    mine = [row for row in rows if row["grid"] == grid.name and row["status"] != RunStatus.REFUSED]
    levels: dict[tuple[float, str], dict[str, list[dict[str, Any]]]] = {}
    for row in mine:
        group = group_label(_row_levels(row), (grid.x,))
        levels.setdefault((float(row[key]), group), {}).setdefault(row["axis:scheme"], []).append(row)
    notes: list[str] = []
    used: dict[tuple[float, str], tuple[set[int], bool]] = {}  # level -> (its seeds, reference drawn)
    for (x, group), per_scheme in levels.items():
        where = f"{_short(grid.x)}={x:g}{', ' + group if group else ''}"
        drawable = [r for r in per_scheme.values() if _ok_seeds(r)]
        seeds = common_seeds(drawable)
        every = set().union(*(_ok_seeds(r) for r in drawable)) if drawable else set()
        if every - seeds:
            notes.append(f"{where}: mean over seeds {_seeds_text(seeds)} finished in every scheme (left out: {_seeds_text(every - seeds)})")
        references = [(reference or {})[s] for s, r in per_scheme.items() if _ok_seeds(r) and (reference or {}).get(s)]
        if not references or not seeds:
            used[(x, group)] = (seeds, False)
            continue
        both = seeds & common_seeds(references)
        if not both:
            notes.append(f"{where}: no-defense reference not drawn (it finished none of seeds {_seeds_text(seeds)})")
            used[(x, group)] = (seeds, False)
            continue
        if both != seeds:
            notes.append(f"{where}: mean over seeds {_seeds_text(both)}, those the no-defense reference also finished (left out: {_seeds_text(seeds - both)})")
        used[(x, group)] = (both, True)
    schemes = list(dict.fromkeys(row["axis:scheme"] for row in mine))
    groups = list(dict.fromkeys(group for _, group in levels))
    series: list[Series] = []
    for scheme in schemes:
        for group in groups:
            xs = sorted(x for (x, g), per_scheme in levels.items() if g == group and scheme in per_scheme)
            name = ", ".join(part for part in (scheme if len(schemes) > 1 else "", group) if part)
            for metric, metric_label, _ in curves():
                line, marks = [], []
                for x in xs:
                    seeds, marked = used[(x, group)]
                    values = [float(r[metric]) for r in levels[(x, group)][scheme]
                              if r["status"] == RunStatus.OK and int(r["seed"]) in seeds and r.get(metric) is not None]
                    if not values:
                        continue
                    planned = len(levels[(x, group)][scheme])  # every seed of the level, stopped and pending ones too
                    line.append(dataclasses.replace(_mean_point(x, values, seeds), planned=planned))
                    ref = [float(r[metric]) for r in (reference or {}).get(scheme, [])
                           if r["status"] == RunStatus.OK and int(r["seed"]) in seeds and r.get(metric) is not None]
                    if marked and ref:
                        marks.append(_mean_point(x, ref, seeds))
                if line:
                    series.append(Series(f"{name + ': ' if name else ''}{metric_label}", "metric", line, scheme, group, metric))
                if marks:
                    series.append(Series(f"{name + ': ' if name else ''}{metric_label}, no defense (same seeds)", "reference", marks,
                                         scheme, group, metric))
    return series, notes


def plot_versus_axis(
    grid: GridSpec,
    rows: list[dict[str, Any]],
    path: Path,
    reference: dict[str, list[dict[str, Any]]] | None = None,
    when: str = LAST_EPOCH,
    histories: dict[str, list[dict[str, Any]]] | None = None,
) -> Figure:
    """Last-epoch main and attack metrics against the grid's ``x`` axis: one colour per scheme and level of the other axes.

    With ``histories``, every stopped seed is an x in its line's colour at its attack success at its last evaluated
    epoch, never in a mean: without it a level whose attacked seeds stopped at 88-100 % reads as if the attack fell.

    A grid with axes {x, other} draws one line per ``other`` level (``residual = sample``), each
    ordered by x. Error bars are the 95 % t interval over the level's seeds, clipped to [0, 100].
    ``reference`` (scheme -> the undefended cell's rows) draws the no-defense level as a dashed
    line of markers, one per level over exactly that level's seeds (:func:`versus_series`).
    """
    if grid.x is None:
        return Figure(None)
    mine = [row for row in rows if row["grid"] == grid.name]
    series, notes = versus_series(grid, rows, reference)
    if not any(s.kind == "metric" for s in series):
        return Figure(None, series, notes, absent_reason(mine, "a metric"))
    drawn_x = {p.x for s in series for p in s.points}
    swept = {float(r[f"axis:{grid.x}"]) for r in mine if _is_number(r.get(f"axis:{grid.x}"))}
    every_x = sorted(drawn_x | swept)  # a level where every seed stopped keeps its place on the axis, marked
    scale, scale_note = axis_scale(grid.x, every_x, grid.log_x)
    notes = ([scale_note] if scale_note else []) + notes + _not_drawn(mine)
    plt = _pyplot()
    figure, panel = plt.subplots(figsize=(9.0, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lines = list(dict.fromkeys((s.scheme, s.group) for s in series))
    styles = {metric: style for metric, _, style in curves()}
    for s in series:
        index = lines.index((s.scheme, s.group))
        shift = dodge(scale, every_x, index, len(lines))
        xs = [shift(p.x) for p in s.points]
        ys = [p.y for p in s.points]
        yerr = [[p.yerr[0] for p in s.points], [p.yerr[1] for p in s.points]]
        color = colors[index % len(colors)]
        if s.kind == "reference":
            panel.errorbar(xs, ys, yerr=yerr, color=color, label=s.label, capsize=2, marker="x", markersize=5,
                           linestyle=(0, (4, 3)), linewidth=0.8, alpha=0.7)
        else:
            panel.errorbar(xs, ys, yerr=yerr, color=color, label=s.label, capsize=3, **{**styles[s.metric], "markersize": 4})
    survivors = [(index, p) for index, s in ((lines.index((s.scheme, s.group)), s) for s in series if s.kind == "metric") for p in s.points if p.fewer_seeds]
    for order, (index, p) in enumerate(survivors):  # a mean over the seeds that finished: the others stopped or are pending
        shift = dodge(scale, every_x, index, len(lines))
        panel.plot([shift(p.x)], [p.y], linestyle="none", marker="o", markersize=10, markerfacecolor="none", markeredgecolor="red",
                   markeredgewidth=0.9, zorder=4, label="ringed: a mean over fewer seeds than planned" if order == 0 else None)
    if survivors:
        notes.append("ringed in red: a mean over the seeds that finished, fewer than planned (the others stopped or are pending; the "
                     "notes above and the report's tables say which)")
    stopped_marks = _stopped_versus_marks(grid, mine, histories or {})
    for order, (line_key, x, y) in enumerate(stopped_marks):
        index = lines.index(line_key) if line_key in lines else len(lines)
        shift = dodge(scale, every_x, index, max(len(lines), index + 1))
        panel.plot([shift(x)], [y], marker="x", markersize=7, markeredgewidth=1.5, color=colors[index % len(colors)], linestyle="none", alpha=0.9,
                   label="a stopped seed: attack at its last evaluated epoch" if order == 0 else None)
    if stopped_marks:
        notes.append("x: a stopped seed's attack success at its last evaluated epoch before the stop (colour of its scheme), not in any mean")
    for level in sorted(swept - drawn_x):
        panel.plot([level], [0], marker="x", color="dimgray", markersize=7, linestyle="none")
        panel.annotate("no seed\nfinished", (level, 0), xytext=(0, 8), textcoords="offset points", fontsize=6, color="dimgray", ha="center")
    panel.set_xscale(scale)
    if scale in ("log", "logit"):  # ticks at the swept values: 10^0 and 10^1 alone say little about gamma 3
        from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

        panel.xaxis.set_major_locator(FixedLocator(every_x))
        panel.xaxis.set_major_formatter(lambda value, _: f"{value:g}")
        panel.xaxis.set_minor_locator(NullLocator())
        panel.xaxis.set_minor_formatter(NullFormatter())
    panel.set_xlabel(grid.x + (" (logit scale)" if scale == "logit" else " (log scale)" if scale == "log" else ""))
    panel.set_ylabel(f"accuracy {when} (%),\nmean and {100 * CONFIDENCE:.0f} % CI")
    panel.set_ylim(-3, 103)
    panel.grid(alpha=0.3)
    panel.set_title(textwrap.fill(grid.title or grid.name, width=80), fontsize=10)  # wrapped, never cut at the figure's edge
    panel.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the panel: never over the data
    note_height = _footnote(figure, notes)
    figure.tight_layout(rect=(0, note_height, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Figure(path, series, notes)


def _stopped_versus_marks(grid: GridSpec, rows: list[dict[str, Any]], histories: dict[str, list[dict[str, Any]]]) -> list[tuple[tuple[str, str], float, float]]:
    """((scheme, group), x, attack success in %) of every stopped seed with an evaluated epoch, in row order."""
    assert grid.x is not None
    marks = []
    for row in rows:
        history = histories.get(row["run_id"]) or []
        if row["status"] not in STOPPED or not history or not _is_number(row.get(f"axis:{grid.x}")):
            continue
        last = history[-1]
        metric = next((name for name, _, _ in curves() if name != MAIN_ACCURACY.name and last.get(name) is not None), None)
        if metric is not None:
            group = group_label(_row_levels(row), (grid.x,))
            marks.append(((str(row["axis:scheme"]), group), float(row[f"axis:{grid.x}"]), 100 * float(last[metric])))
    return marks


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


@dataclass
class TradeoffPoint:
    """One defense level (or the undefended cell) of one scheme: its runs and where it belongs.

    ``x`` is the level's value on the grid's ``x`` axis (the text beside the point, and the order
    of its series), ``group`` the levels of the grid's other axes (``residual = sample``: one
    series per value); both empty for a grid of variants. ``histories`` lets a trade-off figure
    draw each stopped seed where it stood at its last epoch before the stop (a referee asked for
    the stopped noise levels to be drawn, not only named: at variance 1e-3 every run stopped).
    """

    scheme: str
    label: str
    rows: list[dict[str, Any]]
    undefended: bool = False
    notes: list[str] = field(default_factory=list)
    x: float | None = None
    group: str = ""
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Per-epoch histories by run id (a stopped run's, from its ``failed.json``): where each stopped seed stood at its stop."""


MEANINGLESS_EPSILON = 100.0
"""Above this epsilon a differential-privacy claim says nothing useful (e^100 bounds no likelihood ratio a reader cares about)."""


def _epsilon(rows: list[dict[str, Any]]) -> float | None:
    """The accountant's epsilon the runs recorded (PLD, else RDP; mean over the runs), None without one."""
    for column in ("dp_epsilon_pld", "dp_epsilon_rdp"):
        values = [float(r[column]) for r in rows if r.get(column) not in (None, "")]
        if values:
            return statistics.fmean(values)
    return None


def _epsilon_text(rows: list[dict[str, Any]]) -> str:
    """``ε 2.31`` from the accountant's record (PLD, else RDP), if the runs recorded one; else ''."""
    value = _epsilon(rows)
    if value is None:
        return ""
    return f"ε {value:.3g}" if math.isfinite(value) else "ε ∞"


def epsilon_notes(epsilons: Sequence[float | None], reasons: Sequence[str] = ()) -> list[str]:
    """The notes a trade-off figure's epsilons call for: a guarantee too weak to mean anything is said, not left to the reader.

    ``epsilons`` holds one value per drawn defense level (None: the runs recorded none);
    ``reasons`` the runs' ``dp_unclaimed_reason`` texts (why no finite epsilon is claimed).
    """
    recorded = [e for e in epsilons if e is not None]
    notes: list[str] = []
    huge = [e for e in recorded if e > MEANINGLESS_EPSILON]
    if recorded and len(huge) == len(recorded):
        finite = [e for e in huge if math.isfinite(e)]
        span = f" (ε {min(finite):.3g} to {max(finite):.3g})" if finite else " (ε = ∞: none claimed)"
        where = "every level" if len(recorded) == len(epsilons) else "every level that records one"
        notes.append(f"epsilon > {MEANINGLESS_EPSILON:g} at {where}: no meaningful differential-privacy guarantee{span}")
    elif huge:
        notes.append(f"epsilon > {MEANINGLESS_EPSILON:g} at {len(huge)} of {len(recorded)} levels: no meaningful differential-privacy guarantee there")
    heads = list(dict.fromkeys(part.split(":", 1)[0].strip() for reason in reasons if reason for part in str(reason).split("; ")))
    if any(not math.isfinite(e) for e in recorded) and heads:
        notes.append(f"ε = ∞ (no finite epsilon claimed): {'; '.join(heads)}")
    return notes


def _readable(cell: str) -> str:
    """``defense.0.drop_rate=0.5__defense.0.residual=row`` -> ``drop_rate=0.5, residual=row`` for a footnote."""
    parts = [part.split("=", 1) for part in cell.split("__")]
    return ", ".join(f"{_short(part[0])}={part[1]}" if len(part) == 2 else part[0] for part in parts)


def _tradeoff_seeds(scheme: str, drawable: list[TradeoffPoint]) -> tuple[dict[int, set[int]], list[str]]:
    """The seeds each point of one scheme is averaged over (by ``id`` of the point), and the notes that say so.

    One set for the whole scheme when it holds enough seeds: those finished at every drawable level
    and the undefended one, so any two points compare over the same seeds. "Enough" is at least
    2 and at least half of the undefended run's own seeds: with many levels, one stopped seed per
    level can shrink that set to one seed, and a figure of seed 0 under the axis label "mean and
    95 % CI" misleads (a referee found drop rate 0.9 drawn at 100 % backdoor from seed 0 while its
    3-seed mean was 33 %). Then each defended point is over the seeds it shares with the undefended
    run (the comparison the verdict makes), the star over all of its own, and the note names
    every point's seeds, so no reader takes two points for a same-seed pair.
    """
    seeds = common_seeds([p.rows for p in drawable])
    every = set().union(*(_ok_seeds(p.rows) for p in drawable)) if drawable else set()
    star = next((p for p in drawable if p.undefended), None)
    base = _ok_seeds(star.rows) if star is not None else every
    if not drawable or (len(seeds) >= max(MIN_SHARED_SEEDS, math.ceil(len(base) / 2))):
        notes = [f"{scheme}: means over seeds {_seeds_text(seeds)} (finished at every level; left out: {_seeds_text(every - seeds)})"] if every - seeds else []
        return {id(p): seeds for p in drawable}, notes
    chosen = {id(p): _ok_seeds(p.rows) if p.undefended else _ok_seeds(p.rows) & base for p in drawable}
    per_point = "; ".join(f"{_readable(p.label)} {_seeds_text(chosen[id(p)])}" for p in drawable if not p.undefended)
    why = f"only seeds {_seeds_text(seeds)} finished at every level" if seeds else "no seed finished at every level"
    if star is None:
        return chosen, [f"{scheme}: {why} and no undefended run finished, so each point is over its own seeds ({per_point}); "
                        "no two points are a same-seed pair"]
    return chosen, [f"{scheme}: {why}, so each point is over the seeds it shares with the undefended run, whose mean over "
                    f"those seeds is the hollow marker joined to it (the star: all its seeds {_seeds_text(base)}; {per_point}); "
                    "two defended points are not a same-seed pair"]


def tradeoff_series(metric: str, points: list[TradeoffPoint]) -> tuple[list[Series], list[str]]:
    """The series of :func:`plot_tradeoff`: per scheme, one line per level of the other axes, ordered by x; the undefended star.

    Per scheme every point is a mean over the same seeds (those finished at every drawable level
    of that scheme, the undefended one included); a point's text is its x level (or its label in
    a grid of variants) and the epsilon its runs recorded.
    """
    by_scheme: dict[str, list[TradeoffPoint]] = {}
    for point in points:
        by_scheme.setdefault(point.scheme, []).append(point)
    notes: list[str] = []
    series: list[Series] = []
    epsilons: list[float | None] = []
    reasons: list[str] = []
    stars: list[Series] = []  # drawn last, on top of the lines
    stopped_series: list[Series] = []
    for scheme, mine in by_scheme.items():
        drawable = [p for p in mine if any(r["status"] == RunStatus.OK and r.get(metric) is not None for r in p.rows)]
        for point in mine:
            stops = stopped_marks(metric, point)
            if stops is not None:
                stopped_series.append(stops)
            at_stop = "; each stopped seed an x at its last epoch" if stops is not None else ""
            if point not in drawable:
                statuses = sorted({str(r["status"]) for r in point.rows}) or ["no run"]
                notes.append(f"{scheme} {_readable(point.label)}: no mean drawn ({', '.join(statuses)}){at_stop}")
            stopped = [r for r in point.rows if r["status"] in STOPPED]
            if stopped and point in drawable:
                notes.append(f"{scheme} {_readable(point.label)}: {len(stopped)} run(s) stopped "
                             f"({', '.join(sorted({str(r['status']) for r in stopped}))}){at_stop}")
        seeds_of, seed_notes = _tradeoff_seeds(scheme, drawable)
        notes[:0] = seed_notes  # first: which seeds a mean is over is what a reader must not miss (the footnote is cut)
        star_point = next((p for p in drawable if p.undefended), None)
        paired_mode = star_point is not None and any(seeds_of[id(p)] != seeds_of[id(star_point)] for p in drawable)
        paired_marks: dict[str, list[DrawnPoint]] = {}
        lines: dict[str, list[tuple[TradeoffPoint, DrawnPoint]]] = {}
        for point in drawable:
            seeds = seeds_of[id(point)]
            used = [r for r in point.rows if r["status"] == RunStatus.OK and int(r["seed"]) in seeds and r.get(metric) is not None]
            if not used:
                continue
            used_seeds = {int(r["seed"]) for r in used}
            drawn = _mean_point(0.0, [float(r[metric]) for r in used], used_seeds)
            main = _mean_point(0.0, [float(r[MAIN_ACCURACY.name]) for r in used], used_seeds)
            drawn.x, drawn.xerr = main.y, main.yerr
            drawn.planned = len({int(r["seed"]) for r in point.rows if r["status"] != RunStatus.REFUSED})
            if point.undefended:
                drawn.text = "no defense"
                stars.append(Series(f"{scheme}: no defense", "undefended", [drawn], scheme))
                continue
            epsilon = _epsilon(used)
            epsilons.append(epsilon)
            reasons += [str(r.get("dp_unclaimed_reason") or "") for r in used]
            level = f"{point.x:g}" if point.x is not None else point.label
            drawn.text = ", ".join(t for t in (level, _epsilon_text(used)) if t)
            lines.setdefault(point.group, []).append((point, drawn))
            if paired_mode and star_point is not None:  # the undefended run over this point's own seeds: the pair it is judged in
                base = [r for r in star_point.rows if r["status"] == RunStatus.OK and int(r["seed"]) in used_seeds and r.get(metric) is not None]
                if base:
                    mark = _mean_point(0.0, [float(r[metric]) for r in base], used_seeds, text=drawn.text)
                    mark.x = _mean_point(0.0, [float(r[MAIN_ACCURACY.name]) for r in base], used_seeds).y
                    mark.xerr = (0.0, 0.0)
                    mark.yerr = (0.0, 0.0)
                    paired_marks.setdefault(point.group, []).append(mark)
        for group, marks in paired_marks.items():
            series.append(Series(f"{scheme + ': ' if len(by_scheme) > 1 else ''}no defense over each point's seeds (hollow, joined to its point)",
                                 "paired", marks, scheme, group))
        for group, members in lines.items():
            by_x = all(p.x is not None for p, _ in members)  # along the swept axis; a grid of variants by main accuracy
            ordered = sorted(members, key=lambda m: float(m[0].x) if by_x and m[0].x is not None else m[1].x)
            label = ", ".join(part for part in (scheme if len(by_scheme) > 1 else "", group or "defense levels") if part)
            series.append(Series(label, "levels", [d for _, d in ordered], scheme, group))
    return series + stopped_series + stars, notes + epsilon_notes(epsilons, reasons)


def stopped_marks(metric: str, point: TradeoffPoint) -> Series | None:
    """One ``stopped`` series per level: each stopped seed at (main accuracy, attack success) of its last epoch before the stop.

    A stopped run counts in no mean (intent to treat puts it in the verdicts, not in the averages),
    but leaving it off the picture hides where the defense left the model when training broke
    (Gaussian 1e-3: 14-65 % main accuracy, backdoor 0 % on 9 of 10 runs). Each mark is one seed,
    never averaged, its text the status and epoch; a seed without a history (a run that failed
    before its first epoch) or without the metric is left to the footnote. None without a mark.
    """
    marks = []
    for row in point.rows:
        history = point.histories.get(str(row.get("run_id", "")), [])
        last = next((entry for entry in reversed(history) if entry.get(metric) is not None and entry.get(MAIN_ACCURACY.name) is not None), None)
        if row["status"] not in STOPPED or last is None:
            continue
        text = f"{row['status']} after epoch {int(last['epoch'])}"
        marks.append(DrawnPoint(100 * float(last[MAIN_ACCURACY.name]), 100 * float(last[metric]), text=text, seeds=(int(row["seed"]),)))
    if not marks:
        return None
    level = "no defense" if point.undefended else (f"{point.x:g}" if point.x is not None else point.label)
    return Series(level, "stopped", marks, point.scheme, "" if point.undefended else point.group, metric)


def stopped_key(s: Series, letter: str, x_name: str, several_schemes: bool) -> list[str]:
    """The two key lines of one level's x marks: which seeds stopped how and when, then where they stood (main / attack)."""
    epochs = sorted(int(p.text.rsplit(" ", 1)[1]) for p in s.points)
    statuses = ", ".join(sorted({p.text.split(" ", 1)[0] for p in s.points}))
    span = f"{epochs[0]}" if epochs[0] == epochs[-1] else f"{epochs[0]}-{epochs[-1]}"

    def between(values: list[float]) -> str:
        return f"{min(values):.1f}" if min(values) == max(values) else f"{min(values):.1f}-{max(values):.1f}"

    name = s.label if s.label == "no defense" or not x_name else f"{_short(x_name)} {s.label}"
    where = f"{s.scheme} " if several_schemes else ""
    seeds = ",".join(str(p.seeds[0]) for p in s.points)
    group = f", {s.group.replace(' = ', '=')}" if s.group else ""
    return [f"{letter:>2}  {where}{name}{group}: seed{'s' if len(s.points) > 1 else ''} {seeds}",
            f"    {statuses} after epoch {span}  ->  {between([p.x for p in s.points])} / {between([p.y for p in s.points])}"]


#: The fewest seeds a trade-off figure averages every point over before it pairs each point with the undefended run instead.
MIN_SHARED_SEEDS = 2


#: Where a point's number may sit, in pixels from the point (tried in this order): right-up first, then around.
LABEL_OFFSETS: tuple[tuple[float, float], ...] = (
    (4, 4), (4, -12), (-14, 4), (-14, -12), (4, 14), (-14, 14), (4, -22), (-14, -22), (16, -4), (-26, -4), (16, 14), (-26, 14), (16, -22), (-26, -22),
)


def place_labels(anchors: Sequence[tuple[float, float]], size: tuple[float, float] = (14.0, 10.0), marker: float = 4.0) -> list[tuple[float, float]]:
    """Offsets (pixels) for one small label per anchor, chosen so labels overlap neither each other nor any marker.

    Greedy over :data:`LABEL_OFFSETS`: each label takes the first offset whose box (``size``, lower
    left at anchor + offset) is free; when none is, the one overlapping least. Why not a layout
    library: the numbers are short and few (one per defense level), and this keeps them readable
    without a dependency.
    """
    width, height = size
    markers = [(x - marker, y - marker, x + marker, y + marker) for x, y in anchors]
    placed: list[tuple[float, float, float, float]] = []

    def overlap(box: tuple[float, float, float, float], other: tuple[float, float, float, float]) -> float:
        dx = min(box[2], other[2]) - max(box[0], other[0])
        dy = min(box[3], other[3]) - max(box[1], other[1])
        return dx * dy if dx > 0 and dy > 0 else 0.0

    offsets: list[tuple[float, float]] = []
    for x, y in anchors:
        def cost(offset: tuple[float, float]) -> float:
            box = (x + offset[0], y + offset[1], x + offset[0] + width, y + offset[1] + height)
            return sum(overlap(box, other) for other in (*placed, *markers))

        best = next((offset for offset in LABEL_OFFSETS if cost(offset) == 0.0), None)
        if best is None:
            best = min(LABEL_OFFSETS, key=cost)
        offsets.append(best)
        placed.append((x + best[0], y + best[1], x + best[0] + width, y + best[1] + height))
    return offsets


#: Height of one 6-point line of text as a fraction of a trade-off figure's 5.2-inch height (as the footnote's).
KEY_LINE_HEIGHT = 0.022


def _legend_under_key(figure: Any, panel: Any, key_lines: int, bottom: float) -> None:
    """The legend in the right-hand column under the key, its labels wrapped, so it covers no point; inside the panel
    (where matplotlib finds the most room) when the key leaves too little height above the footnote."""
    import textwrap

    handles, labels = panel.get_legend_handles_labels()
    wrapped = [textwrap.fill(label, 50) for label in labels]
    top = 0.97 - KEY_LINE_HEIGHT * (key_lines + 1)
    needed = KEY_LINE_HEIGHT * (2 + sum(label.count("\n") + 1.3 for label in wrapped))
    if top - needed >= bottom:
        figure.legend(handles, wrapped, loc="upper left", bbox_to_anchor=(0.69, top), fontsize=6, title="points numbered as in the key",
                      title_fontsize=6, frameon=False, alignment="left")
    else:
        panel.legend(fontsize=6, title="points numbered as in the key", title_fontsize=6)


def plot_tradeoff(
    title: str, metric: str, metric_label: str, points: list[TradeoffPoint], path: Path, x_name: str = "", when: str = LAST_EPOCH
) -> Figure:
    """Attack success against main accuracy: one line per scheme and level of the other axes, the undefended point starred.

    Error bars are 95 % t intervals over the scheme's common seeds in both directions, clipped to
    [0, 100]. Each defended point carries a number, placed so numbers do not overlap; the key
    beside the panel gives each number's level (``x_name``), recorded epsilon and the two means
    (close levels sit on top of each other, so their full texts would not be readable in place).
    Levels whose runs stopped are named in the footnote and their stopped seeds drawn as x marks
    at their last epoch before the stop, lettered per level in the key; an epsilon too large to
    mean anything is said in the footnote too.
    """
    series, notes = tradeoff_series(metric, points)
    if not any(s.kind == "levels" or (s.kind == "stopped" and s.label != "no defense") for s in series):  # the star alone compares nothing
        return Figure(None, series, notes, absent_reason([r for p in points if not p.undefended for r in p.rows], metric_label))
    plt = _pyplot()
    figure, panel = plt.subplots(figsize=(9.6, 5.2), dpi=110)  # the dpi it is saved at: label offsets are in its pixels
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lines = [s for s in series if s.kind == "levels"]
    color_of = {id(line): colors[index % len(colors)] for index, line in enumerate(lines)}
    several = len(lines) > len({s.scheme for s in lines})  # a star in a line's colour would claim that line alone
    numbered: list[tuple[DrawnPoint, str]] = []
    lettered: list[tuple[DrawnPoint, str, str]] = []  # stopped seeds: one letter per level, on each of its x marks
    key: list[str] = []
    stopped_keys: list[str] = []
    lettered_levels: list[str] = []
    several_schemes = len({s.scheme for s in series if s.kind != "paired"}) > 1
    for s in series:
        if s.kind == "stopped":
            same = [line for line in lines if line.scheme == s.scheme and line.group == s.group]
            color = color_of[id(same[0])] if same and s.label != "no defense" else "dimgray"
            letter = chr(ord("a") + len(lettered_levels)) if len(lettered_levels) < 26 else "?"
            lettered_levels.append(letter)
            first = not any(h.get_label().startswith("a stopped seed") for h in panel.get_lines())
            panel.plot([p.x for p in s.points], [p.y for p in s.points], linestyle="none", marker="x", markersize=6, color=color, alpha=0.8,
                       label="a stopped seed at its last epoch before the stop (lettered as in the key; in no mean)" if first else "_nolegend_",
                       zorder=2)
            lettered += [(p, color, letter) for p in s.points]
            stopped_keys += stopped_key(s, letter, x_name, several_schemes)
            continue
        if s.kind == "paired":  # hollow: the undefended run over exactly each point's seeds, joined to that point
            targets = {p.text: p for line in lines if line.scheme == s.scheme and line.group == s.group for p in line.points}
            for mark in s.points:
                target = targets.get(mark.text)
                if target is not None:
                    panel.plot([mark.x, target.x], [mark.y, target.y], color="gray", linewidth=0.6, linestyle=":", zorder=1)
            first = not any(h.get_label() == s.label for h in panel.get_lines())
            panel.plot([m.x for m in s.points], [m.y for m in s.points], linestyle="none", marker="o", markersize=6,
                       markerfacecolor="none", markeredgecolor="gray", label=s.label if first else "_nolegend_", zorder=2)
            continue
        if s.kind == "undefended":
            same = [line for line in lines if line.scheme == s.scheme]
            color = "black" if several or not same else color_of[id(same[0])]
        else:
            color = color_of[id(s)]
        xs, ys = [p.x for p in s.points], [p.y for p in s.points]
        xerr = [[p.xerr[0] for p in s.points], [p.xerr[1] for p in s.points]]
        yerr = [[p.yerr[0] for p in s.points], [p.yerr[1] for p in s.points]]
        star = s.kind == "undefended"
        panel.errorbar(xs, ys, xerr=xerr, yerr=yerr, color=color, marker="*" if star else "o", markersize=12 if star else 5, capsize=3,
                       linestyle="none" if star else "-", linewidth=0.8, label=s.label, zorder=3 if star else 2)
        for p in s.points:
            if not star:
                numbered.append((p, color))
            if star:
                described = s.label
            else:
                described = f"{s.label + ': ' if len(lines) > 1 else ''}{_short(x_name) + ' ' if x_name else ''}{p.text}"
            seeds = f"n={len(p.seeds)} of {p.planned}" if p.fewer_seeds else f"n={len(p.seeds)}"
            key.append(f"{'*' if star else len(numbered):>2}  {described}  ->  {p.x:.1f} / {p.y:.1f}  ({seeds})")
    survivors = [p for s in lines for p in s.points if p.fewer_seeds]
    if survivors:  # a mean over the seeds that finished: the others stopped (or are pending), which the mean cannot show
        panel.plot([p.x for p in survivors], [p.y for p in survivors], linestyle="none", marker="o", markersize=11,
                   markerfacecolor="none", markeredgecolor="red", markeredgewidth=0.9, zorder=4,
                   label="mean over fewer seeds than planned (the rest stopped, pending or left out to keep one seed set: see the footnote)")
    panel.set_xlabel(f"main accuracy {when} (%), mean and {100 * CONFIDENCE:.0f} % CI")
    panel.set_ylabel(f"{metric_label} {when} (%)")
    panel.set_xlim(-3, 103)
    panel.set_ylim(-3, 103)
    panel.grid(alpha=0.3)
    panel.set_title(title, fontsize=10)
    note_height = _footnote(figure, notes)
    figure.tight_layout(rect=(0, note_height, 0.68, 1))
    _legend_under_key(figure, panel, key_lines=1 + len(key) + len(stopped_keys), bottom=note_height)
    labels = [(p, color, str(number)) for number, (p, color) in enumerate(numbered, start=1)] + lettered
    anchors = [tuple(panel.transData.transform((p.x, p.y))) for p, _, _ in labels]
    for (p, color, text), offset in zip(labels, place_labels(anchors), strict=True):  # type: ignore[arg-type]
        panel.annotate(text, (p.x, p.y), fontsize=6, xytext=offset, textcoords="offset pixels", color=color)
    header = f"key: {metric_label} vs main accuracy, mean % (main / {metric_label})"
    figure.text(0.69, 0.97, "\n".join([header, *key, *stopped_keys]), fontsize=6, family="monospace", va="top")
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Figure(path, series, notes, key=[header, *key, *stopped_keys])
