"""The study's statistics and verdicts (issue 15): paired 95 % t intervals checked against hand and scipy
computations, equivalence / reduction verdicts, intent to treat (stopped and collapsed runs), the backdoor's
control, Table 2 cells, and the figures' rules (same seeds, clipped spreads, log axes, trade-off plot)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from securevfl.attacks import parse_attack_config
from securevfl.attacks.backdoor_control import CONTROL_TARGET_RATE, BackdoorControl
from securevfl.attacks.base import AttackSetting
from securevfl.attacks.gradient_replacement import GradientReplacement
from securevfl.config import validate_config
from securevfl.data import load_dataset
from securevfl.data.config import DataConfig
from securevfl.study import load_study, plan_runs
from securevfl.study.plots import TradeoffPoint, axis_scale, clipped_errors, common_seeds, plot_tradeoff
from securevfl.study.report import write_report
from securevfl.study.runner import RESULT_NAME, run_dir
from securevfl.study.statistics import (
    EQUIVALENCE_MARGIN,
    Interval,
    Verdict,
    equivalence,
    mean_interval,
    paired_difference,
    reduction,
    t_quantile,
)
from securevfl.study.survival import survival_lines
from securevfl.study.table import CellSummary, collect_rows
from securevfl.training import run_training

SEEDS = [0, 1, 2, 3, 4]


def _write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _row(run: Any, status: str = "ok", **metrics: Any) -> dict[str, Any]:
    return {"run_id": run.run_id, "grid": run.grid, "cell": run.cell, "seed": run.seed, "status": status,
            "reason": metrics.pop("reason", ""), **{f"axis:{k}": v for k, v in run.levels.items()}, **metrics}


# ---------------------------------------------------------------- the intervals


def test_t_quantiles_are_the_printed_table_values() -> None:
    # Student t, two-sided 95 %: the values of any statistics table
    assert t_quantile(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile(30) == pytest.approx(2.042, abs=1e-3)
    with pytest.raises(ValueError):
        t_quantile(0)


def test_a_paired_interval_matches_a_hand_computation() -> None:
    """d = (0.01, 0.03, 0.05): mean 0.03, sd 0.02, half-width t_{0.975,2} * 0.02 / sqrt(3) = 4.302653 * 0.011547 = 0.049683."""
    first = {0: 0.50, 1: 0.60, 2: 0.70, 9: 0.99}  # seed 9 has no partner: left out
    second = {0: 0.51, 1: 0.63, 2: 0.75, 7: 0.10}
    diff = paired_difference(first, second)
    assert diff.n == 3 and diff.seeds == (0, 1, 2)
    assert diff.mean == pytest.approx(0.03)
    assert diff.sd == pytest.approx(0.02)
    assert diff.low == pytest.approx(0.03 - 0.049683, abs=1e-6)
    assert diff.high == pytest.approx(0.03 + 0.049683, abs=1e-6)
    assert diff.text() == "3.0 [-2.0, 8.0]" and diff.text(signed=True) == "+3.0 [-2.0, +8.0]"


def test_a_paired_interval_agrees_with_numpy_and_scipy_on_five_seeds() -> None:
    rng = np.random.default_rng(7)
    a = rng.uniform(0.2, 0.9, size=5)
    b = a + rng.normal(0.02, 0.03, size=5)
    diff = paired_difference(dict(enumerate(a)), dict(enumerate(b)))
    d = b - a
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert (diff.low, diff.high) == pytest.approx((d.mean() - half, d.mean() + half))
    scipy_ci = stats.ttest_rel(b, a).confidence_interval(0.95)
    assert (diff.low, diff.high) == pytest.approx((scipy_ci.low, scipy_ci.high))


def test_fewer_than_two_pairs_give_no_interval_and_no_verdict() -> None:
    one = paired_difference({0: 0.8}, {0: 0.8, 1: 0.1})
    assert one.n == 1 and one.mean == 0.0 and not one.has_interval
    assert equivalence(one) is Verdict.INCONCLUSIVE and reduction(one) is None
    assert one.text() == "0.0 (n=1, no interval)"
    assert mean_interval([]).mean is None


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [
        (-0.04, 0.049, Verdict.EQUIVALENT),   # inside +-5 points
        (0.01, 0.03, Verdict.EQUIVALENT),     # excludes 0 but inside the margin: practically the same
        (-0.30, -0.10, Verdict.DIFFERS),
        (0.02, 0.20, Verdict.DIFFERS),        # excludes 0, leaves the margin
        (-0.20, 0.30, Verdict.INCONCLUSIVE),  # wide: neither
        (-0.06, 0.01, Verdict.INCONCLUSIVE),  # includes 0, leaves the margin
    ],
)
def test_equivalence_is_decided_on_the_interval(low: float, high: float, verdict: Verdict) -> None:
    assert equivalence(Interval(5, (low + high) / 2, low, high)) is verdict
    assert EQUIVALENCE_MARGIN == 0.05


def test_a_wide_spread_cannot_make_an_attack_survive() -> None:
    """The old rule (|diff of means| <= max(5, 2 std)) called this 'survives'; the interval says inconclusive."""
    plain = dict(enumerate([0.1, 0.9, 0.2, 0.8, 0.5]))
    ckks = dict(enumerate([0.3, 0.5, 0.6, 0.4, 0.2]))
    old_tolerance = max(0.05, 2 * max(np.std(list(plain.values()), ddof=1), np.std(list(ckks.values()), ddof=1)))
    assert abs(np.mean(list(ckks.values())) - np.mean(list(plain.values()))) <= old_tolerance
    assert equivalence(paired_difference(plain, ckks)) is Verdict.INCONCLUSIVE


# ---------------------------------------------------------------- survival verdicts on synthetic outcomes

VERDICT_STUDY = """
[study]
name = "verdicts"
seeds = [0, 1, 2, 3, 4]
schemes = ["plain", "ckks/receiver", "ckks/active"]
[study.set]
"data.name" = "digits"
"attack.kind" = "gradient_replacement"
[[grid]]
name = "g"
[grid.variants]
attack = {}
noise = { defense = [{ kind = "gaussian_noise", variance = 0.5 }] }
"""

PLAIN_ATTACK = [0.80, 0.70, 0.75, 0.85, 0.60]


def _synthetic(tmp_path: Path, values: dict[tuple[str, str], list[Any]], mains: dict[tuple[str, str], list[float]] | None = None,
               text: str = VERDICT_STUDY) -> tuple[list[Any], list[dict[str, Any]]]:
    """Rows for every run: ``values[(scheme, variant)][seed]`` is a backdoor accuracy, or a status string (stopped)."""
    runs = plan_runs(load_study(_write(tmp_path, text)))
    rows = []
    for run in runs:
        key = (run.levels["scheme"], run.levels.get("variant", "-"))
        value = values[key][run.seed]
        main = (mains or {}).get(key, [0.9] * 5)[run.seed]
        if isinstance(value, str):
            rows.append(_row(run, status=value, reason=f"{value} on purpose"))
        else:
            rows.append(_row(run, backdoor_accuracy=value, main_accuracy=main, attack_feasible=True))
    return runs, rows


def test_attack_verdicts_survive_change_or_stay_inconclusive_on_the_paired_interval(tmp_path: Path) -> None:
    values = {
        ("plain", "attack"): PLAIN_ATTACK,
        ("ckks/receiver", "attack"): [0.79, 0.71, 0.74, 0.85, 0.61],   # d = -.01 .01 -.01 0 .01
        ("ckks/active", "attack"): [0.30, 0.22, 0.20, 0.35, 0.10],      # d = -.50 -.48 -.55 -.50 -.50
        **{(scheme, "noise"): [0.1] * 5 for scheme in ("plain", "ckks/receiver", "ckks/active")},
    }
    runs, rows = _synthetic(tmp_path, values)
    attack_line = survival_lines(runs, rows, ["plain", "ckks/receiver", "ckks/active"])[0]
    d_receiver = np.array([-0.01, 0.01, -0.01, 0.0, 0.01])
    half = stats.t.ppf(0.975, 4) * d_receiver.std(ddof=1) / math.sqrt(5)
    expected = f"{100 * d_receiver.mean():+.1f} [{100 * (d_receiver.mean() - half):+.1f}, {100 * (d_receiver.mean() + half):+.1f}]"
    assert f"survives encryption (CKKS − plain within ±5): ckks/receiver (Δ {expected}, n=5)" in attack_line.verdict
    assert "changed by encryption: ckks/active (Δ -50.6 [" in attack_line.verdict
    assert attack_line.cells["plain"] == "74.0 / 90.0"

    wide = dict(values)
    wide["ckks/receiver", "attack"] = [0.3, 0.5, 0.6, 0.4, 0.2]
    wide["plain", "attack"] = [0.1, 0.9, 0.2, 0.8, 0.5]
    line = survival_lines(runs, _synthetic(tmp_path, wide)[1], ["plain", "ckks/receiver", "ckks/active"])[0]
    assert "inconclusive: ckks/receiver" in line.verdict and "survives" not in line.verdict


def test_intent_to_treat_a_side_that_stopped_where_the_attack_succeeded_gets_no_survival_verdict(tmp_path: Path) -> None:
    """The referee's case: CKKS stopped on the range check in the seeds where the backdoor worked."""
    values = {
        ("plain", "attack"): [0.9, 0.9, 0.1, 0.1, 0.1],
        ("ckks/receiver", "attack"): ["diverged", "diverged", 0.1, 0.1, 0.1],
        ("ckks/active", "attack"): [0.9, 0.9, 0.1, 0.1, 0.1],
        **{(scheme, "noise"): [0.1] * 5 for scheme in ("plain", "ckks/receiver", "ckks/active")},
    }
    runs, rows = _synthetic(tmp_path, values)
    line = survival_lines(runs, rows, ["plain", "ckks/receiver", "ckks/active"])[0]
    # the finished pairs (seeds 2-4) are identical: a verdict on them alone would say "survives"
    assert "survives encryption (CKKS − plain within ±5): ckks/active" in line.verdict
    assert "ckks/receiver" not in line.verdict.split("stopped:")[0]
    assert "stopped: ckks/receiver stopped 2/5 (2 diverged), plain stopped 0/5; no success verdict" in line.verdict
    assert "seeds finished on both: Δ +0.0 [+0.0, +0.0], n=3" in line.verdict
    assert line.cells["ckks/receiver"] == "10.0 / 90.0 [stopped 2/5 (2 diverged)]"


