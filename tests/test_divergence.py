"""Diverged and collapsed, defined once and applied to every scheme (issue 14, item 9)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from helpers import random_dataset
from securevfl.config import load_config, validate_config
from securevfl.divergence import chance_accuracy, check_loss, loss_bound, outcome
from securevfl.errors import TrainingDiverged
from securevfl.study.status import RunStatus
from securevfl.training import run_training

DATA = random_dataset(n_train=48, n_test=20, n_features=8, num_classes=4, seed=1)


def test_the_rules_by_hand() -> None:
    assert loss_bound(None, 10) == pytest.approx(10 * math.log(10))
    assert loss_bound(3.0, 10) == 3.0
    check_loss(2.3, 23.0, 1)
    for bad in (23.1, float("nan"), float("inf")):
        with pytest.raises(TrainingDiverged, match="training diverged at epoch 4"):
            check_loss(bad, 23.0, 4)
    labels = np.array([0, 0, 0, 1, 2])
    assert chance_accuracy(labels) == pytest.approx(0.6)
    at_chance = [{"main_accuracy": a} for a in (0.9, 0.62, 0.2, 0.6)]  # below chance is no better
    assert outcome(at_chance, labels, 3)["outcome"] == "collapsed"
    assert outcome(at_chance, labels, 4)["outcome"] == "ok"  # the first epoch was far from chance
    assert outcome(at_chance[:2], labels, 3)["outcome"] == "ok"  # too few epochs to tell


def _run(protection: dict, **train: object) -> dict:
    raw = {
        "parties": {"passive": 2, "split": "even"}, "model": {"top": "sum", "bottom_hidden": [4]},
        "train": {"epochs": 3, "batch_size": 8, "progress": False, **train}, "protection": protection,
    }
    return run_training(validate_config(raw), dataset=DATA)


@pytest.mark.parametrize("protection", [{"scheme": "plain"}, {"scheme": "ckks", "key_holder": "receiver"}])
def test_a_run_above_the_loss_bound_stops_as_diverged_in_every_scheme(protection: dict) -> None:
    with pytest.raises(TrainingDiverged, match="training diverged at epoch 1: loss .* above the bound 0.01"):
        _run(protection, max_loss=0.01)


def test_a_run_at_chance_is_collapsed_and_the_study_says_so(tmp_path: Path) -> None:
    result = _run({"scheme": "plain"}, lr=1e-9, collapse_epochs=2)  # it cannot learn anything
    assert result["outcome"] == "collapsed" and "above chance" in result["outcome_reason"]
    digits = Path(__file__).resolve().parents[1] / "examples" / "digits_plain.toml"
    healthy = run_training(load_config(digits, ["train.epochs=3", "train.progress=false"]))
    assert healthy["main_accuracy"] > 0.5 and healthy["outcome"] == "ok" and healthy["outcome_reason"] == ""
    assert RunStatus("collapsed") is RunStatus.COLLAPSED and RunStatus("diverged") is RunStatus.DIVERGED
    json.dumps(result)  # the record stays JSON


def test_the_study_table_gives_diverged_and_collapsed_their_own_status(tmp_path: Path) -> None:
    from securevfl.study import load_study, plan_runs
    from securevfl.study.runner import FAILED_NAME, RESULT_NAME, run_dir
    from securevfl.study.table import collect_rows

    study = tmp_path / "study.toml"
    study.write_text('[study]\nname = "s"\nseeds = [0, 1]\n[study.set]\n"train.epochs" = 3\n[[grid]]\nname = "g"\n', encoding="utf-8")
    first, second = plan_runs(load_study(study))
    out = tmp_path / "out"
    result = _run({"scheme": "plain"}, lr=1e-9, collapse_epochs=2) | {"config": first.config}
    run_dir(out, first).mkdir(parents=True)
    (run_dir(out, first) / RESULT_NAME).write_text(json.dumps(result), encoding="utf-8")
    run_dir(out, second).mkdir(parents=True)
    failure = {"error": "training diverged at epoch 2: loss 7574 is above the bound 23", "type": "TrainingDiverged", "config": second.config}
    (run_dir(out, second) / FAILED_NAME).write_text(json.dumps(failure), encoding="utf-8")
    rows, _ = collect_rows([first, second], out)
    assert [row["status"] for row in rows] == [RunStatus.COLLAPSED, RunStatus.DIVERGED]
    assert "above chance" in rows[0]["reason"] and "diverged" in rows[1]["reason"]


def test_the_runs_log_line_says_what_the_table_says(tmp_path: Path) -> None:
    """A worker's outcome (the study's log line) carries the table's status: collapsed, diverged."""
    from securevfl.study import load_study, plan_runs
    from securevfl.study.runner import run_dir
    from securevfl.study.table import collect_rows
    from securevfl.study.worker import TrainJob, train_one

    study = tmp_path / "study.toml"
    study.write_text(
        '[study]\nname = "s"\nseeds = [0]\n[study.set]\n"train.epochs" = 3\n"train.collapse_epochs" = 2\n'
        '[[grid]]\nname = "g"\n[grid.variants]\nstuck = { "train.lr" = 1e-9 }\nbounded = { "train.max_loss" = 0.01 }\n',
        encoding="utf-8",
    )
    runs = plan_runs(load_study(study))
    out = tmp_path / "out"
    outcomes = [train_one(TrainJob(run.run_id, run.config, run.config, str(run_dir(out, run)), None)) for run in runs]
    rows, _ = collect_rows(runs, out)
    assert [o.status for o in outcomes] == [row["status"] for row in rows] == [RunStatus.COLLAPSED, RunStatus.DIVERGED]
    assert "chance" in outcomes[0].detail and "diverged" in outcomes[1].detail
    failure = json.loads((run_dir(out, runs[1]) / "failed.json").read_text())
    assert failure["stopped_at_epoch"] == 1 and failure["history"] == [] and rows[1]["stopped_at_epoch"] == 1
    # the record carries the test set's chance accuracy, so the table can tell a stopped run's epochs at chance
    assert failure["chance_accuracy"] == rows[0]["chance_accuracy"] == rows[1]["chance_accuracy"] > 0
    # and what produced it, as a finished run's result.json says (the code's commit, the versions)
    finished = json.loads((run_dir(out, runs[0]) / "result.json").read_text())
    assert set(failure["provenance"]) == set(finished["provenance"]) and failure["provenance"]["git_commit"] == finished["provenance"]["git_commit"]


