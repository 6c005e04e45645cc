"""examples/paper_comparison.py on a small synthetic study_runs.json, checked against hand computations.

t quantile for 2 degrees of freedom (3 seeds): t_{0.975, 2} = 4.302653; half width = t * sd / sqrt(3).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def comparison():
    spec = importlib.util.spec_from_file_location("paper_comparison", ROOT / "examples" / "paper_comparison.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["paper_comparison"] = module
    spec.loader.exec_module(module)
    return module


def _runs(grid: str, cell: str, outcomes: list, axis: dict | None = None, **extra_per_seed) -> list[dict]:
    """One row per seed; an outcome is a dict of metrics (status ok) or a status string."""
    rows = []
    for seed, outcome in enumerate(outcomes):
        row = {"grid": grid, "cell": cell, "seed": seed, **(axis or {})}
        if isinstance(outcome, str):
            row.update(status=outcome, main_accuracy=None, backdoor_accuracy=None)
        else:
            row.update(status="ok", **outcome)
        rows.append(row)
    return rows


def synthetic_rows() -> list[dict]:
    rows = []
    rows += _runs("sum_baselines", "plain__clean", [{"main_accuracy": v} for v in (0.95, 0.96, 0.97)])
    rows += _runs("sum_baselines", "plain__control", [{"main_accuracy": 0.96, "control_target_rate": v} for v in (0.01, 0.02, 0.03)])
    rows += _runs("sum_baselines", "plain__label_inference", [{"main_accuracy": 0.96, "label_inference_accuracy": 1.0},
                                                               {"main_accuracy": 0.96, "label_inference_accuracy": 1.0}, "pending"])
    rows += _runs("trainable", "plain__clean", [{"main_accuracy": v} for v in (0.960, 0.962, 0.964)])
    rows += _runs("gamma", "plain__attack.gamma=10", [{"main_accuracy": 0.93, "backdoor_accuracy": v} for v in (0.30, 0.40, 0.50)])
    rows += _runs("trainable", "plain__backdoor", [{"main_accuracy": 0.96, "backdoor_accuracy": v} for v in (0.05, 0.10, 0.15)])
    rows += _runs("trainable", "plain__backdoor_blur", [{"main_accuracy": 0.95, "backdoor_accuracy": v} for v in (0.20, 0.25, 0.30)])
    rows += _runs("tradeoff_reference", "plain__backdoor", [{"main_accuracy": 0.87, "backdoor_accuracy": 0.90}, "diverged",
                                                          {"main_accuracy": 0.86, "backdoor_accuracy": 0.95}])
    rows += _runs("tradeoff_reference", "plain__control", [{"main_accuracy": 0.96, "control_target_rate": 0.0}] * 3)
    rows += _runs("tradeoff10_reference", "plain__backdoor", [{"main_accuracy": 0.7, "backdoor_accuracy": v} for v in (0.90, 0.92, 0.94)])
    # clipping: a smaller norm is the stronger defense; 0.01 changes nothing, 0.001 removes 40 points on every seed
    for norm, drop in (("0.01", 0.0), ("0.001", 0.40)):
        rows += _runs("tradeoff_clip", f"plain__defense.0.max_norm={norm}",
                      [{"main_accuracy": 0.85, "backdoor_accuracy": v - drop} for v in (0.90, 0.90, 0.95)],
                      {"axis:defense.0.max_norm": norm})
    # Laplace: the weaker level stopped on one seed, the stronger one works: the threshold is not determined
    rows += _runs("tradeoff_laplace", "plain__defense.0.variance=1e-06", [{"main_accuracy": 0.8, "backdoor_accuracy": 0.9}, "collapsed",
                                                                         {"main_accuracy": 0.8, "backdoor_accuracy": 0.9}],
                  {"axis:defense.0.variance": "1e-06"})
    rows += _runs("tradeoff_laplace", "plain__defense.0.variance=1e-05", [{"main_accuracy": 0.8, "backdoor_accuracy": v} for v in (0.1, 0.2, 0.3)],
                  {"axis:defense.0.variance": "1e-05"})
    low = {"axis:defense.0.variance": "1e-05"}
    high = {"axis:defense.0.variance": "0.0001"}
    rows += _runs("fig6_noise", "plain__defense.0.variance=1e-05",
                  [{"main_accuracy": 0.95, "backdoor_accuracy": v} for v in (0.18, 0.25, 0.29)], low)
    rows += _runs("fig6_noise", "plain__defense.0.variance=0.0001",
                  [{"main_accuracy": m, "backdoor_accuracy": v} for m, v in ((0.90, 0.0), (0.91, 0.05), (0.92, 0.10))], high)
    return rows


def _by_claim(table: list[dict], start: str, containing: str = "") -> dict:
    found = [row for row in table if row["claim"].startswith(start) and containing in row["claim"]]
    assert len(found) == 1, start
    return found[0]


def test_table_against_hand_computation(comparison) -> None:
    table = comparison.comparison_table(synthetic_rows())

    # 95.0, 96.0, 97.0: mean 96.0, sd 1.0, half 4.302653 / sqrt(3) = 2.484 -> [93.5, 98.5]; 95.7 inside
    row = _by_claim(table, "Clean accuracy, non-trainable")
    assert (row["paper"], row["ours"], row["verdict"]) == ("95.7 %", "96.0 [93.5, 98.5] (n=3)", "matches")

    # 96.0, 96.2, 96.4: mean 96.2, sd 0.2, half 0.497 -> [95.7, 96.7]; 97.1 outside and 0.9 points away
    row = _by_claim(table, "Clean accuracy, trainable")
    assert (row["ours"], row["verdict"]) == ("96.2 [95.7, 96.7] (n=3)", "ours lower by 0.9 points")

    # sum - trainable backdoor: 25, 30, 35: mean 30, sd 5, half 12.42 -> [+17.6, +42.4]
    row = _by_claim(table, "A trainable top defends")
    assert row["ours"] == "40.0 vs 10.0; difference +30.0 [+17.6, +42.4] (n=3)"
    assert row["verdict"] == "holds"
    assert row["paper"].startswith("not in repo sources")

    # backdoor - control: 29, 38, 47: mean 38, sd 9, half 22.36 -> [+15.6, +60.4]
    row = _by_claim(table, "The backdoor beats its control")
    assert row["ours"] == "40.0 vs 2.0; difference +38.0 [+15.6, +60.4] (n=3)" and row["verdict"] == "holds"

    # blur - no blur: 15 on every seed (sd 0)
    row = _by_claim(table, "Activation blurring")
    assert row["ours"] == "25.0 vs 10.0; difference +15.0 [+15.0, +15.0] (n=3)" and row["verdict"] == "holds"

    # intent to treat: seed 1 of the working backdoor diverged -> no verdict, the stop is the verdict
    row = _by_claim(table, "The trade-off grids' backdoor", "1 known target sample")
    assert row["verdict"] == "ours stopped 1/3 (diverged); no verdict"
    row = _by_claim(table, "That backdoor (1 known target sample) beats its control")
    assert row["verdict"] == "tradeoff_reference/plain__backdoor stopped 1/3 (diverged); no verdict"

    # clipping, weakest first = largest norm first: 0.01 reduces by 0 (no interval above 0), 0.001 by 40 on every
    # seed -> works from 0.001; seed 1 of the reference diverged, so only seeds 0 and 2 pair... and a stop is no verdict
    row = _by_claim(table, "Per-sample norm clipping", "1 known target sample")
    assert row["verdict"].startswith("not shown") and "stopped (no verdict at every value the stopped runs could have had) at 0.01, 0.001" in row["verdict"]

    # Laplace: 1e-06 has a collapsed seed (and the reference a diverged one): the weakest working level is undetermined
    row = _by_claim(table, "Laplace noise variance", "1 known target sample")
    assert "stopped (no verdict at every value the stopped runs could have had) at 1e-06, 1e-05" in row["verdict"]

    # a pending seed is left out and named
    row = _by_claim(table, "Label inference")
    assert row["ours"] == "100.0 [100.0, 100.0] (n=2)"
    assert row["verdict"] == "no paper number to compare (provisional: seed(s) 2 not finished)"

    # threshold: 1e-5 reduces by 2, 0, 1 (mean 1.0, sd 1.0 -> [-1.5, +3.5]: includes 0, does not work);
    # 1e-4 reduces by 20 on every seed; main cost 90-95, 91-95, 92-95 = -5, -4, -3 -> -4.0 [-6.5, -1.5]
    row = _by_claim(table, "Gaussian noise variance from which the backdoor is weakened (paper's setting")
    assert row["paper"] == "0.05"
    assert row["ours"] == (
        "0.0001 (plain__defense.0.variance=0.0001): success reduced by 20.0 [20.0, 20.0] (n=3), main -4.0 [-6.5, -1.5] (n=3) vs undefended"
    )
    # the undefended blurred backdoor is 25 %: the threshold is found, and said to be no test of the defense
    assert row["verdict"] == ("differs: ours works from 0.0001 (below the paper's 0.05); against a weak attack (undefended 25.0 < 80 %): "
                              "not a test of the defense")

    # the second reference (10 known target samples) is read from its own grids: 90, 92, 94 -> mean 92.0, sd 2.0,
    # half 4.302653 * 2 / sqrt(3) = 4.97 -> [87.0, 97.0]
    row = _by_claim(table, "The trade-off grids' backdoor", "10 known target samples")
    assert (row["ours"], row["verdict"]) == ("92.0 [87.0, 97.0] (n=3)", "meets the 80 % target (the whole interval)")

    # grids this synthetic study does not have
    assert _by_claim(table, "Sparsification drop rate from which the backdoor")["ours"] == "not in this study"
    assert _by_claim(table, "Per-sample norm clipping", "10 known target samples")["ours"] == "not in this study"


def test_markdown_from_a_study_runs_file(comparison, tmp_path: Path) -> None:
    runs = tmp_path / "study_runs.json"
    runs.write_text(json.dumps({"study": "synthetic", "rows": synthetic_rows()}))
    out = tmp_path / "paper.md"
    assert comparison.main([str(runs), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| claim | paper | ours | verdict | paper source |" in text
    assert "| Clean accuracy, non-trainable (sum) top | 95.7 % | 96.0 [93.5, 98.5] (n=3) | matches |" in text
    assert text.count("\n| ") == 1 + len(comparison.default_claims())  # the header, then one line per claim


def test_one_seed_gives_no_verdict(comparison) -> None:
    rows = _runs("sum_baselines", "plain__clean", [{"main_accuracy": 0.90}])
    row = comparison.number_claim(rows, "clean", 95.7, "sum_baselines", "plain__clean", "main_accuracy")
    assert row["ours"] == "90.0 (n=1, no interval)"
    assert row["verdict"].startswith("inconclusive (1 seed")


def test_thresholds_go_from_the_weakest_level_and_a_stopped_weaker_level_leaves_them_undetermined(comparison) -> None:
    reference = _runs("ref", "plain__backdoor", [{"main_accuracy": 0.80, "backdoor_accuracy": v} for v in (0.90, 0.90, 0.95)])
    clip = []
    for norm, drop in (("0.01", 0.0), ("0.001", 0.40), ("0.0001", 0.80)):
        clip += _runs("clip", f"plain__n={norm}", [{"main_accuracy": 0.70, "backdoor_accuracy": v - drop} for v in (0.90, 0.90, 0.95)],
                      {"axis:n": norm})
    # a smaller norm is stronger: 0.01 reduces by 0 on every seed (interval [0, 0], not above 0), 0.001 by 40
    # (the weakest that works; 0.0001 also works but is stronger); main 70 - 80 = -10 on every seed
    row = comparison.threshold_claim(reference + clip, "clip", None, "clip", "n", ("ref", "plain__backdoor"),
                                     "backdoor_accuracy", stronger="lower")
    # every stronger level is named with what is left of the model, so "from" hides no stop and no model near chance
    assert row["verdict"] == "works from 0.001; stronger levels: 0.0001 works, main 70.0"
    assert row["ours"] == "0.001 (plain__n=0.001): success reduced by 40.0 [40.0, 40.0] (n=3), main -10.0 [-10.0, -10.0] (n=3) vs undefended"
    # the paper's level 0.005 lies between 0.01 (did not work) and 0.001 (worked): matches; 0.02 does not
    assert comparison.threshold_claim(reference + clip, "c", 0.005, "clip", "n", ("ref", "plain__backdoor"), "backdoor_accuracy",
                                      stronger="lower")["verdict"].startswith("matches (within the sweep's resolution); stronger levels: ")
    assert comparison.threshold_claim(reference + clip, "c", 0.02, "clip", "n", ("ref", "plain__backdoor"), "backdoor_accuracy",
                                      stronger="lower")["verdict"].startswith("differs")
    # read the other way (larger is stronger) the weakest level is 0.0001, which already works
    assert comparison.threshold_claim(reference + clip, "c", None, "clip", "n", ("ref", "plain__backdoor"),
                                      "backdoor_accuracy")["verdict"] == "works from 0.0001; stronger levels: 0.001 works, main 70.0; 0.01 not shown, main 70.0"
    wrecked = [dict(r, status="collapsed", backdoor_accuracy=None, main_accuracy=None) if r["cell"] == "plain__n=0.0001" and r["seed"] == 2 else r
               for r in clip]
    control = _runs("ref", "plain__control", [{"main_accuracy": v} for v in (0.96, 0.95, 0.97)])
    row = comparison.threshold_claim(reference + wrecked + control, "clip", None, "clip", "n", ("ref", "plain__backdoor"),
                                     "backdoor_accuracy", stronger="lower", clean=("ref", "plain__control"))
    # 0.0001 with a collapsed seed: no verdict at every value it could have had (reductions 80, 80, 95 - 100 -> includes 0? no:
    # the lowest corner is -5 on seed 2, the interval of (80, 80, -5) includes 0), its stop named; main 70 - (96, 95) = -26, -25
    assert row["verdict"] == ("works from 0.001; stronger levels: 0.0001 no verdict, stopped 1/3 (collapsed), main 70.0 "
                              "(-25.5 [-31.9, -19.1] (n=2) vs clean)")
    # a stronger level not trained yet says so (not "not shown"), a partly trained one counts its pending seeds
    waiting = [dict(r, status="pending", backdoor_accuracy=None, main_accuracy=None) if r["cell"] == "plain__n=0.0001" else r for r in clip]
    row = comparison.threshold_claim(reference + waiting, "c", None, "clip", "n", ("ref", "plain__backdoor"), "backdoor_accuracy",
                                     stronger="lower")
    assert row["verdict"].startswith("works from 0.001; stronger levels: 0.0001 pending")
    partly = [dict(r, status="pending", backdoor_accuracy=None, main_accuracy=None) if r["cell"] == "plain__n=0.0001" and r["seed"] == 2 else r
              for r in clip]
    row = comparison.threshold_claim(reference + partly, "c", None, "clip", "n", ("ref", "plain__backdoor"), "backdoor_accuracy",
                                     stronger="lower")
    assert "stronger levels: 0.0001 works, 1 pending, main 70.0" in row["verdict"]
    # the weakest level stopped on a seed: 0.001 works but might not be the weakest that does
    stopped = [dict(r, status="collapsed", backdoor_accuracy=None) if r["cell"] == "plain__n=0.01" and r["seed"] == 1 else r for r in clip]
    row = comparison.threshold_claim(reference + stopped, "c", None, "clip", "n", ("ref", "plain__backdoor"), "backdoor_accuracy",
                                     stronger="lower")
    # (the lowest corner at 0.01: reductions 0, 90 - 100 = -10, 0 -> the interval includes 0: no verdict there)
    assert row["verdict"] == ("works at 0.001; the weakest working level is not determined (a weaker level stopped); "
                              "stopped (no verdict at every value the stopped runs could have had) at 0.01; stronger levels: 0.0001 works, main 70.0")


def test_a_threshold_over_a_grid_with_no_outcome_yet_is_pending(comparison) -> None:
    reference = _runs("ref", "plain__backdoor", [{"main_accuracy": 0.8, "backdoor_accuracy": 0.9}] * 3)
    pending = _runs("clip", "plain__n=0.01", ["pending"] * 3, {"axis:n": "0.01"})
    row = comparison.threshold_claim(reference + pending, "c", None, "clip", "n", ("ref", "plain__backdoor"), "backdoor_accuracy")
    assert (row["ours"], row["verdict"]) == ("no defended run has an outcome yet", "pending")


def test_a_stopped_seed_at_every_value_it_could_have_had_the_cost_against_clean_and_one_claim_per_residual(comparison) -> None:
    """Reference 90 % on 5 seeds; drop 0.99 (sample residual) reduces it to 0 on seeds 0-3 and diverges on seed 4, whose
    reduction could be anything in [-10, 90]. The lowest corner (seed 4 at 100 %): 90, 90, 90, 90, -10: mean 70.0, sd 44.72,
    half 2.776445 * 44.72 / sqrt 5 = 55.5 -> [14.5, 100] (clipped); the other corner is [90, 90]: it works at both.
    Main 70 vs clean 96: -26 on seeds 0-3."""
    reference = _runs("t_reference", "plain__backdoor", [{"main_accuracy": 0.75, "backdoor_accuracy": 0.9}] * 5)
    control = _runs("t_reference", "plain__control", [{"main_accuracy": 0.96, "control_target_rate": 0.0}] * 5)
    sample = _runs("t_drop", "plain__r=0.99__res=sample", [{"main_accuracy": 0.70, "backdoor_accuracy": 0.0}] * 4 + ["diverged"],
                   {"axis:r": "0.99", "axis:res": "sample"})
    none = _runs("t_drop", "plain__r=0.99__res=none", [{"main_accuracy": 0.70, "backdoor_accuracy": 0.9}] * 5, {"axis:r": "0.99", "axis:res": "none"})
    rows = reference + control + sample + none

    def claim(residual: str) -> dict:
        return comparison.threshold_claim(rows, "drop", None, "t_drop", "r", ("t_reference", "plain__backdoor"), "backdoor_accuracy",
                                          where={"res": residual}, clean=("t_reference", "plain__control"))

    row = claim("sample")
    assert row["verdict"] == "works from 0.99"
    assert row["ours"] == ("0.99 (plain__r=0.99__res=sample): success reduced by 70.0 [14.5, 100.0] (n=5) (the lowest over every "
                           "value the stopped runs could have had), main -5.0 [-5.0, -5.0] (n=4) vs undefended, -26.0 [-26.0, -26.0] (n=4) vs clean")
    assert claim("none")["verdict"] == "not shown"  # the other residual, judged apart (item 9)
    # the table has one sparsification claim per residual variant for each reference
    claims = [c(rows)["claim"] for c in comparison.default_claims()]
    assert sum("Sparsification drop rate from which the working backdoor (10 known" in c for c in claims) == 3


def test_a_directions_two_means_are_over_the_seeds_of_its_difference(comparison) -> None:
    """The referee's case: 8.4 was over seeds 0, 2, 3 and 4.3 over 0-3 although the difference pairs 0, 2, 3."""
    a = _runs("g", "a", [{"backdoor_accuracy": 0.1}, "diverged", {"backdoor_accuracy": 0.2}, {"backdoor_accuracy": 0.3}])
    b = _runs("g", "b", [{"backdoor_accuracy": v} for v in (0.0, 0.9, 0.1, 0.2)])
    row = comparison.direction_claim(a + b, "c", "-", ("g", "a"), ("g", "b"), "backdoor_accuracy")
    assert row["ours"].startswith("20.0 vs 10.0; difference +10.0")  # both over seeds 0, 2, 3 (b's 90 % on seed 1 left out)


def test_a_threshold_level_whose_whole_interval_is_below_five_points_is_negligible_not_working(comparison) -> None:
    """A reviewer's case: 90, 91, 92, 90, 91 against 88.5, 89.5, 90.5, 88.5, 89.7 is a real 1.5-point reduction
    (1.5 [1.3, 1.6]): the study calls that negligible, so the threshold does not stop there."""
    reference = _runs("ref", "plain__backdoor", [{"main_accuracy": 0.8, "backdoor_accuracy": v} for v in (0.90, 0.91, 0.92, 0.90, 0.91)])
    tiny = _runs("noise", "plain__v=0.1", [{"main_accuracy": 0.8, "backdoor_accuracy": v} for v in (0.885, 0.895, 0.905, 0.885, 0.897)],
                 {"axis:v": "0.1"})
    row = comparison.threshold_claim(reference + tiny, "c", None, "noise", "v", ("ref", "plain__backdoor"), "backdoor_accuracy")
    assert row["verdict"] == "not shown"
