"""``transport.kind = "grpc"``: one OS process per party on 127.0.0.1 gives the in-process history, and a
killed party stops every other process in one line instead of a hang."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from securevfl.config import RunConfig, load_config
from securevfl.launcher import LaunchError, PartyProcesses, free_port_base, last_error_line
from securevfl.loopback import write_loopback_plan
from securevfl.training import run_training

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_ckks.toml"
SCHEMES = {
    "plain": ["protection.scheme=plain"],
    "ckks/coordinator": ["protection.scheme=ckks", "protection.key_holder=coordinator", "protection.flooding_bits=0", "protection.preset=compute"],
}


def _config(*overrides: str, transport: str = "inprocess") -> RunConfig:
    return load_config(EXAMPLE, [
        "data.train_limit=96", "data.test_limit=32", "train.epochs=1", "train.batch_size=48", "train.progress=false",
        "train.checkpoint=false", f"transport.kind={transport}", "transport.receive_timeout=30", "transport.connect_timeout=20",
        *overrides,
    ])


@pytest.mark.parametrize("label", list(SCHEMES))
def test_one_process_per_party_gives_the_in_process_history(label: str, tmp_path: Path) -> None:
    reference = run_training(_config(*SCHEMES[label]))
    result = run_training(_config(*SCHEMES[label], transport="grpc"), out_dir=tmp_path / "run", overwrite=False)
    assert (tmp_path / "run" / "result.json").is_file() and result["transport"] == "grpc"
    assert [entry["epoch"] for entry in result["history"]] == [entry["epoch"] for entry in reference["history"]] == [1]
    for mine, theirs in zip(result["history"], reference["history"], strict=True):
        assert set(mine) == set(theirs)
        for key, value in theirs.items():
            if label == "plain" or key in ("epoch", "main_accuracy"):
                assert mine[key] == value, (key, mine[key], value)
            else:
                assert mine[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key
    sent = dict(result["messages_sent"])
    assert sent.pop("done") > 0 and sent.pop("hello") == sent.pop("ready") > 0  # the run's end, the attempt handshake
    assert sent == reference["messages_sent"]  # every frame of the in-process run crossed the network, nothing else
    assert result["main_accuracy"] == reference["main_accuracy"]
    # the same record as one process writes (plus what only a network run has), with the same audit and derivations
    assert set(reference) - set(result) == set(), set(reference) - set(result)
    assert set(result) - set(reference) == {"transport", "parties", "wire_bytes", "resumed_after", "session"}
    for field in ("visibility", "derivable", "promises", "privacy", "outcome", "chance_accuracy", "dataset"):
        assert result[field] == reference[field], field
    # what crossed the sockets, next to what the run accounts, as each party's end of the run began
    for name, party in result["parties"].items():
        wire = party["wire_bytes"]
        assert 0 < wire["accounted_sent"] <= wire["grpc_sent"], name
        if wire["tcp_sent"] is not None:
            assert wire["tcp_sent"] > wire["grpc_sent"], name  # gRPC, HTTP/2 and TLS framing on top
    if label == "plain":  # no key holder serving after its snapshot: everything but the closing DONE frames
        assert result["wire_bytes"]["accounted_sent"] == sum(result["bytes_sent"].values()) - result["bytes_sent"]["done"]


def test_a_killed_passive_stops_every_other_process_in_one_line(tmp_path: Path) -> None:
    config = _config("protection.scheme=plain", "train.epochs=100000", "transport.receive_timeout=20", transport="grpc")
    files = write_loopback_plan(config, tmp_path / "parties", base_port=free_port_base(config.parties.passive + 2))
    parties = PartyProcesses(files)
    try:
        parties.start()
        time.sleep(8.0)  # start-up (imports, TLS connections to every peer) then training (400 epochs took ~7 s here: far more, so a fast machine is still training)
        assert all(process.poll() is None for process in parties.processes.values()), "a party stopped before the kill"
        parties.processes["passive_1"].kill()
        started = time.monotonic()
        with pytest.raises(LaunchError, match=r"^party passive_1 failed \(killed by signal 9\)"):
            parties.wait(60.0, grace=45.0)
        assert time.monotonic() - started < 45.0
        assert parties.killed == set(), "a party had to be killed: it did not stop by itself"
        for name, process in parties.processes.items():
            if name != "passive_1":
                assert process.returncode not in (None, 0), name
                line = last_error_line(parties.log(name))
                # one line naming passive_1: lost by the active party, named in the ABORT the active party sent passive_2
                assert line.startswith(f"error: {name}: ") and "passive_1" in line, (name, line)
    finally:
        parties.close()
    assert all(process.poll() is not None for process in parties.processes.values())


@pytest.mark.parametrize(
    ("ephemeral", "expected"),
    [((32_768, 60_999), (10_000, 32_763)), ((50_000, 60_000), (10_000, 49_995)), ((1_024, 40_000), (40_001, 65_530)), ((1_024, 65_535), (10_000, 65_530))],
)
def test_loopback_ports_are_drawn_outside_the_kernels_ephemeral_range(ephemeral: tuple[int, int], expected: tuple[int, int]) -> None:
    """An outgoing connection may take any ephemeral port between our check and a party's bind; ports below
    (or above) that range cannot be taken that way. Only a system whose range leaves no room gets the whole range."""
    from securevfl.launcher import _ports_outside_the_ephemeral_range

    assert _ports_outside_the_ephemeral_range(5, ephemeral) == expected
    low, high = _ports_outside_the_ephemeral_range(5)
    base = free_port_base(5)
    assert low <= base <= high


def test_a_stop_that_is_an_outcome_is_the_in_process_runs_error_over_grpc(tmp_path: Path) -> None:
    """A gRPC run that diverges raises ``TrainingDiverged`` with the epochs before the stop, as in-process (a party
    records its stop in ``stopped.json``; the launcher turns it into the run's error), not a failed launch."""
    from securevfl.errors import TrainingDiverged

    overrides = ("protection.scheme=plain", "train.epochs=2", "train.max_loss=0.01")
    with pytest.raises(TrainingDiverged, match="training diverged at epoch 1") as in_process:
        run_training(_config(*overrides))
    with pytest.raises(TrainingDiverged, match="active: training diverged at epoch 1") as over_grpc:
        run_training(_config(*overrides, transport="grpc"), out_dir=tmp_path / "run")
    assert type(over_grpc.value) is TrainingDiverged and isinstance(over_grpc.value.__cause__, LaunchError)
    assert over_grpc.value.stopped_at_epoch == in_process.value.stopped_at_epoch == 1
    assert over_grpc.value.history == in_process.value.history == []
    assert over_grpc.value.chance_accuracy == in_process.value.chance_accuracy is not None


def test_a_stopped_attacked_run_keeps_the_attacks_metrics_of_the_epochs_before_the_stop_over_grpc(tmp_path: Path) -> None:
    """A backdoor that makes training diverge in epoch 2: its epoch 1 carries the backdoor accuracy the experimenter
    scores from the active party's predictions, over gRPC as in-process (the stop record holds the raw predictions,
    the launcher scores them as a finished run's). Plaintext, so the two histories are equal."""
    from securevfl.errors import TrainingDiverged

    overrides = ("protection.scheme=plain", "train.epochs=3", "attack.kind=gradient_replacement", "attack.gamma=30",
                 "attack.poison_train=20", "attack.poison_test=10")
    with pytest.raises(TrainingDiverged, match="training diverged at epoch 2") as in_process:
        run_training(_config(*overrides))
    with pytest.raises(TrainingDiverged, match="active: training diverged at epoch 2") as over_grpc:
        run_training(_config(*overrides, transport="grpc"), out_dir=tmp_path / "run")
    assert in_process.value.history and "backdoor_accuracy" in in_process.value.history[0]  # the reference has it to compare
    assert over_grpc.value.history == in_process.value.history
    assert over_grpc.value.stopped_at_epoch == in_process.value.stopped_at_epoch == 2


def test_a_refused_deviation_is_detected_over_grpc_too(tmp_path: Path) -> None:
    """Gradient steering against the pairwise masks: the coordinator refuses the active party's request in a gRPC run
    as in-process, and the run stops as ``DeviationDetected`` (a study's ``detected``), not as a failed launch."""
    from securevfl.errors import DeviationDetected

    overrides = (*SCHEMES["ckks/coordinator"], "protection.activation_masks=pairwise", "model.bottom_hidden=[]", "train.epochs=3",
                 "train.batch_size=16", "data.train_limit=64", "attack.kind=gradient_steering", "attack.start_step=4")
    with pytest.raises(DeviationDetected, match="refused its decrypt_request") as in_process:
        run_training(_config(*overrides))
    with pytest.raises(DeviationDetected, match="a party's protocol check stopped the run at epoch 2, step") as over_grpc:
        run_training(_config(*overrides, transport="grpc"), out_dir=tmp_path / "run")
    assert "the passives received different gradients" in str(over_grpc.value)
    where = re.search(r"stopped the run (at epoch \d+, step \d+(?: \(\w+\))?)", str(in_process.value))
    assert where is not None and f"stopped the run {where.group(1)}:" in str(over_grpc.value)  # the same place, stage included
    assert over_grpc.value.stopped_at_epoch == in_process.value.stopped_at_epoch == 2
    assert [entry["epoch"] for entry in over_grpc.value.history or []] == [1]


def test_the_launcher_reads_each_partys_stop_record_by_its_folder_and_checks_it(tmp_path: Path) -> None:
    """A passive's range stop takes its epochs from the active party's record (which stopped on the passive's ABORT);
    a record whose fields are not what a party writes is no record; a refusal in a run whose attack is not refusable
    (or without an attack) stays the failed launch."""
    from securevfl.errors import OutOfRange
    from securevfl.launcher import training_stop
    from securevfl.run_files import STOP_NAME

    epochs = [{"epoch": 1, "main_accuracy": 0.5, "loss": 1.0}, {"epoch": 2, "main_accuracy": 0.6, "loss": 0.9}]
    records = {
        "active": {"type": "PeerAbortedError", "error": "passive_1 aborted", "epoch": 3, "step": 40, "history": epochs, "chance_accuracy": 0.25},
        "passive_1": {"type": "OutOfRange", "error": "a message left CKKS's precise range at epoch 3, step 40: ...", "epoch": 3, "step": 40, "history": []},
        "passive_2": {"type": "OutOfRange", "error": "forged", "epoch": "two", "step": 0, "history": []},
    }
    for party, record in records.items():
        (tmp_path / party).mkdir()
        (tmp_path / party / STOP_NAME).write_text(json.dumps(record), encoding="utf-8")
    order = ["active", "passive_2", "passive_1"]  # the malformed record would be read before the real one
    parties = SimpleNamespace(processes=dict.fromkeys(order), out_dir=lambda party: tmp_path / party, active_name=lambda: "active")
    stop = training_stop(parties, _config(), lambda: None)
    assert type(stop) is OutOfRange and str(stop).startswith("passive_1: a message left CKKS's precise range at epoch 3")
    assert stop.history == epochs and stop.stopped_at_epoch == 3 and stop.chance_accuracy == 0.25

    # with an attack, the epochs before the stop are scored as a finished run's: the experimenter's metrics of the active
    # party's raw split predictions and the attacker's own (here a passive's), epoch by epoch
    class Plan:
        eval_splits = ("triggered",)

        @staticmethod
        def evaluate(predictions: dict) -> dict:
            return {"backdoor_accuracy": float((predictions["triggered"] == 0).mean())}

    scored = _config("protection.scheme=plain", "attack.kind=gradient_replacement", "attack.poison_train=20", "attack.poison_test=10")
    predictions = [{"triggered": [0, 1, 1, 1]}, {"triggered": [0, 0, 0, 1]}]
    (tmp_path / "active" / STOP_NAME).write_text(json.dumps(records["active"] | {"eval_predictions": predictions}), encoding="utf-8")
    (tmp_path / "passive_2" / STOP_NAME).write_text(json.dumps({**records["passive_1"], "type": "PeerAbortedError", "attack_history": [{"own": 0.1}, {"own": 0.2}]}), encoding="utf-8")
    stop = training_stop(parties, scored, lambda: SimpleNamespace(plan=Plan()))
    assert [(entry["backdoor_accuracy"], entry["own"]) for entry in stop.history] == [(0.25, 0.1), (0.75, 0.2)]
    assert [set(entry) for entry in epochs] == [{"epoch", "main_accuracy", "loss"}] * 2  # the record itself is not changed
    (tmp_path / "active" / STOP_NAME).write_text(json.dumps(records["active"] | {"eval_predictions": predictions[:1]}), encoding="utf-8")
    assert training_stop(parties, scored, lambda: SimpleNamespace(plan=Plan())) is None  # an epoch without its predictions: unscorable, the launch error stays
    (tmp_path / "active" / STOP_NAME).write_text(json.dumps(records["active"] | {"eval_predictions": [{"other": [0]}] * 2}), encoding="utf-8")
    assert training_stop(parties, scored, lambda: SimpleNamespace(plan=Plan())) is None  # a split the plan does not have: the same
    (tmp_path / "active" / STOP_NAME).write_text(json.dumps(records["active"] | {"eval_predictions": [{"triggered": ["zero"]}]}), encoding="utf-8")
    assert training_stop(parties, scored, lambda: SimpleNamespace(plan=Plan())).history == []  # a malformed record is no record: no epochs
    (tmp_path / "active" / STOP_NAME).write_text(json.dumps(records["active"]), encoding="utf-8")
    (tmp_path / "passive_2" / STOP_NAME).write_text(json.dumps(records["passive_2"]), encoding="utf-8")

    (tmp_path / "passive_1" / STOP_NAME).write_text(json.dumps(records["passive_1"] | {"type": "RequestRefusedError"}), encoding="utf-8")
    assert training_stop(parties, _config(), lambda: None) is None  # no attack: a refusal is a bug, the launch error stays
    # a refusal in a run whose attack may be refused: detected, with what the caught attacker had read at the stop
    class Refusable:
        @staticmethod
        def may_be_refused() -> bool:
            return True

    caught = _config("protection.scheme=plain", "attack.kind=gradient_steering")
    (tmp_path / "passive_2" / STOP_NAME).write_text(json.dumps({**records["passive_1"], "type": "PeerAbortedError", "attack_at_stop": {"steering_gram_rows": 0.25}}), encoding="utf-8")
    stop = training_stop(parties, caught, lambda: SimpleNamespace(attack=Refusable(), plan=SimpleNamespace(eval_splits={})))
    assert type(stop).__name__ == "DeviationDetected" and stop.attack_at_stop == {"steering_gram_rows": 0.25}
    assert stop.history == epochs and stop.stopped_at_epoch == 3
