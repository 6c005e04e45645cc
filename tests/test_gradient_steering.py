"""The gradient steering attack (registry kind ``gradient_steering``): a malicious active party reads one passive's
feature Gram rows from the activation sums, unless the coordinator's gradient agreement stops the run first."""

from __future__ import annotations

import numpy as np
import pytest

from securevfl.errors import DeviationDetected
from securevfl.protocols.errors import ProtocolError
from securevfl.study.status import STOPPED, RunStatus, failure_status
from securevfl.training import run_training, stopped_cleanly
from tests.helpers import config, random_dataset

DATA = random_dataset(64, 16, 8, 3, seed=11)


def _steering(masks: str, scheme: str = "ckks", key_holder: str = "coordinator", hidden: list[int] | None = None) -> dict:
    cfg = config(
        parties={"passive": 2, "split": "even"},
        model={"top": "sum", "bottom_hidden": hidden or []},
        train={"lr": 0.5, "batch_size": 8, "seed": 1, "epochs": 3, "progress": False},
        protection={"scheme": scheme, "key_holder": key_holder, "activation_masks": masks} if scheme == "ckks" else {"scheme": scheme},
        attack={"kind": "gradient_steering", "start_step": 8},  # epoch 1 trains honestly; epoch 2 sweeps, then the probe
    )
    return run_training(cfg, dataset=DATA)


def test_without_the_masks_the_active_party_reads_the_target_passives_feature_gram_rows() -> None:
    """One-layer bottoms: the sums' change after the probe is -lr * probe * (<x_j, x_i> + 1) over every sample i."""
    result = _steering("none")
    first, second, third = result["history"]
    assert first["steering_gram_rows"] == 0.0 and second["steering_gram_rows"] == 0.0  # no probe has completed yet
    assert third["steering_gram_rows"] == 1.0 and third["steering_gram_correlation"] > 0.98
    assert result["attack"]["probes_sent"] == 6 and result["attack"]["probes_read"] == 3  # the last probe's sweep never ends


def test_under_the_active_key_holder_it_needs_no_steering_and_still_works() -> None:
    """ckks/active has no masks and no agreement (the active party holds the key): the steered rows are read."""
    assert _steering("auto", key_holder="active")["history"][-1]["steering_gram_rows"] == 1.0


def test_with_pairwise_masks_the_coordinator_stops_the_run_at_the_first_request_after_the_probe() -> None:
    with pytest.raises(DeviationDetected) as caught:
        _steering("pairwise")
    stop = caught.value
    assert stop.stopped_at_epoch == 2 and [entry["steering_gram_rows"] for entry in stop.history or []] == [0.0]
    assert "refused its decrypt_request (step 16)" in str(stop) and "gradient steering" in str(stop)
    assert failure_status(type(stop).__name__) is RunStatus.DETECTED and RunStatus.DETECTED in STOPPED
    assert stop.attack_at_stop == {"steering_gram_rows": 0.0}  # caught before any probe's sweep completed: nothing read


