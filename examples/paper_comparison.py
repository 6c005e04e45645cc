"""The paper-vs-securevfl table (issue 15): claim, the paper's number, ours (mean and 95 % CI), verdict.

The paper is Liu et al., "Backdoor attacks and defenses in feature-partitioned collaborative
learning" (ICML 2020 workshop, arXiv 2007.03608). Its numbers are taken only from what this
repository already cites (``PAPER_SOURCES`` names the file for each); a claim whose number is in
no repository source says "not in repo sources" in the paper column, and its verdict is then on
the claim's direction only.

Input: a study's ``study_runs.json`` (``securevfl study`` writes it; the grids named below are
those of ``examples/studies/paper_mnist_converged.toml``). Every number is a run's value as the study's
table reports it (its last epoch, or its mean over the last ``summary_epochs`` epochs: 5 there) in
points, over the seeds that finished; intervals are the study's own 95 % t intervals
(:mod:`securevfl.study.statistics`): one-sample for a single cell, paired by seed for a
comparison of two cells. Intent to treat as in the study report: a seed that stopped (diverged,
failed, collapsed) on either side of a comparison is an outcome, so that claim gets no verdict but
"stopped ..."; pending or crashed seeds are left out and the verdict says "provisional".

Verdicts:

- a **number** (the paper reports a value): *matches* when the paper's value lies inside our
  95 % interval or within ``MATCH_POINTS`` (0.5) points of our mean; otherwise *ours higher by d*
  / *ours lower by d* (points);
- a **direction** (A reduces B, a defense works): *holds* when the paired 95 % interval lies
  entirely on the claimed side of 0; *not shown* otherwise (it includes 0); *inconclusive* with
  fewer than 2 paired seeds;
- a **threshold** (the smallest level at which a defense works): the smallest swept level whose
  paired interval of ``undefended - defended`` success lies above 0, with its paired main-accuracy
  cost against the undefended (attacked) run and against the clean model (the reference's
  control); *matches* when the paper's level lies above the swept level below it and at most at
  it, *differs* otherwise, and says when the paper's level lies outside the sweep. A level works
  by the study's rule (interval above 0 and not wholly below 5 points); where seeds stopped, it
  works only if it does at every value the stopped runs could have had, else it gets no verdict
  and is named. Each level stronger than the threshold follows in a few words (works or not, its
  stops, the main accuracy left and its cost against the clean model), so "works from x" hides no
  stronger level that stops or leaves a model near chance. Every
  threshold is flagged when the undefended attack is below 80 % (not a test of the defense), and
  sparsification gets one claim per residual variant (item 9).
- the trade-off **reference** itself is checked against the 80 % item 6 asks for.
- a **direction**'s two means are over the seeds of its paired difference.

    python examples/paper_comparison.py runs/study-paper-converged/study_runs.json --out paper_vs_securevfl.md
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securevfl.study.statistics import EQUIVALENCE_MARGIN, Interval, mean_interval, paired_difference, reduction_bounds, robust_reduction
from securevfl.study.status import STOPPED, WAITING  # the study's own stop and waiting statuses
from securevfl.study.verdicts import WORKING_ATTACK  # the undefended success a defense must be judged against (item 6)

MATCH_POINTS = 0.5
NOT_SOURCED = "not in repo sources"
#: The undefended backdoor the trade-off grids are judged against, and its control (paper_mnist_converged.toml:
#: record first, gamma 1, loss bound lifted; the trade-off grids run exactly this attack and setting).
#: Two references: 1 known target sample (``tradeoff_*``) and 10 (``tradeoff10_*``, the one that works on every seed).
WORKING = ("tradeoff_reference", "plain__backdoor")
WORKING_CONTROL = ("tradeoff_reference", "plain__control")
WORKING_10 = ("tradeoff10_reference", "plain__backdoor")
WORKING_10_CONTROL = ("tradeoff10_reference", "plain__control")

PAPER_SOURCES = {
    "sum_clean": "examples/mnist_plain_sum.toml, docs/results/mnist_plaintext.md (Table 2)",
    "trainable_clean": "examples/mnist_plain_trainable.toml, docs/results/mnist_plaintext.md (Table 2)",
    "noise_threshold": "docs/defenses.md ('noise of variance above about 0.05 weakened the backdoor')",
    "trainable_defends": "docs/results/attacks_defenses.md ('fails with a trainable top, as the paper reports'; no number)",
}


@dataclass
class Side:
    """One cell's runs: seed -> value for finished seeds, seed -> status for stopped and waiting ones."""

    values: dict[int, float]
    stopped: dict[int, str]
    waiting: dict[int, str]

    @property
    def empty(self) -> bool:
        return not self.values and not self.stopped