def test_a_defense_works_when_the_reduction_interval_excludes_zero_and_shows_its_main_cost(tmp_path: Path) -> None:
    working = [0.90, 0.85, 0.88, 0.95, 0.82]  # an attack that works: mean 88 >= 80
    values = {
        ("plain", "attack"): working,
        ("ckks/receiver", "attack"): working,
        ("ckks/active", "attack"): working,
        ("plain", "noise"): [0.10, 0.20, 0.15, 0.10, 0.05],
        ("ckks/receiver", "noise"): [0.10, 0.18, 0.12, 0.11, 0.06],
        ("ckks/active", "noise"): [0.90, 0.20, 0.80, 0.30, 0.60],   # reductions 0 .65 .08 .65 .22: includes 0
    }
    mains = {(scheme, "noise"): [0.85, 0.86, 0.84, 0.85, 0.85] for scheme in ("plain", "ckks/receiver", "ckks/active")}
    runs, rows = _synthetic(tmp_path, values, mains)
    noise_line = survival_lines(runs, rows, ["plain", "ckks/receiver", "ckks/active"])[1]
    reduction_plain = np.array(working) - np.array([0.10, 0.20, 0.15, 0.10, 0.05])
    half = stats.t.ppf(0.975, 4) * reduction_plain.std(ddof=1) / math.sqrt(5)
    base_half = stats.t.ppf(0.975, 4) * np.std(working, ddof=1) / math.sqrt(5)
    cost = np.array([0.85, 0.86, 0.84, 0.85, 0.85]) - 0.9
    cost_half = stats.t.ppf(0.975, 4) * cost.std(ddof=1) / math.sqrt(5)
    expected = (
        f"plain: works (undefended 88.0 [{88 - 100 * base_half:.1f}, {88 + 100 * base_half:.1f}] → 12.0, "
        f"reduction {100 * reduction_plain.mean():+.1f} [{100 * (reduction_plain.mean() - half):+.1f}, "
        f"{100 * (reduction_plain.mean() + half):+.1f}], main {100 * cost.mean():+.1f} [{100 * (cost.mean() - cost_half):+.1f}, "
        f"{100 * (cost.mean() + cost_half):+.1f}] vs undefended, n=5)"
    )
    assert expected in noise_line.verdict
    assert "ckks/receiver: works (" in noise_line.verdict
    assert "ckks/active: not shown to work" in noise_line.verdict
    defense, encrypted = noise_line.verdict.split("; this line, CKKS vs plaintext: ")
    assert defense.endswith("works in plaintext only")
    # the defended line itself, with and without encryption, paired by seed (item 3 for defended lines)
    receiver = np.array([0.10, 0.18, 0.12, 0.11, 0.06]) - [0.10, 0.20, 0.15, 0.10, 0.05]
    receiver_half = stats.t.ppf(0.975, 4) * receiver.std(ddof=1) / math.sqrt(5)
    assert encrypted.startswith(
        f"survives encryption (CKKS − plain within ±5): ckks/receiver (Δ {100 * receiver.mean():+.1f} "
        f"[{100 * (receiver.mean() - receiver_half):+.1f}, {100 * (receiver.mean() + receiver_half):+.1f}], n=5)"
    )
    assert "changed by encryption: ckks/active" in encrypted or "inconclusive: ckks/active" in encrypted
    assert [(j.scheme, j.word, j.working) for j in noise_line.judgements] == [
        ("plain", "works", True), ("ckks/receiver", "works", True), ("ckks/active", "not shown to work", True)]
    fixed = [dict(r, backdoor_accuracy=0.1) if r["run_id"].startswith("g/ckks-active__noise") else r for r in rows]
    verdict = survival_lines(runs, fixed, ["plain", "ckks/receiver", "ckks/active"])[1].verdict
    assert verdict.split("; this line, CKKS vs plaintext: ")[0].endswith("keeps working under encryption")


