"""An attack in one process per party: the attacker's knowledge in its own folder, and scoring in the simulation harness.

Why this module exists: in one process (:func:`securevfl.federation.build_federation`) or the
threaded harness, the experimenter prepares the attack from the whole data set
(:func:`securevfl.federation.prepare_run_attack`) and hands the attack object to its party. A
party process holds only its own folder, so the loopback exporter writes what the attacker
legitimately knows (its attack's prepared state) into that folder, and the party rebuilds the
attack from it and the public plan:

- **knowledge** (:data:`KNOWLEDGE_NAME`, ``.npz`` with a JSON ``meta`` entry, read with
  ``allow_pickle=False``): per attack kind, the arrays its preparation produced, e.g. a
  backdoor's poisoned, triggered and known target sample ids and its trigger, or gradient
  inversion's known labels. Each kind has a :class:`KnowledgeForm` (export and rebuild); a kind
  without one cannot run in a party process and says so in one line. The data the attack
  changes (triggered columns, extra evaluation splits) reaches the parties through their data
  files, as before (:func:`securevfl.loopback.export_party_data`).
- **scoring** (simulation only; a real deployment has no truth). Two parts, by who holds the
  outputs: the active party's predictions on the extra evaluation splits (e.g. a backdoor's
  triggered test samples) are written raw into its result (:class:`PredictionRecorder`) and the
  launcher, which holds the experimenter's attack plan, scores them after the run
  (:func:`merge_attack_results`), so the active party's process is not handed the target label for scoring (a simulation detail).
  The attacker's own metrics come from ``Attack.epoch_metrics(truth)``, which makes the epoch's
  guesses and scores them in one call (gradient inversion guesses there; label guesses are reset
  there), so the attacker's process scores them itself against an evaluator-only truth file
  (:data:`TRUTH_NAME`, the training labels, named ``evaluator_truth`` in its party file). The
  truth reaches only ``epoch_metrics``, never a hook, exactly as in one process.

Truth that lives in another party's process (the true gradient rows of gradient inversion, the
passives' activations of activation inversion) is not carried over: those metrics are absent over
gRPC, and the result's ``attack`` record says so (``unscored``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from securevfl.attacks import attack_metrics
from securevfl.attacks.activation_inversion import ActivationInversion, ActivationInversionConfig
from securevfl.attacks.base import Attack, AttackConfigBase, AttackTruth
from securevfl.attacks.gradient_inversion import GradientInversion, GradientInversionConfig, KnownLabels
from securevfl.attacks.backdoor_control import BackdoorControl
from securevfl.attacks.gradient_replacement import GradientReplacement, GradientReplacementConfig
from securevfl.attacks.flooding_size import (
    ActiveFloodingKeyRecovery,
    FloodingKeyRecovery,
    FloodingKeyRecoveryConfig,
)
from securevfl.attacks.key_recovery import ActiveKeyRecovery, KeyRecovery, KeyRecoveryConfig
from securevfl.attacks.own_slot import ActiveOwnSlot
from securevfl.attacks.gradient_steering import GradientSteering, GradientSteeringConfig
from securevfl.attacks.label_inference import LabelInference
from securevfl.attacks.poison import BackdoorData
from securevfl.attacks.row_request import RowRequest
from securevfl.attacks.setup import AttackSetup
from securevfl.config import RunConfig
from securevfl.data import VFLDataset, load_dataset, partition_columns
from securevfl.errors import ConfigError
from securevfl.federation import prepare_run_attack
from securevfl.files import atomic_write, atomic_write_text
from securevfl.parties import LocalParties
from securevfl.party_assembly import attach_attack
from securevfl.party_data import ActiveData, PassiveData
from securevfl.plan import Plan, PrivateParty
from securevfl.roles import Role
from securevfl.seeding import derived_seed

__all__ = [
    "KNOWLEDGE_NAME",
    "TRUTH_NAME",
    "KnowledgeForm",
    "PartyAttack",
    "PredictionRecorder",
    "PublicFacts",
    "experimenter_attack",
    "merge_attack_results",
    "open_party_attack",
    "read_knowledge",
    "register_knowledge_form",
    "score_attack_epochs",
    "write_attack_files",
]

KNOWLEDGE_NAME = "attack_knowledge.npz"
TRUTH_NAME = "evaluator_truth.npz"
PREDICTIONS_NAME = "eval_predictions.json"
_FORMAT = 1
_UNSCORED_ROWS = "its truth (true gradient rows, activations or the passives' columns) exists only in other parties' processes; over gRPC it is not scored"

PartyData = PassiveData | ActiveData | None


@dataclass(frozen=True)
class PublicFacts:
    """What every party knows from the plan that an attack's constructor reads (no data)."""

    party: str
    n_train: int
    num_classes: int
    bottom_output: int
    seed: int
    top: str
    passives: tuple[str, ...]

    @classmethod
    def of(cls, plan: Plan, party: str) -> PublicFacts:
        shape = plan.run_shape()
        return cls(
            party=party, n_train=shape.n_train, num_classes=shape.num_classes, bottom_output=shape.bottom_out,
            seed=plan.run.train.seed, top=plan.run.model.top, passives=tuple(shape.passive_names),
        )


