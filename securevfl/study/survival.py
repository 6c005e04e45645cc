"""The survival table: does each attack survive encryption, does each defense keep working?

One line per cell (a setting without its scheme), one column per scheme. A line's setting
includes the protection settings that differ from the defaults (the key holder's hardening:
``flooding_bits``, ``decryption_policy`` ...; shown in its ``protection`` column) and it shows
its ``train.epochs``. A line's verdict compares like with like, never across settings.

This module builds the lines: it describes each line's attack, defense and protection, collects
each scheme's outcomes of a cell, finds a line's counterparts (its undefended line — a sum top
for the trainable top —, its backdoor control or clean model, and the lines of the same setting,
attack and defense whose key holder is weaker: a **hardening**), and writes the cells. The
verdicts themselves — when an attack *survives* or is *changed by* encryption, when a defense
*works*, and how stopped runs count (intent to treat) — are decided in
:mod:`securevfl.study.verdicts`; the names it defines that callers use (:data:`ATTACK_FLOOR`,
:data:`WORKING_ATTACK`, :class:`Comparison`, :func:`compare`, :class:`Judgement`) are re-exported
here.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from securevfl.attacks import MAIN_ACCURACY, AttackConfigBase, attack_class, parse_attack_config, success_metric
from securevfl.attacks.backdoor_control import CONTROL_TARGET_RATE, BackdoorControl
from securevfl.attacks.poison import BackdoorConfig
from securevfl.schemes import PlainScheme
from securevfl.sections import ProtectionConfig, pairwise_activation_masks
from securevfl.study.spec import PlannedRun
from securevfl.study.statistics import EQUIVALENCE_MARGIN
from securevfl.study.status import STOPPED, RunStatus
from securevfl.study.table import describe_defenses
from securevfl.study.verdicts import (
    ATTACK_FLOOR,
    WORKING_ATTACK,
    Comparison,
    Judgement,
    _attack_verdict,
    _clean_verdict,
    _control_verdict,
    _defense_cost_verdict,
    _defense_verdict,
    _Outcome,
    _pct,
    _short,
    _spec,
    _stop_counts,
    compare,
)

#: ATTACK_FLOOR, WORKING_ATTACK, Comparison, Judgement and compare are defined in :mod:`securevfl.study.verdicts`
#: (EQUIVALENCE_MARGIN in :mod:`securevfl.study.statistics`) and re-exported here for the callers that import them from this module.
__all__ = [
    "ATTACK_FLOOR",
    "EQUIVALENCE_MARGIN",
    "WORKING_ATTACK",
    "Comparison",
    "Judgement",
    "SurvivalLine",
    "cell_key",
    "compare",
    "stopped_names",
    "survival_lines",
    "undefended_key",
]

#: The protection fields a scheme label sets (``ckks/<key_holder>[/<preset>]``): the columns, never a line's context.
_SCHEME_FIELDS = ("scheme", "key_holder", "preset")
#: Protection fields that harden the key holder, each mapped to a rank (higher = harder), and how a label names them.
_HARDENING: dict[str, tuple[dict[Any, int] | None, str, str]] = {
    "flooding_bits": (None, "flooding", " bits"),  # None: the number itself is the rank
    "decryption_policy": ({"none": 0, "protocol": 1}, "decryption policy", ""),
    "passive_layer": ({"open": 0, "sealed": 1}, "passive layer", ""),
    # ranked by what the run does: "auto" (and "pairwise") only where the masks run (see _hardening_rank)
    "activation_masks": ({"none": 0, "pairwise": 1}, "activation masks", ""),
}


def stopped_names() -> str:
    """The stop statuses as prose ("diverged, failed or collapsed"), from :data:`STOPPED`: a new one is named too."""
    names = [str(status) for status in STOPPED]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _attack_metric(attack_kind: str) -> str | None:
    return success_metric(attack_kind)


def _attack_key(config: dict[str, Any]) -> str:
    """Every setting of the run's attack (its config holds only its own kind's fields)."""
    return json.dumps(_attack_of(config).model_dump(mode="json"), sort_keys=True)


def _backdoor_key(config: dict[str, Any]) -> str | None:
    """The fields that choose a backdoor's triggered test samples (None for a non-backdoor attack)."""
    attack = _attack_of(config)
    if not isinstance(attack, BackdoorConfig):
        return None
    fields = {name: getattr(attack, name) for name in BackdoorConfig.model_fields if name != "kind"}
    return json.dumps(fields, sort_keys=True, default=str)