def test_a_defense_that_collapses_training_is_reported_as_such_not_as_working(tmp_path: Path) -> None:
    """Noise 1e-3 'worked' at -76.5 points: a model at chance. Collapsed runs are an outcome, not a success."""
    values = {
        ("plain", "attack"): PLAIN_ATTACK,
        ("ckks/receiver", "attack"): PLAIN_ATTACK,
        ("ckks/active", "attack"): PLAIN_ATTACK,
        ("plain", "noise"): ["collapsed"] * 5,
        ("ckks/receiver", "noise"): ["collapsed", "collapsed", 0.05, 0.05, 0.05],
        ("ckks/active", "noise"): [0.05] * 5,
    }
    runs, rows = _synthetic(tmp_path, values)
    noise_line = survival_lines(runs, rows, ["plain", "ckks/receiver", "ckks/active"])[1]
    assert noise_line.cells["plain"].startswith("collapsed")
    # the reference (74 % over its 5 seeds) is below 80 %: the stop is one against a weak attack
    assert "plain: stopped against a weak attack (defended stopped 5/5 (5 collapsed), undefended stopped 0/5; no verdict" in noise_line.verdict
    # the undefended success over its paired seeds (2-4) is below 80 %: the stop is listed with the weak-attack verdicts
    assert "ckks/receiver: stopped against a weak attack (defended stopped 2/5 (2 collapsed), undefended stopped 0/5; no verdict" in noise_line.verdict
    assert {j.scheme: j.working for j in noise_line.judgements}["ckks/receiver"] is False
    assert "ckks/active: works" in noise_line.verdict
    assert "keeps working" not in noise_line.verdict and "plain: works" not in noise_line.verdict


