"""One party per thread, each built alone from its own data, gives the in-process run's history.

Every scheme: plaintext exactly, CKKS within its noise (flooding off so that only encryption
noise separates the runs). And the objects each thread built hold only their own party's data
and secrets.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from helpers import config, random_dataset
from party_threads import ThreadedRun, run_in_threads
from securevfl.crypto import SecretKeyring
from securevfl.errors import TrainingDiverged
from securevfl.party_runner import PartyEndpoint
from securevfl.protocols import ProtocolError
from securevfl.protocols.threaded_channel import PeerAbortedError
from securevfl.training import run_training

SCHEMES = {
    "plain": {"scheme": "plain"},
    "ckks/receiver": {"scheme": "ckks", "key_holder": "receiver"},
    "ckks/active": {"scheme": "ckks", "key_holder": "active", "flooding_bits": 0},
    "ckks/coordinator": {"scheme": "ckks", "key_holder": "coordinator", "flooding_bits": 0},
}
DATA = random_dataset(40, 12, 6, 3, seed=0)


def _config(protection: dict, **model: object):  # type: ignore[no-untyped-def]
    return config(
        parties={"passive": 2, "split": "even", **({"active_block": True} if model.pop("active_block", False) else {})},
        model={"top": "sum", "bottom_hidden": [4], **model},
        train={"batch_size": 8, "epochs": 2, "seed": 5, "lr": 0.1, "progress": False, "checkpoint": False, "eval_batch_size": 8},
        protection=protection,
    )


def _check_same_history(threaded: list[dict], reference: list[dict], exact: bool) -> None:
    assert [entry["epoch"] for entry in threaded] == [entry["epoch"] for entry in reference] == [1, 2]
    assert reference[0]["loss"] != reference[1]["loss"], "the run did not train: the comparison would prove nothing"
    for mine, theirs in zip(threaded, reference, strict=True):
        assert set(mine) == set(theirs)
        for key, value in theirs.items():
            if exact or key in ("epoch", "main_accuracy"):
                assert mine[key] == value, (key, mine[key], value)
            else:
                assert mine[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("label", list(SCHEMES))
def test_one_thread_per_party_gives_the_in_process_history(label: str) -> None:
    cfg = _config(SCHEMES[label])
    reference = run_training(cfg, dataset=DATA)
    threaded = run_in_threads(cfg, DATA)
    assert threaded.errors == {}
    _check_same_history(threaded.outcomes["active"].history, reference["history"], exact=label == "plain")
    # every frame of the in-process run was sent by some party's own endpoint, and nothing else but the end of run
    sent: dict[str, int] = {}
    for outcome in threaded.outcomes.values():
        for kind, count in outcome.messages_sent.items():
            sent[kind] = sent.get(kind, 0) + count
    done = sent.pop("done")
    hello, ready = sent.pop("hello"), sent.pop("ready")
    assert sent == reference["messages_sent"]
    parties = len(threaded.shape.party_names(cfg.scheme.key_holder_party))
    assert hello == ready == parties * (parties - 1)  # the attempt handshake: every party to every other, twice
    passives = len(threaded.shape.passive_names)
    # each passive tells the active party (and a coordinator); the active party answers each passive (and tells the coordinator)
    assert done == 2 * passives + (passives + 1 if label == "ckks/coordinator" else 0)


def test_the_trainable_top_and_the_active_partys_own_block_run_alone_too() -> None:
    cfg = _config(SCHEMES["ckks/active"], top="trainable", bottom_hidden=[], bottom_output=4, top_hidden=[5], active_block=True)
    reference = run_training(cfg, dataset=DATA)
    threaded = run_in_threads(cfg, DATA)
    assert threaded.errors == {}
    _check_same_history(threaded.outcomes["active"].history, reference["history"], exact=False)


def _reachable(root: object) -> list[object]:
    """Arrays, tensors and secret keys reachable from ``root``, not crossing the channel (the transport)."""
    seen: set[int] = set()
    found: list[object] = []
    todo = [root]
    while todo:
        value = todo.pop()
        if id(value) in seen or isinstance(value, (PartyEndpoint, str, bytes, int, float, type)) or callable(value) and not hasattr(value, "__dict__"):
            continue
        seen.add(id(value))
        if isinstance(value, (np.ndarray, torch.Tensor, SecretKeyring)):
            found.append(value)
        elif isinstance(value, dict):
            todo += list(value.values())
        elif isinstance(value, (list, tuple, set)):
            todo += list(value)
        elif isinstance(value, (torch.nn.Module, torch.optim.Optimizer)):
            continue  # the party's own model: parameters, not data
        elif hasattr(value, "__dict__"):
            todo += list(vars(value).values())
    return found


def _private_arrays(run: ThreadedRun) -> dict[str, list[np.ndarray]]:
    """Each party's own rows: a passive's columns, the active party's labels (and columns)."""
    out: dict[str, list[np.ndarray]] = {}
    for name, data in run.data.items():
        if data is None:
            continue
        arrays = [getattr(data, key) for key in ("x_train", "x_test", "y_train", "y_test") if getattr(data, key, None) is not None]
        out[name] = [np.asarray(array, dtype=np.float64) for array in arrays]
    return out