def describe_attack(config: dict[str, Any]) -> str:
    return _attack_of(config).label()


def _attack_of(config: dict[str, Any]) -> AttackConfigBase:
    return parse_attack_config(config.get("attack", {"kind": "none"}))


def describe_defense(config: dict[str, Any]) -> str:
    parts = ["trainable top"] if config["model"]["top"] == "trainable" else []
    listed = describe_defenses(config.get("defense", []))
    if listed != "none":
        parts.append(listed)
    return " + ".join(parts) or "none"


def _protection_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The run's protection settings that differ from the defaults, without those its scheme label sets.

    They are part of a line's setting: two lines that differ only in the key holder's hardening
    (e.g. ``flooding_bits = 0``) are different lines, labelled and compared as such.
    """
    defaults = ProtectionConfig().model_dump(mode="json")
    protection = config.get("protection", {})
    return {
        name: value for name, value in protection.items()
        if name not in _SCHEME_FIELDS and name in defaults and value != defaults[name]
    }


def _hardening_rank(config: dict[str, Any]) -> dict[str, int | float]:
    """Each hardening field's rank in this run (defaults filled in): higher is harder."""
    defaults = ProtectionConfig().model_dump(mode="json")
    protection = {**defaults, **config.get("protection", {})}
    ranks: dict[str, int | float] = {}
    for name, (order, _, _) in _HARDENING.items():
        value = protection[name]
        if name == "activation_masks":  # "auto" is "none" where the masks cannot run (ckks/active, a trainable top ...)
            model, parties = config.get("model", {}), config.get("parties", {})
            masked = pairwise_activation_masks(ProtectionConfig.model_validate(protection), model.get("top", "sum"), int(parties.get("passive", 2)))
            value = "pairwise" if masked else "none"
        ranks[name] = float(value) if order is None else order.get(value, 0)
    return ranks


def describe_protection(config: dict[str, Any]) -> str:
    """The line's non-default protection settings ('default' when none): ``flooding 0 bits``."""
    settings = _protection_settings(config)
    parts = [f"{_HARDENING[name][1]} {value}{_HARDENING[name][2]}" if name in _HARDENING else f"{name}={value}" for name, value in settings.items()]
    return ", ".join(parts) or "default"


def _hardening_label(harder: dict[str, Any], weaker: dict[str, Any]) -> str:
    """``flooding 30 bits vs 0``: the hardening fields in which the two runs differ, harder first."""
    defaults = ProtectionConfig().model_dump(mode="json")
    a, b = {**defaults, **harder.get("protection", {})}, {**defaults, **weaker.get("protection", {})}
    return ", ".join(f"{noun} {a[name]}{unit} vs {b[name]}" for name, (_, noun, unit) in _HARDENING.items() if a[name] != b[name])


def _context(config: dict[str, Any], drop_model: bool = False, drop_hardening: bool = False) -> str:
    """Everything but scheme, seed, attack and defenses (and the model, for the trainable-top pairing).

    The protection settings that differ from the defaults stay (without the hardening fields when
    ``drop_hardening``: the key for pairing a hardened line with an unhardened one).
    """
    context = copy.deepcopy(config)
    for key in ("protection", "attack", "defense"):
        context.pop(key, None)
    protection = _protection_settings(config)
    if drop_hardening:
        protection = {name: value for name, value in protection.items() if name not in _HARDENING}
    if protection:
        context["protection"] = protection
    context["train"].pop("seed", None)
    context["train"].pop("progress", None)
    if drop_model:
        context.pop("model")
    return json.dumps(context, sort_keys=True)


