"""Every party's own checkpoints, the attempt handshake, and ``--resume`` of a run of one process per party."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from securevfl.cli import main
from securevfl.config import RunConfig, load_config
from securevfl.errors import ConfigError
from securevfl.launcher import PartyProcesses, free_port_base, last_error_line
from securevfl.loopback import write_loopback_plan
from securevfl.party_checkpoint import KEEP, PartyCheckpoints
from securevfl.protocols import FrameAuthenticationError, Identity, Message, MessageKind, Roster
from securevfl.protocols.attempt import AttemptRefusedError, agree_on_epoch, derive_session, start_attempt
from securevfl.protocols.threaded_channel import ThreadedNetwork
from securevfl.training import run_training

import numpy as np

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_plain.toml"
PARTIES = ["passive_1", "passive_2", "active"]


# ---------------------------------------------------------------------- agreement and session (pure)
def test_the_agreed_epoch_is_the_latest_every_party_with_state_can_continue_after() -> None:
    assert agree_on_epoch({"a": [0], "b": [0], "coordinator": None}) == 0
    assert agree_on_epoch({"a": [2, 3], "b": [3, 4], "coordinator": None}) == 3  # one party checkpointed epoch 4 before the crash
    assert agree_on_epoch({"coordinator": None}) == 0
    with pytest.raises(AttemptRefusedError, match=r"^the parties do not agree on the last completed epoch: a starts from the beginning; b continues after epoch 2 or 3$"):
        agree_on_epoch({"a": [0], "b": [2, 3]})
    with pytest.raises(AttemptRefusedError, match="a continues after epoch 1; b continues after epoch 3"):
        agree_on_epoch({"a": [1], "b": [3]})


def test_the_attempt_session_depends_on_every_nonce_and_not_on_their_order() -> None:
    nonces = {"active": "aa" * 16, "passive_1": "bb" * 16}
    session = derive_session("cd" * 16, nonces)
    assert len(session) == 32 and int(session, 16) >= 0
    assert session == derive_session("cd" * 16, dict(reversed(list(nonces.items()))))
    assert session != derive_session("cd" * 16, {**nonces, "passive_1": "bc" * 16})
    assert session != derive_session("ce" * 16, nonces)


# ---------------------------------------------------------------------- the handshake between threads
def _handshake(network: ThreadedNetwork, identities: dict[str, Identity], offers: dict[str, list[int] | None]) -> dict[str, object]:
    roster = Roster.of(identities.values())
    endpoints = {name: network.endpoint(identity, roster, receive_timeout=10.0) for name, identity in identities.items()}
    outcomes: dict[str, object] = {}

    def party(name: str) -> None:
        try:
            peers = [other for other in identities if other != name]
            outcomes[name] = start_attempt(endpoints[name], name, peers, network.session, offers[name])
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcomes[name] = exc

    threads = [threading.Thread(target=party, args=(name,)) for name in identities]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    outcomes["endpoints"] = endpoints
    return outcomes


def test_every_party_agrees_on_one_fresh_session_and_epoch() -> None:
    identities = {name: Identity.generate(name) for name in [*PARTIES, "coordinator"]}
    network = ThreadedNetwork()
    outcomes = _handshake(network, identities, {"passive_1": [2, 3], "passive_2": [3], "active": [2, 3], "coordinator": None})
    attempts = [outcomes[name] for name in identities]
    assert {attempt.session for attempt in attempts} == {attempts[0].session} and attempts[0].session != network.session  # type: ignore[union-attr]
    assert {attempt.epoch for attempt in attempts} == {3}  # type: ignore[union-attr]
    # a second attempt of the same plan gets another session (fresh nonces)
    again = _handshake(ThreadedNetwork(network.session), identities, {name: [0] for name in PARTIES} | {"coordinator": None})
    assert again["active"].session != attempts[0].session  # type: ignore[union-attr]


def test_parties_that_do_not_agree_on_the_epoch_all_stop_with_the_same_line() -> None:
    identities = {name: Identity.generate(name) for name in PARTIES}
    outcomes = _handshake(ThreadedNetwork(), identities, {"passive_1": [0], "passive_2": [2, 3], "active": [2, 3]})
    errors = {name: outcomes[name] for name in PARTIES}
    assert all(isinstance(error, AttemptRefusedError) for error in errors.values()), errors
    assert {str(error) for error in errors.values()} == {
        "the parties do not agree on the last completed epoch: active continues after epoch 2 or 3; "
        "passive_1 starts from the beginning; passive_2 continues after epoch 2 or 3"
    }


def test_a_frame_recorded_in_an_earlier_attempt_is_refused_in_the_next() -> None:
    identities = {name: Identity.generate(name) for name in PARTIES}
    network = ThreadedNetwork()
    recorded: list[bytes] = []
    network.taps.append(recorded.append)
    first = _handshake(network, identities, {name: [0] for name in PARTIES})
    endpoints = first["endpoints"]
    payload = np.ones((2, 3), dtype=np.float32)
    endpoints["passive_1"].send(Message(MessageKind.ACTIVATION, "passive_1", "active", 0, payload))  # type: ignore[index]
    assert endpoints["active"].receive("active", MessageKind.ACTIVATION, "passive_1").step == 0  # type: ignore[index]
    old_frame = recorded[-1]
    # the next attempt of the same plan (new processes): the recorded frame is next in line by number, but of another session
    network.taps.clear()
    second = _handshake(network, identities, {name: [0] for name in PARTIES})
    receiver = second["endpoints"]["active"]  # type: ignore[index]
    network_condition = network.condition
    with network_condition:
        network.post("active", old_frame)
    with pytest.raises(FrameAuthenticationError, match=r"session .* is not this run's"):
        receiver.receive("active", MessageKind.ACTIVATION, "passive_1")


# ---------------------------------------------------------------------- one party's checkpoints
def test_a_party_keeps_its_last_checkpoints_and_refuses_anothers(tmp_path: Path) -> None:
    config = {"train": {"epochs": 5, "lr": 0.1}}
    mine = PartyCheckpoints(tmp_path, "passive_1", "ab" * 16, config)
    for epoch in range(1, 5):
        mine.save(epoch, {"objects": {"passive": {"w": np.arange(epoch)}}})
    assert mine.epochs() == list(range(5 - KEEP, 5))
    state = mine.load(4)
    assert np.array_equal(state["objects"]["passive"]["w"], np.arange(4)) and state["epoch"] == 4
    with pytest.raises(ConfigError, match="has no checkpoint of epoch 1"):
        mine.load(1)
    with pytest.raises(ConfigError, match="is the checkpoint of 'passive_1', not of passive_2"):
        PartyCheckpoints(tmp_path, "passive_2", "ab" * 16, config).load(4)
    with pytest.raises(ConfigError, match="belongs to another plan"):
        PartyCheckpoints(tmp_path, "passive_1", "cd" * 16, config).load(4)
    with pytest.raises(ConfigError, match=r"different config \(train.lr\)"):
        PartyCheckpoints(tmp_path, "passive_1", "ab" * 16, {"train": {"epochs": 5, "lr": 0.2}}).load(4)
    mine.path(4).write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="is not a readable securevfl checkpoint"):
        mine.load(4)


# ---------------------------------------------------------------------- processes: stall, stop, resume
def _config(transport: str, **extra: str) -> RunConfig:
    return load_config(EXAMPLE, [
        "data.train_limit=480", "data.test_limit=64", "train.epochs=4", "train.batch_size=48", "train.progress=false",
        f"transport.kind={transport}", "transport.receive_timeout=8", "transport.send_timeout=8", "transport.connect_timeout=20",
        "transport.liveness_interval=1", *[f"{key}={value}" for key, value in extra.items()],
    ])


def test_a_stalled_party_stops_the_others_and_every_party_resumes_to_the_uninterrupted_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reference = run_training(_config("inprocess"))
    config = _config("grpc")
    files = write_loopback_plan(config, tmp_path / "parties", base_port=free_port_base(config.parties.passive + 2))
    parties = PartyProcesses(files)
    try:
        parties.start()
        checkpoint = parties.out_dir("active") / "checkpoint-epoch2.pt"
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert checkpoint.exists(), [last_error_line(parties.log(name)) for name in files.private]
        os.killpg(parties.processes["passive_1"].pid, signal.SIGSTOP)  # hung: its sockets stay open, it answers nothing
        stalled = time.monotonic()
        others = [name for name in files.private if name != "passive_1"]
        while any(parties.processes[name].poll() is None for name in others) and time.monotonic() - stalled < 60:
            time.sleep(0.05)
        waited = time.monotonic() - stalled
        assert all(parties.processes[name].returncode not in (None, 0) for name in others), "a party hung"
        assert waited < 8 + 5 + 15, waited  # receive deadline, the ABORT fan-out, exiting (loaded machine)
        for name in others:  # one line each, naming the party it stopped on (passive_1, or a peer waiting on passive_1)
            line = last_error_line(parties.log(name))
            assert line.startswith(f"error: {name}: ") and any(peer in line.removeprefix(f"error: {name}: {name}") for peer in ("passive_1", "active", "passive_2")), line
        assert "passive_1" in last_error_line(parties.log("active")), last_error_line(parties.log("active"))
    finally:
        parties.close()  # kills the stalled process
    # a party started afresh on a folder with checkpoints is refused: the interrupted run is never overwritten silently
    argv = ["party", "--plan", str(files.plan), "--party", "active", "--private", str(files.private["active"]), "--out", str(parties.out_dir("active"))]
    assert main(argv) == 2
    assert "holds active's checkpoints of an interrupted run" in capsys.readouterr().err
    result = run_training(config, out_dir=tmp_path, resume=True)
    assert result["history"] == reference["history"]  # plaintext: exactly the uninterrupted run
    # the active party had epoch 2; a passive writes its epoch-k checkpoint only after its evaluation, so it may lag one epoch
    assert result["resumed_after"] in ([1], [2], [3])
    assert main([*argv, "--resume"]) == 2
    assert "already holds this party's finished run" in capsys.readouterr().err


def test_a_crash_before_the_first_checkpoint_of_every_party_restarts_from_the_beginning(tmp_path: Path) -> None:
    """A fault table case: a passive wrote its epoch-1 checkpoint, the active party was still evaluating epoch 1."""
    from securevfl.party_runner import attempt_offer
    from securevfl.roles import Role

    config = {"train": {"epochs": 5}}
    ahead = PartyCheckpoints(tmp_path / "passive_1", "passive_1", "ab" * 16, config)
    ahead.save(1, {"objects": {}})
    behind = PartyCheckpoints(tmp_path / "active", "active", "ab" * 16, config)
    offers = {"passive_1": attempt_offer(Role.PASSIVE, True, ahead), "active": attempt_offer(Role.ACTIVE, True, behind), "coordinator": attempt_offer(Role.KEY_HOLDER, True, None)}
    assert offers == {"passive_1": [0, 1], "active": [0], "coordinator": None}
    assert agree_on_epoch(offers) == 0
    # further on, a party that lost its folder is refused instead of silently restarting the others
    for epoch in (2, 3):
        ahead.save(epoch, {"objects": {}})
    assert attempt_offer(Role.PASSIVE, True, ahead) == [2, 3]
    with pytest.raises(AttemptRefusedError, match="active starts from the beginning; passive_1 continues after epoch 2 or 3"):
        agree_on_epoch({"passive_1": [2, 3], "active": attempt_offer(Role.ACTIVE, True, behind)})


def test_a_resumed_coordinator_says_its_frames_count_from_the_resume_and_the_run_record_says_so(tmp_path: Path) -> None:
    """A coordinator keeps no checkpoint, so after a resume its bytes cover only the new attempt: the party's
    record, the run record's totals and the printed summary say from which epoch on (not a silent undercount)."""
    from types import SimpleNamespace

    from securevfl.cli import _summary
    from securevfl.launcher import _run_record
    from securevfl.party_runner import _PartyRunner
    from securevfl.protocols.attempt import Attempt
    from securevfl.roles import Role

    def runner(role: Role, checkpoints: PartyCheckpoints | None) -> SimpleNamespace:
        return SimpleNamespace(
            local=SimpleNamespace(name="coordinator" if role is Role.KEY_HOLDER else "active", role=role), resume=True,
            checkpoints=checkpoints, run_shape=SimpleNamespace(party_names=lambda _holder: ["active", "coordinator"]),
            key_holder_name="coordinator", channel=SimpleNamespace(session="ab" * 16), config=SimpleNamespace(train=SimpleNamespace(epochs=5)),
            attempt=Attempt("cd" * 16, 2, {"active": (2,), "coordinator": None}), resumed_after=[], traffic_from_epoch=0, progress=None,
            _restore=lambda state: None,
        )

    coordinator = runner(Role.KEY_HOLDER, None)
    _PartyRunner._start_attempt(coordinator)  # type: ignore[arg-type]
    assert (coordinator.resumed_after, coordinator.traffic_from_epoch) == ([2], 2)
    active_checkpoints = PartyCheckpoints(tmp_path / "active", "active", "ab" * 16, {"train": {"epochs": 5}})
    active_checkpoints.save(2, {"objects": {}})
    active = runner(Role.ACTIVE, active_checkpoints)
    _PartyRunner._start_attempt(active)  # type: ignore[arg-type]
    assert (active.resumed_after, active.traffic_from_epoch) == ([2], 0)  # its checkpoint carries the earlier counts

    def record(role: str, sent: int, since: int) -> dict:
        return {"role": role, "bytes_sent": {"gradient": sent}, "messages_sent": {"gradient": 1}, "traffic_from_epoch": since,
                "timing": {"epoch_seconds": [1.0, 3.0]}, "main_accuracy": 0.5, "epochs_completed": 5, "history": []}

    run = _run_record({"active": record("active", 300, 0), "coordinator": record("key_holder", 700, 2)})
    assert run["bytes_sent"] == {"gradient": 1000} and run["traffic_counted_from_epoch"] == {"coordinator": 2}
    assert "traffic_from_epoch" not in run and run["parties"]["coordinator"]["traffic_from_epoch"] == 2
    assert _summary(run).endswith("(gradient 1.0 KB; coordinator's frames counted only after epoch 2)")
    whole = _run_record({"active": record("active", 300, 0), "coordinator": record("key_holder", 700, 0)})
    assert "traffic_counted_from_epoch" not in whole and _summary(whole).endswith("(gradient 1.0 KB)")


