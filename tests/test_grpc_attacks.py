"""Attacks over ``transport.kind = "grpc"``: the attacker's knowledge in its own folder, the simulation's scoring by the launcher.

One OS process per party on 127.0.0.1 gives the in-process history *with* the attack's metrics
(plaintext exactly, CKKS within its noise); every registered attack's knowledge survives its
file (the rebuilt attack is the one the experimenter prepared); and a party file naming knowledge
the plan does not configure, or a missing, corrupt or pickled knowledge file, is one error line.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest

from helpers import config as make_config
from helpers import random_dataset
from securevfl.attacks.registry import BUILT_IN
from securevfl.cli import EXIT_USER_ERROR, main
from securevfl.config import RunConfig, load_config
from securevfl.data import partition_columns
from securevfl.errors import ConfigError
from securevfl.federation import prepare_run_attack
from securevfl.loopback import write_loopback_plan
from securevfl.party_attack import FORMS, KNOWLEDGE_NAME, TRUTH_NAME, PredictionRecorder, open_party_attack
from securevfl.party_data import load_party_data
from securevfl.plan import load_plan, load_private
from securevfl.training import run_training

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = ["data.train_limit=96", "data.test_limit=32", "train.epochs=1", "train.batch_size=48", "train.progress=false", "train.checkpoint=false"]
BACKDOOR = ["attack.kind=gradient_replacement", "attack.gamma=5", "attack.poison_train=10", "attack.poison_test=6", "attack.known_target_samples=2"]
COORDINATOR = ["protection.key_holder=coordinator", "protection.flooding_bits=0", "protection.preset=compute"]


def _config(example: str, *overrides: str, transport: str = "inprocess") -> RunConfig:
    return load_config(EXAMPLES / example, [
        *TINY, f"transport.kind={transport}", "transport.receive_timeout=30", "transport.connect_timeout=20", *overrides,
    ])


def _grpc_and_reference(example: str, overrides: list[str], out: Path) -> tuple[dict, dict]:
    reference = run_training(_config(example, *overrides), out_dir=out.with_name("reference"))
    result = run_training(_config(example, *overrides, transport="grpc"), out_dir=out)
    assert result["transport"] == "grpc" and (out / "result.json").is_file()
    return result, reference


def _only_the_attacker_knows(out: Path, attacker: str) -> None:
    folders = {path.parent.name for path in (out / "parties").glob(f"*/{KNOWLEDGE_NAME}")}
    truths = {path.parent.name for path in (out / "parties").glob(f"*/{TRUTH_NAME}")}
    assert folders == {attacker} and truths <= {attacker}, (folders, truths)


@pytest.mark.parametrize(
    ("overrides", "metric"),
    [(BACKDOOR, "backdoor_accuracy"), (["attack.kind=label_inference"], "label_inference_accuracy")],
    ids=["gradient_replacement", "label_inference"],
)
def test_a_plaintext_attack_over_grpc_gives_exactly_the_in_process_history(overrides: list[str], metric: str, tmp_path: Path) -> None:
    result, reference = _grpc_and_reference("digits_plain.toml", overrides, tmp_path / "run")
    assert reference["attack"]["feasible"] is True and metric in reference["history"][0]
    assert result["history"] == reference["history"]  # loss, accuracy and the attack's metric, bit for bit
    assert result["attack"] == reference["attack"]  # the attacker's own counters too (e.g. replaced rows)
    assert result[metric] == reference[metric] and result["attack_feasible"] is True
    _only_the_attacker_knows(tmp_path / "run", reference["attack"]["party"])
    assert "attack_history" not in result and "eval_predictions" not in result
    tables = {path.name: path.read_text() for path in (tmp_path / "reference").glob("*.csv")}
    assert {path.name: path.read_text() for path in (tmp_path / "run").glob("*.csv")} == tables  # e.g. inferred_labels.csv
    assert ("inferred_labels.csv" in tables) == (metric == "label_inference_accuracy")


def test_a_ckks_attack_over_grpc_gives_the_in_process_metrics_within_ckks_noise(tmp_path: Path) -> None:
    """row_request: a malicious passive disguises its gradient rows as a decryption request to the coordinator."""
    overrides = [*COORDINATOR, "attack.kind=row_request"]
    result, reference = _grpc_and_reference("digits_ckks.toml", overrides, tmp_path / "run")
    assert reference["attack"]["feasible"] is True and result["attack"]["feasible"] is True
    assert "row_request_label_accuracy" in reference["history"][0]
    for mine, theirs in zip(result["history"], reference["history"], strict=True):
        assert set(mine) == set(theirs)
        for key, value in theirs.items():
            assert mine[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key


def test_an_infeasible_attack_gives_no_party_knowledge_and_the_launcher_keeps_the_reason(tmp_path: Path) -> None:
    """Label inference under a label-private scheme: every party trains honestly; the launcher's setup records why not."""
    config = _config("digits_ckks.toml", *COORDINATOR, "attack.kind=label_inference", transport="grpc")
    files = write_loopback_plan(config, tmp_path / "parties", base_port=40_000)
    assert files.attack is not None and files.attack.feasible is False and files.attack.infeasible_reason
    assert not list((tmp_path / "parties").glob(f"*/{KNOWLEDGE_NAME}"))
    assert all(load_private(path, name).attack is None for name, path in files.private.items())


