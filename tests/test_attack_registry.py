"""Adding an attack is one class (config beside it), its test and one registry line: here from outside the package.

The attacks below are registered by this test module only, run at the active party, the key
holder and the channel, and must reach training, the result record and the study table
without any other file knowing them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import pytest

from attack_fixtures import ROWS_SEEN, RowsSeen, RowsSeenConfig
from helpers import random_dataset
from securevfl.attacks import (
    ATTACKS,
    Attack,
    AttackConfigBase,
    AttackTruth,
    MetricSpec,
    attack_metrics,
    parse_attack_config,
    register_attack,
    success_metric,
    unregister_attack,
)
from securevfl.config import validate_config
from securevfl.errors import ConfigError
from securevfl.protocols.wire import peek_route
from securevfl.roles import Capability, Role
from securevfl.study.table import base_columns
from securevfl.training import run_training

class FramesConfig(AttackConfigBase):
    kind: Literal["test_frames"] = "test_frames"


class Frames(Attack):
    """An eavesdropper on the channel that counts the gradient frames it saw."""

    name: ClassVar[str] = "test_frames"
    config_type = FramesConfig
    role = Role.OBSERVER
    requires = (frozenset({Capability.FRAMES}),)
    infeasible_because = "no frames"
    metrics = (MetricSpec("gradient_frames_seen", "gradient frames the eavesdropper saw"),)

    def __init__(self, party: str) -> None:
        super().__init__(party)
        self.frames = 0

    def observed_frame(self, frame: bytes) -> None:
        self.frames += peek_route(frame)[0] == "gradient"

    def epoch_metrics(self, truth: AttackTruth) -> dict[str, float]:
        return {"gradient_frames_seen": float(self.frames)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "frames": self.frames}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.frames = int(state["frames"])


class HolderConfig(AttackConfigBase):
    kind: Literal["test_holder"] = "test_holder"


class Holder(Attack):
    """A curious key holder that keeps the largest magnitude it decrypted (masked values: large)."""

    name: ClassVar[str] = "test_holder"
    config_type = HolderConfig
    role = Role.KEY_HOLDER
    requires = (frozenset({Capability.MASKED_DECRYPTIONS}),)
    infeasible_because = "never"
    metrics = (MetricSpec("largest_decrypted", "largest magnitude the key holder decrypted"),)

    def __init__(self, party: str) -> None:
        super().__init__(party)
        self.largest = 0.0

    def decrypted_request(self, step: int, requester: str, values: np.ndarray) -> None:
        self.largest = max(self.largest, float(np.abs(values).max()))

    def epoch_metrics(self, truth: AttackTruth) -> dict[str, float]:
        return {"largest_decrypted": self.largest}


@pytest.fixture
def registered() -> Iterator[None]:
    for cls in (RowsSeen, Frames, Holder):
        register_attack(cls)
    try:
        yield
    finally:
        for cls in (RowsSeen, Frames, Holder):
            unregister_attack(cls.name)


DATA = random_dataset(n_train=64, n_test=16, n_features=6, num_classes=3, seed=1)


def _run(protection: dict, kind: str) -> dict[str, Any]:
    raw = {
        "parties": {"passive": 2, "split": "even"},
        "train": {"epochs": 1, "batch_size": 32, "progress": False},
        "protection": protection,
        "attack": {"kind": kind},
    }
    return run_training(validate_config(raw), dataset=DATA)


def test_an_active_party_attack_runs_reports_and_is_infeasible_where_the_scheme_hides_rows(registered: None) -> None:
    assert success_metric("test_rows_seen") == ROWS_SEEN.name and ROWS_SEEN in attack_metrics()
    plain = _run({"scheme": "plain"}, "test_rows_seen")
    assert plain["attack"]["party"] == "active" and plain["attack_feasible"] is True
    assert plain["history"][-1][ROWS_SEEN.name] == 1.0 and plain[ROWS_SEEN.name] == 1.0  # every sample's rows, one epoch
    blind = _run({"scheme": "ckks", "key_holder": "active"}, "test_rows_seen")
    assert blind["attack_feasible"] is False and "only decrypts a combination" in blind["attack_infeasible_reason"]
    assert ROWS_SEEN.name not in blind["history"][-1]
    assert ROWS_SEEN.name in base_columns()  # the study table has its column


def test_an_observer_sees_every_frame_and_a_key_holder_every_request(registered: None) -> None:
    frames = _run({"scheme": "ckks", "key_holder": "receiver"}, "test_frames")
    assert frames["history"][-1]["gradient_frames_seen"] == frames["messages_sent"]["gradient"] == 2 * 2  # 2 passives x 2 batches
    holder = _run({"scheme": "ckks", "key_holder": "coordinator"}, "test_holder")
    assert holder["attack"]["party"] == "coordinator"
    assert holder["history"][-1]["largest_decrypted"] > 100  # the values it decrypts are masked (half-width 16384)
    nobody = _run({"scheme": "plain"}, "test_holder")
    assert nobody["attack_feasible"] is False and "no party for" in nobody["attack_infeasible_reason"]


def test_registration_is_checked_and_undone(registered: None) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_attack(RowsSeen)
    with pytest.raises(ValueError, match="built-in"):
        unregister_attack("label_inference")
    assert type(parse_attack_config({"kind": "test_rows_seen"})) is RowsSeenConfig
    with pytest.raises(ConfigError, match="unknown key 'attack.gamm'; did you mean 'gamma'"):
        validate_config({"attack": {"kind": "test_rows_seen", "gamm": 1}})


def test_the_registry_is_back_to_the_built_in_attacks() -> None:
    assert set(ATTACKS) == {
        "gradient_replacement", "label_inference", "gradient_inversion", "key_recovery", "active_key_recovery",
        "flooding_key_recovery", "active_flooding_key_recovery", "active_own_slot", "gradient_steering", "row_request", "activation_inversion",
        "backdoor_control",
    }
    with pytest.raises(ConfigError, match="unknown attack kind 'test_rows_seen'"):
        validate_config({"attack": {"kind": "test_rows_seen"}})


def test_an_observer_attacks_state_survives_an_interruption(registered: None, tmp_path) -> None:  # type: ignore[no-untyped-def]
    raw = {
        "parties": {"passive": 2, "split": "even"},
        "train": {"epochs": 2, "batch_size": 32, "progress": False},
        "attack": {"kind": "test_frames"},
    }
    config = validate_config(raw)
    uninterrupted = run_training(config, dataset=DATA)

    def stop_after_first(record) -> None:  # type: ignore[no-untyped-def]
        if record.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(config, out_dir=tmp_path, on_epoch_end=[stop_after_first], dataset=DATA)
    resumed = run_training(config, out_dir=tmp_path, resume=True, dataset=DATA)
    assert [h["gradient_frames_seen"] for h in resumed["history"]] == [h["gradient_frames_seen"] for h in uninterrupted["history"]] == [4.0, 8.0]


def test_an_attack_that_does_not_fit_the_others_is_refused() -> None:
    class Clash(Attack):
        name: ClassVar[str] = "test_clash"
        config_type = RowsSeenConfig  # kind "test_rows_seen"
        requires = (frozenset(),)
        infeasible_because = "never"

    with pytest.raises(ValueError, match="config's kind is 'test_rows_seen'"):
        register_attack(Clash)

    class WrongMetric(RowsSeen):
        metrics = (MetricSpec("backdoor_accuracy", "something else entirely"),)
        success_metric = "backdoor_accuracy"

    with pytest.raises(ValueError, match="declares metric 'backdoor_accuracy' differently"):
        register_attack(WrongMetric)

    class NoSuchMetric(RowsSeen):
        success_metric = "missing"

    with pytest.raises(ValueError, match="success_metric 'missing' is not one of its metrics"):
        register_attack(NoSuchMetric)
    assert "test_rows_seen" not in ATTACKS


def test_an_attack_that_says_it_only_observes_trains_exactly_the_honest_run() -> None:
    """``observes_only`` lets the survival table read an attacked run's main accuracy as the honest model's: check the
    claim, for every attack that makes it, against the run without any attack (plaintext: bit for bit)."""
    observers = sorted(name for name, cls in ATTACKS.items() if cls.observes_only)
    assert {"gradient_inversion", "label_inference", "activation_inversion"} <= set(observers)
    common = {"data": {"name": "digits"}, "train": {"epochs": 3, "lr": 0.1, "seed": 3}}
    training = ("epoch", "main_accuracy", "loss")
    honest = [{key: entry[key] for key in training} for entry in run_training(validate_config(common))["history"]]
    assert honest[-1]["main_accuracy"] > 0.5  # a model that learns: the comparison is not between two untrained ones
    for name in observers:
        attacked = run_training(validate_config({**common, "attack": {"kind": name}}))
        assert [{key: entry[key] for key in training} for entry in attacked["history"]] == honest, name


def test_a_gradient_replacement_label_names_every_knob_that_sets_two_references_apart() -> None:
    """The converged study has two trade-off references that differ only in the known target samples: their table lines
    must not read alike."""
    from securevfl.attacks import parse_attack_config

    one = parse_attack_config({"kind": "gradient_replacement", "gamma": 1, "record": "first"})
    ten = parse_attack_config({"kind": "gradient_replacement", "gamma": 1, "record": "first", "known_target_samples": 10})
    assert one.label() == "gradient replacement, gamma 1, first row"
    assert ten.label() == "gradient replacement, gamma 1, first row, 10 known target samples"