def test_parties_started_without_a_plan_must_still_agree_on_the_run_configuration() -> None:
    """Red-team pass (2026-11-27): parties built by hand (``run_party`` on endpoints without a plan) ran a coordinator
    with flooding and the policy off beside passives configured with them on. Without a plan's digest the handshake
    compares the run configuration's (paths left out)."""
    from types import SimpleNamespace

    from securevfl.agreement import config_agreement
    from securevfl.config import validate_config
    from securevfl.party_runner import _PartyRunner
    from securevfl.roles import Role

    base = {"data": {"name": "digits"}, "protection": {"scheme": "ckks", "key_holder": "coordinator", "preset": "compute"}}
    hardened = validate_config(base)
    weakened = validate_config({**base, "protection": {**base["protection"], "flooding_bits": 0, "decryption_policy": "none"}})
    elsewhere = validate_config({**base, "data": {"name": "digits", "dir": "/somewhere/else"}})
    assert config_agreement(hardened) == config_agreement(elsewhere) != config_agreement(weakened)

    identities = {name: Identity.generate(name) for name in ("active", "coordinator")}
    network = ThreadedNetwork()
    roster = Roster.of(identities.values())
    outcomes: dict[str, object] = {}

    def party(name: str, config: object) -> None:
        runner = SimpleNamespace(
            local=SimpleNamespace(name=name, role=Role.ACTIVE if name == "active" else Role.KEY_HOLDER), resume=False, checkpoints=None,
            run_shape=SimpleNamespace(party_names=lambda _holder: ["active", "coordinator"]), key_holder_name="coordinator",
            channel=network.endpoint(identities[name], roster, receive_timeout=10.0), config=config, attempt=None,
        )
        try:
            outcomes[name] = _PartyRunner._start_attempt(runner)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - inspected below
            outcomes[name] = exc

    threads = [threading.Thread(target=party, args=args) for args in (("active", hardened), ("coordinator", weakened))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(isinstance(outcome, AttemptRefusedError) and "runs another plan than" in str(outcome) for outcome in outcomes.values()), outcomes
