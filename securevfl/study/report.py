"""The study report (Markdown + PNG): what was run, the survival table, every grid, the costs.

Everything in it is computed from the run files, so ``securevfl study --report-only``
rebuilds it at any time, also halfway through a study (pending cells say so).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from securevfl.attacks import ATTACKS, MAIN_ACCURACY, MetricSpec, attack_metrics, success_metric
from securevfl.files import atomic_write_text
from securevfl.schemes import PlainScheme
from securevfl.study.pending import pending_lines
from securevfl.study.plots import TradeoffPoint, group_label, notes_fit, plot_epochs, plot_tradeoff, plot_versus_axis, when_reported
from securevfl.study.spec import GridSpec, PlannedRun, StudySpec
from securevfl.study.statistics import CONFIDENCE, EQUIVALENCE_MARGIN, MIN_PAIRS
from securevfl.study.survival import ATTACK_FLOOR, WORKING_ATTACK, SurvivalLine, cell_key, stopped_names, survival_lines, undefended_key
from securevfl.study.table import CellSummary, summarize_cells
from securevfl.study.status import STOPPED, RunStatus
from securevfl.study.stops import stop_context

__all__ = ["REPORT_NAME", "write_report"]


REPORT_NAME = "report.md"
PLOTS_DIR = "plots"


def write_report(
    spec: StudySpec,
    runs: list[PlannedRun],
    rows: list[dict[str, Any]],
    histories: dict[str, list[dict[str, Any]]],
    out: Path,
    command: str,
) -> Path:
    """Write ``report.md`` and ``plots/*.png`` into ``out``; return the report's path."""
    schemes = list(dict.fromkeys(run.levels["scheme"] for run in runs))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    lines = [
        f"# Study `{spec.name}`",
        "",
        spec.description.strip(),
        "",
        f"- Regenerate: `{command}` (finished runs are reused; delete the output folder to train everything again).",
        f"- Written {time.strftime('%Y-%m-%d %H:%M')}; {len(rows)} runs: "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        + ".",
        (f"- Seeds: {', '.join(str(seed) for seed in spec.seeds)} unless a grid says otherwise; accuracies are percentages "
        f"({_summary_words(spec.summary_epochs)}), mean and {100 * CONFIDENCE:.0f} % t interval `[low, high]` over the seeds that finished, with `(n=k/n: seeds ...)` naming them where "
        f"some did not; the `stopped` column counts the runs that {stopped_names()} (peak backdoor: highest epoch value, mean over every seed with an outcome, a stopped one's peak before its stop included and counted)."),
        "- Tables: `study_runs.csv` / `study_runs.json` (one row per run; the JSON adds per-epoch histories).",
        *_reuse_lines(rows),
        "",
    ]
    body = pending_lines(rows)  # a study still running says which cells it lacks, before any verdict
    body += _survival_section(runs, rows, schemes)
    plots = out / PLOTS_DIR
    plots.mkdir(exist_ok=True)
    cells = summarize_cells(rows)
    for grid in spec.grids:
        body += _grid_section(grid, spec, runs, rows, histories, cells, plots)
    body += _cost_section(spec, rows)
    body += _stopped_section(runs, rows, histories)
    lines += contents(body)
    path = out / REPORT_NAME
    atomic_write_text(path, "\n".join([*lines, *body]).rstrip() + "\n")
    return path


def contents(body: list[str]) -> list[str]:
    """A linked list of the report's sections (``##``) and subsections (``###``): a report of many grids runs to
    hundreds of lines, and a reader looking for one grid's table should not have to scroll for it."""
    entries: list[str] = []
    seen: dict[str, int] = {}
    for line in body:
        level = len(line) - len(line.lstrip("#"))
        if level not in (2, 3) or not line[level:].startswith(" "):
            continue
        title = line[level:].strip()
        slug = anchor(title)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        entries.append(f"{'  ' * (level - 2)}- [{title}](#{slug}{f'-{count}' if count else ''})")
    return ["## Contents", "", *entries, ""] if entries else []


def anchor(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def success_metrics() -> list[tuple[str, MetricSpec]]:
    """(attack kind, the metric its success is measured by) for every registered attack."""
    pairs = []
    for kind, cls in ATTACKS.items():
        spec = next((spec for spec in cls.metrics if spec.name == cls.success_metric), None)
        if spec is not None:
            pairs.append((kind, spec))
    return pairs


def _survival_section(runs: list[PlannedRun], rows: list[dict[str, Any]], schemes: list[str]) -> list[str]:
    survival = survival_lines(runs, rows, schemes)
    lines = [
        "## Survival: attacks and defenses under each scheme",
        "",
        ("Each cell: attack success / main accuracy (%, mean over the seeds that finished) — "
        + "; ".join(f"{kind.replace('_', ' ')}: {spec.meaning}" for kind, spec in success_metrics())
        + " — or why there is no number; `(control x)`: the clean model's rate of sending the same triggered inputs to "
        f"the target (a `backdoor_control` run of the same setting); `(of the x % of samples read)`: a success taken over "
        f"part of the samples only (a row request reads the rows that fit its slot); `[stopped k/n]`: runs that {stopped_names()} "
        "(collapsed: main accuracy within 5 points of chance, for a backdoor or a run without an attack; an attack "
        "that reads private data keeps its numbers on a model at chance, and its reason says so), which count as "
        "outcomes and never as numbers, except a `detected` run's attacker: what it had read when the check stopped "
        "it (`x at the stop`) is its final success and counts as that seed's value. "
        "`protection`: the protection settings that differ from the defaults (the key holder's hardening); `epochs`: "
        "train.epochs of the line's runs. "
        f"Verdicts pair seeds and are decided on the {100 * CONFIDENCE:.0f} % paired t interval of the difference "
        "(points, `mean [low, high]`): an attack *survives encryption* when the interval of CKKS − plain lies within "
        f"±{100 * EQUIVALENCE_MARGIN:.0f} points, is *changed by encryption* when it excludes 0, and is *inconclusive* "
        f"otherwise (always with fewer than {MIN_PAIRS} paired seeds); an attack plaintext cannot run (refused or "
        "infeasible there) gets each scheme's own success, mean and t interval over seeds. A defense — or a hardening, "
        "against the same line with a weaker key holder — *works* when the interval of (undefended − defended) success "
        "lies above 0; every such verdict shows the undefended success (mean and interval over the same seeds), the "
        "main-accuracy cost against the undefended (attacked) model and against the clean model (the control run of "
        f"the same setting), and says *against a weak attack* when the undefended success is below "
        f"{100 * WORKING_ATTACK:.0f} % (the undefended cell's mean over every seed it finished): not a test of the "
        f"defense. Below {100 * ATTACK_FLOOR:.0f} % undefended success there is nothing to stop (for labels read: below the data's "
        "chance accuracy + 5 points when higher, since a blind guess scores chance). A seed that stopped on "
        "either side turns the verdict into that stop (intent to treat), the interval over the seeds finished on both "
        "being descriptive only; a defense still *works* if the reduction with every stopped run at the defense's "
        "worst case lies above 0. A reduction whose interval lies within ±5 points is *no effect*; one whose interval lies below 0 (beyond ±5 points) *strengthens the attack*. docs/study.md has "
        "the exact definitions."),
        "",
        "The table gives each line's outcome in a word per scheme; the numbers behind it (intervals, seeds, stops, "
        "costs) are in *Verdict details* below, one numbered entry per line.",
        "",
        "| # | grid | attack | defense | protection | epochs | " + " | ".join(schemes) + " | outcome |",
        "|---|---|---|---|---|---|" + "---|" * len(schemes) + "---|",
    ]
    for number, line in enumerate(survival, start=1):
        cells = " | ".join(line.cells[scheme] for scheme in schemes)
        lines.append(f"| [{number}](#v{number}) | {line.grid} | {line.attack} | {line.defense} | {line.protection} | {line.epochs} | {cells} "
                     f"| {line.summary()} |")
    details = ["### Verdict details", ""]
    for number, line in enumerate(survival, start=1):
        details += [f'<a id="v{number}"></a>**{number}. {line.grid}, {line.setting}**: {line.verdict}', ""]
    return [*lines, "", *_judged_section(survival), *details]


def _judged_section(survival: list[SurvivalLine]) -> list[str]:
    """The defense and hardening verdicts split by the attack they were judged against: working or weak.

    A defense that "works" against an attack at 21 % says little about the defense; the issue
    asks for defenses judged against an undefended attack of at least 80 %, so those are listed
    apart from the rest.
    """
    judged = [(number, line, j) for number, line in enumerate(survival, start=1) for j in line.judgements]
    if not any(j.working is not None for _, _, j in judged):
        return []
    lines = [
        "### Defenses judged against a working attack",
        "",
        (f"Each defense and hardening verdict per scheme, by the undefended attack's success over every seed it finished: at least "
        f"{100 * WORKING_ATTACK:.0f} % (a test of the defense) or below (not a test of the defense). `#`: the survival table's line "
        "(its verdict details say which runs were compared); `n`: the seeds the verdict rests on (paired where both sides ran). "
        "`reduction`: undefended − defended success, paired (with stopped runs at the defense's worst case where that decided the "
        "verdict); `-` where the defended side ran no attack (*attack made infeasible*: the attack's own capability check found "
        "nothing to run on, e.g. the sealed layer against gradient inversion: a verdict by construction, no defended success to "
        "subtract). `main vs clean`: defended − clean main accuracy, paired: what the defense cost against the honest model; `-` "
        "where the grid has no clean run of the same setting (a `backdoor_control` or attack-free variant): the verdict details "
        "then give the main accuracy against the undefended runs."),
        "",
    ]
    for working, title in ((True, f"against a working attack (undefended ≥ {100 * WORKING_ATTACK:.0f} %)"),
                           (False, f"against a weak attack (undefended < {100 * WORKING_ATTACK:.0f} %): not a test of the defense"),
                           (None, f"not judged against the {100 * WORKING_ATTACK:.0f} % bar: the undefended attack finished on fewer than "
                                  f"{MIN_PAIRS} seeds (stopped or pending), or its metric is an error (lower is success)")):
        chosen = [(number, line, j) for number, line, j in judged if j.working is working]
        if working is None and not chosen:
            continue
        lines += [f"**{len(chosen)} {title}**", ""]
        if chosen:
            lines += ["| # | grid | attack | defense or hardening | scheme | undefended success | verdict | n | reduction (points) | main vs clean (points) |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            for number, line, j in chosen:
                undefended = j.undefended.text() if j.undefended is not None else "-"
                reduction = j.reduction.clipped(-1.0, 1.0).text(signed=True) if j.reduction is not None and j.reduction.mean is not None else "-"
                cost = j.clean_cost.clipped(-1.0, 1.0).text(signed=True) if j.clean_cost is not None and j.clean_cost.mean is not None else "-"
                word = f"{j.word} (attack made infeasible)" if j.made_infeasible else j.word
                lines.append(f"| [{number}](#v{number}) | {line.grid} | {line.attack} | {j.what} | {j.scheme} | {undefended} | {word} | {j.seeds} | {reduction} | {cost} |")
            lines.append("")
    return lines


def _levels_of(summary: CellSummary) -> dict[str, str]:
    return {key.removeprefix("axis:"): str(value) for key, value in summary.first.items() if key.startswith("axis:")}


def _grid_section(
    grid: GridSpec,
    spec: StudySpec,
    runs: list[PlannedRun],
    rows: list[dict[str, Any]],
    histories: dict[str, list[dict[str, Any]]],
    cells: dict[tuple[str, str], CellSummary],
    plots: Path,
) -> list[str]:
    mine = [(cell, summary) for (grid_name, cell), summary in cells.items() if grid_name == grid.name]
    if not mine:
        return []
    seeds = grid.seeds or spec.seeds
    lines = [f"## {grid.title or grid.name}", "", f"Grid `{grid.name}`, seeds {', '.join(map(str, seeds))}."]
    if grid.description:
        lines += ["", grid.description.strip()]
    lines.append("")
    level_names = [name for name in _levels_of(mine[0][1]) if name != "scheme"]
    schemes = list(dict.fromkeys(_levels_of(summary)["scheme"] for _, summary in mine))
    header = level_names or ["setting"]
    first, *others = attack_metrics()  # the first attack metric has its own column; others show in it, labelled
    # a grid without that metric (privacy attacks only) names the column "attack" and has no peak column: its cells
    # say which metric they show
    has_first = any(row.get(first.name) is not None or (first.peak_column and row.get(first.peak_column) is not None)
                    for _, summary in mine for row in summary.rows)
    per_scheme_columns = (["main", first.label, f"peak {first.label}", "stopped"] if has_first else ["main", "attack", "stopped"])
    lines.append(
        "| " + " | ".join(header) + " | "
        + " | ".join(f"{s} {column}" for s in schemes for column in per_scheme_columns) + " |"
    )
    lines.append("|" + "---|" * (len(header) + len(per_scheme_columns) * len(schemes)))
    by_levels: dict[tuple[str, ...], dict[str, CellSummary]] = {}
    for _, summary in mine:
        levels = _levels_of(summary)
        by_levels.setdefault(tuple(levels[name] for name in level_names), {})[levels["scheme"]] = summary
    for level_values, per_scheme in by_levels.items():
        cells_text = []
        for scheme in schemes:
            found = per_scheme.get(scheme)
            if found is None:
                cells_text += ["not run"] * len(per_scheme_columns)
                continue
            attack = found.cell_text(first.name)
            for other in others:
                if attack == "-" and found.mean(other.name) is not None:
                    attack = f"{other.label} {found.cell_text(other.name)}"
            if has_first:
                peak = found.peak_text(first.peak_column) if first.peak_column else "-"
                cells_text += [found.cell_text(MAIN_ACCURACY.name), attack, peak, found.stopped_text()]
            else:
                cells_text += [found.cell_text(MAIN_ACCURACY.name), attack, found.stopped_text()]
        lines.append("| " + " | ".join(level_values or ("-",)) + " | " + " | ".join(cells_text) + " |")
    lines.append("")
    tradeoff, reference = _tradeoff_points(grid, runs, rows, histories)
    x_reference = reference if grid.x is not None and grid.x.startswith("defense") else None
    figures = [
        ("epochs", plot_epochs(grid, rows, histories, plots / f"{grid.name}_epochs.png")),
        (f"vs_{_file_safe(grid.x)}", plot_versus_axis(grid, rows, plots / f"{grid.name}_vs_{_file_safe(grid.x)}.png", reference=x_reference,
                                                      when=when_reported(spec.summary_epochs), histories=histories)),
    ]
    if tradeoff is not None:
        metric, label, points = tradeoff
        figures.append(("tradeoff", plot_tradeoff(f"{grid.name}: {label} vs main accuracy, one point per defense level", metric, label,
                                                  points, plots / f"{grid.name}_tradeoff.png", x_name=grid.x or "",
                                                  when=when_reported(spec.summary_epochs))))
    for name, figure in figures:  # an absent figure says why, so a missing picture is never read as "nothing happened"
        if figure.path is not None:
            lines += [f"![{figure.path.stem}]({PLOTS_DIR}/{figure.path.name})", ""]
            if not notes_fit(figure.notes, figure_width=3.9):  # its footnote may end in "... more line(s)": here in full
                lines += [f"*Notes to `{figure.path.stem}`: " + " ".join(note.rstrip(".") + "." for note in figure.notes) + "*", ""]
        elif figure.absent:
            lines += [f"*Figure `{grid.name}_{name}`: {figure.absent}.*", ""]
    return lines


def _tradeoff_points(
    grid: GridSpec, runs: list[PlannedRun], rows: list[dict[str, Any]], histories: dict[str, list[dict[str, Any]]] | None = None
) -> tuple[tuple[str, str, list[TradeoffPoint]] | None, dict[str, list[dict[str, Any]]]]:
    """The trade-off plot's points of a grid of defense levels, and the undefended rows per scheme.

    Every cell of the grid with a ``[[defense]]`` list and an attack with a success metric is a
    point; the cell of the same setting and attack without the defense (found anywhere in the
    study, as the survival table finds it) is the marked undefended point. Each point carries its
    stopped runs' histories (``histories``), so the figure draws where they stood at the stop.
    """
    by_id = {row["run_id"]: row for row in rows}
    histories = histories or {}

    def stopped_histories(run_group: list[PlannedRun]) -> dict[str, list[dict[str, Any]]]:
        return {r.run_id: histories[r.run_id] for r in run_group if by_id[r.run_id]["status"] in STOPPED and histories.get(r.run_id)}

    configs: dict[tuple[str, str], dict[str, Any]] = {}
    members: dict[tuple[str, str], list[PlannedRun]] = {}
    for run in runs:
        key = cell_key(run)
        members.setdefault(key, []).append(run)
        if run.config:
            configs.setdefault(key, run.config)
    defended = [
        key for key, config in configs.items()
        if key[0] == grid.name and config.get("defense") and success_metric(config.get("attack", {}).get("kind", "none"))
    ]
    if not defended:
        return None, {}
    metric = success_metric(configs[defended[0]]["attack"]["kind"])
    assert metric is not None
    label = next((spec.label for spec in attack_metrics() if spec.name == metric), metric)
    points: list[TradeoffPoint] = []
    reference: dict[str, list[dict[str, Any]]] = {}
    undefended_seen: set[tuple[str, str]] = set()
    for key in defended:
        for run_group in _by_scheme(members[key]):
            first = run_group[0]  # x: the point's text and order; the other axes' levels: its series
            x = float(first.values[grid.x]) if grid.x is not None and grid.x in first.values else None
            points.append(TradeoffPoint(first.levels["scheme"], key[1], [by_id[r.run_id] for r in run_group], x=x,
                                        group=group_label(first.levels, (grid.x or "",)), histories=stopped_histories(run_group)))
        counterpart = undefended_key(configs[key], configs)
        if counterpart is not None and counterpart not in undefended_seen:
            undefended_seen.add(counterpart)
            for run_group in _by_scheme(members[counterpart]):
                scheme = run_group[0].levels["scheme"]
                group_rows = [by_id[r.run_id] for r in run_group]
                points.append(TradeoffPoint(scheme, f"{counterpart[0]}/{counterpart[1]}", group_rows, undefended=True,
                                            histories=stopped_histories(run_group)))
                reference.setdefault(scheme, group_rows)
    return (metric, label, points), reference


def _by_scheme(runs: list[PlannedRun]) -> list[list[PlannedRun]]:
    groups: dict[str, list[PlannedRun]] = {}
    for run in runs:
        groups.setdefault(run.levels["scheme"], []).append(run)
    return list(groups.values())


def _file_safe(text: str | None) -> str:
    return "".join(c if c.isalnum() else "_" for c in (text or "x"))


def _cost_section(spec: StudySpec, rows: list[dict[str, Any]]) -> list[str]:
    """Per grid and scheme: the epoch time (median and range: it moves with the machine's load) and the bytes sent.

    Only the bytes get a ratio to plaintext: they are exact and the same for every run of a cell, whereas the times of
    identical configs differ 2-7x on a shared machine (and copied plaintext runs were timed in another session), so a
    time ratio of medians would report the load. ``securevfl bench`` measures time ratios in isolation.
    """
    encrypted = any(row.get("axis:scheme") not in (None, PlainScheme.name) for row in rows)
    lines = [
        "## What encryption cost in these runs" if encrypted else "## What these runs cost (plaintext only: no encryption to compare)",
        "",
        ("Over the grid's finished runs: the mean epoch time (training + evaluation), median and [min–max], with the worker "
         "processes sharing the machine, so it moves with the load (runs copied with `--reuse-from` were timed where they "
         "trained); and the bytes sent per epoch" + ("; the bytes' ratio to the plaintext runs of the same grid (exact: no "
         "time ratio is given, since the times measure the machine's load as much as the scheme)" if encrypted else "")
         + ". `securevfl bench` measures both costs in isolation."),
        "",
        "| grid | scheme | runs | s / epoch | MB / epoch | × plain |" if encrypted else "| grid | scheme | runs | s / epoch | MB / epoch |",
        "|---|---|---|---|---|---|" if encrypted else "|---|---|---|---|---|",
    ]
    for grid in spec.grids:
        ok = [row for row in rows if row["grid"] == grid.name and row["status"] == RunStatus.OK and row.get("mean_epoch_seconds")]
        per_scheme: dict[str, list[dict[str, Any]]] = {}
        for row in ok:
            per_scheme.setdefault(row["axis:scheme"], []).append(row)
        plain_rows = per_scheme.get(PlainScheme.name, [])
        plain_bytes = statistics.median(r["bytes_per_epoch"] for r in plain_rows) if plain_rows else None
        for scheme, group in per_scheme.items():
            times = [float(r["mean_epoch_seconds"]) for r in group]
            seconds = f"{statistics.median(times):.2f} [{min(times):.2f}–{max(times):.2f}]"
            sent = statistics.median(r["bytes_per_epoch"] for r in group)
            if not encrypted:
                lines.append(f"| {grid.name} | {scheme} | {len(group)} | {seconds} | {sent / 1e6:.1f} |")
                continue
            ratio_b = f"{sent / plain_bytes:.1f}" if plain_bytes else "-"
            lines.append(f"| {grid.name} | {scheme} | {len(group)} | {seconds} | {sent / 1e6:.1f} | {ratio_b} |")
    return [*lines, ""]


def _stopped_section(runs: list[PlannedRun], rows: list[dict[str, Any]], histories: dict[str, list[dict[str, Any]]]) -> list[str]:
    stopped = [row for row in rows if row["status"] in (*STOPPED, RunStatus.REFUSED)]
    pending = [row for row in rows if row["status"] == RunStatus.PENDING]
    if not stopped and not pending:
        return []
    lines = ["## Runs without a result (stopped, collapsed, refused or pending)", ""]
    if pending:
        lines += [f"{len(pending)} run(s) not trained yet: rerun the command to continue.", ""]
    if stopped:
        context = stop_context(runs, rows, histories)
        lines += [
            ("`last evaluated`: the run's last epoch before its stop (main accuracy / the attack's success, %); `plaintext twin`: the "
             "plaintext run of the same cell and seed, its status, the largest gap between the two histories over the epochs both "
             "evaluated (`tracked over k epochs within` main / attack points), and its values at the epoch where this run stopped: a stopped CKKS run that tracked its twin trained "
             "the plaintext model until the plaintext values left the scheme's range (`examples/activation_peaks.py` measures them)."),
            "",
            "| run | status | last evaluated | plaintext twin | reason |",
            "|---|---|---|---|---|",
        ]
        for row in stopped:
            found = context.get(row["run_id"])
            at_stop, twin = (found.at_stop, found.twin) if found is not None else ("-", "-")
            lines.append(f"| {row['run_id']} | {row['status']} | {at_stop} | {twin} | {str(row['reason']).replace('|', '/')} |")
    return [*lines, ""]


def _reuse_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line naming the folders this study copied identical runs from (``--reuse-from``), if any."""
    sources: dict[str, int] = {}
    for row in rows:
        if row.get("reused_from"):
            source = Path(row["reused_from"])  # <folder>/runs/<grid>/<cell>/result.json, or <folder>/study_runs.json (rebuilt)
            shown_folder = f"`{source.parent}` (rebuilt from its table)" if source.name == "study_runs.json" else f"`{source.parents[3]}`"
            sources[shown_folder] = sources.get(shown_folder, 0) + 1
    if not sources:
        return []
    shown = "; ".join(f"{n} from {folder}" for folder, n in sorted(sources.items()))
    return [f"- Reused, not trained here (`--reuse-from`: a run record of an identical config, or a row of a committed table "
            f"matched by its config key, or by its config columns in tables older than the key; column `reused_from`): {shown}."]


def _summary_words(epochs: int) -> str:
    """How a run's accuracies are summarized (the study's ``summary_epochs``), for the report's header."""
    if epochs <= 1:
        return "each run's value at its **last epoch**"
    return (f"each run's **mean over its last {epochs} epochs**, `summary_epochs`; its last epoch for a run shorter "
            "than that; the last epoch's own values are in the JSON table's `*_last_epoch` columns")