def test_a_last_epoch_at_chance_is_collapsed_in_the_table_even_if_training_did_not_flag_it(tmp_path: Path) -> None:
    study = _write(tmp_path, '[study]\nname = "c"\nseeds = [0, 1]\n[study.set]\n"data.name" = "digits"\n'
                             '"attack.kind" = "gradient_replacement"\n[[grid]]\nname = "g"\n')
    runs = plan_runs(load_study(study))
    out = tmp_path / "out"
    for run, main in zip(runs, (0.085, 0.60), strict=True):  # chance 11.35 %: 8.5 % is within 5 points of it
        directory = run_dir(out, run)
        directory.mkdir(parents=True)
        result = {"config": run.config, "main_accuracy": main, "backdoor_accuracy": 1.0, "outcome": "ok", "chance_accuracy": 0.1135,
                  "history": [{"epoch": 1, "main_accuracy": main, "backdoor_accuracy": 1.0}], "attack_feasible": True}
        (directory / RESULT_NAME).write_text(json.dumps(result))
    rows, _ = collect_rows(runs, out)
    assert [row["status"] for row in rows] == ["collapsed", "ok"]
    assert rows[0]["reason"] == "last-epoch main accuracy 8.5 % is within 5 points of chance (11.3 %)"
    assert rows[0]["chance_accuracy"] == 0.1135
    summary = CellSummary(rows)
    assert summary.stopped_text() == "1/2 (1 collapsed)"
    assert summary.cell_text("backdoor_accuracy") == "100.0 (n=1/2: seed 1)"  # the collapsed 100 % (seed 0) is not averaged in


def test_table_cells_show_mean_and_t_interval_over_the_finished_seeds() -> None:
    rows = [{"seed": s, "status": "ok", "main_accuracy": v} for s, v in enumerate([0.90, 0.92, 0.94])]
    rows.append({"seed": 3, "status": "diverged", "main_accuracy": None})
    summary = CellSummary(rows)
    half = stats.t.ppf(0.975, 2) * 0.02 / math.sqrt(3)  # sd of (90, 92, 94) points is 2
    assert summary.cell_text("main_accuracy") == f"92.0 [{92 - 100 * half:.1f}, {92 + 100 * half:.1f}] (n=3/4: seeds 0,1,2)"
    assert summary.stopped_text() == "1/4 (1 diverged)"
    # an interval reaching past 100 % is cut at the range the mean can take: 99.0 +- 2.5 -> [96.5, 100.0]
    near_top = CellSummary([{"seed": s, "status": "ok", "main_accuracy": v} for s, v in enumerate([0.98, 0.99, 1.0])])
    half = stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)
    assert near_top.cell_text("main_accuracy") == f"99.0 [{99 - 100 * half:.1f}, 100.0]"
    assert Interval(3, 0.5, -0.2, 1.3).clipped(0.0, 1.0) == Interval(3, 0.5, 0.0, 1.0)


# ---------------------------------------------------------------- the backdoor's control