def test_a_ckks_range_stop_is_its_own_status_and_keeps_the_history_before_it(tmp_path: Path) -> None:
    """A message outside CKKS's precise range stops the run as ``out_of_range`` (not ``diverged``);
    a stopped run's record keeps its epochs before the stop, and the table its peak before the stop."""
    import dataclasses

    from securevfl.errors import OutOfRange
    from securevfl.study.status import STOPPED, failure_status
    from securevfl.study.table import _stop_columns

    loud = dataclasses.replace(DATA, x_train=DATA.x_train * 1e9, x_test=DATA.x_test * 1e9)  # activations >> 2^18, the receiver bound
    raw = {
        "parties": {"passive": 2, "split": "even"}, "model": {"top": "sum", "bottom_hidden": [4]},
        "train": {"epochs": 2, "batch_size": 8, "progress": False}, "protection": {"scheme": "ckks", "key_holder": "receiver"},
    }
    with pytest.raises(OutOfRange, match="left CKKS's precise range at epoch 1, step 0") as stop:
        run_training(validate_config(raw), dataset=loud)
    assert stop.value.stopped_at_epoch == 1 and stop.value.history == []
    assert isinstance(stop.value, TrainingDiverged)  # every caller that stops on divergence stops on it too
    assert failure_status("OutOfRange") is RunStatus.OUT_OF_RANGE and RunStatus.OUT_OF_RANGE in STOPPED
    assert failure_status("TrainingDiverged") is RunStatus.DIVERGED and failure_status("DataError") is RunStatus.FAILED
    history = [{"epoch": 1, "main_accuracy": 0.5, "backdoor_accuracy": 0.2}, {"epoch": 2, "main_accuracy": 0.4, "backdoor_accuracy": 0.9}]
    columns = _stop_columns({"stopped_at_epoch": 3, "history": history})
    assert columns["stopped_at_epoch"] == 3 and (columns["backdoor_peak"], columns["backdoor_peak_epoch"]) == (0.9, 2)
    assert _stop_columns({"error": "an old record"}) == {}