def side(rows: list[dict[str, Any]], grid: str, cell: str, metric: str) -> Side:
    out = Side({}, {}, {})
    for row in rows:
        if row.get("grid") != grid or row.get("cell") != cell:
            continue
        seed, status = int(row["seed"]), str(row.get("status"))
        if status == "ok" and row.get(metric) is not None:
            out.values[seed] = float(row[metric])
        elif status in STOPPED:
            out.stopped[seed] = status
        elif status in WAITING:
            out.waiting[seed] = status
    return out


def _pts(x: float | None, signed: bool = False) -> str:
    return "–" if x is None else (f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}")


def interval_text(interval: Interval, signed: bool = False) -> str:
    """``96.0 [93.5, 98.5] (n=3)``; ``35.0 (n=1, no interval)``; ``–`` without values."""
    if interval.mean is None:
        return "–"
    low, high = (-1.0, 1.0) if signed else (0.0, 1.0)
    text = interval.clipped(low, high).text(signed=signed)
    return f"{text} (n={interval.n})" if interval.has_interval else text


def _stop_text(*sides: tuple[str, Side]) -> str | None:
    parts = [f"{name} stopped {len(s.stopped)}/{len(s.values) + len(s.stopped)} ({', '.join(sorted(set(s.stopped.values())))})"
             for name, s in sides if s.stopped]
    return "; ".join(parts) + "; no verdict" if parts else None


def _provisional(*sides: Side) -> str:
    waiting = sorted(set().union(*(s.waiting for s in sides)))
    return f" (provisional: seed(s) {', '.join(map(str, waiting))} not finished)" if waiting else ""


# ------------------------------------------------------------------------------------------ claims
def number_claim(rows: list[dict[str, Any]], claim: str, paper: float | None, grid: str, cell: str, metric: str,
                 source: str = "", target: float | None = None) -> dict[str, str]:
    """Our mean and interval against the paper's number; with ``target`` (a fraction: the 80 % item 6 asks of the
    trade-off reference) and no paper number, against that target instead."""
    s = side(rows, grid, cell, metric)
    paper_text = f"{paper:.1f} %" if paper is not None else NOT_SOURCED
    if s.empty:
        return _row(claim, paper_text, "not in this study", f"no finished run of {grid}/{cell}" + _provisional(s), source)
    seeds = sorted(s.values)
    interval = mean_interval([s.values[k] for k in seeds], seeds)
    ours = interval_text(interval) if s.values else "–"
    stop = _stop_text(("ours", s))
    if stop:
        return _row(claim, paper_text, ours, stop + _provisional(s), source)
    if paper is None and target is not None:
        return _row(claim, paper_text, ours, _target_verdict(interval, target) + _provisional(s), source)
    if paper is None:
        return _row(claim, paper_text, ours, "no paper number to compare" + _provisional(s), source)
    if not interval.has_interval:
        return _row(claim, paper_text, ours, f"inconclusive ({interval.n} seed; no verdict from one seed)" + _provisional(s), source)
    clipped = interval.clipped(0.0, 1.0)
    mean = 100 * (interval.mean or 0.0)
    inside = clipped.has_interval and 100 * clipped.low <= paper <= 100 * clipped.high  # type: ignore[operator]
    if inside or abs(mean - paper) <= MATCH_POINTS:
        verdict = "matches"
    else:
        verdict = f"ours {'higher' if mean > paper else 'lower'} by {abs(mean - paper):.1f} points"
    return _row(claim, paper_text, ours, verdict + _provisional(s), source)


def _target_verdict(interval: Interval, target: float) -> str:
    goal = f"the {100 * target:.0f} % target"
    if interval.mean is None:
        return "no value"
    if interval.mean < target:
        return f"below {goal} (mean {100 * interval.mean:.1f})"
    clipped = interval.clipped(0.0, 1.0)
    if clipped.has_interval and clipped.low >= target:  # type: ignore[operator]
        return f"meets {goal} (the whole interval)"
    return f"mean meets {goal}; the interval reaches below it"