Arrays = dict[str, np.ndarray]
#: makes an attack at its party from its config, the plan's public facts, its known arrays and the party's own data
Rebuild = Callable[[AttackConfigBase, "PublicFacts", Mapping[str, np.ndarray], "PartyData"], Attack]


@dataclass(frozen=True)
class KnowledgeForm:
    """How one attack kind's prepared state leaves the experimenter and becomes the attack again at its party.

    ``export`` takes the prepared attack and returns the arrays its party knows; ``rebuild`` makes
    the same attack from the config, the plan's public facts, those arrays and the party's own data.
    """

    export: Callable[[Attack], Arrays]
    rebuild: Rebuild


def _nothing(attack: Attack) -> Arrays:
    return {}


def _export_backdoor(attack: Attack) -> Arrays:
    assert isinstance(attack, GradientReplacement)
    backdoor = attack.backdoor
    return {
        "target_label": np.asarray(backdoor.target_label, dtype=np.int64), "poisoned_train": backdoor.poisoned_train,
        "triggered_test": backdoor.triggered_test, "known_target": backdoor.known_target,
        "trigger_columns": backdoor.trigger_columns, "trigger_values": backdoor.trigger_values,
    }


def _rebuild_backdoor(config: AttackConfigBase, facts: PublicFacts, arrays: Mapping[str, np.ndarray], data: PartyData) -> Attack:
    assert isinstance(config, GradientReplacementConfig)
    backdoor = BackdoorData(
        int(arrays["target_label"]), np.asarray(arrays["poisoned_train"]), np.asarray(arrays["triggered_test"]),
        np.asarray(arrays["known_target"]), np.asarray(arrays["trigger_columns"]), np.asarray(arrays["trigger_values"]),
    )
    blur = config.blur_variance if config.blur_activations else None
    rng = np.random.default_rng(derived_seed(facts.seed, "attack", "blur"))  # as GradientReplacement.create
    return GradientReplacement(facts.party, backdoor, config.gamma, blur, rng, record=config.record)


def _export_known_labels(attack: Attack) -> Arrays:
    assert isinstance(attack, GradientInversion)
    return {"known_ids": attack.known.ids, "known_labels": attack.known.labels}


def _rebuild_inversion(config: AttackConfigBase, facts: PublicFacts, arrays: Mapping[str, np.ndarray], data: PartyData) -> Attack:
    assert isinstance(config, GradientInversionConfig)
    if not isinstance(data, PassiveData):
        raise ConfigError(f"{facts.party}: gradient inversion inverts through the attacker's own columns, but it holds no passive data")
    known = KnownLabels(ids=np.asarray(arrays["known_ids"], dtype=np.int64), labels=np.asarray(arrays["known_labels"], dtype=np.int64), classes=facts.num_classes)
    return GradientInversion(facts.party, data.x_train, config, known, facts.top, facts.seed)


def _key_recovery(config: AttackConfigBase, facts: PublicFacts, arrays: Mapping[str, np.ndarray], data: PartyData) -> Attack:
    assert isinstance(config, KeyRecoveryConfig)
    sum_top = facts.top == "sum" and facts.bottom_output == facts.num_classes  # as KeyRecovery.create
    return KeyRecovery(facts.party, facts.n_train, config.start_step, sum_top)