# ---------------------------------------------------------------------- knowledge of every attack survives its file
DATA = random_dataset(40, 12, 6, 3, seed=0)
FEASIBLE_UNDER = {  # a scheme under which each built-in attack runs on DATA
    "gradient_replacement": {"scheme": "plain"},
    "label_inference": {"scheme": "plain"},
    "gradient_inversion": {"scheme": "ckks", "key_holder": "coordinator"},
    "key_recovery": {"scheme": "ckks", "key_holder": "coordinator"},
    "active_key_recovery": {"scheme": "ckks", "key_holder": "coordinator"},
    "flooding_key_recovery": {"scheme": "ckks", "key_holder": "coordinator"},
    "active_flooding_key_recovery": {"scheme": "ckks", "key_holder": "coordinator"},
    "active_own_slot": {"scheme": "ckks", "key_holder": "coordinator"},
    "gradient_steering": {"scheme": "ckks", "key_holder": "coordinator"},
    "row_request": {"scheme": "ckks", "key_holder": "coordinator"},
    "activation_inversion": {"scheme": "plain"},
    "backdoor_control": {"scheme": "plain"},
}
_BACKDOOR = {"poison_train": 6, "poison_test": 4, "known_target_samples": 2, "trigger_features": [3, 5], "trigger_values": [2.0, -1.0]}
ATTACK_SETTINGS = {"gradient_replacement": _BACKDOOR, "backdoor_control": _BACKDOOR}


def _small(protection: dict, attack: dict) -> RunConfig:
    return make_config(
        parties={"passive": 2, "split": "even"}, model={"top": "sum", "bottom_hidden": [4]},
        train={"batch_size": 8, "epochs": 1, "seed": 5, "progress": False, "checkpoint": False}, protection=protection, attack=attack,
    )


def _same(mine: object, theirs: object) -> bool:
    if isinstance(theirs, dict):
        return isinstance(mine, dict) and mine.keys() == theirs.keys() and all(_same(mine[key], theirs[key]) for key in theirs)
    if isinstance(theirs, np.ndarray | list | tuple):
        return np.array_equal(np.asarray(mine), np.asarray(theirs))
    return mine == theirs


def test_every_built_in_attack_has_a_knowledge_form_and_a_case_here() -> None:
    kinds = {cls.name for cls in BUILT_IN}
    assert kinds <= set(FORMS), "a new attack: add its knowledge form to securevfl.party_attack.FORMS"
    assert set(FEASIBLE_UNDER) == kinds, "a new attack: add it to FEASIBLE_UNDER here"


