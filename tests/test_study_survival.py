"""The survival table's verdicts on hand-built rows (issue 15 referee audit): attacks plaintext cannot run,
the key holder's hardening compared, defenses judged against a working attack, the cost against the clean
model, the control of every backdoor line, the epochs of each line, and every stop status named."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from securevfl.study import load_study, plan_runs
from securevfl.study.report import _judged_section, _stopped_section
from securevfl.study.status import STOPPED, RunStatus
from securevfl.study.survival import SurvivalLine, stopped_names, survival_lines


def _plan(tmp_path: Path, text: str) -> list[Any]:
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    return plan_runs(load_study(path))


def _row(run: Any, status: str = "ok", **metrics: Any) -> dict[str, Any]:
    attack = (run.config or {}).get("attack", {}).get("kind", "none")
    return {"run_id": run.run_id, "grid": run.grid, "cell": run.cell, "seed": run.seed, "status": status,
            "reason": metrics.pop("reason", ""), "attack": attack, **{f"axis:{k}": v for k, v in run.levels.items()}, **metrics}


def _ci(values: list[float], points: bool = False) -> tuple[float, float, float]:
    """Mean and 95 % t interval by hand (in points), clipped to [0, 100] or, for a difference, [-100, 100]."""
    x = np.array(values)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    low_bound = -100.0 if points else 0.0
    return 100 * x.mean(), max(low_bound, 100 * (x.mean() - half)), min(100.0, 100 * (x.mean() + half))


def _text(values: list[float], signed: bool = False) -> str:
    mean, low, high = _ci(values, points=signed)
    sign = "+" if signed else ""
    return f"{mean:{sign}.1f} [{low:{sign}.1f}, {high:{sign}.1f}]"


def _line(lines: list[SurvivalLine], grid: str, setting: str) -> SurvivalLine:
    return next(line for line in lines if line.grid == grid and line.setting == setting)


# ---------------------------------------------------------------- 1. attacks plaintext cannot run

KEY_STUDY = """
[study]
name = "keys"
seeds = [0, 1, 2]
schemes = ["plain", "ckks/receiver", "ckks/active", "ckks/coordinator"]
[study.set]
"data.name" = "digits"
"train.epochs" = 39
"attack.kind" = "key_recovery"
[[grid]]
name = "threat_default"
[grid.set]
"train.epochs" = 2
[[grid]]
name = "threat_no_flooding"
[grid.set]
"train.epochs" = 2
"protection.flooding_bits" = 0
[[grid]]
name = "inversion"
[grid.set]
"attack.kind" = "gradient_inversion"
"""
NO_REQUESTS = "no decryption requests in this scheme"


def _key_rows(runs: list[Any], values: dict[tuple[str, str], list[Any]]) -> list[dict[str, Any]]:
    """``values[(grid, scheme)][seed]``: a label accuracy read via the recovered key, None (key kept: no label
    read, which key recovery reports as 0.0), 'infeasible', or a stop status."""
    rows = []
    for run in runs:
        if run.grid == "inversion":
            rows.append(_row(run, main_accuracy=0.9, inversion_label_accuracy=0.5, attack_feasible=True))
            continue
        value = values.get((run.grid, run.levels["scheme"]), ["infeasible"] * 3)[run.seed]
        if value == "infeasible":
            rows.append(_row(run, main_accuracy=0.9, attack_feasible=False, reason=NO_REQUESTS))
        elif isinstance(value, str):
            rows.append(_row(run, status=value, reason=f"{value} on purpose"))
        else:
            rows.append(_row(run, main_accuracy=0.9, attack_feasible=True, key_recovered=float(value is not None),
                             key_recovery_label_accuracy=0.0 if value is None else value))
    return rows


def test_an_attack_plaintext_cannot_run_gets_each_schemes_own_success_over_seeds(tmp_path: Path) -> None:
    runs = _plan(tmp_path, KEY_STUDY)
    rows = _key_rows(runs, {
        ("threat_no_flooding", "ckks/active"): [0.9, 0.8, 1.0],          # mean 90, sd 10: 90 +- 4.303 * 10 / sqrt 3
        ("threat_no_flooding", "ckks/coordinator"): [1.0, 1.0, "diverged"],
    })
    schemes = ["plain", "ckks/receiver", "ckks/active", "ckks/coordinator"]
    line = _line(survival_lines(runs, rows, schemes), "threat_no_flooding", "-")
    assert line.verdict.startswith(f"no plaintext outcome to compare with (plain: attack infeasible ({NO_REQUESTS}))")
    assert f"ckks/receiver: infeasible ({NO_REQUESTS})" in line.verdict
    assert _text([0.9, 0.8, 1.0]) == "90.0 [65.2, 100.0]"  # the hand computation: 90 +- 24.8, clipped at 100
    assert "ckks/active: labels via key 90.0 [65.2, 100.0] in 3/3 seeds" in line.verdict
    # intent to treat: the stopped seed is an outcome; no success verdict on the two that finished
    assert ("ckks/coordinator: stops training in 1/3 seeds (1 diverged); no success verdict (labels via key over the 2 "
            "with a value: 100.0 [100.0, 100.0], descriptive only)") in line.verdict
    assert "inconclusive" not in line.verdict and "n=0" not in line.verdict


# ---------------------------------------------------------------- 2. hardening compared, 6. epochs


def test_the_key_holders_hardening_is_a_labelled_line_compared_with_the_unhardened_one(tmp_path: Path) -> None:
    runs = _plan(tmp_path, KEY_STUDY)
    unflooded = [1.0, 0.98, 1.0]
    rows = _key_rows(runs, {
        ("threat_default", "ckks/coordinator"): [None, None, None],  # flooding kept the key: no label read (success 0)
        ("threat_default", "ckks/active"): [None, None, None],
        ("threat_no_flooding", "ckks/coordinator"): unflooded,
        ("threat_no_flooding", "ckks/active"): ["diverged", 1.0, 1.0],
    })
    schemes = ["plain", "ckks/receiver", "ckks/active", "ckks/coordinator"]
    lines = survival_lines(runs, rows, schemes)
    hardened, unhardened = _line(lines, "threat_default", "-"), _line(lines, "threat_no_flooding", "-")
    assert (hardened.protection, unhardened.protection) == ("default", "flooding 0 bits")
    assert (hardened.epochs, unhardened.epochs, _line(lines, "inversion", "-").epochs) == ("2", "2", "39")
    assert hardened.cells["ckks/coordinator"] == "0.0 / 90.0"
    # by hand: unhardened 99.3 +- 4.303 * 1.155 / sqrt 3 = [96.5, 102.2] -> clipped at 100; reduction the same (hardened 0)
    assert _text(unflooded) == "99.3 [96.5, 100.0]" and _text(unflooded, signed=True) == "+99.3 [+96.5, +100.0]"
    assert "hardening flooding 30 bits vs 0 (against grid threat_no_flooding, -): " in hardened.verdict
    assert "ckks/coordinator: works (unhardened 99.3 [96.5, 100.0] → 0.0, reduction +99.3 [+96.5, +100.0], main +0.0 [+0.0, +0.0] vs unhardened, n=3)" in hardened.verdict
    # every hardened run trained: the stop is the unhardened reference's, and the word says whose
    assert "ckks/active: no verdict (unhardened stopped) (hardened stopped 0/3, unhardened stopped 1/3 (1 diverged); no verdict" in hardened.verdict
    assert "plain: n/a (attack infeasible)" in hardened.verdict
    assert "hardening" not in unhardened.verdict  # the weaker line is not hardened against anything
    judged = {(j.scheme, j.what): (j.word, j.working) for j in hardened.judgements}
    assert judged[("ckks/coordinator", "hardening flooding 30 bits vs 0")] == ("works", True)
    table = _judged_section(lines)
    # the reduction and the cost against the clean model beside the word (no clean cell in this study: "-")
    number = 1 + lines.index(hardened)
    assert (f"| [{number}](#v{number}) | threat_default | key recovery | hardening flooding 30 bits vs 0 | ckks/coordinator | 99.3 [96.5, 100.0] "
            "| works | 3 | +99.3 [+96.5, +100.0] | - |") in table
    # a grid of privacy attacks names its success column "attack" (its cells say which metric), with no backdoor peak
    from securevfl.study.report import write_report

    (tmp_path / "out").mkdir()
    report = write_report(load_study(tmp_path / "study.toml"), runs, rows, {}, tmp_path / "out", command="securevfl study").read_text()
    assert "| ckks/coordinator main | ckks/coordinator attack | ckks/coordinator stopped |" in report
    assert "backdoor |" not in report and "peak backdoor |" not in report


def test_a_caught_attacker_counts_at_what_it_had_read_when_the_check_stopped_it(tmp_path: Path) -> None:
    """A ``detected`` run whose attacker recorded its success at the stop (``<metric>_at_stop``) is no unknown to impute
    over [0, 1]: the attacker keeps that read and reads nothing more, so the hardening is judged on it (here it had
    read nothing: works). A detected run without that record is still an unknown (no verdict)."""
    runs = _plan(tmp_path, KEY_STUDY)
    unflooded = [1.0, 0.98, 1.0]
    rows = _key_rows(runs, {
        ("threat_default", "ckks/coordinator"): ["detected"] * 3,
        ("threat_default", "ckks/active"): ["detected"] * 3,
        ("threat_no_flooding", "ckks/coordinator"): unflooded,
        ("threat_no_flooding", "ckks/active"): unflooded,
    })
    for run, row in zip(runs, rows, strict=True):
        if run.grid == "threat_default" and run.levels["scheme"] == "ckks/coordinator":
            row["key_recovery_label_accuracy_at_stop"] = 0.0  # caught before it read a label
    schemes = ["plain", "ckks/receiver", "ckks/active", "ckks/coordinator"]
    hardened = _line(survival_lines(runs, rows, schemes), "threat_default", "-")
    assert ("ckks/coordinator: works (unhardened 99.3 [96.5, 100.0] → 0.0, reduction +99.3 [+96.5, +100.0], main - vs "
            "unhardened (hardened stopped 3/3 (3 detected), unhardened stopped 0/3), n=3; seed(s) 0,1,2 detected by a check: "
            "counted at the attacker's success at the stop)") in hardened.verdict
    assert "ckks/active: stopped (hardened stopped 3/3 (3 detected), unhardened stopped 0/3; no verdict" in hardened.verdict
    assert hardened.cells["ckks/coordinator"] == "0.0 at the stop (n=3) / main - [stopped 3/3 (3 detected)]"
    judged = {(j.scheme, j.what): j.word for j in hardened.judgements}
    assert judged == {("ckks/coordinator", "hardening flooding 30 bits vs 0"): "works", ("ckks/active", "hardening flooding 30 bits vs 0"): "stopped"}


def test_a_privacy_attacks_model_at_chance_keeps_the_attacks_number_but_not_its_main_accuracy(tmp_path: Path) -> None:
    """Gradient inversion on a seed whose model sat at chance: the inversion number counts (it is what the attacker
    read), the main accuracy does not: CKKS against plaintext counts that seed as collapsed, as a clean line would."""
    from securevfl.study.status import AT_CHANCE_NOTE

    runs = _plan(tmp_path, KEY_STUDY)
    rows = _key_rows(runs, {})
    for run, row in zip(runs, rows, strict=True):
        if run.grid == "inversion" and run.levels["scheme"] == "plain" and run.seed == 0:
            row.update(main_accuracy=0.11, reason=f"{AT_CHANCE_NOTE[0]}last-epoch main accuracy 11.0 % ...{AT_CHANCE_NOTE[1]}")
    line = _line(survival_lines(runs, rows, ["plain", "ckks/receiver"]), "inversion", "-")
    assert "survives encryption (CKKS − plain within ±5): ckks/receiver (Δ +0.0 [+0.0, +0.0], n=3)" in line.verdict  # the attack: 3 seeds
    # main accuracy: plaintext seed 0 is no number (the interval is over seeds 1-2), and the verdict says why
    assert "ckks/receiver main Δ +0.0 [+0.0, +0.0] (ckks/receiver stopped 0/3, plain stopped 1/3 (1 collapsed))" in line.verdict
    assert line.cells["plain"] == "50.0 / 90.0 [model at chance 1/3: main not counted]"


def test_a_trainable_top_line_without_a_sum_top_line_gets_its_words_from_the_ckks_comparison(tmp_path: Path) -> None:
    """The compact table's outcome column of a trainable-top line that has no sum-top line to be judged against as a
    defense carries its CKKS-vs-plaintext words, not '-'."""
    runs = _plan(tmp_path, """