def _active_row_reader(attack: type[ActiveKeyRecovery] | type[ActiveOwnSlot]) -> Rebuild:
    """The rebuild of an active party's attack that reads activation rows: it needs public facts and its settings only."""

    def rebuild(config: AttackConfigBase, facts: PublicFacts, arrays: Mapping[str, np.ndarray], data: PartyData) -> Attack:
        assert isinstance(config, attack.config_type)
        return attack(facts.party, facts.n_train, facts.passives, config.start_step, config.tolerance)  # type: ignore[attr-defined]

    return rebuild


def _flooding_key_recovery(config: AttackConfigBase, facts: PublicFacts, arrays: Mapping[str, np.ndarray], data: PartyData) -> Attack:
    assert isinstance(config, FloodingKeyRecoveryConfig)
    sum_top = facts.top == "sum" and facts.bottom_output == facts.num_classes  # as FloodingKeyRecovery.create
    return FloodingKeyRecovery(facts.party, facts.n_train, config.start_step, sum_top)


def _gradient_steering(config: AttackConfigBase, facts: PublicFacts, arrays: Mapping[str, np.ndarray], data: PartyData) -> Attack:
    assert isinstance(config, GradientSteeringConfig)
    target = facts.passives.index(config.target or facts.passives[0])  # validated when the run was planned
    return GradientSteering(facts.party, facts.n_train, target, config.start_step, config.probe, config.threshold)


def _activation_inversion(config: AttackConfigBase, facts: PublicFacts, arrays: Mapping[str, np.ndarray], data: PartyData) -> Attack:
    assert isinstance(config, ActivationInversionConfig)
    return ActivationInversion(facts.party, facts.passives, facts.n_train, facts.top, config.tolerance, config.rcond)


#: Attack kind -> its knowledge form. Built-in attacks are here; a plug-in adds its own with :func:`register_knowledge_form`.
FORMS: dict[str, KnowledgeForm] = {
    GradientReplacement.name: KnowledgeForm(_export_backdoor, _rebuild_backdoor),
    LabelInference.name: KnowledgeForm(_nothing, lambda config, facts, arrays, data: LabelInference(facts.party, facts.n_train)),
    GradientInversion.name: KnowledgeForm(_export_known_labels, _rebuild_inversion),
    KeyRecovery.name: KnowledgeForm(_nothing, _key_recovery),
    ActiveKeyRecovery.name: KnowledgeForm(_nothing, _active_row_reader(ActiveKeyRecovery)),
    FloodingKeyRecovery.name: KnowledgeForm(_nothing, _flooding_key_recovery),
    ActiveFloodingKeyRecovery.name: KnowledgeForm(_nothing, _active_row_reader(ActiveFloodingKeyRecovery)),
    ActiveOwnSlot.name: KnowledgeForm(_nothing, _active_row_reader(ActiveOwnSlot)),
    GradientSteering.name: KnowledgeForm(_nothing, _gradient_steering),  # unscored there: no passive's columns
    RowRequest.name: KnowledgeForm(_nothing, lambda config, facts, arrays, data: RowRequest(facts.party, facts.n_train)),
    ActivationInversion.name: KnowledgeForm(_nothing, _activation_inversion),
    # an honest party: its triggered test split reaches the parties through their data files, as a backdoor's does
    BackdoorControl.name: KnowledgeForm(_nothing, lambda config, facts, arrays, data: BackdoorControl(facts.party)),
}


def register_knowledge_form(kind: str, form: KnowledgeForm) -> None:
    """Let attack ``kind`` (a plug-in) run in a party process."""
    FORMS[kind] = form


def _form(kind: str) -> KnowledgeForm:
    form = FORMS.get(kind)
    if form is None:
        raise ConfigError(
            f"attack {kind!r} has no knowledge form (securevfl.party_attack.register_knowledge_form), so no party process can run it; "
            "use transport.kind = 'inprocess'"
        )
    return form