def test_the_control_evaluates_the_same_triggered_inputs_and_leaves_training_untouched() -> None:
    dataset = load_dataset(DataConfig(name="digits", train_limit=300, test_limit=100))
    columns = np.arange(32, 64)
    setting = AttackSetting(dataset=dataset, party="passive_2", columns=columns, bottom_output=10, seed=3)
    fields = {"poison_train": 10, "poison_test": 10, "target_label": 0}
    attack_plan = GradientReplacement.plan(parse_attack_config({"kind": "gradient_replacement", **fields}), setting)
    control_plan = BackdoorControl.plan(parse_attack_config({"kind": "backdoor_control", **fields}), setting)
    assert control_plan.dataset is None  # the training data stay as they are
    (x_attack, y_attack), (x_control, y_control) = attack_plan.eval_splits["backdoor"], control_plan.eval_splits["backdoor"]
    assert np.array_equal(x_attack, x_control) and np.array_equal(y_attack, y_control)
    assert (y_control != 0).all()  # none of the target class
    predictions = np.array([0, 1, 0, 2, 3, 0, 4, 5, 6, 7])
    assert control_plan.evaluate({"backdoor": predictions}) == {CONTROL_TARGET_RATE.name: 0.3}


def test_a_control_run_trains_exactly_like_a_clean_run() -> None:
    base = {"data": {"name": "digits", "train_limit": 300, "test_limit": 100}, "train": {"epochs": 1, "progress": False, "seed": 1},
            "attack": {"poison_train": 10, "poison_test": 10}}
    clean = run_training(validate_config({**base, "attack": {"kind": "none"}}))
    control = run_training(validate_config({**base, "attack": {**base["attack"], "kind": "backdoor_control"}}))
    assert [h["main_accuracy"] for h in clean["history"]] == [h["main_accuracy"] for h in control["history"]]
    assert control["control_target_rate"] is not None and 0.0 <= control["control_target_rate"] <= 1.0


def test_a_backdoor_line_shows_its_control_and_the_paired_difference(tmp_path: Path) -> None:
    text = """
[study]
name = "control"
seeds = [0, 1, 2, 3, 4]
schemes = ["plain"]
[study.set]
"data.name" = "digits"
"attack.poison_train" = 30
[[grid]]
name = "g"
[grid.variants]
clean = { "attack.kind" = "backdoor_control" }
backdoor = { "attack.kind" = "gradient_replacement" }
"""
    runs = plan_runs(load_study(_write(tmp_path, text)))
    control_rates = [0.02, 0.05, 0.03, 0.00, 0.10]
    rows = [
        _row(run, main_accuracy=0.9, control_target_rate=control_rates[run.seed])
        if run.levels["variant"] == "clean"
        else _row(run, main_accuracy=0.88, backdoor_accuracy=PLAIN_ATTACK[run.seed], attack_feasible=True)
        for run in runs
    ]
    clean_line, backdoor_line = survival_lines(runs, rows, ["plain"])
    assert clean_line.cells["plain"] == "main 90.0; control 4.0"
    assert clean_line.verdict.startswith("control: the clean model sends 4.0 [")
    d = np.array(PLAIN_ATTACK) - np.array(control_rates)
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert backdoor_line.cells["plain"] == "74.0 (control 4.0) / 88.0"
    assert backdoor_line.verdict.startswith(
        f"backdoor − control (clean model, same triggered inputs): plain {100 * d.mean():+.1f} "
        f"[{100 * (d.mean() - half):+.1f}, {100 * (d.mean() + half):+.1f}]"
    )


# ---------------------------------------------------------------- figures


def test_axis_scales_clipped_errors_and_common_seeds() -> None:
    assert axis_scale("attack.gamma", [1, 3, 10]) == ("log", "")
    assert axis_scale("defense.0.variance", [1e-5, 1e-4]) == ("log", "")
    assert axis_scale("defense.0.drop_rate", [0.5, 0.9, 0.99, 0.999]) == ("logit", "")
    scale, note = axis_scale("defense.0.drop_rate", [0.0, 0.9])
    assert scale == "linear" and "no logit" in note
    assert axis_scale("train.lr", [0.01, 0.05]) == ("linear", "")
    assert axis_scale("attack.gamma", [1, 3], forced=False) == ("linear", "")
    assert clipped_errors(98.0, 90.0, 106.0) == (8.0, 2.0)
    assert clipped_errors(1.0, -5.0, 7.0) == (1.0, 6.0)
    assert clipped_errors(50.0, None, None) == (0.0, 0.0)
    plain = [{"seed": s, "status": "ok"} for s in (0, 1, 2)]
    ckks = [{"seed": 0, "status": "ok"}, {"seed": 1, "status": "diverged"}, {"seed": 2, "status": "ok"}]
    assert common_seeds([plain, ckks]) == {0, 2}