def direction_claim(rows: list[dict[str, Any]], claim: str, paper: str, first: tuple[str, str], second: tuple[str, str],
                    metric: str, source: str = "") -> dict[str, str]:
    """The claim: ``first`` exceeds ``second`` on ``metric`` (paired ``first - second`` above 0)."""
    a, b = side(rows, *first, metric), side(rows, *second, metric)
    if a.empty or b.empty:
        missing = "/".join(first) if a.empty else "/".join(second)
        return _row(claim, paper, "not in this study", f"no finished run of {missing}" + _provisional(a, b), source)
    both = set(a.values) | set(a.stopped)
    both &= set(b.values) | set(b.stopped)
    a_ok = {k: v for k, v in a.values.items() if k in both}
    b_ok = {k: v for k, v in b.values.items() if k in both}
    difference = paired_difference(b_ok, a_ok)  # a - b over the seeds both finished
    paired = set(difference.seeds)  # both means over the seeds of the difference, so the three numbers agree
    ours = (f"{_pts(_mean({k: v for k, v in a_ok.items() if k in paired}))} vs {_pts(_mean({k: v for k, v in b_ok.items() if k in paired}))}; "
            f"difference {interval_text(difference, signed=True)}")
    stop = _stop_text(("/".join(first), Side(a_ok, {k: v for k, v in a.stopped.items() if k in both}, {})),
                      ("/".join(second), Side(b_ok, {k: v for k, v in b.stopped.items() if k in both}, {})))
    if stop:
        return _row(claim, paper, ours, stop + _provisional(a, b), source)
    if not difference.has_interval:
        verdict = f"inconclusive ({difference.n} paired seed{'s' if difference.n != 1 else ''})"
    elif difference.clipped(-1.0, 1.0).low > 0:  # type: ignore[operator]
        verdict = "holds"
    else:
        verdict = "not shown (interval includes 0)"
    return _row(claim, paper, ours, verdict + _provisional(a, b), source)