@pytest.mark.parametrize("kind", list(FEASIBLE_UNDER))
def test_the_attack_rebuilt_from_its_partys_folder_is_the_one_the_experimenter_prepared(kind: str, tmp_path: Path) -> None:
    config = _small(FEASIBLE_UNDER[kind], {"kind": kind, **ATTACK_SETTINGS.get(kind, {})})
    files = write_loopback_plan(config, tmp_path, base_port=40_000, dataset=DATA)
    setup = prepare_run_attack(config, DATA, partition_columns(DATA, config.parties))
    assert setup.attack is not None and files.attack is not None, setup.infeasible_reason
    plan = load_plan(files.plan)
    for name, path in files.private.items():
        private = load_private(path, name)
        assert (private.attack is not None) == (name == setup.party), name  # knowledge at the attacker only
    private = load_private(files.private[setup.party], setup.party)  # type: ignore[index]
    data = load_party_data(private.resolve(private.data.path)) if private.data is not None else None
    rebuilt = open_party_attack(plan, private, data)
    assert type(rebuilt.attack) is type(setup.attack) and rebuilt.role is setup.role
    assert rebuilt.attack.party == setup.attack.party and rebuilt.attack.summary() == setup.attack.summary()
    assert _same(rebuilt.attack.state_dict(), setup.attack.state_dict())
    mine, theirs = vars(rebuilt.attack), vars(setup.attack)
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():  # knowledge (known ids, trigger, own columns) and settings, as prepared
        if key == "_rng":
            assert mine[key].bit_generator.state == value.bit_generator.state
        elif dataclasses.is_dataclass(value):
            assert _same(vars(mine[key]), vars(value)), key
        elif isinstance(value, np.ndarray | int | float | str | tuple | dict | type(None)):
            assert _same(mine[key], value), key
    if rebuilt.truth is not None:
        assert np.array_equal(rebuilt.truth.y_train, DATA.y_train)