def test_a_tradeoff_plot_marks_the_undefended_point_and_prints_recorded_epsilons(tmp_path: Path) -> None:
    def rows(main: float, attack: float, epsilon: float | None = None, status: str = "ok") -> list[dict[str, Any]]:
        return [{"seed": s, "status": status, "main_accuracy": main + 0.01 * s, "backdoor_accuracy": attack - 0.01 * s,
                 "dp_epsilon_pld": epsilon} for s in range(3)]

    points = [
        TradeoffPoint("plain", "none", rows(0.9, 0.9), undefended=True),
        TradeoffPoint("plain", "z=0.5", rows(0.85, 0.4, epsilon=12.0)),
        TradeoffPoint("plain", "z=2", rows(0.7, 0.1, epsilon=1.5)),
        TradeoffPoint("plain", "z=8", rows(0.1, 0.0, status="collapsed")),
    ]
    path = plot_tradeoff("noise", "backdoor_accuracy", "backdoor", points, tmp_path / "t.png").path
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    absent = plot_tradeoff("noise", "backdoor_accuracy", "backdoor", [points[-1]], tmp_path / "none.png")
    assert absent.path is None and absent.absent == "not drawn: every seed of every level stopped (collapsed 3)"
    # the epsilon printed beside a point is the one the runs recorded (label_dp's accountant), never invented
    from securevfl.study.plots import _epsilon_text

    assert _epsilon_text(points[1].rows) == "ε 12" and _epsilon_text(points[0].rows) == ""
    assert _epsilon_text([{"dp_epsilon_pld": None, "dp_epsilon_rdp": 3.14159}]) == "ε 3.14"


def test_the_report_has_the_stopped_column_the_reference_and_the_tradeoff_plot(tmp_path: Path) -> None:
    text = """
[study]
name = "report"
seeds = [0, 1, 2]
schemes = ["plain", "ckks/receiver"]
[study.set]
"data.name" = "digits"
"attack.kind" = "gradient_replacement"
[[grid]]
name = "attack"
[[grid]]
name = "noise"
x = "defense.0.variance"
[grid.set]
"defense" = [{ kind = "gaussian_noise", variance = 1e-4 }]
[grid.axes]
"defense.0.variance" = [1e-5, 1e-4, 1e-3]
"""
    spec = load_study(_write(tmp_path, text))
    runs = plan_runs(spec)
    rows, histories = [], {}
    for run in runs:
        variance = run.values.get("defense.0.variance", 0.0)
        if run.grid == "noise" and variance == 1e-3:
            rows.append(_row(run, status="collapsed", reason="at chance", main_accuracy=0.1, backdoor_accuracy=1.0))
            continue
        if run.levels["scheme"] == "ckks/receiver" and run.seed == 2 and run.grid == "attack":
            rows.append(_row(run, status="diverged", reason="left CKKS's range"))
            continue
        backdoor = 0.8 - 200 * variance + 0.01 * run.seed
        rows.append(_row(run, main_accuracy=0.9 - 10 * variance, backdoor_accuracy=backdoor, attack_feasible=True))
        histories[run.run_id] = [{"epoch": 1, "main_accuracy": 0.5, "backdoor_accuracy": backdoor / 2},
                                 {"epoch": 2, "main_accuracy": 0.9 - 10 * variance, "backdoor_accuracy": backdoor}]
    out = tmp_path / "out"
    out.mkdir()
    report = write_report(spec, runs, rows, histories, out, command="securevfl study").read_text()
    assert "| plain stopped |" in report and "| 3/3 (3 collapsed) |" in report and "| 1/3 (1 diverged) |" in report
    assert "plots/noise_tradeoff.png" in report and (out / "plots" / "noise_tradeoff.png").is_file()
    assert (out / "plots" / "noise_vs_defense_0_variance.png").is_file()
    assert "stopped: ckks/receiver stopped 1/3 (1 diverged), plain stopped 0/3; no success verdict" in report


def test_pending_seeds_are_no_outcome_yet_and_make_a_verdict_provisional(tmp_path: Path) -> None:
    values = {
        ("plain", "attack"): PLAIN_ATTACK,
        ("ckks/receiver", "attack"): [0.79, 0.71, 0.74, "pending", "pending"],
        ("ckks/active", "attack"): ["crashed"] + PLAIN_ATTACK[1:],
        **{(scheme, "noise"): [0.1] * 5 for scheme in ("plain", "ckks/receiver", "ckks/active")},
    }
    runs, rows = _synthetic(tmp_path, values)
    line = survival_lines(runs, rows, ["plain", "ckks/receiver", "ckks/active"])[0]
    assert "ckks/receiver (Δ" in line.verdict and "n=3; provisional: seed(s) 3,4 not finished yet" in line.verdict
    assert "n=4; provisional: seed(s) 0 not finished yet" in line.verdict  # a crash is a bug to rerun, not an outcome
    assert "stopped" not in line.verdict
    assert line.cells["ckks/receiver"] == "74.7 / 90.0 [2 pending]"