# ---------------------------------------------------------------------- the exporter's side
def write_attack_files(setup: AttackSetup, folder: Path, *, overwrite: bool = False) -> dict[str, str] | None:
    """Write the attacker's knowledge (and the simulation's evaluator truth) into its folder; the ``[attack]`` table naming them.

    None when there is nothing to run (no attack, or an infeasible one: every party then trains
    honestly, as in one process). An observer's attack taps the in-process channel and has no
    party process; it is refused in one line.
    """
    attack = setup.attack
    if attack is None or not setup.config.active:
        return None
    if setup.role is Role.OBSERVER:
        raise ConfigError(f"attack {setup.config.kind!r} observes the in-process channel; a gRPC run has no such observer (use transport.kind = 'inprocess')")
    arrays = _form(setup.config.kind).export(attack)
    meta = {"format": _FORMAT, "kind": setup.config.kind, "party": setup.party}
    _write_npz(folder / KNOWLEDGE_NAME, meta, arrays, overwrite)
    table = {"kind": setup.config.kind, "knowledge": KNOWLEDGE_NAME}
    if setup.truth is not None and _scorable(attack):
        truth_meta = {"format": _FORMAT, "simulation_only": True, "party": setup.party}
        _write_npz(folder / TRUTH_NAME, truth_meta, {"y_train": np.asarray(setup.truth.y_train)}, overwrite)
        table["evaluator_truth"] = TRUTH_NAME
    return table


def _scorable(attack: Attack) -> bool:
    """Whether the labels alone are a truth its ``epoch_metrics`` accepts (activation inversion needs the activations)."""
    return not (attack.scores_activations and not attack.activation_truth_optional)


def _write_npz(path: Path, meta: dict[str, Any], arrays: Arrays, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it")
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)), **{f"arrays/{name}": np.asarray(value) for name, value in arrays.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue(), mode=0o600)