[study]
name = "trainable"
seeds = [0, 1, 2]
schemes = ["plain", "ckks/active"]
[study.set]
"data.name" = "digits"
"model.top" = "trainable"
"attack.kind" = "activation_inversion"
[[grid]]
name = "g"
""")
    rows = [_row(run, main_accuracy=0.9, activation_rows_recovered=1.0, attack_feasible=True) for run in runs]
    line = survival_lines(runs, rows, ["plain", "ckks/active"])[0]
    assert "trainable top (no sum-top line of this setting to compare it with as a defense)" in line.verdict
    assert line.summary() == "plain: 100.0 %; ckks/active: survives"


# ---------------------------------------------------------------- 3. a working attack, 4. cost vs clean, 5. controls

BACKDOOR_STUDY = """
[study]
name = "backdoor"
seeds = [0, 1, 2]
schemes = ["plain"]
[study.set]
"data.name" = "digits"
"attack.poison_train" = 30
[[grid]]
name = "g"
[grid.variants]
control = { "attack.kind" = "backdoor_control" }
backdoor = { "attack.kind" = "gradient_replacement" }
noise = { "attack.kind" = "gradient_replacement", defense = [{ kind = "gaussian_noise", variance = 0.5 }] }
[[grid]]
name = "trainable"
[grid.set]
"model" = { top = "trainable", bottom_hidden = [], bottom_output = 32, bottom_output_activation = "relu", top_hidden = [32] }
[grid.variants]
control = { "attack.kind" = "backdoor_control" }
backdoor = { "attack.kind" = "gradient_replacement" }
"""


def _backdoor_rows(runs: list[Any], backdoor: list[float]) -> list[dict[str, Any]]:
    table: dict[str, dict[str, list[float]]] = {
        "control": {"main_accuracy": [0.96, 0.97, 0.95], "control_target_rate": [0.0, 0.01, 0.0]},
        "backdoor": {"main_accuracy": [0.79, 0.80, 0.78], "backdoor_accuracy": backdoor},
        "noise": {"main_accuracy": [0.70, 0.72, 0.71], "backdoor_accuracy": [0.05, 0.02, 0.05]},
    }
    return [_row(run, attack_feasible=True, **{k: v[run.seed] for k, v in table[run.levels["variant"]].items()}) for run in runs]


def test_a_defense_is_judged_against_the_undefended_success_and_costed_against_the_clean_model(tmp_path: Path) -> None:
    runs = _plan(tmp_path, BACKDOOR_STUDY)
    weak = [0.20, 0.25, 0.18]  # 21 %: the attack barely works
    lines = survival_lines(runs, _backdoor_rows(runs, weak), ["plain"])
    noise = _line(lines, "g", "noise")
    reduction = list(np.array(weak) - [0.05, 0.02, 0.05])
    cost_undefended = list(np.array([0.70, 0.72, 0.71]) - [0.79, 0.80, 0.78])
    cost_clean = list(np.array([0.70, 0.72, 0.71]) - [0.96, 0.97, 0.95])
    assert _text(cost_clean, signed=True) == "-25.0 [-27.5, -22.5]"  # -25 +- 4.303 * 1 / sqrt 3
    assert (
        f"plain: works against a weak attack (undefended {_text(weak)} < 80 %: not a test of the defense; → 4.0, "
        f"reduction {_text(reduction, signed=True)}, main {_text(cost_undefended, signed=True)} vs undefended, "
        f"-25.0 [-27.5, -22.5] vs clean, n=3)"
    ) in noise.verdict
    # the control is shown for the defended line too: backdoor - control, paired by seed
    control_difference = list(np.array([0.05, 0.02, 0.05]) - [0.0, 0.01, 0.0])
    assert noise.cells["plain"] == "4.0 (control 0.3) / 71.0"
    assert noise.verdict.startswith(f"backdoor − control (clean model, same triggered inputs): plain {_text(control_difference, signed=True)}")
    assert [(j.word, j.working) for j in noise.judgements] == [("works", False)]
    table = "\n".join(_judged_section(lines))
    assert "**0 against a working attack (undefended ≥ 80 %)**" in table
    assert "**2 against a weak attack (undefended < 80 %): not a test of the defense**" in table  # noise, trainable top
    number = 1 + next(i for i, line in enumerate(lines) if line is noise)  # the row links to its line's verdict details
    assert (f"| [{number}](#v{number}) | g | gradient replacement, gamma 10 | gaussian_noise(variance=0.5, gradient, pre_encryption) | plain | "
            f"{_text(weak)} | works | 3 | {_text(reduction, signed=True)} | -25.0 [-27.5, -22.5] |") in table

    # a defense under which the backdoor succeeds more, the whole interval below 0: said as such (not "not shown to work")
    stronger = [dict(row, backdoor_accuracy=[0.70, 0.73, 0.69][row["seed"]]) if row["cell"].endswith("noise") else row
                for row in _backdoor_rows(runs, [0.60, 0.62, 0.58])]
    noise = _line(survival_lines(runs, stronger, ["plain"]), "g", "noise")
    assert noise.words["plain"].startswith("strengthens the attack") and [j.word for j in noise.judgements] == ["strengthens the attack"]
    assert f"reduction {_text([-0.10, -0.11, -0.11], signed=True)}" in noise.verdict and "the attack succeeds more with it" in noise.verdict

    working = [0.90, 0.85, 0.88]
    noise = _line(survival_lines(runs, _backdoor_rows(runs, working), ["plain"]), "g", "noise")
    assert f"plain: works (undefended {_text(working)} → 4.0, reduction " in noise.verdict
    assert "weak" not in noise.verdict and [(j.word, j.working) for j in noise.judgements] == [("works", True)]


def test_every_backdoor_line_shows_its_control_also_the_trainable_top(tmp_path: Path) -> None:
    runs = _plan(tmp_path, BACKDOOR_STUDY)
    lines = survival_lines(runs, _backdoor_rows(runs, [0.90, 0.85, 0.88]), ["plain"])
    trainable = _line(lines, "trainable", "backdoor")
    assert trainable.defense == "trainable top"
    assert trainable.cells["plain"] == "87.7 (control 0.3) / 79.0"
    difference = list(np.array([0.90, 0.85, 0.88]) - [0.0, 0.01, 0.0])
    assert trainable.verdict.startswith(f"backdoor − control (clean model, same triggered inputs): plain {_text(difference, signed=True)}")
    # judged against the sum top's backdoor (the same numbers here: reduction 0), costed against the trainable top's control
    cost_clean = list(np.array([0.79, 0.80, 0.78]) - [0.96, 0.97, 0.95])
    assert f"{_text(cost_clean, signed=True)} vs clean, n=3" in trainable.verdict


# ---------------------------------------------------------------- 7. every stop status, named from STOPPED


@pytest.mark.parametrize("stop", [RunStatus.OUT_OF_RANGE, RunStatus.DETECTED])
def test_a_new_stop_status_is_counted_and_named_like_the_others(tmp_path: Path, stop: RunStatus) -> None:
    assert stop in STOPPED and stopped_names() == "diverged, out_of_range, detected, failed or collapsed"
    runs = _plan(tmp_path, BACKDOOR_STUDY.replace('schemes = ["plain"]', 'schemes = ["plain", "ckks/receiver"]'))
    rows = _backdoor_rows(runs, [0.90, 0.85, 0.88])
    stopped_id = next(run.run_id for run in runs if run.cell == "ckks-receiver__backdoor" and run.seed == 1)
    rows = [dict(row, status=stop, reason="a check stopped it") if row["run_id"] == stopped_id else row for row in rows]
    line = _line(survival_lines(runs, rows, ["plain", "ckks/receiver"]), "g", "backdoor")
    assert f"ckks/receiver stopped 1/3 (1 {stop}), plain stopped 0/3; no success verdict" in line.verdict
    assert line.cells["ckks/receiver"].endswith(f"[stopped 1/3 (1 {stop})]")
    assert f"| {stopped_id} | {stop} | none recorded | ok | a check stopped it |" in _stopped_section(runs, rows, {})


def test_a_stopped_run_shows_where_it_stood_and_how_closely_it_tracked_its_plaintext_twin(tmp_path: Path) -> None:
    """A CKKS run stopped at epoch 3 with a 90 % backdoor at epoch 2: the report says it passed the 80 % bar before the stop,
    how far its history was from the plaintext run of the same cell and seed (by hand: 0.5 and 2 points, epoch 1), and
    where that twin stood at epoch 3; a plaintext run has no twin; a run stopped in its first epoch says so."""
    runs = _plan(tmp_path, BACKDOOR_STUDY.replace('schemes = ["plain"]', 'schemes = ["plain", "ckks/receiver"]'))
    ckks = next(run for run in runs if run.cell == "ckks-receiver__backdoor" and run.seed == 1)
    plain = next(run for run in runs if run.cell == "plain__backdoor" and run.seed == 1)
    early = next(run for run in runs if run.cell == "ckks-receiver__backdoor" and run.seed == 2)
    stops = {ckks.run_id: ("out_of_range", 3), plain.run_id: ("diverged", 5), early.run_id: ("out_of_range", 1)}
    rows = [dict(row, status=stops[row["run_id"]][0], reason="stopped", stopped_at_epoch=stops[row["run_id"]][1]) if row["run_id"] in stops else row
            for row in _backdoor_rows(runs, [0.90, 0.85, 0.88])]
    histories = {
        ckks.run_id: [{"epoch": 1, "main_accuracy": 0.700, "backdoor_accuracy": 0.40}, {"epoch": 2, "main_accuracy": 0.800, "backdoor_accuracy": 0.90}],
        plain.run_id: [{"epoch": e, "main_accuracy": m, "backdoor_accuracy": b} for e, m, b in [(1, 0.705, 0.38), (2, 0.800, 0.90), (3, 0.81, 0.91), (4, 0.8, 0.9)]],
    }
    section = _stopped_section(runs, rows, histories)
    assert (f"| {ckks.run_id} | out_of_range | epoch 2: main 80.0 / backdoor 90.0 (≥ 80 % before the stop) | diverged at epoch 5; "
            "tracked over 2 epoch(s) within 0.50 / 2.00 points (main / backdoor); at epoch 3, the stop: main 81.0 / 91.0 | stopped |") in section
    assert f"| {plain.run_id} | diverged | epoch 4: main 80.0 / backdoor 90.0 (≥ 80 % before the stop) | - | stopped |" in section
    assert f"| {early.run_id} | out_of_range | none: stopped in epoch 1 | ok | stopped |" in section


def test_a_plaintext_only_line_without_outcomes_just_says_so(tmp_path: Path) -> None:
    """A pending plaintext attack in a plaintext-only study is 'plain: pending', not a paragraph about other schemes."""
    runs = _plan(tmp_path, BACKDOOR_STUDY)
    rows = [_row(run, status="pending") if run.levels["variant"] == "backdoor" else row
            for run, row in zip(runs, _backdoor_rows(runs, [0.9, 0.9, 0.9]), strict=True)]
    line = _line(survival_lines(runs, rows, ["plain"]), "g", "backdoor")
    assert line.verdict.endswith("plain: pending") and "each scheme's own success" not in line.verdict


# ---------------------------------------------------------------- second referee pass (before parts 2 and 3 ran)


def test_runs_that_stop_alike_with_and_without_encryption_still_get_a_verdict_on_the_rest(tmp_path: Path) -> None:
    """Seed 1 diverges at epoch 26 in plaintext and 27 under CKKS: encryption did not change which seeds finish,
    so the seeds finished on both (the same on both sides) decide; a stop on one side only, or of another kind, does not."""
    runs = _plan(tmp_path, BACKDOOR_STUDY.replace('schemes = ["plain"]', 'schemes = ["plain", "ckks/receiver"]'))

    def rows_with(ckks_status: str, ckks_epoch: int) -> list[dict[str, Any]]:
        rows = _backdoor_rows(runs, [0.90, 0.85, 0.88])
        for run, row in zip(runs, rows, strict=True):
            if run.levels["variant"] == "backdoor" and run.seed == 1:
                plain = run.levels["scheme"] == "plain"
                row.update(status="diverged" if plain else ckks_status, stopped_at_epoch=26 if plain else ckks_epoch)
                row.pop("backdoor_accuracy")
        return rows

    alike = _line(survival_lines(runs, rows_with("diverged", 27), ["plain", "ckks/receiver"]), "g", "backdoor")
    assert ("survives encryption (CKKS − plain within ±5): ckks/receiver (Δ +0.0 [+0.0, +0.0], n=2; "
            "stops alike: seed 1 diverged at epochs 26 / 27)") in alike.verdict
    later = _line(survival_lines(runs, rows_with("diverged", 20), ["plain", "ckks/receiver"]), "g", "backdoor")
    assert ("ckks/receiver stopped 1/3 (1 diverged), plain stopped 1/3 (1 diverged) (both stopped: seed 1, plain diverged at epoch 26, "
            "ckks/receiver diverged at epoch 20); no success verdict") in later.verdict
    other = _line(survival_lines(runs, rows_with("out_of_range", 26), ["plain", "ckks/receiver"]), "g", "backdoor")
    # another kind of stop in the same epoch: no verdict, but the reader sees both stops side by side
    assert ("ckks/receiver stopped 1/3 (1 out_of_range), plain stopped 1/3 (1 diverged) (both stopped: seed 1, plain diverged at "
            "epoch 26, ckks/receiver out_of_range at epoch 26); no success verdict") in other.verdict
    assert "survives" not in later.verdict and "survives" not in other.verdict


def test_a_reduction_whose_whole_interval_is_below_five_points_is_negligible_not_working(tmp_path: Path) -> None:
    runs = _plan(tmp_path, BACKDOOR_STUDY)
    rows = _backdoor_rows(runs, [0.90, 0.85, 0.88])
    for run, row in zip(runs, rows, strict=True):
        if run.levels["variant"] == "noise":
            row["backdoor_accuracy"] = [0.898, 0.848, 0.878][run.seed]  # 0.2 points less on every seed: a zero-width interval above 0
    noise = _line(survival_lines(runs, rows, ["plain"]), "g", "noise")
    assert f"plain: negligible (undefended {_text([0.90, 0.85, 0.88])} → 87.5, reduction +0.2 [+0.2, +0.2]" in noise.verdict
    assert noise.verdict.endswith("; the whole interval is below 5 points)") and [j.word for j in noise.judgements] == ["negligible"]


SEALED_STUDY = """
[study]
name = "sealed"
seeds = [0, 1, 2]
schemes = ["ckks/coordinator"]
[study.set]
"data.name" = "digits"
"model.bottom_hidden" = []
"attack.kind" = "gradient_inversion"
[[grid]]
name = "open"
[[grid]]
name = "sealed"
[grid.set]
"protection.passive_layer" = "sealed"
"""


def test_a_hardening_that_leaves_the_attack_nothing_to_run_on_works(tmp_path: Path) -> None:
    """The sealed layer's whole promise: gradient inversion has no plaintext gradient to invert (infeasible), where it
    read 99.3 % of the labels with the layer open. That is the hardening working, not 'n/a'."""
    runs = _plan(tmp_path, SEALED_STUDY)
    assert all(run.refused is None for run in runs)
    sealed_reason = "the passive decrypts nothing under a sealed layer"
    rows = [
        _row(run, main_accuracy=[0.90, 0.91, 0.89][run.seed], attack_feasible=True, inversion_label_accuracy=[1.0, 0.98, 1.0][run.seed])
        if run.grid == "open" else
        _row(run, main_accuracy=[0.88, 0.90, 0.88][run.seed], attack_feasible=False, reason=sealed_reason)
        for run in runs
    ]
    sealed = _line(survival_lines(runs, rows, ["ckks/coordinator"]), "sealed", "-")
    cost = list(np.array([0.88, 0.90, 0.88]) - [0.90, 0.91, 0.89])
    assert (f"hardening passive layer sealed vs open (against grid open, -): ckks/coordinator: works (attack made infeasible: "
            f"{sealed_reason}; unhardened {_text([1.0, 0.98, 1.0])} over 3 seed(s), main {_text(cost, signed=True)} vs unhardened, n=3)") in sealed.verdict
    assert [(j.word, j.working, j.made_infeasible, j.seeds) for j in sealed.judgements] == [("works", True, True, 3)]
    table = "\n".join(_judged_section(survival_lines(runs, rows, ["ckks/coordinator"])))
    assert "| works (attack made infeasible) | 3 | - |" in table  # no defended success to subtract: said, not a bare dash
    # intent to treat: a sealed run that stopped is an outcome, and there is no verdict over the others
    stopped = [dict(row, status="diverged") if row["run_id"] == next(r.run_id for r in runs if r.grid == "sealed" and r.seed == 2) else row
               for row in rows]
    assert "ckks/coordinator: stopped (hardened stopped 1/3 (1 diverged), unhardened stopped 0/3; no verdict (attack made infeasible" in _line(
        survival_lines(runs, stopped, ["ckks/coordinator"]), "sealed", "-").verdict
    # infeasible on both sides: nothing was tested
    both = [dict(row, attack_feasible=False, reason=sealed_reason) for row in rows]
    assert "ckks/coordinator: n/a (attack infeasible)" in _line(survival_lines(runs, both, ["ckks/coordinator"]), "sealed", "-").verdict


def test_an_attack_that_only_observes_also_compares_the_honest_models_accuracy_under_encryption(tmp_path: Path) -> None:
    runs = _plan(tmp_path, KEY_STUDY)
    plain_main, coordinator_main = [0.90, 0.92, 0.91], [0.89, 0.92, 0.90]
    rows = []
    for run in runs:
        main = coordinator_main if run.levels["scheme"] == "ckks/coordinator" else plain_main
        rows.append(_row(run, main_accuracy=main[run.seed], inversion_label_accuracy=1.0, attack_feasible=True)
                    if run.grid == "inversion" else _row(run, status="pending"))
    inversion = _line(survival_lines(runs, rows, ["plain", "ckks/receiver", "ckks/active", "ckks/coordinator"]), "inversion", "-")
    difference = list(np.array(coordinator_main) - plain_main)
    assert ("main accuracy (the attack only observes, so this is the honest model's) vs plaintext, paired by seed "
            f"(points, 95 % CI): ckks/receiver main Δ +0.0 [+0.0, +0.0]") in inversion.verdict
    assert f"ckks/coordinator main Δ {_text(difference, signed=True)}" in inversion.verdict
    # gradient replacement changes training: no such comparison on its lines
    backdoor_runs = _plan(tmp_path, BACKDOOR_STUDY.replace('schemes = ["plain"]', 'schemes = ["plain", "ckks/receiver"]'))
    backdoor = _line(survival_lines(backdoor_runs, _backdoor_rows(backdoor_runs, [0.9, 0.85, 0.88]), ["plain", "ckks/receiver"]), "g", "backdoor")
    assert "the attack only observes" not in backdoor.verdict


# ---------------------------------------------------------------- third referee pass (part 1's partial report)

FIVE_SEEDS = BACKDOOR_STUDY.replace("seeds = [0, 1, 2]", "seeds = [0, 1, 2, 3, 4]")


def _five_seed_rows(runs: list[Any], backdoor: list[Any], noise: list[float | str]) -> list[dict[str, Any]]:
    """Undefended backdoor per seed; the defended (noise) cell per seed: a success, or a stop status."""
    rows = []
    for run in runs:
        variant, seed = run.levels["variant"], run.seed
        if variant == "control":
            rows.append(_row(run, main_accuracy=0.96, control_target_rate=0.0))
        elif variant == "backdoor" and isinstance(backdoor[seed], str):
            rows.append(_row(run, status=str(backdoor[seed])))
        elif variant == "backdoor":
            rows.append(_row(run, attack_feasible=True, main_accuracy=0.75, backdoor_accuracy=backdoor[seed]))
        elif isinstance(noise[seed], str):
            rows.append(_row(run, status=str(noise[seed]), stopped_at_epoch=40))
        else:
            rows.append(_row(run, attack_feasible=True, main_accuracy=0.70, backdoor_accuracy=noise[seed]))
    return rows


def test_whether_the_attack_works_is_decided_on_the_reference_cell_not_on_the_seeds_a_defended_cell_shares(tmp_path: Path) -> None:
    """The 1-sample reference: 90, 95, 69, 45, 75 % (mean 74.8: below 80). A defended cell whose seeds 3-4 stopped pairs
    seeds 0-2 only (84.7 %): the attack is still the weak one, for that cell as for every other."""
    runs = _plan(tmp_path, FIVE_SEEDS)
    reference = [0.90, 0.95, 0.69, 0.45, 0.75]
    noise = _line(survival_lines(runs, _five_seed_rows(runs, reference, [0.0, 0.0, 0.0, "diverged", "diverged"]), ["plain"]), "g", "noise")
    assert [(j.word, j.working) for j in noise.judgements] == [("stopped", False)]
    assert f"undefended {_text(reference[:3])}; over the 5 seed(s) it finished {_text(reference)} < 80 %: not a test of the defense;" in noise.verdict
    other = _line(survival_lines(runs, _five_seed_rows(runs, reference, [0.1] * 5), ["plain"]), "g", "noise")
    assert [j.working for j in other.judgements] == [False] and "over the 5 seed(s) it finished" not in other.verdict


def test_a_defense_with_a_stopped_seed_works_only_if_it_works_at_every_value_that_seed_could_have_had(tmp_path: Path) -> None:
    """Intent to treat, as a bound: seed 4 stopped under the defense; its reduction could be anything in [90 - 100, 90].
    The lowest corner: reductions 90, 90, 90, 90, -10: mean 70.0, sd 44.72, half 2.7764 * 44.72 / sqrt 5 = 55.53
    -> [+14.5, +100.0] (clipped); the other corner (90 x 5) is [90, 90]: it works at both."""
    runs = _plan(tmp_path, FIVE_SEEDS)
    noise = _line(survival_lines(runs, _five_seed_rows(runs, [0.9] * 5, [0.0, 0.0, 0.0, 0.0, "diverged"]), ["plain"]), "g", "noise")
    assert _text([0.9, 0.9, 0.9, 0.9, -0.1], signed=True) == "+70.0 [+14.5, +100.0]"
    assert "plain: works (defended stopped 1/5 (1 diverged), undefended stopped 0/5; works at every value the stopped runs could " \
           "have had (lowest: +70.0 [+14.5, +100.0], n=5) (seeds finished on both: undefended 90.0 [90.0, 90.0]; over the 5 seed(s) " \
           "it finished 90.0 [90.0, 90.0] → 0.0, reduction +90.0" in noise.verdict
    # two stopped seeds of five: 90, 90, 90, -10, -10 is a corner whose interval includes 0, so the stop stands
    two = _line(survival_lines(runs, _five_seed_rows(runs, [0.9] * 5, [0.0, 0.0, 0.0, "diverged", "collapsed"]), ["plain"]), "g", "noise")
    assert _ci([0.9, 0.9, 0.9, -0.1, -0.1], points=True)[1] < 0
    assert "plain: stopped (defended stopped 2/5 (1 collapsed, 1 diverged), undefended stopped 0/5; no verdict" in two.verdict


def test_the_bound_tries_the_defenses_best_outcome_too_because_it_can_widen_the_interval_most(tmp_path: Path) -> None:
    """A reviewer's counterexample to "stopped = the defense's worst case": undefended 90, 91, 89, 90, 100; defended 70 x 4
    and seed 4 diverged. At the worst case (seed 4 at 100 %: reduction 0) the interval is 16.0 [4.9, 27.1], above 0; had
    seed 4 finished at 0 % (the defense's best case: reduction 100) it would be 36.0 [-8.4, 80.4], not above 0. A verdict
    that the stopped seed's best outcome would undo is no verdict."""
    runs = _plan(tmp_path, FIVE_SEEDS)
    reference = [0.90, 0.91, 0.89, 0.90, 1.0]
    line = _line(survival_lines(runs, _five_seed_rows(runs, reference, [0.7, 0.7, 0.7, 0.7, "diverged"]), ["plain"]), "g", "noise")
    assert _ci([0.2, 0.21, 0.19, 0.2, 0.0], points=True)[1] > 0 and _ci([0.2, 0.21, 0.19, 0.2, 1.0], points=True)[1] < 0
    assert [j.word for j in line.judgements] == ["stopped"]


def test_robust_reduction_against_every_completion_by_brute_force() -> None:
    """statistics.robust_reduction says "works" exactly when a fine grid of completions never gives an interval
    reaching 0 (the corners are where the lower bound is smallest)."""
    from securevfl.study.statistics import mean_interval, robust_reduction

    rng = np.random.default_rng(0)
    for _ in range(200):
        known = {s: float(v) for s, v in enumerate(rng.uniform(-0.2, 1.0, size=int(rng.integers(1, 5))))}
        unknown = {10 + k: (float(lo), float(lo) + 1.0) for k, lo in enumerate(rng.uniform(-1.0, 0.0, size=int(rng.integers(1, 3))))}
        works, worst = robust_reduction(known, unknown, margin=0.0)
        grid = np.linspace(0.0, 1.0, 11)
        lows = []
        for fill in np.array(np.meshgrid(*[grid] * len(unknown))).reshape(len(unknown), -1).T:
            values = list(known.values()) + [unknown[s][0] + f for s, f in zip(sorted(unknown), fill)]
            lows.append(mean_interval(values).low)
        assert works == (min(lows) > 0)
        assert worst.low == pytest.approx(min(lows))


def test_an_attack_below_the_floor_has_nothing_to_stop_even_when_seeds_stopped(tmp_path: Path) -> None:
    runs = _plan(tmp_path, FIVE_SEEDS)
    line = _line(survival_lines(runs, _five_seed_rows(runs, [0.09, 0.085, 0.095, 0.09, 0.09], [0.0, 0.0, 0.0, 0.0, "diverged"]), ["plain"]),
                 "g", "noise")
    assert [j.word for j in line.judgements] == ["nothing to stop"]
    assert "plain: nothing to stop (defended stopped 1/5 (1 diverged), undefended stopped 0/5; " in line.verdict


def test_an_attack_weak_on_the_paired_seeds_is_weak_there_even_if_strong_overall(tmp_path: Path) -> None:
    """Reference 100 % on seeds 0-2 and 55 % on 3-4 (mean 82): a defended cell whose seeds 0-2 are pending pairs 3-4 only,
    where the attack is at 55 %: that reduction is no test of the defense."""
    runs = _plan(tmp_path, FIVE_SEEDS)
    rows = _five_seed_rows(runs, [1.0, 1.0, 1.0, 0.55, 0.55], ["pending", "pending", "pending", 0.0, 0.02])
    line = _line(survival_lines(runs, rows, ["plain"]), "g", "noise")
    assert [j.working for j in line.judgements] == [False]


def test_a_reduction_shown_to_lie_within_five_points_is_no_effect_and_an_uninformative_one_is_not_shown(tmp_path: Path) -> None:
    runs = _plan(tmp_path, FIVE_SEEDS)
    reference = [0.90, 0.92, 0.91, 0.93, 0.90]
    none = _line(survival_lines(runs, _five_seed_rows(runs, reference, [0.91, 0.91, 0.90, 0.93, 0.91]), ["plain"]), "g", "noise")
    assert [j.word for j in none.judgements] == ["no effect"] and none.verdict.endswith("; the whole interval is within ±5 points)")
    wide = _line(survival_lines(runs, _five_seed_rows(runs, reference, [0.0, 0.92, 0.91, 0.93, 0.90]), ["plain"]), "g", "noise")
    assert [j.word for j in wide.judgements] == ["not shown to work"]


def test_a_defense_trained_without_an_attack_is_costed_against_the_clean_model_of_its_setting(tmp_path: Path) -> None:
    """The defense_cost grids: a defense's own main-accuracy cost, paired with the control (the honest model) of the
    same setting: 0.96, 0.97, 0.95 clean against 0.90, 0.92, 0.89 defended -> -6, -5, -6 -> -5.7 [-7.1, -4.2]."""
    study = BACKDOOR_STUDY + """[[grid]]
name = "cost"
[grid.set]
"attack.kind" = "none"
"defense" = [{ kind = "gaussian_noise", variance = 0.5 }]
"""
    runs = _plan(tmp_path, study)
    rows = [row for row in _backdoor_rows([r for r in runs if r.grid != "cost"], [0.9, 0.85, 0.88])]
    rows += [_row(run, main_accuracy=[0.90, 0.92, 0.89][run.seed]) for run in runs if run.grid == "cost"]
    line = _line(survival_lines(runs, rows, ["plain"]), "cost", "-")
    cost = list(np.array([0.90, 0.92, 0.89]) - [0.96, 0.97, 0.95])
    assert _text(cost, signed=True) == "-5.7 [-7.1, -4.2]"
    assert line.verdict == ("the defense's own cost, without an attack, against the clean model (points, paired by seed): "
                            "plain main -5.7 [-7.1, -4.2], n=3")


def test_a_clean_trainable_top_or_a_control_is_never_costed_against_itself(tmp_path: Path) -> None:
    """A reviewer's case: a clean trainable-top cell is a "defense" line (the trainable top) without an attack; the clean
    model its cost would be measured against is itself. Only a [[defense]] list trained unattacked gets a cost line."""
    runs = _plan(tmp_path, BACKDOOR_STUDY + 'clean = { "attack.kind" = "none" }\n')  # a clean variant in the trainable grid
    rows = _backdoor_rows([r for r in runs if r.levels["variant"] != "clean"], [0.9, 0.85, 0.88])
    rows += [_row(run, main_accuracy=0.9) for run in runs if run.levels["variant"] == "clean"]
    lines = survival_lines(runs, rows, ["plain"])
    for setting in ("clean", "control"):
        assert "own cost" not in _line(lines, "trainable", setting).verdict


def test_a_diverged_run_relabelled_collapsed_still_stops_alike_its_diverged_twin(tmp_path: Path) -> None:
    """A reviewer's case: both seeds diverged at epoch 6 after sitting at chance; one noisy epoch above chance+5 left the
    CKKS twin "diverged" while plaintext became "collapsed". How they stopped in training (stopped_as) is what matters."""
    runs = _plan(tmp_path, BACKDOOR_STUDY.replace('schemes = ["plain"]', 'schemes = ["plain", "ckks/receiver"]'))
    rows = _backdoor_rows(runs, [0.90, 0.85, 0.88])
    for run, row in zip(runs, rows, strict=True):
        if run.levels["variant"] == "backdoor" and run.seed == 1:
            plain = run.levels["scheme"] == "plain"
            row.update(status="collapsed" if plain else "diverged", stopped_at_epoch=6, **({"stopped_as": "diverged"} if plain else {}))
            row.pop("backdoor_accuracy")
    line = _line(survival_lines(runs, rows, ["plain", "ckks/receiver"]), "g", "backdoor")
    assert "stops alike: seed 1 diverged at epochs 6 / 6)" in line.verdict


def test_each_line_has_a_word_per_scheme_and_its_numbers_in_the_details(tmp_path: Path) -> None:
    """The survival table had verdict cells of ~1,000 characters; it now gives a word per scheme, the numbers in a
    numbered details entry the row links to."""
    from securevfl.study.report import _survival_section

    runs = _plan(tmp_path, BACKDOOR_STUDY.replace('schemes = ["plain"]', 'schemes = ["plain", "ckks/receiver"]'))
    rows = _backdoor_rows(runs, [0.90, 0.85, 0.88])
    stopped_id = next(run.run_id for run in runs if run.cell == "ckks-receiver__backdoor" and run.seed == 1)
    rows = [dict(row, status="out_of_range", backdoor_accuracy=None) if row["run_id"] == stopped_id else row for row in rows]
    lines = survival_lines(runs, rows, ["plain", "ckks/receiver"])
    assert _line(lines, "g", "backdoor").summary() == "plain: 87.7 %; ckks/receiver: stopped"
    # its undefended twin stopped on seed 1 (no defense verdict, and the word says whose stop), while the defended line itself
    # trained like plaintext on every seed (the line's own comparison, the second word)
    assert _line(lines, "g", "noise").summary() == "plain: works; ckks/receiver: no verdict (undefended stopped); vs plain: survives"
    assert _line(lines, "g", "control").summary() == "-"
    section = _survival_section(runs, rows, ["plain", "ckks/receiver"])
    number = next(i for i, line in enumerate(lines, start=1) if (line.grid, line.setting) == ("g", "backdoor"))
    row = next(text for text in section if text.startswith(f"| [{number}](#v{number}) | g |"))
    assert row.endswith("| plain: 87.7 %; ckks/receiver: stopped |") and len(row) < 400
    assert f'<a id="v{number}"></a>**{number}. g, backdoor**: ' + _line(lines, "g", "backdoor").verdict in section


def test_one_finished_reference_seed_does_not_decide_whether_the_attack_works(tmp_path: Path) -> None:
    runs = _plan(tmp_path, FIVE_SEEDS)
    rows = _five_seed_rows(runs, [0.92, "pending", "pending", "pending", "pending"], [0.0, "pending", "pending", "pending", "pending"])
    line = _line(survival_lines(runs, rows, ["plain"]), "g", "noise")
    assert [(j.word, j.working) for j in line.judgements] == [("inconclusive", None)]


# ---------------------------------------------------------------- labels read: the floor is chance, not 10 %

LABEL_STUDY = """
[study]
name = "labels"
seeds = [0, 1, 2]
schemes = ["plain"]
[study.set]
"data.name" = "digits"
"attack.kind" = "gradient_inversion"
[[grid]]
name = "g"
[grid.variants]
undefended = {}
label_dp = { defense = [{ kind = "label_dp", on = "gradient", noise_multiplier = 1.0 }] }
"""


def _label_rows(runs: list[Any], chance: float, undefended: list[float], defended: list[float]) -> list[dict[str, Any]]:
    values = {"undefended": undefended, "label_dp": defended}
    return [_row(run, attack_feasible=True, main_accuracy=0.9, chance_accuracy=chance,
                 inversion_label_accuracy=values[run.levels["variant"]][run.seed]) for run in runs]


@pytest.mark.parametrize(
    ("chance", "word"),
    [
        (0.52, "nothing to stop"),  # two classes: 55 % read is a coin toss, however far above 10 %
        (0.10, "works"),  # ten balanced classes: the same 55 % is far above chance and the defense removes it
    ],
)
def test_a_label_read_within_5_points_of_chance_has_nothing_to_stop(tmp_path: Path, chance: float, word: str) -> None:
    runs = _plan(tmp_path, LABEL_STUDY)
    rows = _label_rows(runs, chance, undefended=[0.55, 0.56, 0.54], defended=[0.10, 0.11, 0.09])
    line = _line(survival_lines(runs, rows, ["plain"]), "g", "label_dp")
    assert [j.word for j in line.judgements] == [word]
    if word == "nothing to stop":
        assert "(labels: chance 52.0 % + 5 points)" in line.verdict
        assert "against a weak attack" not in line.verdict  # the word says more
    else:
        assert "works against a weak attack" in line.verdict  # 55 % is below the 80 % bar
    # either way no test of the defense: listed apart from the verdicts against a working attack
    assert line.judgements[0].working is False


def test_the_floor_follows_chance_only_for_metrics_a_blind_guess_scores() -> None:
    from securevfl.study.verdicts import ATTACK_FLOOR, attack_floor

    class Rows:
        def __init__(self, chances: list[float | None]) -> None:
            self.rows = [{"chance_accuracy": c} for c in chances]

    assert attack_floor("inversion_label_accuracy", Rows([0.5, 0.52]))[0] == pytest.approx(0.57)  # the largest chance
    assert attack_floor("label_inference_accuracy", Rows([0.3]))[0] == pytest.approx(0.35)
    assert attack_floor("inversion_label_accuracy", Rows([0.04]))[0] == ATTACK_FLOOR  # 9 % is below the fixed floor
    assert attack_floor("inversion_label_accuracy", Rows([None]))[0] == ATTACK_FLOOR  # no run recorded a chance
    assert attack_floor("backdoor_accuracy", Rows([0.5]))[0] == ATTACK_FLOOR  # read off the model, not a label guess
    assert attack_floor("inversion_rows_recovered", Rows([0.5]))[0] == ATTACK_FLOOR  # rows, not labels


ROW_STUDY = """
[study]
name = "rows"
seeds = [0, 1, 2]
schemes = ["ckks/active"]
[[grid]]
name = "g"
[grid.set]
"attack.kind" = "row_request"
"""


def test_a_success_taken_over_part_of_the_samples_says_which_part(tmp_path: Path) -> None:
    """A row request reads only the rows that fit its slot: "100 %" of them is not 100 % of the samples, so the
    cell shows the fraction read beside it (``MetricSpec.covered_by``)."""
    runs = _plan(tmp_path, ROW_STUDY)
    coverage = [0.5, 0.52, 0.53]
    rows = [_row(run, main_accuracy=0.8, attack_feasible=True, row_request_label_accuracy=1.0, row_request_coverage=coverage[run.seed])
            for run in runs]
    line = _line(survival_lines(runs, rows, ["ckks/active"]), "g", "-")
    assert line.cells["ckks/active"] == "100.0 (of the 51.7 % of samples read) / 80.0"


def test_a_cell_whose_every_seed_stopped_says_how_many_when_and_its_defenses_are_listed_as_not_judged(tmp_path: Path) -> None:
    """Part 2's referee: a cell whose seeds all stopped showed only its first row's reason (epoch 50, hiding seed 1's epoch 3
    and the pending seed), and a defense whose undefended CKKS runs all stopped vanished from the judged-defenses section."""
    from securevfl.study.report import _survival_section

    runs = _plan(tmp_path, BACKDOOR_STUDY.replace('schemes = ["plain"]', 'schemes = ["plain", "ckks/receiver"]'))
    epochs = {0: 50, 1: 3}
    rows = []
    for run, row in zip(runs, _backdoor_rows(runs, [0.90, 0.85, 0.88]), strict=True):
        if run.grid == "g" and run.cell == "ckks-receiver__backdoor":
            row = dict(row, status="pending") if run.seed == 2 else dict(
                row, status="out_of_range", stopped_at_epoch=epochs[run.seed], reason=f"left the range at epoch {epochs[run.seed]}", backdoor_accuracy=None)
        rows.append(row)
    lines = survival_lines(runs, rows, ["plain", "ckks/receiver"])
    assert _line(lines, "g", "backdoor").cells["ckks/receiver"] == "out_of_range 2/2 at epochs 50, 3 [1 pending] (left the range at epoch 50)"
    noise = _line(lines, "g", "noise")
    assert noise.words["ckks/receiver"].startswith("no verdict (undefended stopped); vs plain: ")
    section = "\n".join(_survival_section(runs, rows, ["plain", "ckks/receiver"]))
    assert "**2 not judged against the 80 % bar: the undefended attack finished on fewer than 2 seeds" in section
    assert "| ckks/receiver | - | no verdict (undefended stopped) |" in section  # the noise line and the trainable top
