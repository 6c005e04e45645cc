"""The study's figures, checked on the data they draw (issue 15 audit): one series per level of a grid's
second axis, the no-defense reference over each level's own seeds, a reason for every absent figure, and
each trade-off point's epsilon with a note when no epsilon means anything. Rows are built by hand; the
expected means are computed here from the same numbers."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from securevfl.study import load_study, plan_runs
from securevfl.study.plots import TradeoffPoint, epsilon_notes, plot_tradeoff, plot_versus_axis, tradeoff_series
from securevfl.study.report import _tradeoff_points, write_report
from securevfl.study.spec import PlannedRun

STUDY = """
[study]
name = "figures"
seeds = [0, 1, 2]
schemes = ["plain"]
[study.set]
"data.name" = "digits"
"attack.kind" = "gradient_replacement"
[[grid]]
name = "ref"
[[grid]]
name = "drop"
x = "defense.0.drop_rate"
[grid.set]
"defense" = [{ kind = "sparsification", drop_rate = 0.9 }]
[grid.axes]
"defense.0.drop_rate" = [0.5, 0.9, 0.99]
"defense.0.residual" = ["row", "sample"]
"""

DROPS = (0.5, 0.9, 0.99)
RESIDUAL_OFFSET = {"row": 0.0, "sample": 0.05}


def _main(drop: float, residual: str, seed: int) -> float:
    """Main accuracy falls with the drop rate: sorted by it, a series would run 0.99, 0.9, 0.5."""
    return 0.9 - 0.2 * drop - RESIDUAL_OFFSET[residual] + 0.01 * seed


def _backdoor(drop: float, residual: str, seed: int) -> float:
    return 0.8 - 0.5 * drop + RESIDUAL_OFFSET[residual] + 0.02 * seed


REFERENCE_MAIN = {0: 0.95, 1: 0.93, 2: 0.91}
REFERENCE_BACKDOOR = {0: 0.85, 1: 0.75, 2: 0.65}


@pytest.fixture()
def study(tmp_path: Path) -> tuple[Any, list[PlannedRun]]:
    path = tmp_path / "study.toml"
    path.write_text(STUDY, encoding="utf-8")
    spec = load_study(path)
    return spec, plan_runs(spec)


def _rows(runs: list[PlannedRun], status: Callable[[PlannedRun], str] = lambda run: "ok", **extra: Any) -> list[dict[str, Any]]:
    """One table row per run: the hand-made numbers above, or ``status(run)`` without numbers when it is not ``ok``."""
    rows = []
    for run in runs:
        row = {"run_id": run.run_id, "grid": run.grid, "cell": run.cell, "seed": run.seed, "status": status(run), "reason": "",
               **{f"axis:{k}": v for k, v in run.levels.items()}}
        if row["status"] == "ok":
            if run.grid == "ref":
                row |= {"main_accuracy": REFERENCE_MAIN[run.seed], "backdoor_accuracy": REFERENCE_BACKDOOR[run.seed]}
            else:
                drop, residual = float(run.values["defense.0.drop_rate"]), str(run.levels["defense.0.residual"])
                row |= {"main_accuracy": _main(drop, residual, run.seed), "backdoor_accuracy": _backdoor(drop, residual, run.seed), **extra}
        rows.append(row)
    return rows


def _grid(spec: Any, name: str) -> Any:
    return next(grid for grid in spec.grids if grid.name == name)


def test_a_second_axis_gives_one_tradeoff_series_per_level_ordered_by_x_and_one_undefended_star(
    study: tuple[Any, list[PlannedRun]], tmp_path: Path
) -> None:
    spec, runs = study
    grid = _grid(spec, "drop")
    rows = _rows(runs)
    tradeoff, _ = _tradeoff_points(grid, runs, rows)
    assert tradeoff is not None
    metric, label, points = tradeoff
    figure = plot_tradeoff("t", metric, label, points, tmp_path / "t.png", x_name=grid.x)
    assert figure.path is not None and figure.path.is_file()
    assert [(s.label, s.kind) for s in figure.series] == [
        ("residual = row", "levels"), ("residual = sample", "levels"), ("plain: no defense", "undefended")]
    star = figure.series[-1].points
    assert len(star) == 1 and star[0].text == "no defense"
    assert star[0].x == pytest.approx(100 * statistics.fmean(REFERENCE_MAIN.values()))
    assert star[0].y == pytest.approx(100 * statistics.fmean(REFERENCE_BACKDOOR.values()))
    for series, residual in zip(figure.series[:2], ("row", "sample"), strict=True):
        # ordered by drop rate although main accuracy falls along it; labelled with the drop rate only
        assert [p.text for p in series.points] == ["0.5", "0.9", "0.99"]
        for point, drop in zip(series.points, DROPS, strict=True):
            assert point.x == pytest.approx(100 * statistics.fmean(_main(drop, residual, s) for s in (0, 1, 2)))
            assert point.y == pytest.approx(100 * statistics.fmean(_backdoor(drop, residual, s) for s in (0, 1, 2)))
            assert point.seeds == (0, 1, 2)
            assert 0 <= point.y - point.yerr[0] and point.y + point.yerr[1] <= 100  # clipped to an accuracy's range


def test_versus_axis_draws_one_line_per_residual_and_the_reference_over_each_levels_own_seeds(
    study: tuple[Any, list[PlannedRun]], tmp_path: Path
) -> None:
    spec, runs = study
    grid = _grid(spec, "drop")

    def status(run: PlannedRun) -> str:
        if run.grid == "ref" and run.seed == 2:
            return "pending"  # the reference lacks seed 2 everywhere
        if run.grid == "drop" and run.seed == 1 and run.levels["defense.0.residual"] == "row" and run.values["defense.0.drop_rate"] == 0.99:
            return "collapsed"  # one level lost seed 1
        return "ok"

    rows = _rows(runs, status)
    _, reference = _tradeoff_points(grid, runs, rows)
    figure = plot_versus_axis(grid, rows, tmp_path / "v.png", reference=reference)
    assert figure.path is not None
    by_label = {s.label: s for s in figure.series}
    assert set(by_label) == {f"residual = {r}: {m}{suffix}" for r in ("row", "sample") for m in ("main", "backdoor")
                             for suffix in ("", ", no defense (same seeds)")}
    row_backdoor = by_label["residual = row: backdoor"]
    reference_marks = by_label["residual = row: backdoor, no defense (same seeds)"]
    assert [p.x for p in row_backdoor.points] == list(DROPS) == [p.x for p in reference_marks.points]
    expected_seeds = [(0, 1), (0, 1), (0,)]  # seed 2: no reference; seed 1 at 0.99: collapsed
    for drawn, mark, drop, seeds in zip(row_backdoor.points, reference_marks.points, DROPS, expected_seeds, strict=True):
        assert drawn.seeds == mark.seeds == seeds  # both sides of the comparison over the same seeds
        assert drawn.y == pytest.approx(100 * statistics.fmean(_backdoor(drop, "row", s) for s in seeds))
        assert mark.y == pytest.approx(100 * statistics.fmean(REFERENCE_BACKDOOR[s] for s in seeds))
    # the old reference (union of seeds, a single line) would have drawn 80.0 at every level; at 0.99 it is 85.0
    assert reference_marks.points[-1].y == pytest.approx(85.0)
    sample_marks = by_label["residual = sample: backdoor, no defense (same seeds)"]
    assert [p.seeds for p in sample_marks.points] == [(0, 1)] * 3
    assert any(n.startswith("drop_rate=0.5, residual = row: mean over seeds 0,1, those the no-defense reference also finished (left out: 2)")
               for n in figure.notes)


def test_a_level_the_reference_never_finished_draws_no_marker_and_says_so(study: tuple[Any, list[PlannedRun]], tmp_path: Path) -> None:
    spec, runs = study
    grid = _grid(spec, "drop")

    def status(run: PlannedRun) -> str:
        if run.grid == "ref":
            return "ok" if run.seed == 0 else "pending"
        if run.values["defense.0.drop_rate"] == 0.9 and run.seed == 0:
            return "diverged"
        return "ok"

    rows = _rows(runs, status)
    _, reference = _tradeoff_points(grid, runs, rows)
    figure = plot_versus_axis(grid, rows, tmp_path / "v.png", reference=reference)
    marks = next(s for s in figure.series if s.label == "residual = row: main, no defense (same seeds)")
    assert [p.x for p in marks.points] == [0.5, 0.99] and all(p.seeds == (0,) for p in marks.points)
    line = next(s for s in figure.series if s.label == "residual = row: main")
    assert line.points[1].seeds == (1, 2)  # 0.9 keeps its own seeds, without a marker
    assert "drop_rate=0.9, residual = row: no-defense reference not drawn (it finished none of seeds 1,2)" in figure.notes


def test_every_absent_figure_says_why_in_the_report(study: tuple[Any, list[PlannedRun]], tmp_path: Path) -> None:
    spec, runs = study

    def status(run: PlannedRun) -> str:
        if run.grid == "ref":
            return "ok"
        return "collapsed" if run.values["defense.0.residual"] == "row" else "diverged"

    rows = _rows(runs, status)
    figure = plot_versus_axis(_grid(spec, "drop"), rows, tmp_path / "v.png")
    assert figure.path is None and figure.absent == "not drawn: every seed of every level stopped (collapsed 9, diverged 9)"
    out = tmp_path / "out"
    out.mkdir()
    report = write_report(spec, runs, rows, {}, out, command="securevfl study").read_text()
    for name in ("drop_epochs", "drop_vs_defense_0_drop_rate", "drop_tradeoff"):
        assert f"*Figure `{name}`: not drawn: every seed of every level stopped (collapsed 9, diverged 9).*" in report
    assert "*Figure `ref_epochs`: not drawn: no finished run recorded a per-epoch history (ok 3).*" in report
    pending = [row | {"status": "pending"} for row in rows]
    figure = plot_versus_axis(_grid(spec, "drop"), pending, tmp_path / "p.png")
    assert figure.absent == "not drawn: no run has finished yet (pending 18)"


def test_each_tradeoff_point_carries_its_epsilon_and_huge_epsilons_are_called_meaningless(
    study: tuple[Any, list[PlannedRun]], tmp_path: Path
) -> None:
    spec, runs = study
    grid = _grid(spec, "drop")
    epsilon = {0.5: 460.0, 0.9: 3.2e4, 0.99: 5e5}
    rows = _rows(runs)
    for row in rows:
        if row["grid"] == "drop":
            row["dp_epsilon_pld"] = epsilon[float(row["axis:defense.0.drop_rate"])]
    tradeoff, _ = _tradeoff_points(grid, runs, rows)
    assert tradeoff is not None
    metric, label, points = tradeoff
    figure = plot_tradeoff("t", metric, label, points, tmp_path / "t.png", x_name=grid.x)
    texts = [p.text for s in figure.series if s.kind == "levels" for p in s.points]
    assert texts == ["0.5, ε 460", "0.9, ε 3.2e+04", "0.99, ε 5e+05"] * 2
    assert "epsilon > 100 at every level: no meaningful differential-privacy guarantee (ε 460 to 5e+05)" in figure.notes
    # a level with a meaningful epsilon: no "every level" claim, the others still named
    assert epsilon_notes([1.5, 460.0]) == ["epsilon > 100 at 1 of 2 levels: no meaningful differential-privacy guarantee there"]
    assert epsilon_notes([None, None]) == [] and epsilon_notes([0.5, 8.0]) == []
    assert epsilon_notes([math.inf], ["no sensitivity bound: no clip_norm bounds a row; noise_source = 'run_seed': the passive holds it"]) == [
        "epsilon > 100 at every level: no meaningful differential-privacy guarantee (ε = ∞: none claimed)",
        "ε = ∞ (no finite epsilon claimed): no sensitivity bound; noise_source = 'run_seed'",
    ]
    # no epsilon recorded (a defense without an accountant): none invented, no note
    plain = plot_tradeoff("t", metric, label, _tradeoff_points(grid, runs, _rows(runs))[0][2], tmp_path / "p.png")  # type: ignore[index]
    assert not any("ε" in p.text for s in plain.series for p in s.points) and not any("epsilon" in n for n in plain.notes)


def test_a_grid_of_variants_keeps_one_line_per_scheme_ordered_by_main_accuracy(tmp_path: Path) -> None:
    def rows(main: float, attack: float) -> list[dict[str, Any]]:
        return [{"seed": s, "status": "ok", "main_accuracy": main, "backdoor_accuracy": attack} for s in range(2)]

    points = [TradeoffPoint("plain", "none", rows(0.9, 0.9), undefended=True), TradeoffPoint("plain", "strong", rows(0.5, 0.1)),
              TradeoffPoint("plain", "weak", rows(0.8, 0.6))]
    figure = plot_tradeoff("t", "backdoor_accuracy", "backdoor", points, tmp_path / "t.png")
    levels = [s for s in figure.series if s.kind == "levels"]
    assert [s.label for s in levels] == ["defense levels"]
    assert [(p.text, p.x, p.y) for p in levels[0].points] == [("strong", 50.0, 10.0), ("weak", 80.0, 60.0)]


def test_a_stopped_seed_is_drawn_up_to_its_stop_and_never_averaged(study: tuple[Any, list[PlannedRun]], tmp_path: Path) -> None:
    """Figs. 4-5 analogues: a run that diverged after reaching 93 % keeps its curve to the stop (from failed.json)."""
    from securevfl.study.plots import _stopped_histories, plot_epochs

    spec, runs = study
    grid = _grid(spec, "drop")
    target = next(run for run in runs if run.grid == "drop" and run.seed == 1 and run.levels["defense.0.residual"] == "row"
                  and float(run.values["defense.0.drop_rate"]) == 0.99)
    rows = _rows(runs, status=lambda run: "diverged" if run is target else "ok")
    histories = {run.run_id: [{"epoch": e, "main_accuracy": 0.9, "backdoor_accuracy": 0.1 * e} for e in (1, 2, 3, 4)]
                 for run in runs if run is not target}
    before_stop = [{"epoch": e, "main_accuracy": 0.8, "backdoor_accuracy": b} for e, b in ((1, 0.2), (2, 0.93))]
    histories[target.run_id] = before_stop
    stopped = _stopped_histories([r for r in rows if r["grid"] == "drop"], histories, "plain")
    assert list(stopped.values()) == [[before_stop]]  # only the stopped seed, under its level
    figure = plot_epochs(grid, rows, histories, tmp_path / "epochs.png")
    assert figure.path is not None and figure.path.is_file()
    assert any(note.startswith("dotted to an x: a stopped seed's attack success") for note in figure.notes)
    assert any("seed 1 diverged" in note for note in figure.notes)  # still named among the runs without a number
    # without the stopped run's history nothing is drawn for it and the dotted note is absent
    del histories[target.run_id]
    assert not any(note.startswith("dotted") for note in plot_epochs(grid, rows, histories, tmp_path / "e2.png").notes)


def test_a_versus_figure_marks_each_stopped_seed_at_its_attack_success_before_the_stop(study: tuple[Any, list[PlannedRun]], tmp_path: Path) -> None:
    """Part 2's referee: gamma 30's stopped seeds (88-100 % backdoor before the stop) were absent from the versus figure, so
    its line read as if the attack fell. Each stopped seed with a history is an x at its last evaluated epoch's success."""
    from securevfl.study.plots import _stopped_versus_marks

    spec, runs = study
    grid = _grid(spec, "drop")
    target = next(run for run in runs if run.grid == "drop" and run.seed == 1 and run.levels["defense.0.residual"] == "sample"
                  and float(run.values["defense.0.drop_rate"]) == 0.9)
    rows = _rows(runs, status=lambda run: "out_of_range" if run is target else "ok")
    histories = {target.run_id: [{"epoch": 1, "main_accuracy": 0.5, "backdoor_accuracy": 0.4}, {"epoch": 2, "main_accuracy": 0.7, "backdoor_accuracy": 0.88}]}
    mine = [row for row in rows if row["grid"] == "drop"]
    assert _stopped_versus_marks(grid, mine, histories) == [(("plain", "residual = sample"), 0.9, 88.0)]
    assert _stopped_versus_marks(grid, mine, {}) == []  # no history: nothing to draw (it is named among the runs without a number)
    figure = plot_versus_axis(grid, rows, tmp_path / "v.png", histories=histories)
    assert any(note.startswith("x: a stopped seed's attack success at its last evaluated epoch") for note in figure.notes)
    # the level's mean is over seeds 0 and 2 of the 3 planned: ringed (and only that level's points)
    ringed = {(s.group, p.x) for s in figure.series if s.kind == "metric" for p in s.points if p.fewer_seeds}
    assert ringed == {("residual = sample", 0.9)}
    assert any(note.startswith("ringed in red: a mean over the seeds that finished") for note in figure.notes)