@dataclass
class SurvivalLine:
    grid: str
    setting: str
    attack: str
    defense: str
    protection: str = "default"
    epochs: str = "-"
    cells: dict[str, str] = field(default_factory=dict)  # scheme -> "backdoor / main" or status
    verdict: str = ""
    judgements: list[Judgement] = field(default_factory=list)
    words: dict[str, str] = field(default_factory=dict)
    """scheme -> the line's outcome in a word or two (the compact table; ``verdict`` has every number)."""

    def summary(self) -> str:
        """``ckks/receiver: survives; ckks/active: stopped``, or the defense's word per scheme; '-' for a clean line."""
        return "; ".join(f"{scheme}: {word}" for scheme, word in self.words.items()) or "-"


def _cell_text(outcome: _Outcome | None, metric: str | None, control: _Outcome | None = None) -> str:
    if outcome is None:
        return "not run"
    status = outcome.status()
    if status != RunStatus.OK and metric is not None and outcome.caught(metric):  # every seed stopped; the caught read
        stopped, caught = outcome.stopped, outcome.caught(metric)
        return f"{_pct(outcome.mean(metric))} at the stop (n={len(caught)}) / main - [{_stop_counts(stopped, len(stopped))}]"
    if status != RunStatus.OK:
        reason = f" ({_short(outcome.reason())})" if outcome.reason() else ""
        if not outcome.stopped:
            return f"{status}{reason}"
        # every seed with an outcome stopped: how many, how, and when (the first row's reason stands for the kind)
        rows = sorted((row for row in outcome.rows if int(row["seed"]) in outcome.stopped), key=lambda r: int(r["seed"]))
        epochs = [str(row["stopped_at_epoch"]) for row in rows if row.get("stopped_at_epoch") is not None]
        kinds = set(outcome.stopped.values())
        n = len(outcome.stopped)
        head = f"{next(iter(kinds))} {n}/{n}" if len(kinds) == 1 else _stop_counts(outcome.stopped, n)
        when = f" at epoch{'s' if len(epochs) > 1 else ''} {', '.join(epochs)}" if epochs else ""
        waiting = f" [{len(outcome.waiting)} pending]" if outcome.waiting else ""
        return f"{head}{when}{waiting}{reason}"
    main = _pct(outcome.mean(MAIN_ACCURACY.name))
    stopped = outcome.stopped
    with_outcome = len(outcome.ok) + len(stopped)
    partial = f" [{_stop_counts(stopped, with_outcome)}]" if stopped else ""
    if outcome.at_chance:
        partial += f" [model at chance {len(outcome.at_chance)}/{with_outcome}: main not counted]"
    if outcome.waiting:
        partial += f" [{len(outcome.waiting)} pending]"
    if metric is None:
        rate = outcome.mean(CONTROL_TARGET_RATE.name)
        shown = f"; control {_pct(rate)}" if rate is not None else ""
        return f"main {main}{shown}{partial}"
    if not outcome.feasible():
        return f"infeasible ({_short(outcome.reason())}); main {main}{partial}"
    control_text = ""
    if control is not None and control.mean(CONTROL_TARGET_RATE.name) is not None:
        control_text = f" (control {_pct(control.mean(CONTROL_TARGET_RATE.name))})"
    spec = _spec(metric)
    if spec is not None and spec.covered_by is not None and outcome.mean(spec.covered_by) is not None:
        control_text += f" (of the {_pct(outcome.mean(spec.covered_by))} % of samples read)"  # a fraction of a fraction
    return f"{_pct(outcome.mean(metric))}{control_text} / {main}{partial}"


def cell_key(run: PlannedRun) -> tuple[str, str]:
    """(grid, setting): the run's cell without its scheme and seed."""
    setting = "__".join(label if name == "variant" else f"{name}={label}" for name, label in run.levels.items() if name != "scheme") or "-"
    return run.grid, setting