def test_a_study_records_what_the_caught_attacker_had_read_and_its_table_carries_it(tmp_path) -> None:
    """The worker keeps the attacker's success at the stop in ``failed.json`` and the table shows it as
    ``<metric>_at_stop`` (what a survival verdict counts for that seed); the restore from a table keeps it."""
    import json
    import shutil

    from securevfl.study import load_study, plan_runs, run_and_report
    from securevfl.study.reuse import reuse_finished_runs
    from securevfl.study.runner import FAILED_NAME, run_dir
    from securevfl.study.table import collect_rows

    study = tmp_path / "study.toml"
    study.write_text(
        '[study]\nname = "s"\nseeds = [0]\nschemes = ["ckks/coordinator"]\n[study.set]\n"data.name" = "digits"\n'
        '"data.train_limit" = 64\n"data.test_limit" = 16\n"train.batch_size" = 8\n"train.lr" = 0.5\n"train.epochs" = 3\n'
        '"model.bottom_hidden" = []\n"protection.activation_masks" = "pairwise"\n"attack.kind" = "gradient_steering"\n'
        '"attack.start_step" = 8\n[[grid]]\nname = "g"\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    run_and_report(study, out, show_progress=False, log=lambda _: None)
    runs = plan_runs(load_study(study))
    failure = json.loads((run_dir(out, runs[0]) / FAILED_NAME).read_text())
    assert failure["type"] == "DeviationDetected" and failure["attack_at_stop"] == {"steering_gram_rows": 0.0}
    row = collect_rows(runs, out)[0][0]
    assert row["status"] == RunStatus.DETECTED and row["steering_gram_rows_at_stop"] == 0.0
    snapshot = tmp_path / "committed"
    snapshot.mkdir()
    shutil.copy(out / "study_runs.json", snapshot / "study_runs.json")
    assert reuse_finished_runs(runs, tmp_path / "again", [snapshot], log=lambda _: None) == 1
    assert collect_rows(runs, tmp_path / "again")[0][0]["steering_gram_rows_at_stop"] == 0.0


def test_where_the_active_party_receives_each_passives_activations_it_is_infeasible() -> None:
    result = _steering("none", scheme="plain")
    assert result["attack_feasible"] is False and "no sum to separate" in result["attack_infeasible_reason"]


def test_only_a_refusal_in_a_run_with_a_deviating_attack_is_a_detected_deviation() -> None:
    """A refusal by an honest party's check stops a run with a deviating attack as ``detected``; any other protocol
    error, and a refusal in a run without such an attack (none, observers, backdoor_control), stays the bug it is."""
    from types import SimpleNamespace

    from securevfl.attacks.registry import attack_class
    from securevfl.protocols.errors import RequestRefusedError

    refusal = SimpleNamespace(sender="coordinator", step=3, meta={"reason": "the passives received different gradients", "request": "decrypt_request"})
    with pytest.raises(DeviationDetected, match="refused its decrypt_request"), stopped_cleanly(1, "training", lambda: 3, attacked=True):
        raise RequestRefusedError("active", "decrypt_reply", refusal)
    with pytest.raises(RequestRefusedError), stopped_cleanly(1, "training", lambda: 3, attacked=False):
        raise RequestRefusedError("active", "decrypt_reply", refusal)
    with pytest.raises(ProtocolError, match="a peer broke the protocol"), stopped_cleanly(1, "training", lambda: 3, attacked=True):
        raise ProtocolError("a peer broke the protocol")
    assert attack_class("gradient_steering").may_be_refused() and attack_class("key_recovery").may_be_refused()
    assert not any(attack_class(kind).may_be_refused() for kind in ("backdoor_control", "gradient_inversion", "label_inference"))


def test_under_the_trainable_top_it_is_infeasible() -> None:
    """The trainable top's first layer mixes the passives' activations with the active party's own weights: the read
    columns would not be one output's sums (red-team review: feasible there before, 0 rows read at correlation 0.12)."""
    from securevfl.attacks.base import AttackSetting
    from securevfl.attacks.gradient_steering import GradientSteering
    from securevfl.roles import Capability

    granted = frozenset({Capability.COMBINED_ACTIVATIONS})
    def setting(top: str) -> AttackSetting:
        return AttackSetting(dataset=DATA, party="active", columns=None, bottom_output=4, seed=0, top=top, passives=("passive_1", "passive_2"))

    assert GradientSteering.infeasibility(granted, setting("sum")) is None
    assert "written for the sum top" in str(GradientSteering.infeasibility(granted, setting("trainable")))


def test_the_gram_row_score_is_the_correlation_with_the_inner_products() -> None:
    from securevfl.attacks.gradient_steering import gram_row_correlation

    x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    truth = np.array([2.0, 1.0, 2.0])  # <x_0, x_i> + 1 by hand
    assert gram_row_correlation(-3 * truth + 5, x, 0) == pytest.approx(-1.0)
    assert gram_row_correlation(0.5 * truth, x, 0) == pytest.approx(1.0)


def test_with_uneven_one_layer_bottoms_the_masks_still_stop_it() -> None:
    """1 and 40 features at batch 8 need gradient strides of 16 and 64 slots: before the shared stride
    (SharedGradientPlan) the coordinator's check was off there and steering read the rows past the masks."""
    cfg = config(
        parties={"passive": 2, "split": "columns", "columns": [[0], list(range(1, 41))]},
        model={"top": "sum", "bottom_hidden": []},
        train={"lr": 0.5, "batch_size": 8, "seed": 1, "epochs": 3, "progress": False},
        protection={"scheme": "ckks", "key_holder": "coordinator", "activation_masks": "pairwise"},
        attack={"kind": "gradient_steering", "start_step": 8, "target": "passive_2"},
    )
    with pytest.raises(DeviationDetected, match="the passives received different gradients"):
        run_training(cfg, dataset=random_dataset(64, 16, 41, 3, seed=5))


def test_only_running_totals_count_as_the_caught_attackers_final_success() -> None:
    """A per-epoch fraction taken mid-epoch counts only that epoch's part (a key recovery that read every label in
    epoch 1 reports 0 early in epoch 2), so only cumulative metrics are recorded at the stop; the rest stay unknown."""
    from types import SimpleNamespace

    from securevfl.attacks import ATTACKS
    from securevfl.attacks.base import Attack

    def at_stop(kind: str, metrics: dict[str, float]) -> dict[str, float]:  # one process and a party process ask the same
        attack = SimpleNamespace(reads_private_data=ATTACKS[kind].reads_private_data, metrics=ATTACKS[kind].metrics,
                                 epoch_metrics=lambda truth: metrics)
        return Attack.read_at_stop(attack, object())

    assert at_stop("key_recovery", {"key_recovered": 1.0, "key_recovery_label_accuracy": 0.0}) == {}
    assert at_stop("gradient_steering", {"steering_gram_rows": 0.5, "steering_gram_correlation": 0.7}) == {
        "steering_gram_rows": 0.5, "steering_gram_correlation": 0.7}
    assert at_stop("gradient_replacement", {"backdoor_accuracy": 1.0}) == {}  # read off the model: never
    cumulative = {spec.name for cls in ATTACKS.values() for spec in cls.metrics if spec.cumulative}
    assert cumulative == {"steering_gram_rows", "steering_gram_correlation"}