def read_knowledge(path: Path, what: str = "attack knowledge file") -> tuple[dict[str, Any], Arrays]:
    """The meta and arrays of a file :func:`write_attack_files` wrote (never unpickles: a crafted file cannot run code)."""
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {key: archive[key] for key in archive.files}
        meta = json.loads(str(contents.pop("meta")))
    except Exception as exc:  # zipfile, numpy and json raise many types for a corrupt or foreign file
        raise ConfigError(f"{path} is not an {what} ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ConfigError(f"{path} is not an {what} of format {_FORMAT} (meta {str(meta)[:80]})")
    return meta, {key.removeprefix("arrays/"): value for key, value in contents.items() if key.startswith("arrays/")}


# ---------------------------------------------------------------------- the party's side
class PredictionRecorder:
    """The active party's ``evaluate_splits``: keeps its raw predictions on the extra evaluation splits per epoch.

    It computes no metric: what a prediction on a triggered sample means (the backdoor's target)
    is the experimenter's knowledge, so the launcher scores them after the run. With a ``path``
    (in the party's output folder) every finished epoch's predictions are kept there too, so a
    resumed party still reports the epochs of its interrupted attempt.
    """

    def __init__(self, path: Path | None = None, *, resume: bool = False) -> None:
        self.path = path
        self.by_epoch: dict[int, dict[str, list[int]]] = {}
        self._pending: dict[str, list[int]] | None = None
        if resume and path is not None and path.is_file():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                self.by_epoch = {int(epoch): {str(split): [int(v) for v in values] for split, values in splits.items()} for epoch, splits in raw.items()}
            except (ValueError, TypeError, AttributeError) as exc:
                raise ConfigError(f"--resume: {path} is not a record of split predictions ({type(exc).__name__})") from None

    def __call__(self, predictions: Mapping[str, np.ndarray]) -> dict[str, float]:
        self._pending = {split: np.asarray(values).astype(np.int64).tolist() for split, values in predictions.items()}
        return {}

    def epoch_done(self, entry: Mapping[str, Any]) -> None:
        """The epoch of ``entry`` (the active party's history entry) is finished: keep its predictions under its number."""
        if self._pending is None:
            return
        self.by_epoch[int(entry["epoch"])], self._pending = self._pending, None
        if self.path is not None:
            atomic_write_text(self.path, json.dumps({str(epoch): splits for epoch, splits in sorted(self.by_epoch.items())}) + "\n")

    def epochs(self, history: list[dict[str, Any]]) -> list[dict[str, list[int]] | None]:
        """The predictions of every epoch of ``history``, in its order (None: an epoch without a record)."""
        return [self.by_epoch.get(int(entry["epoch"])) for entry in history]


@dataclass
class PartyAttack:
    """What one party process runs of the plan's attack: the attack (if it is the attacker), its truth, its recorder."""

    attack: Attack | None = None
    role: Role | None = None
    truth: AttackTruth | None = field(default=None, repr=False)
    recorder: PredictionRecorder | None = None

    def attach(self, local: LocalParties) -> None:
        """Hook the attack into this process's party (the protocol is unchanged)."""
        if self.attack is not None and self.role is not None:
            attach_attack(local, self.attack, self.role)

    def run_arguments(self) -> dict[str, Any]:
        """The keyword arguments of :func:`securevfl.party_runner.run_party` for this party."""
        return {"evaluate_splits": self.recorder, "attack": self.attack, "attack_truth": self.truth}

    def on_epoch_end(self, then: Callable[[dict[str, Any]], None] | None) -> Callable[[dict[str, Any]], None] | None:
        """``run_party``'s ``on_epoch_end``: file the epoch's split predictions under its number, then call ``then``."""
        recorder = self.recorder
        if recorder is None:
            return then

        def done(entry: dict[str, Any]) -> None:
            recorder.epoch_done(entry)
            if then is not None:
                then(entry)

        return done

    def record(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        """Extra keys of the party's result: the attack's own summary, the raw split predictions."""
        extra: dict[str, Any] = {}
        if self.attack is not None:
            extra["attack_summary"] = self.attack.summary()
            if self.truth is None:
                extra["attack_unscored"] = _UNSCORED_ROWS
            else:  # per-sample outputs with their truth (e.g. inferred labels), written as CSV by the launcher
                extra["attack_artifacts"] = {stem: rows for stem, rows in self.attack.artifacts(self.truth).items()}
        if self.recorder is not None:
            extra["eval_predictions"] = self.recorder.epochs(history)
        return extra

    def stop_record(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        """Extra keys of the party's ``stopped.json``: the raw split predictions of the epochs before the stop, so the
        launcher scores them as a finished run's (:func:`score_attack_epochs`), and the attacker's read at the stop
        (:meth:`Attack.read_at_stop`). No per-sample outputs: an in-process stop keeps none either."""
        extra: dict[str, Any] = {} if self.recorder is None else {"eval_predictions": self.recorder.epochs(history)}
        if self.attack is not None and self.truth is not None and (at_stop := self.attack.read_at_stop(self.truth)):
            extra["attack_at_stop"] = at_stop  # what this attacker had read when the run stopped (a caught one keeps it)
        return extra


def open_party_attack(plan: Plan, private: PrivateParty, data: PartyData, *, out_dir: Path | None = None, resume: bool = False) -> PartyAttack:
    """This party's part of the plan's attack, from its private file's ``[attack]`` (one line per problem).

    The active party with extra evaluation splits also gets a :class:`PredictionRecorder`
    (kept in ``out_dir``, reloaded with ``resume``).
    """
    recorder = None
    if isinstance(data, ActiveData) and data.eval_labels:
        recorder = PredictionRecorder(None if out_dir is None else out_dir / PREDICTIONS_NAME, resume=resume)
    source = private.attack
    if source is None:
        return PartyAttack(recorder=recorder)
    configured = plan.run.attack
    where = private.base
    if not configured.active:
        raise ConfigError(f"{private.party}'s party file (in {where}) names knowledge of attack {source.kind!r}, but the plan configures no attack")
    if source.kind != configured.kind:
        raise ConfigError(f"{private.party}'s party file (in {where}) names knowledge of attack {source.kind!r}, but the plan configures {configured.kind!r}")
    path = private.resolve(source.knowledge)
    meta, arrays = read_knowledge(path)
    if meta.get("kind") != configured.kind or meta.get("party") != private.party:
        raise ConfigError(f"{path} is knowledge of attack {meta.get('kind')!r} at {meta.get('party')!r}, not of {configured.kind!r} at {private.party!r}")
    form = _form(configured.kind)
    try:
        attack = form.rebuild(configured, PublicFacts.of(plan, private.party), arrays, data)
    except KeyError as exc:
        raise ConfigError(f"{path}: attack knowledge without the array {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: attack knowledge that does not fit the plan ({' '.join(str(exc).split())[:160]})") from None
    truth = None
    if source.evaluator_truth is not None:
        truth_path = private.resolve(source.evaluator_truth)
        truth_meta, truth_arrays = read_knowledge(truth_path, "evaluator truth file")
        labels = truth_arrays.get("y_train")
        if not truth_meta.get("simulation_only") or labels is None or labels.shape != (plan.shape.n_train,):
            raise ConfigError(f"{truth_path} is not a simulation's evaluator truth for {plan.shape.n_train} training samples")
        truth = AttackTruth(y_train=labels)
    return PartyAttack(attack=attack, role=type(attack).role, truth=truth, recorder=recorder)


# ---------------------------------------------------------------------- the launcher's side
def experimenter_attack(config: RunConfig, dataset: VFLDataset | None = None) -> AttackSetup | None:
    """The experimenter's prepared attack of ``config``, as the exporter made it (to score a resumed run); None without one."""
    if not config.attack.active:
        return None
    dataset = dataset if dataset is not None else load_dataset(config.data)
    return prepare_run_attack(config, dataset, partition_columns(dataset, config.parties))


def score_attack_epochs(
    history: list[dict[str, Any]], active: Mapping[str, Any], records: Iterable[Mapping[str, Any]], setup: AttackSetup
) -> None:
    """Add the attack's metrics to each epoch of the active party's ``history``, as one process records them.

    The experimenter's metrics of the active party's raw split predictions (``active["eval_predictions"]``, scored
    by ``setup.plan.evaluate``), then each party's own per-epoch metrics (``attack_history``, in epoch order). The
    records are a finished run's results or a stopped run's ``stopped.json``: both carry the same two keys.
    """
    predictions = active.get("eval_predictions") or []
    if setup.plan.eval_splits:
        missing = [entry["epoch"] for entry, epoch in zip(history, predictions, strict=False) if epoch is None]
        if len(predictions) != len(history) or missing:
            raise ConfigError(f"the active party's record holds no split predictions for epoch(s) {missing or [entry['epoch'] for entry in history[len(predictions):]]}: its attack metrics cannot be scored")
        for entry, epoch in zip(history, predictions, strict=True):
            entry.update(setup.plan.evaluate({split: np.asarray(values) for split, values in epoch.items()}))
    for record in records:
        for entry, extra in zip(history, record.get("attack_history") or [], strict=False):
            entry.update(extra)


def merge_attack_results(
    result: dict[str, Any], records: Mapping[str, Mapping[str, Any]], setup: AttackSetup | None, out_dir: Path | None = None
) -> dict[str, Any]:
    """The gRPC run's result with the attack's metrics as one process records them (simulation only).

    Per epoch: the experimenter's metrics of the active party's raw split predictions
    (``setup.plan.evaluate``), then the attacker's own metrics (its ``attack_history``, or the
    active party's history already holds them). The ``attack`` record is the experimenter's
    summary with the attacker's own counters (e.g. replaced rows). The attacker's per-sample
    outputs go to ``out_dir`` as CSV files beside result.json, as one process writes them.
    """
    for key in ("attack_history", "eval_predictions", "attack_summary", "attack_unscored", "attack_artifacts"):
        result.pop(key, None)
    history = result["history"]
    if setup is None or not setup.config.active:  # the same attack fields as one process records without an attack
        last = history[-1] if history else {}
        result.update({spec.name: last.get(spec.name) for spec in attack_metrics()})
        none = setup.summary() if setup is not None else {"kind": "none", "party": None, "feasible": True, "infeasible_reason": None}
        result.update(attack_feasible=None, attack_infeasible_reason=None, attack=none)
        return result
    active = next(record for record in records.values() if record["role"] == "active")
    score_attack_epochs(history, active, records.values(), setup)
    attack = replace(setup, attack=None).summary()  # the experimenter's part; the attack's own facts are the attacker's
    ran = [record["attack_summary"] for record in records.values() if "attack_summary" in record]
    attack.update(ran[0] if ran else setup.attack.summary() if setup.attack is not None else {})
    for record in records.values():
        if record.get("attack_unscored"):
            attack["unscored"] = record["attack_unscored"]
    truth = setup.truth
    if setup.attack is not None and truth is not None and any(part is not None for part in (truth.gradient_rows, truth.activations, truth.passive_inputs)):
        attack.setdefault("unscored", _UNSCORED_ROWS)
    if out_dir is not None:
        for record in records.values():
            for stem, rows in (record.get("attack_artifacts") or {}).items():
                text = io.StringIO(newline="")
                csv.writer(text).writerows(rows)
                atomic_write_text(out_dir / f"{stem}.csv", text.getvalue())
    last = history[-1] if history else {}
    result.update({spec.name: last.get(spec.name) for spec in attack_metrics()})
    result["attack_feasible"] = attack.get("feasible", True)
    result["attack_infeasible_reason"] = attack.get("infeasible_reason")
    result["attack"] = attack
    return result