# ---------------------------------------------------------------------- one error line
@pytest.fixture(scope="module")
def honest_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A loopback plan of a run without an attack (no process is started from it)."""
    out = tmp_path_factory.mktemp("honest")
    write_loopback_plan(_small({"scheme": "plain"}, {"kind": "none"}), out, base_port=40_000, dataset=DATA)
    return out


@pytest.fixture(scope="module")
def attack_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("attack")
    write_loopback_plan(_small({"scheme": "plain"}, {"kind": "label_inference"}), out, base_port=40_000, dataset=DATA)
    return out


def _party_fails_in_one_line(folder: Path, party: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["party", "--plan", str(folder / "plan.toml"), "--party", party, "--private", str(folder / party / "party.toml"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USER_ERROR and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    return err


def test_knowledge_of_an_attack_the_plan_does_not_configure_is_one_error_line(honest_plan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    private = honest_plan / "passive_2" / "party.toml"
    text = private.read_text()
    try:
        private.write_text(text + '\n[attack]\nkind = "label_inference"\nknowledge = "attack_knowledge.npz"\n')
        err = _party_fails_in_one_line(honest_plan, "passive_2", tmp_path, capsys)
    finally:
        private.write_text(text)
    assert "names knowledge of attack 'label_inference', but the plan configures no attack" in err


def test_knowledge_of_another_attack_kind_is_one_error_line(attack_plan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    private = attack_plan / "passive_2" / "party.toml"
    text = private.read_text()
    try:
        private.write_text(text.replace('kind = "label_inference"', 'kind = "row_request"'))
        err = _party_fails_in_one_line(attack_plan, "passive_2", tmp_path, capsys)
    finally:
        private.write_text(text)
    assert "'row_request', but the plan configures 'label_inference'" in err


def _pickled_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array({"format": 1}, dtype=object))  # an object array: loading it would unpickle
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "attack knowledge file not found: "),
        (b"truncated", "is not an attack knowledge file (BadZipFile"),
        (b"not an archive: numpy would take these bytes for a pickle", "is not an attack knowledge file (ValueError: This file contains pickled"),
        (_pickled_npz(), "is not an attack knowledge file (ValueError: Object arrays cannot be loaded when allow_pickle=False"),
    ],
    ids=["missing", "truncated", "foreign", "pickled"],
)
def test_a_missing_corrupt_or_pickled_knowledge_file_is_one_error_line(
    content: bytes | None, message: str, attack_plan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    knowledge = attack_plan / "passive_2" / KNOWLEDGE_NAME
    original = knowledge.read_bytes()
    try:
        if content is None:
            knowledge.unlink()
        elif content == b"truncated":
            knowledge.write_bytes(original[: len(original) // 2])
        else:
            knowledge.write_bytes(content)
        err = _party_fails_in_one_line(attack_plan, "passive_2", tmp_path, capsys)
    finally:
        knowledge.write_bytes(original)
    assert message in err, err


def test_knowledge_written_for_another_party_is_refused(attack_plan: Path) -> None:
    plan = load_plan(attack_plan / "plan.toml")
    private = load_private(attack_plan / "passive_1" / "party.toml", "passive_1")
    moved = private.model_copy(update={"attack": load_private(attack_plan / "passive_2" / "party.toml", "passive_2").attack.model_copy(  # type: ignore[union-attr]
        update={"knowledge": attack_plan / "passive_2" / KNOWLEDGE_NAME})})
    with pytest.raises(ConfigError, match=r"is knowledge of attack 'label_inference' at 'passive_2', not of 'label_inference' at 'passive_1'$"):
        open_party_attack(plan, moved, load_party_data(private.resolve(private.data.path)))  # type: ignore[union-attr]


def test_the_active_partys_split_predictions_survive_a_resume(tmp_path: Path) -> None:
    """Filed per finished epoch in its output folder: a resumed party reports the epochs of its interrupted attempt too."""
    path = tmp_path / "eval_predictions.json"
    first = PredictionRecorder(path)
    for epoch in (1, 2):
        assert first({"backdoor": np.array([epoch, 0, 3])}) == {}  # it scores nothing itself
        first.epoch_done({"epoch": epoch})
    first({"backdoor": np.array([9, 9, 9])})  # epoch 3 evaluated, then the party was killed before the epoch ended
    resumed = PredictionRecorder(path, resume=True)  # continues after epoch 2 (its checkpoint)
    resumed({"backdoor": np.array([3, 3, 0])})
    resumed.epoch_done({"epoch": 3})
    history = [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}]
    assert resumed.epochs(history) == [{"backdoor": [1, 0, 3]}, {"backdoor": [2, 0, 3]}, {"backdoor": [3, 3, 0]}]
    assert PredictionRecorder(path).epochs(history) == [None, None, None]  # a fresh start does not read an old run's record
    path.write_text("[1, 2")
    with pytest.raises(ConfigError, match=r"^--resume: .*eval_predictions.json is not a record of split predictions"):
        PredictionRecorder(path, resume=True)


def test_a_plug_in_attack_runs_in_a_party_process_once_it_has_a_knowledge_form(tmp_path: Path) -> None:
    from attack_fixtures import RowsSeen

    from securevfl.attacks import ATTACKS, register_attack, unregister_attack
    from securevfl.party_attack import KnowledgeForm, register_knowledge_form

    registered = RowsSeen.name not in ATTACKS
    if registered:
        register_attack(RowsSeen)
    try:
        config = _small({"scheme": "plain"}, {"kind": RowsSeen.name})
        with pytest.raises(ConfigError, match=r"^attack 'test_rows_seen' has no knowledge form .*use transport.kind = 'inprocess'$"):
            write_loopback_plan(config, tmp_path / "without", base_port=40_000, dataset=DATA)
        register_knowledge_form(RowsSeen.name, KnowledgeForm(lambda attack: {}, lambda config, facts, arrays, data: RowsSeen(facts.party, facts.n_train)))
        files = write_loopback_plan(config, tmp_path / "with", base_port=40_000, dataset=DATA)
        private = load_private(files.private["active"], "active")
        rebuilt = open_party_attack(load_plan(files.plan), private, load_party_data(private.resolve(private.data.path)))  # type: ignore[union-attr]
        assert isinstance(rebuilt.attack, RowsSeen) and rebuilt.attack.seen.shape == (len(DATA.y_train),) and rebuilt.truth is not None
    finally:
        FORMS.pop(RowsSeen.name, None)
        if registered:
            unregister_attack(RowsSeen.name)