def threshold_claim(rows: list[dict[str, Any]], claim: str, paper: float | None, grid: str, axis: str,
                    undefended: tuple[str, str], success: str, source: str = "", stronger: str = "higher",
                    where: dict[str, str] | None = None, clean: tuple[str, str] | None = None) -> dict[str, str]:
    """The weakest level of ``axis`` in ``grid`` whose paired reduction of ``success`` lies above 0.

    ``stronger``: ``"higher"`` when a larger level is a stronger defense (noise variance, drop rate),
    ``"lower"`` when a smaller one is (a clipping norm); levels are tried from the weakest.
    ``where`` keeps the cells whose other axes have these levels (one residual variant).
    A level works as the study's verdicts decide it: the paired reduction's interval lies above 0
    and not wholly below the 5-point margin; where seeds stopped, at every value the stopped runs
    could have had (``robust_reduction``); else it has no verdict and, being weaker than the level
    found, leaves the threshold undetermined. The cost is the main-accuracy
    difference against the undefended (attacked) run and, with ``clean`` (the control: the honest
    model), against the clean model. The undefended success over all its seeds is given, and a
    verdict against an attack below 80 % says it is no test of the defense.
    """
    base = side(rows, *undefended, success)
    base_main = side(rows, *undefended, "main_accuracy")
    in_grid = [r for r in rows if r.get("grid") == grid and r.get(f"axis:{axis}") not in (None, "")
               and all(str(r.get(f"axis:{k}")) == v for k, v in (where or {}).items())]
    levels = sorted({float(r[f"axis:{axis}"]) for r in in_grid}, reverse=stronger == "lower")
    paper_text = f"{paper:g}" if paper is not None else NOT_SOURCED
    if base.empty or not levels:
        return _row(claim, paper_text, "not in this study", "no undefended or no defended runs" + _provisional(base), source)
    if all(side(rows, grid, str(r["cell"]), success).empty for r in in_grid):
        return _row(claim, paper_text, "no defended run has an outcome yet", "pending", source)
    attack = _mean(base.values)
    weak = f"; against a weak attack (undefended {_pts(attack)} < {100 * WORKING_ATTACK:.0f} %): not a test of the defense" \
        if attack is not None and attack < WORKING_ATTACK else ""
    found = None
    stopped_levels: list[str] = []
    previous: float | None = None  # the last level tried that did not work
    for level in levels:
        cells = {str(r["cell"]) for r in in_grid if float(r[f"axis:{axis}"]) == level}
        for cell in sorted(cells):
            defended = side(rows, grid, cell, success)
            seeds = (set(base.values) | set(base.stopped)) & (set(defended.values) | set(defended.stopped))
            stops = any(k in base.stopped or k in defended.stopped for k in seeds)
            works, reduction = _level_works(base, defended, seeds)
            if works:
                defended_main = side(rows, grid, cell, "main_accuracy").values
                main = paired_difference({k: v for k, v in base_main.values.items() if k in seeds}, defended_main)
                vs_clean = paired_difference(side(rows, *clean, "main_accuracy").values, {k: v for k, v in defended_main.items() if k in seeds}) \
                    if clean is not None else None
                found = (level, cell, reduction, main, vs_clean, previous, stops)
                break
            if stops and f"{level:g}" not in stopped_levels:
                stopped_levels.append(f"{level:g}")
        if found:
            break
        previous = level
    note = f"; stopped (no verdict at every value the stopped runs could have had) at {', '.join(stopped_levels)}" if stopped_levels else ""
    swept = f"{min(levels):g}..{max(levels):g}"
    outside = paper is not None and not (min(levels) <= paper <= max(levels))
    if found is None:
        verdict = "not shown" + (f" (the paper's {paper:g} lies outside the swept {swept})" if outside else "")
        return _row(claim, paper_text, f"no swept level in {swept} works", verdict + note + weak + _provisional(base), source)
    level, cell, reduction, main, vs_clean, previous, stops = found
    beyond = _stronger_levels(rows, grid, axis, [x for x in levels if levels.index(x) > levels.index(level)], in_grid, base, success, clean)
    note += f"; stronger levels: {beyond}" if beyond else ""
    cost = f"main {interval_text(main, signed=True)} vs undefended" + (f", {interval_text(vs_clean, signed=True)} vs clean" if vs_clean and vs_clean.mean is not None else "")
    worst = " (the lowest over every value the stopped runs could have had)" if stops else ""
    ours = f"{level:g} ({cell}): success reduced by {interval_text(reduction)}{worst}, {cost}"
    if stopped_levels:  # a weaker level stopped: it might have worked, so this is not the weakest that works
        verdict = f"works at {level:g}; the weakest working level is not determined (a weaker level stopped)"
    elif paper is None:
        verdict = f"works from {level:g}"
    elif _between(paper, previous, level, stronger):
        verdict = "matches (within the sweep's resolution)"
    else:
        verdict = f"differs: ours works from {level:g} ({'below' if level < paper else 'above'} the paper's {paper:g})"
    return _row(claim, paper_text, ours, verdict + note + weak + _provisional(base), source)


def _stronger_levels(
    rows: list[dict[str, Any]], grid: str, axis: str, levels: list[float], in_grid: list[dict[str, Any]], base: Side,
    success: str, clean: tuple[str, str] | None,
) -> str:
    """Each level stronger than the threshold, in a few words: whether it works, its stops, and what is left of the model
    (its main accuracy and the paired cost against the clean model), so "works from x" does not hide a stronger level
    that stops or leaves a model near chance."""
    parts = []
    for level in levels:
        for cell in sorted({str(r["cell"]) for r in in_grid if float(r[f"axis:{axis}"]) == level}):
            defended = side(rows, grid, cell, success)
            seeds = (set(base.values) | set(base.stopped)) & (set(defended.values) | set(defended.stopped))
            works, _ = _level_works(base, defended, seeds)
            main = side(rows, grid, cell, "main_accuracy")
            if defended.empty:  # nothing finished or stopped yet
                parts.append(f"{level:g} pending")
                continue
            word = "works" if works else ("no verdict" if any(k in defended.stopped or k in base.stopped for k in seeds) else "not shown")
            stops = (f", stopped {len(defended.stopped)}/{len(defended.values) + len(defended.stopped)} "
                     f"({', '.join(sorted(set(defended.stopped.values())))})") if defended.stopped else ""
            stops += f", {len(defended.waiting)} pending" if defended.waiting else ""
            cost = ""
            if clean is not None and main.values:
                vs_clean = paired_difference(side(rows, *clean, "main_accuracy").values, main.values)
                cost = f" ({interval_text(vs_clean, signed=True)} vs clean)" if vs_clean.mean is not None else ""
            kept = f", main {_pts(_mean(main.values))}{cost}" if main.values else ""
            parts.append(f"{level:g} {word}{stops}{kept}")
    return "; ".join(parts)