def test_the_axes_say_how_a_runs_number_is_summarized() -> None:
    from securevfl.study.plots import LAST_EPOCH, when_reported

    assert when_reported(1) == LAST_EPOCH == "at the last epoch" and when_reported(5) == "over the last 5 epochs"


def test_point_numbers_are_placed_without_overlapping_each_other_or_a_marker() -> None:
    """Close trade-off points (the noise levels that leave the backdoor at ~90 %) get numbers that stay readable."""
    from securevfl.study.plots import place_labels

    anchors = [(100.0, 100.0), (103.0, 101.0), (98.0, 99.0), (101.0, 104.0), (300.0, 50.0)]
    offsets = place_labels(anchors, size=(14.0, 10.0), marker=4.0)
    boxes = [(x + dx, y + dy, x + dx + 14.0, y + dy + 10.0) for (x, y), (dx, dy) in zip(anchors, offsets, strict=True)]
    markers = [(x - 4.0, y - 4.0, x + 4.0, y + 4.0) for x, y in anchors]

    def overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])

    assert not any(overlaps(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert not any(overlaps(box, marker) for box in boxes for marker in markers)
    assert offsets[-1] == (4, 4)  # a point alone keeps the first choice


def test_a_tradeoff_key_gives_every_numbered_point_its_level_epsilon_and_means(tmp_path: Path) -> None:
    def rows(main: float, attack: float, epsilon: float | None = None) -> list[dict[str, Any]]:
        return [{"seed": s, "status": "ok", "main_accuracy": main, "backdoor_accuracy": attack, "dp_epsilon_pld": epsilon} for s in range(2)]

    points = [TradeoffPoint("plain", "none", rows(0.77, 0.92), undefended=True),
              TradeoffPoint("plain", "v=1e-06", rows(0.80, 0.93, 5.2e5), x=1e-6), TradeoffPoint("plain", "v=3e-05", rows(0.76, 0.99, 1940.0), x=3e-5),
              TradeoffPoint("plain", "v=1e-04", rows(0.71, 0.0, 643.0), x=1e-4)]
    figure = plot_tradeoff("t", "backdoor_accuracy", "backdoor", points, tmp_path / "t.png", x_name="defense.0.variance")
    assert figure.path is not None and figure.path.is_file()
    assert figure.key == [
        "key: backdoor vs main accuracy, mean % (main / backdoor)",
        " 1  variance 1e-06, ε 5.2e+05  ->  80.0 / 93.0  (n=2)",
        " 2  variance 3e-05, ε 1.94e+03  ->  76.0 / 99.0  (n=2)",
        " 3  variance 0.0001, ε 643  ->  71.0 / 0.0  (n=2)",
        " *  plain: no defense  ->  77.0 / 92.0  (n=2)",
    ]


def test_a_tradeoff_figure_pairs_each_point_with_the_undefended_run_when_few_seeds_finished_everywhere(tmp_path: Path) -> None:
    """Third referee pass: with one stopped seed per level, only seed 0 finished at every level, and the figure drew
    seed 0's values under "mean and 95 % CI" (drop 0.9 at 100 % backdoor while its 3-seed mean was 33 %). Now each point
    is over the seeds it shares with the undefended run, the note says so first, and the key gives every point's n."""
    def rows(values: list[float | str]) -> list[dict[str, Any]]:
        return [{"seed": s, "status": v, "main_accuracy": None, "backdoor_accuracy": None} if isinstance(v, str)
                else {"seed": s, "status": "ok", "main_accuracy": 0.8, "backdoor_accuracy": v} for s, v in enumerate(values)]

    points = [TradeoffPoint("plain", "none", rows([0.9, 0.9, 0.9, 0.9]), undefended=True),
              TradeoffPoint("plain", "d=0.9", rows([1.0, 0.0, 0.0, "diverged"]), x=0.9),
              TradeoffPoint("plain", "d=0.99", rows([0.0, "diverged", "diverged", 0.0]), x=0.99)]
    series, notes = tradeoff_series("backdoor_accuracy", points)
    drawn = {p.text.split(",")[0]: (p.y, p.seeds) for s in series if s.kind == "levels" for p in s.points}
    assert drawn == {"0.9": (pytest.approx(100 / 3), (0, 1, 2)), "0.99": (0.0, (0, 3))}
    assert notes[0].startswith("plain: only seeds 0 finished at every level, so each point is over the seeds it shares with the undefended run")
    # two common seeds of four are enough: one set for every point
    enough = [points[0], TradeoffPoint("plain", "d=0.9", rows([1.0, 0.0, "diverged", "diverged"]), x=0.9),
              TradeoffPoint("plain", "d=0.99", rows([0.0, 0.0, 0.0, 0.0]), x=0.99)]
    series, notes = tradeoff_series("backdoor_accuracy", enough)
    assert {p.seeds for s in series for p in s.points} == {(0, 1)}
    assert notes[0] == "plain: means over seeds 0,1 (finished at every level; left out: 2,3)"
    figure = plot_tradeoff("t", "backdoor_accuracy", "backdoor", points, tmp_path / "t.png", x_name="defense.0.drop_rate")
    # a point over fewer seeds than planned says so in the key and is ringed on the plot (its legend says why)
    assert figure.key[1].endswith("(n=3 of 4)") and figure.key[2].endswith("(n=2 of 4)") and figure.key[-1].endswith("(n=4)")
    assert [p.fewer_seeds for s in figure.series if s.kind == "levels" for p in s.points] == [True, True]
    full = plot_tradeoff("t", "backdoor_accuracy", "backdoor", enough[:1] + [enough[2]], tmp_path / "f.png", x_name="d")
    assert not any(p.fewer_seeds for s in full.series for p in s.points) and full.key[1].endswith("(n=4)")


def test_the_report_opens_with_contents_linked_to_its_sections_as_github_anchors_them() -> None:
    from securevfl.study.report import anchor, contents

    body = ["## Sum top: clean training, the backdoor's control (Fig. 6)", "text", "### Defenses judged against a working attack",
            "## Sum top: clean training, the backdoor's control (Fig. 6)", "#### too deep", "##no space"]
    assert anchor("Trainable top + blurring (gamma 10): noise vs variance") == "trainable-top--blurring-gamma-10-noise-vs-variance"
    assert contents(body) == [
        "## Contents", "",
        "- [Sum top: clean training, the backdoor's control (Fig. 6)](#sum-top-clean-training-the-backdoors-control-fig-6)",
        "  - [Defenses judged against a working attack](#defenses-judged-against-a-working-attack)",
        "- [Sum top: clean training, the backdoor's control (Fig. 6)](#sum-top-clean-training-the-backdoors-control-fig-6-1)",
        "",
    ]


def test_when_points_are_paired_with_the_undefended_run_each_gets_the_undefended_mean_over_its_own_seeds(tmp_path: Path) -> None:
    """A reviewer's case: undefended 95, 95, 95, 30, 30 (star at 69) and a level that finished only seeds 0-1 at 90: drawn
    against the star it looks above the attack, yet paired it reduces it by 5. Its hollow mark is the undefended 95 % over
    seeds 0-1."""
    def rows(values: list[float | str], main: float = 0.8) -> list[dict[str, Any]]:
        return [{"seed": s, "status": v, "main_accuracy": None, "backdoor_accuracy": None} if isinstance(v, str)
                else {"seed": s, "status": "ok", "main_accuracy": main, "backdoor_accuracy": v} for s, v in enumerate(values)]

    points = [TradeoffPoint("plain", "none", rows([0.95, 0.95, 0.95, 0.30, 0.30]), undefended=True),
              TradeoffPoint("plain", "a", rows([0.90, 0.90, "diverged", "diverged", "diverged"]), x=1.0),
              TradeoffPoint("plain", "b", rows(["diverged", "diverged", 0.1, 0.1, 0.1]), x=2.0)]
    series, _ = tradeoff_series("backdoor_accuracy", points)
    paired = [s for s in series if s.kind == "paired"]
    assert [(m.text, m.y, m.seeds) for s in paired for m in s.points] == [("1", 95.0, (0, 1)), ("2", pytest.approx(51.67, abs=0.01), (2, 3, 4))]
    figure = plot_tradeoff("t", "backdoor_accuracy", "backdoor", points, tmp_path / "t.png")
    assert figure.path is not None and figure.path.is_file()


def test_a_figure_whose_notes_overflow_its_footnote_has_them_in_full_in_the_report(
    study: tuple[Any, list[PlannedRun]], tmp_path: Path
) -> None:
    """A footnote holds a few lines ("... and k more line(s)" after them); the report then prints every note."""
    from securevfl.study.plots import FOOTNOTE_LINES, notes_fit

    assert notes_fit(["one short note"]) and not notes_fit(["a long note " * 200])
    spec, runs = study
    kinds = ["diverged", "collapsed", "out_of_range", "failed", "detected"]

    def status(run: PlannedRun) -> str:  # a different stop per level and seed: many notes
        if run.grid == "ref" or run.seed == 0:
            return "ok"
        return kinds[(DROPS.index(run.values["defense.0.drop_rate"]) + run.seed) % len(kinds)]

    rows = _rows(runs, status)
    _, reference = _tradeoff_points(_grid(spec, "drop"), runs, rows)
    figure = plot_versus_axis(_grid(spec, "drop"), rows, tmp_path / "v.png", reference=reference)
    assert figure.path is not None and not notes_fit(figure.notes, figure_width=3.9)
    out = tmp_path / "out"
    out.mkdir()
    report = write_report(spec, runs, rows, {}, out, command="securevfl study").read_text()
    full = next(line for line in report.splitlines() if line.startswith("*Notes to `drop_vs_defense_0_drop_rate`: "))
    assert all(note.rstrip(".") in full for note in figure.notes) and FOOTNOTE_LINES == 6


def test_a_tradeoff_figure_draws_each_stopped_seed_where_it_stood_at_its_last_epoch_and_keeps_it_out_of_every_mean(tmp_path: Path) -> None:
    """Referee pass on part 1: the stopped noise levels were named in the footnote but not drawn (at variance 1e-3 every
    run stopped, at 14-65 % main accuracy). Each stopped seed is now an x at its last epoch's (main, attack), lettered per
    level in the key; the means stay over the finished seeds only."""
    def row(seed: int, status: str, main: float | None = None, attack: float | None = None) -> dict[str, Any]:
        return {"run_id": f"r{status}{seed}", "seed": seed, "status": status, "main_accuracy": main, "backdoor_accuracy": attack}

    history = {  # the stopped runs' per-epoch records; the last entry before the stop is what is drawn
        "rdiverged1": [{"epoch": 1, "main_accuracy": 0.5, "backdoor_accuracy": 0.9}, {"epoch": 2, "main_accuracy": 0.3, "backdoor_accuracy": 0.2}],
        "rdiverged2": [{"epoch": 1, "main_accuracy": 0.6, "backdoor_accuracy": 0.0}, {"epoch": 2, "main_accuracy": 0.14, "backdoor_accuracy": None}],
        "rcollapsed0": [{"epoch": 7, "main_accuracy": 0.11, "backdoor_accuracy": 1.0}],
    }
    points = [
        TradeoffPoint("plain", "none", [row(s, "ok", 0.7, 0.9) for s in range(3)], undefended=True),
        TradeoffPoint("plain", "v=1e-4", [row(0, "ok", 0.8, 0.4), row(1, "diverged"), row(2, "ok", 0.6, 0.2)], x=1e-4,
                      histories={"rdiverged1": history["rdiverged1"]}),
        TradeoffPoint("plain", "v=1e-3", [row(0, "collapsed"), row(1, "failed"), row(2, "diverged")], x=1e-3,
                      histories={"rcollapsed0": history["rcollapsed0"], "rdiverged2": history["rdiverged2"]}),
    ]
    series, notes = tradeoff_series("backdoor_accuracy", points)
    level = next(s for s in series if s.kind == "levels")
    assert [(p.text, p.x, p.y, p.seeds) for p in level.points] == [("0.0001", pytest.approx(70.0), pytest.approx(30.0), (0, 2))]
    stopped = {s.label: [(p.x, p.y, p.text, p.seeds) for p in s.points] for s in series if s.kind == "stopped"}
    assert stopped == {
        "0.0001": [(pytest.approx(30.0), pytest.approx(20.0), "diverged after epoch 2", (1,))],
        # seed 2's last epoch has no backdoor number: its epoch 1 is the last with both; seed 1 failed without a history
        "0.001": [(pytest.approx(11.0), pytest.approx(100.0), "collapsed after epoch 7", (0,)), (pytest.approx(60.0), 0.0, "diverged after epoch 1", (2,))],
    }
    assert "plain v=1e-3: no mean drawn (collapsed, diverged, failed); each stopped seed an x at its last epoch" in notes
    assert "plain v=1e-4: 1 run(s) stopped (diverged); each stopped seed an x at its last epoch" in notes
    figure = plot_tradeoff("t", "backdoor_accuracy", "backdoor", points, tmp_path / "t.png", x_name="defense.0.variance")
    assert figure.path is not None and figure.path.is_file()
    assert figure.key[-4:] == [
        " a  variance 0.0001: seed 1",
        "    diverged after epoch 2  ->  30.0 / 20.0",
        " b  variance 0.001: seeds 0,2",
        "    collapsed, diverged after epoch 1-7  ->  11.0-60.0 / 0.0-100.0",
    ]
    # every defended level stopped: the figure is still drawn, with its x marks, instead of being absent
    only_stopped = plot_tradeoff("t", "backdoor_accuracy", "backdoor", [points[0], points[2]], tmp_path / "s.png", x_name="defense.0.variance")
    assert only_stopped.path is not None and not only_stopped.absent
    assert [s.kind for s in only_stopped.series] == ["stopped", "undefended"]