@dataclass
class _Study:
    """The study's cells (grid, setting) -> scheme -> outcome, their configs and epochs, and the
    indexes that find a line's counterparts: its undefended line, its control or clean line, and
    the lines that differ from it only in the key holder's hardening."""

    cells: dict[tuple[str, str], dict[str, _Outcome]] = field(default_factory=dict)
    configs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    epochs: dict[tuple[str, str], set[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, runs: list[PlannedRun], rows: list[dict[str, Any]]) -> _Study:
        by_id = {row["run_id"]: row for row in rows}
        study = cls()
        for run in runs:
            key = cell_key(run)
            study.cells.setdefault(key, {}).setdefault(run.levels["scheme"], _Outcome([])).rows.append(by_id[run.run_id])
            if run.config:
                study.configs.setdefault(key, run.config)
                study.epochs.setdefault(key, set()).add(int(run.config["train"]["epochs"]))
        return study

    @property
    def index(self) -> dict[tuple[str, str, str], tuple[str, str]]:
        return {(_context(c), _attack_key(c), describe_defense(c)): key for key, c in self.configs.items()}

    def _trains_clean(self, config: dict[str, Any]) -> bool:
        return _attack_of(config).kind in ("none", BackdoorControl.name) and not config.get("defense")

    def control(self, config: dict[str, Any]) -> dict[str, _Outcome]:
        """The ``backdoor_control`` cell of the same setting and backdoor fields (any defense or top), or {}."""
        wanted = (_context(config), _backdoor_key(config))
        for key, other in self.configs.items():
            if _attack_of(other).kind == BackdoorControl.name and not other.get("defense") and (_context(other), _backdoor_key(other)) == wanted:
                return self.cells[key]
        return {}

    def clean(self, config: dict[str, Any]) -> dict[str, _Outcome]:
        """The clean model of the same setting: the backdoor's control, else any cell that trains without attack or defense."""
        control = self.control(config) if _backdoor_key(config) is not None else {}
        if control:
            return control
        context = _context(config)
        found = next((key for key, other in self.configs.items() if self._trains_clean(other) and _context(other) == context), None)
        return self.cells[found] if found is not None else {}

    def weaker(self, key: tuple[str, str]) -> list[tuple[tuple[str, str], str]]:
        """(cell, "flooding 30 bits vs 0") of every line with the same setting, attack and defense and a
        weaker key holder: no hardening field harder, at least one weaker."""
        config = self.configs[key]
        group = (_context(config, drop_hardening=True), _attack_key(config), describe_defense(config))
        mine = _hardening_rank(config)
        found = []
        for other_key, other in self.configs.items():
            if other_key == key or (_context(other, drop_hardening=True), _attack_key(other), describe_defense(other)) != group:
                continue
            theirs = _hardening_rank(other)
            if all(mine[name] >= theirs[name] for name in mine) and mine != theirs:
                found.append((other_key, _hardening_label(config, other)))
        return found

    def epochs_text(self, key: tuple[str, str]) -> str:
        return ", ".join(map(str, sorted(self.epochs.get(key, set())))) or "-"


def survival_lines(runs: list[PlannedRun], rows: list[dict[str, Any]], schemes: list[str]) -> list[SurvivalLine]:
    """One line per cell (without its scheme), in study order, with per-scheme cells and a verdict."""
    study = _Study.of(runs, rows)
    return [_line(study, key, schemes) for key in study.cells if key in study.configs]


def _line(study: _Study, key: tuple[str, str], schemes: list[str]) -> SurvivalLine:
    """A line's cells and verdict: its control, its attack / defense / clean verdict, and its hardening comparisons."""
    config, per_scheme = study.configs[key], study.cells[key]
    metric = _attack_metric(_attack_of(config).kind)
    line = SurvivalLine(
        grid=key[0], setting=key[1], attack=describe_attack(config), defense=describe_defense(config),
        protection=describe_protection(config), epochs=study.epochs_text(key),
    )
    control = study.control(config) if metric and _backdoor_key(config) is not None else {}
    line.cells = {scheme: _cell_text(per_scheme.get(scheme), metric, control.get(scheme)) for scheme in schemes}
    parts = [_control_verdict(per_scheme, control, metric)] if metric and control else []
    encrypted = any(scheme != PlainScheme.name for scheme in per_scheme)
    if metric is None and config.get("defense") and _attack_of(config).kind == "none":  # a [[defense]] list, trained unattacked
        parts.append(_defense_cost_verdict(per_scheme, study.clean(config)))
        if encrypted:
            parts.append("no attack: " + _clean_verdict(per_scheme))
    elif metric is None:  # a clean line, a control, a clean trainable top: their own comparisons
        parts.append(("no attack: " if line.defense != "none" else "") + _clean_verdict(per_scheme))
    elif line.defense == "none":
        parts.append(_attack_verdict(per_scheme, metric, line.words))
    else:
        counterpart = _undefended(config, study.index)
        if counterpart is None and line.defense == "trainable top":  # the model of this setting, not a defense added to it
            parts.append("trainable top (no sum-top line of this setting to compare it with as a defense)")
        elif counterpart is None:
            parts.append("no undefended run of the same attack and setting in this study")
        else:
            text, judgements = _defense_verdict(per_scheme, study.cells[counterpart], metric, study.clean(config), line.defense)
            parts.append(text)
            line.judgements += judgements
            line.words.update({j.scheme: j.word + (" (weak attack)" if j.working is False else "") for j in judgements})
        if encrypted:  # the same defended (or trainable-top) line with and without encryption, paired by seed
            vs_plain: dict[str, str] = {}
            compared = _attack_verdict(per_scheme, metric, vs_plain, defended=line.defense != "trainable top")
            parts.append(f"this line, CKKS vs plaintext: {compared}")
            # the compact table gives both answers per CKKS scheme: the defense's (against its undefended line) and the
            # line's own comparison with plaintext, which can differ (a defended CKKS run that trains like plaintext
            # while the undefended CKKS runs stopped)
            for scheme, word in vs_plain.items():
                if scheme not in line.words:
                    line.words[scheme] = word
                elif scheme != PlainScheme.name:
                    line.words[scheme] += f"; vs plain: {word}"
    if metric is not None and encrypted and attack_class(_attack_of(config).kind).observes_only:
        main = _clean_verdict(per_scheme)  # the attack only reads: every run trains the honest model
        if main != "clean baseline":
            parts.append(f"main accuracy (the attack only observes, so this is the honest model's) {main}")
    if metric:
        for weaker_key, label in study.weaker(key):
            what = f"hardening {label}"
            text, judgements = _defense_verdict(per_scheme, study.cells[weaker_key], metric, study.clean(config), what, "unhardened")
            parts.append(f"{what} (against grid {weaker_key[0]}, {weaker_key[1]}): {text}")
            line.judgements += judgements
    line.verdict = "; ".join(parts)
    return line


def undefended_key(config: dict[str, Any], configs: dict[tuple[str, str], dict[str, Any]]) -> tuple[str, str] | None:
    """The (grid, setting) of the cell with the same setting and attack and no defense (for plots)."""
    index = {(_context(c), _attack_key(c), describe_defense(c)): key for key, c in configs.items()}
    return _undefended(config, index)


def _undefended(config: dict[str, Any], index: dict[tuple[str, str, str], tuple[str, str]]) -> tuple[str, str] | None:
    """The cell with the same setting and attack and no defense (a sum top for the trainable top)."""
    if config.get("defense"):
        plain_model = copy.deepcopy(config)
        plain_model["defense"] = []
        found = index.get((_context(plain_model), _attack_key(config), describe_defense(plain_model)))
        if found is not None:
            return found
    if config["model"]["top"] == "trainable" and not config.get("defense"):
        target = _context(config, drop_model=True)
        for (context, attack, defense), key in index.items():
            if defense == "none" and attack == _attack_key(config) and json.loads(context).get("model", {}).get("top") == "sum":
                stripped = json.loads(context)
                stripped.pop("model")
                if json.dumps(stripped, sort_keys=True) == target:
                    return key
    return None