def _level_works(base: Side, defended: Side, seeds: set[int]) -> tuple[bool, Interval]:
    """The study's rule for one level: the paired reduction lies above 0 and not wholly below the 5-point margin;
    with stopped seeds, at every value they could have had (``robust_reduction``: every corner of their ranges)."""
    known, unknown = reduction_bounds(base.values, defended.values, sorted(seeds))
    if unknown:
        robust = robust_reduction(known, unknown)
        return (robust[0], robust[1]) if robust is not None else (False, mean_interval([]))
    interval = mean_interval([known[k] for k in sorted(known)], sorted(known))
    works = interval.has_interval and interval.low > 0 and interval.high >= EQUIVALENCE_MARGIN  # type: ignore[operator]
    return works, interval


def _between(paper: float, previous: float | None, level: float, stronger: str) -> bool:
    """The paper's level lies past the last swept level that did not work and at most at the first that did."""
    if stronger == "higher":
        return (previous is None or previous < paper) and paper <= level
    return (previous is None or paper < previous) and paper >= level


def _mean(values: dict[int, float]) -> float | None:
    return sum(values.values()) / len(values) if values else None


def _row(claim: str, paper: str, ours: str, verdict: str, source: str) -> dict[str, str]:
    return {"claim": claim, "paper": paper, "ours": ours, "verdict": verdict, "source": source}


# ------------------------------------------------------------------------------------------- table
def default_claims() -> list[Callable[[list[dict[str, Any]]], dict[str, str]]]:
    """The claims for examples/studies/paper_mnist_converged.toml's grids."""
    return [
        lambda r: number_claim(r, "Clean accuracy, non-trainable (sum) top", 95.7, "sum_baselines", "plain__clean",
                               "main_accuracy", PAPER_SOURCES["sum_clean"]),
        lambda r: number_claim(r, "Clean accuracy, trainable top", 97.1, "trainable", "plain__clean", "main_accuracy",
                               PAPER_SOURCES["trainable_clean"]),
        lambda r: number_claim(r, "Gradient replacement succeeds on the sum top (Algorithm 2, gamma 10), backdoor %", None,
                               "gamma", "plain__attack.gamma=10", "backdoor_accuracy"),
        lambda r: _control_claim(r, "The backdoor beats its control on the sum top (gamma 10): backdoor - control",
                                 ("gamma", "plain__attack.gamma=10"), ("sum_baselines", "plain__control")),
        lambda r: direction_claim(r, "A trainable top defends against gradient replacement (gamma 10): sum - trainable backdoor",
                                  NOT_SOURCED + " (claim: it fails)", ("gamma", "plain__attack.gamma=10"),
                                  ("trainable", "plain__backdoor"), "backdoor_accuracy", PAPER_SOURCES["trainable_defends"]),
        lambda r: direction_claim(r, "Activation blurring (Algorithm 3) raises the backdoor against a trainable top: blur - no blur",
                                  NOT_SOURCED, ("trainable", "plain__backdoor_blur"), ("trainable", "plain__backdoor"),
                                  "backdoor_accuracy"),
        lambda r: number_claim(r, "Label inference from gradient signs (sum top), accuracy %", None, "sum_baselines",
                               "plain__label_inference", "label_inference_accuracy"),
        lambda r: threshold_claim(r, "Gaussian noise variance from which the backdoor is weakened (paper's setting: trainable "
                                  "top, gamma 10 + blurring)", 0.05, "fig6_noise", "defense.0.variance",
                                  ("trainable", "plain__backdoor_blur"), "backdoor_accuracy", PAPER_SOURCES["noise_threshold"],
                                  clean=("trainable", "plain__control")),
        lambda r: threshold_claim(r, "Sparsification drop rate from which the backdoor is weakened (trainable top, gamma 10 + "
                                  "blurring, per-sample residual)", None, "fig7_drop", "defense.0.drop_rate",
                                  ("trainable", "plain__backdoor_blur"), "backdoor_accuracy", clean=("trainable", "plain__control")),
        *tradeoff_claims("tradeoff", WORKING, WORKING_CONTROL, "1 known target sample"),
        *tradeoff_claims("tradeoff10", WORKING_10, WORKING_10_CONTROL, "10 known target samples"),
    ]