def test_before_and_after_of_a_defense_are_means_over_the_same_seeds(tmp_path: Path) -> None:
    values = {
        ("plain", "attack"): PLAIN_ATTACK,   # mean over all 5 seeds 74.0; over seeds 0-3: 77.5
        ("ckks/receiver", "attack"): PLAIN_ATTACK,
        ("ckks/active", "attack"): PLAIN_ATTACK,
        ("plain", "noise"): [0.10, 0.20, 0.15, 0.10, "pending"],
        ("ckks/receiver", "noise"): [0.1] * 5,
        ("ckks/active", "noise"): [0.1] * 5,
    }
    runs, rows = _synthetic(tmp_path, values)
    noise_line = survival_lines(runs, rows, ["plain", "ckks/receiver", "ckks/active"])[1]
    reduction_0_to_3 = np.mean(np.array(PLAIN_ATTACK[:4]) - np.array([0.10, 0.20, 0.15, 0.10]))
    base = np.array(PLAIN_ATTACK[:4])
    base_half = stats.t.ppf(0.975, 3) * base.std(ddof=1) / math.sqrt(4)
    assert (
        f"plain: works against a weak attack (undefended 77.5 [{77.5 - 100 * base_half:.1f}, {77.5 + 100 * base_half:.1f}]; "
        f"over the 5 seed(s) it finished 74.0 [62.1, 85.9] < 80 %: not a test of the defense; → 13.8, reduction {100 * reduction_0_to_3:+.1f} ["
    ) in noise_line.verdict
    assert "n=4; provisional: seed(s) 4 not finished yet" in noise_line.verdict


def test_one_paired_seed_is_inconclusive_with_its_reason_and_a_failing_attack_is_named(tmp_path: Path) -> None:
    values = {
        ("plain", "attack"): [0.02, 0.01, 0.03, 0.02, 0.02],
        ("ckks/receiver", "attack"): [0.02, 0.01, 0.03, 0.02, 0.02],
        ("ckks/active", "attack"): [0.02, "pending", "pending", "pending", "pending"],
        **{(scheme, "noise"): [0.01] * 5 for scheme in ("plain", "ckks/receiver", "ckks/active")},
    }
    runs, rows = _synthetic(tmp_path, values)
    attack_line, noise_line = survival_lines(runs, rows, ["plain", "ckks/receiver", "ckks/active"])
    assert "survives encryption (CKKS − plain within ±5): ckks/receiver" in attack_line.verdict
    assert "inconclusive: ckks/active (Δ +0.0 (n=1, no interval), n=1; provisional: seed(s) 1,2,3,4 not finished yet; fewer than 2 paired seeds)" in attack_line.verdict
    assert attack_line.verdict.endswith("note: the attack reaches only 2.0 % in plaintext")
    assert "plain: nothing to stop" in noise_line.verdict


def test_summary_epochs_reports_each_runs_mean_over_its_last_epochs(tmp_path: Path) -> None:
    """``summary_epochs = 3``: a run's metrics are the mean of its last 3 epochs (hand computation), the last
    epoch's values stay as ``*_last_epoch``; a run shorter than the window keeps its last epoch."""
    from securevfl.study.table import _summarized

    history = [{"epoch": e, "main_accuracy": m, "backdoor_accuracy": b}
               for e, m, b in ((1, 0.50, 0.0), (2, 0.80, 0.9), (3, 0.60, 0.8), (4, 0.85, 1.0))]
    columns = _summarized(history, 3)
    assert columns["main_accuracy"] == pytest.approx((0.80 + 0.60 + 0.85) / 3)
    assert columns["backdoor_accuracy"] == pytest.approx((0.9 + 0.8 + 1.0) / 3)
    assert (columns["main_accuracy_last_epoch"], columns["backdoor_accuracy_last_epoch"]) == (0.85, 1.0)
    assert _summarized(history, 1) == {} and _summarized(history[:2], 3) == {}
    no_attack = [{"epoch": e, "main_accuracy": 0.9} for e in (1, 2, 3)]
    assert set(_summarized(no_attack, 3)) == {"main_accuracy", "main_accuracy_last_epoch"}