def _holds(objects: list[object], array: np.ndarray) -> bool:
    for value in objects:
        if isinstance(value, SecretKeyring):
            continue
        mine = value.detach().double().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if mine.shape == array.shape and np.array_equal(mine.astype(np.float64), array):
            return True
    return False


@pytest.mark.parametrize("label", list(SCHEMES))
def test_a_party_built_alone_holds_only_its_own_data_and_secrets(label: str) -> None:
    run = run_in_threads(_config(SCHEMES[label]), DATA)
    assert run.errors == {}
    private = _private_arrays(run)
    secrets: dict[str, int] = {}
    for name, local in run.parties.items():
        objects = _reachable(local)
        for other, arrays in private.items():
            for array in arrays:
                assert _holds(objects, array) == (other == name), f"{name} {'lacks' if other == name else 'holds'} a data array of {other}"
        keys = {id(value) for value in objects if isinstance(value, SecretKeyring)}
        secrets[name] = len(keys)
    expected = {
        "plain": {},
        "ckks/receiver": {name: 1 for name in run.parties},
        "ckks/active": {"active": 1},
        "ckks/coordinator": {"coordinator": 1},
    }[label]
    assert secrets == {name: expected.get(name, 0) for name in run.parties}


def test_a_failing_party_stops_every_other_at_once() -> None:
    """A passive whose activations hold NaN stops (it never sends them) and says ABORT: every other party fails at once, not after a timeout."""
    data = random_dataset(40, 12, 6, 3, seed=0)
    data.x_train[7, 0] = np.nan
    started = time.perf_counter()
    run = run_in_threads(_config(SCHEMES["plain"]), data, receive_timeout=60)
    assert time.perf_counter() - started < 30
    assert isinstance(run.errors["passive_1"], TrainingDiverged)
    for name in ("active", "passive_2"):
        assert isinstance(run.errors[name], PeerAbortedError), run.errors[name]
        assert "aborted (training diverged at epoch 1" in str(run.errors[name]) and "\n" not in str(run.errors[name])


def test_a_missing_peer_fails_a_receive_after_its_deadline_in_one_line() -> None:
    from securevfl.protocols import Identity, MessageKind, Roster
    from securevfl.protocols.threaded_channel import ThreadedNetwork

    alice, bob = Identity.generate("alice"), Identity.generate("bob")
    network = ThreadedNetwork()
    endpoint = network.endpoint(alice, Roster.of([alice, bob]), receive_timeout=0.2)
    with pytest.raises(ProtocolError, match=r"^alice waited 0.2 s for a 'gradient' message from 'bob'; none came$"):
        endpoint.receive("alice", MessageKind.GRADIENT, sender="bob")


@pytest.mark.parametrize(
    ("label", "attack"),
    [
        ("plain", {"kind": "label_inference"}),
        ("plain", {"kind": "gradient_replacement", "gamma": 2.0, "poison_train": 6, "poison_test": 4, "known_target_samples": 2, "trigger_features": [3, 5], "trigger_values": [2.0, -1.0]}),
        # decryption_policy = "none": a refused request is answered by silence (see the report), which across threads is a timeout
        ("ckks/coordinator-unguarded", {"kind": "gradient_replacement", "gamma": 2.0, "poison_train": 6, "poison_test": 4, "known_target_samples": 2, "trigger_features": [3, 5], "trigger_values": [2.0, -1.0]}),
        # a passive's disguised decryption request: its label reads, scored by the evaluator in its own thread
        ("ckks/coordinator", {"kind": "row_request"}),
    ],
)
def test_an_attack_runs_in_its_own_partys_thread_with_the_in_process_metrics(label: str, attack: dict) -> None:
    """The attack hooks into its party alone; the active party scores the evaluation splits (backdoor accuracy),
    and the attacker, given the evaluator's labels, its own metrics (label inference accuracy)."""
    protection = {**SCHEMES["ckks/coordinator"], "decryption_policy": "none"} if label.endswith("unguarded") else SCHEMES[label]
    cfg = config(**{**_config(protection).resolved(), "attack": attack, "data": {}})
    reference = run_training(cfg, dataset=DATA)
    threaded = run_in_threads(cfg, DATA, score_attack=True)
    assert threaded.errors == {}
    assert reference["attack"]["feasible"] is True and len(reference["history"][0]) > 3
    _check_same_history(threaded.history, reference["history"], exact=label == "plain")