def test_a_privacy_attack_on_a_model_at_chance_keeps_its_numbers(tmp_path: Path) -> None:
    """The collapse rule is for numbers read off the model (a backdoor, a run without an attack): an attack that
    reads private data keeps its numbers on a model at chance (``ok``, the reason says the model is at chance),
    in the table and in the worker's log line alike."""
    from securevfl.attacks import ATTACKS
    from securevfl.study import load_study, plan_runs
    from securevfl.study.runner import run_dir
    from securevfl.study.table import collect_rows
    from securevfl.study.worker import TrainJob, train_one

    study = tmp_path / "study.toml"
    study.write_text(
        '[study]\nname = "s"\nseeds = [0]\n[study.set]\n"train.epochs" = 2\n"train.collapse_epochs" = 2\n"train.lr" = 1e-9\n'
        '[[grid]]\nname = "g"\n[grid.variants]\nclean = {}\ninversion = { "attack.kind" = "gradient_inversion" }\n'
        'backdoor = { "attack.kind" = "gradient_replacement" }\n',
        encoding="utf-8",
    )
    runs = plan_runs(load_study(study))
    out = tmp_path / "out"
    outcomes = {run.cell.removeprefix("plain__"): train_one(TrainJob(run.run_id, run.config, run.config, str(run_dir(out, run)), None)) for run in runs}
    rows = {row["cell"].removeprefix("plain__"): row for row in collect_rows(runs, out)[0]}
    assert {cell: row["status"] for cell, row in rows.items()} == {
        "clean": RunStatus.COLLAPSED, "inversion": RunStatus.OK, "backdoor": RunStatus.COLLAPSED}
    assert {cell: outcome.status for cell, outcome in outcomes.items()} == {cell: row["status"] for cell, row in rows.items()}
    inversion = rows["inversion"]
    assert inversion["main_accuracy"] <= inversion["chance_accuracy"] + 0.05  # the model did sit at chance
    assert inversion["reason"].startswith("model at chance") and "numbers stand" in inversion["reason"]
    assert inversion["inversion_label_accuracy"] is not None  # the attack's number is in the table
    # the note keeps training's own collapse reason, so the row round-trips through a committed table
    import shutil

    from securevfl.study import run_and_report
    from securevfl.study.reuse import reuse_finished_runs

    run_and_report(study, out, train=False, show_progress=False, log=lambda _: None)
    snapshot = tmp_path / "committed"
    snapshot.mkdir()
    shutil.copy(out / "study_runs.json", snapshot / "study_runs.json")
    assert "above chance" in inversion["reason"]  # training flagged it (2 epochs at chance), not the table's rule
    assert reuse_finished_runs(runs, tmp_path / "again", [snapshot], log=lambda _: None) == len(runs)
    again = {row["cell"].removeprefix("plain__"): row for row in collect_rows(runs, tmp_path / "again")[0]}
    assert [(row["status"], row["reason"]) for row in again.values()] == [(row["status"], row["reason"]) for row in rows.values()]
    # the registry says which attacks read private data: every one with a success metric but the backdoor
    readers = {kind for kind, cls in ATTACKS.items() if cls.reads_private_data}
    assert "gradient_replacement" not in readers and "backdoor_control" not in readers
    assert {"gradient_inversion", "activation_inversion", "key_recovery", "active_key_recovery", "row_request",
            "gradient_steering", "label_inference", "flooding_key_recovery"} <= readers


def test_an_infeasible_privacy_attack_on_a_model_at_chance_is_collapsed() -> None:
    """An infeasible attack read nothing: its run's only number is the main accuracy, read off the model."""
    from securevfl.study.status import collapse_reason, private_read_note

    result = {"config": {"attack": {"kind": "gradient_inversion"}}, "main_accuracy": 0.11, "chance_accuracy": 0.1135}
    assert collapse_reason(result) == "" and private_read_note(result).startswith("model at chance (last-epoch main accuracy 11.0 %")
    infeasible = result | {"attack_feasible": False}
    assert collapse_reason(infeasible).startswith("last-epoch main accuracy 11.0 %") and private_read_note(infeasible) == ""
    backdoor = result | {"config": {"attack": {"kind": "gradient_replacement"}}}
    assert collapse_reason(backdoor) and private_read_note(backdoor) == ""