def test_the_peak_counts_stopped_seeds_and_no_epoch_at_chance(tmp_path: Path) -> None:
    """Survivor bias (third referee pass): the peak backdoor averaged over the finished seeds only leaves out the
    seeds where the attack peaked and then blew training up. Seed 0 finishes (peak 40 %); seed 1 reaches 97 % at
    epoch 2, falls to chance (every input sent to the target: 100 % "backdoor", no success) and diverges at epoch 4."""
    from securevfl.study.runner import FAILED_NAME

    study = _write(tmp_path, '[study]\nname = "p"\nseeds = [0, 1]\n[study.set]\n"data.name" = "digits"\n'
                             '"attack.kind" = "gradient_replacement"\n[[grid]]\nname = "g"\n')
    runs = plan_runs(load_study(study))
    out = tmp_path / "out"
    finished, stopped = (run_dir(out, run) for run in runs)
    finished.mkdir(parents=True)
    stopped.mkdir(parents=True)
    history = [{"epoch": 1, "main_accuracy": 0.90, "backdoor_accuracy": 0.40}, {"epoch": 2, "main_accuracy": 0.91, "backdoor_accuracy": 0.30}]
    (finished / RESULT_NAME).write_text(json.dumps({"config": runs[0].config, "main_accuracy": 0.91, "backdoor_accuracy": 0.30,
                                                    "outcome": "ok", "chance_accuracy": 0.1, "history": history, "attack_feasible": True}))
    blown = [{"epoch": 1, "main_accuracy": 0.80, "backdoor_accuracy": 0.50}, {"epoch": 2, "main_accuracy": 0.70, "backdoor_accuracy": 0.97},
             {"epoch": 3, "main_accuracy": 0.12, "backdoor_accuracy": 1.0}]
    (stopped / FAILED_NAME).write_text(json.dumps({"error": "training diverged at epoch 4", "type": "TrainingDiverged",
                                                   "config": runs[1].config, "stopped_at_epoch": 4, "history": blown}))
    rows, _ = collect_rows(runs, out)
    assert [(row["status"], row["backdoor_peak"], row["backdoor_peak_epoch"]) for row in rows] == [("ok", 0.40, 1), ("diverged", 0.97, 2)]
    summary = CellSummary(rows)
    assert summary.peak_text("backdoor_peak") == "68 (1 of 2 stopped, peak 97)"  # (40 + 97) / 2 = 68.5 -> 68
    assert summary.cell_text("backdoor_accuracy") == "30.0 (n=1/2: seed 0)"  # the last-epoch number stays over finished seeds only


def test_a_run_at_chance_for_its_last_epochs_before_it_diverged_is_collapsed_not_diverged(tmp_path: Path) -> None:
    """Third referee pass: noise of variance 0.05 leaves the model at chance from epoch 1 and the loss check stops it at
    epoch 5; calling that "diverged" hides that the model never learned. Three epochs at chance (collapse_epochs) first:
    collapsed, with the divergence kept in the reason. Two epochs at chance, or one above it: still diverged."""
    from securevfl.study.runner import FAILED_NAME

    study = _write(tmp_path, '[study]\nname = "c"\nseeds = [0, 1, 2]\n[study.set]\n"data.name" = "digits"\n'
                             '"attack.kind" = "gradient_replacement"\n[[grid]]\nname = "g"\n')
    runs = plan_runs(load_study(study))
    out = tmp_path / "out"
    finished, *diverged = (run_dir(out, run) for run in runs)
    for directory in (finished, *diverged):
        directory.mkdir(parents=True)
    (finished / RESULT_NAME).write_text(json.dumps({"config": runs[0].config, "main_accuracy": 0.9, "backdoor_accuracy": 0.1, "outcome": "ok",
                                                    "chance_accuracy": 0.1, "history": [{"epoch": 1, "main_accuracy": 0.9}], "attack_feasible": True}))
    for run, directory, mains in ((runs[1], diverged[0], (0.12, 0.09, 0.14, 0.11)), (runs[2], diverged[1], (0.12, 0.40, 0.14, 0.11))):
        history = [{"epoch": e, "main_accuracy": m, "backdoor_accuracy": 1.0} for e, m in enumerate(mains, start=1)]
        (directory / FAILED_NAME).write_text(json.dumps({"error": "training diverged at epoch 5: loss 2e+13 is above the bound 1e+12",
                                                         "type": "TrainingDiverged", "config": run.config, "stopped_at_epoch": 5, "history": history}))
    rows, _ = collect_rows(runs, out)
    assert [row["status"] for row in rows] == ["ok", "collapsed", "diverged"]
    assert rows[1]["reason"] == ("main accuracy within 5 points of chance (10.0 %) for its last 3 epoch(s) before it stopped: "
                                 "training diverged at epoch 5: loss 2e+13 is above the bound 1e+12")
    assert (rows[1]["backdoor_peak"], rows[1]["backdoor_peak_epoch"]) == (None, "at chance")  # every epoch at chance: no success
    # run 2's peak comes from its one epoch above chance (epoch 2: 100 %); run 1's epochs were all at chance, and it says so
    assert CellSummary(rows).peak_text("backdoor_peak") == "100 (1 of 1 stopped, peak 100; 1 never above chance)"