def tradeoff_claims(
    prefix: str, working: tuple[str, str], control: tuple[str, str], known: str
) -> list[Callable[[list[dict[str, Any]]], dict[str, str]]]:
    """The claims about one trade-off reference (``<prefix>_reference``) and the defense grids judged against it.

    Each threshold is costed against the reference's control (the honest model) as well as the attacked
    run; sparsification gets one claim per residual variant (item 9: which one is the paper's matters).
    """
    attack = f"the working backdoor ({known})"
    residuals = (("sample", "per-sample residual: DGC's accumulation, the paper's defense"), ("none", "no residual: gradient dropping"),
                 ("row", "row residual: this code's earlier default"))
    return [
        lambda r: number_claim(r, f"The trade-off grids' backdoor (sum top, record first, gamma 1, loss bound lifted, {known}) "
                               "succeeds: backdoor % (issue 15 asks for at least 80 %)", None, *working, "backdoor_accuracy",
                               target=WORKING_ATTACK),
        lambda r: _control_claim(r, f"That backdoor ({known}) beats its control (same setting): backdoor - control", working, control),
        lambda r: threshold_claim(r, f"Gaussian noise variance from which {attack} is weakened", 0.05, f"{prefix}_gaussian",
                                  "defense.0.variance", working, "backdoor_accuracy", PAPER_SOURCES["noise_threshold"], clean=control),
        lambda r: threshold_claim(r, f"Laplace noise variance from which {attack} is weakened (same variances as the Gaussian "
                                  "grid)", None, f"{prefix}_laplace", "defense.0.variance", working, "backdoor_accuracy", clean=control),
        lambda r: threshold_claim(r, f"Per-sample norm clipping: the largest max-norm at which {attack} is weakened", None,
                                  f"{prefix}_clip", "defense.0.max_norm", working, "backdoor_accuracy", stronger="lower", clean=control),
        *[(lambda r, residual=residual, what=what: threshold_claim(
            r, f"Sparsification drop rate from which {attack} is weakened ({what})", None, f"{prefix}_drop", "defense.0.drop_rate",
            working, "backdoor_accuracy", where={"defense.0.residual": residual}, clean=control)) for residual, what in residuals],
    ]


def _control_claim(rows: list[dict[str, Any]], claim: str, backdoor: tuple[str, str], control: tuple[str, str]) -> dict[str, str]:
    """backdoor_accuracy of the attacked cell against control_target_rate of its control, paired by seed."""
    a = side(rows, *backdoor, "backdoor_accuracy")
    b = side(rows, *control, "control_target_rate")
    renamed = [dict(r, backdoor_accuracy=r.get("control_target_rate")) if (r.get("grid"), r.get("cell")) == control else r
               for r in rows]
    if a.empty or b.empty:
        return _row(claim, NOT_SOURCED, "not in this study", "no finished backdoor or control runs", "")
    return direction_claim(renamed, claim, NOT_SOURCED, backdoor, control, "backdoor_accuracy")


def comparison_table(rows: list[dict[str, Any]], claims: Iterable[Callable[[list[dict[str, Any]]], dict[str, str]]] | None = None) -> list[dict[str, str]]:
    return [claim(rows) for claim in (claims if claims is not None else default_claims())]


def markdown(table: list[dict[str, str]], study: str = "") -> str:
    lines = [
        "# Paper vs securevfl",
        "",
        f"Study: {study}. " if study else "",
        "Paper: Liu et al., *Backdoor attacks and defenses in feature-partitioned collaborative learning* "
        "(arXiv 2007.03608). Paper numbers only from repository sources (last column); "
        f"'{NOT_SOURCED}' where none cites one. Ours: each run's value as the study table reports it (the study's `summary_epochs`), in points, mean [95 % t interval] (n seeds); "
        "comparisons paired by seed. Generated by `python examples/paper_comparison.py`.",
        "",
        "| claim | paper | ours | verdict | paper source |",
        "|---|---|---|---|---|",
    ]
    for row in table:
        lines.append(f"| {row['claim']} | {row['paper']} | {row['ours']} | {row['verdict']} | {row['source'] or '–'} |")
    return "\n".join(line for line in lines if line is not None) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="a study's study_runs.json")
    parser.add_argument("--out", type=Path, help="write the Markdown here (default: print only)")
    args = parser.parse_args(argv)
    data = json.loads(args.runs.read_text())
    text = markdown(comparison_table(data["rows"]), str(data.get("study", "")))
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
