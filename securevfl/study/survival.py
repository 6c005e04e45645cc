"""The survival table: does each attack survive encryption, does each defense keep working?

One line per study cell (a setting without its scheme), one column per scheme. A line's
verdict compares like with like, never across settings:

- an **attack** line compares its attack metric (backdoor accuracy, or label-inference
  accuracy) under each CKKS scheme with plaintext: *survives* when the means differ by at
  most :data:`SAME_TOLERANCE` (or two standard deviations over seeds, if larger);
  *infeasible* when the attacker could not run it (its reason is given);
- a **defense** line (a ``[[defense]]`` list, or the trainable top) compares the same
  attack without that defense in the same setting and scheme: the defense *works* when it
  removes at least half of the attack's success (and the attack reached at least
  :data:`ATTACK_FLOOR` without it); its main-task cost is the change in main accuracy.
  It *keeps working* under encryption when, under each CKKS scheme, the attack's success
  with the defense is within the same tolerance of plaintext's (a verdict word flipping at
  the 50 % threshold is not a difference); a placement a scheme cannot carry is shown as
  refused with the reason. Pending runs are left out of every verdict.

Every comparison pairs seeds: it uses only the seeds that finished on both sides (and names
them when some are left out), so a seed that diverged in one scheme and stopped in another
cannot tilt a verdict. Means are at the last epoch; a cell where some seeds stopped
says how many finished (``[2/3 seeds; 1 failed]``).
"""

from __future__ import annotations

import copy
import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from securevfl.attacks import MAIN_ACCURACY, AttackConfigBase, attack_metrics, parse_attack_config, success_metric
from securevfl.schemes import PlainScheme
from securevfl.study.spec import PlannedRun
from securevfl.study.table import describe_defenses
from securevfl.study.status import RunStatus

__all__ = ["ATTACK_FLOOR", "SAME_TOLERANCE", "SurvivalLine", "survival_lines"]


#: Largest difference in mean attack success (fraction) still called "the same".
SAME_TOLERANCE = 0.05
#: Below this attack success, a defense has nothing to remove.
ATTACK_FLOOR = 0.10
#: A defense "works" when it removes at least this share of the attack's success.
WORKS_SHARE = 0.5


def _attack_metric(attack_kind: str) -> str | None:
    return success_metric(attack_kind)


def _lower_is_success(metric: str) -> bool:
    return any(spec.name == metric and spec.success == "lower" for spec in attack_metrics())


def _attack_key(config: dict[str, Any]) -> str:
    """Every setting of the run's attack (its config holds only its own kind's fields)."""
    return json.dumps(_attack_of(config).model_dump(mode="json"), sort_keys=True)


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


def _context(config: dict[str, Any], drop_model: bool = False) -> str:
    """Everything but scheme, seed, attack and defenses (and the model, for the trainable-top pairing)."""
    context = copy.deepcopy(config)
    for key in ("protection", "attack", "defense"):
        context.pop(key, None)
    context["train"].pop("seed", None)
    context["train"].pop("progress", None)
    if drop_model:
        context.pop("model")
    return json.dumps(context, sort_keys=True)


@dataclass
class _Outcome:
    """One scheme's runs of one cell."""

    rows: list[dict[str, Any]]

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["status"] == RunStatus.OK]

    def status(self) -> str:
        if self.ok:
            return RunStatus.OK
        return min({row["status"] for row in self.rows})

    def reason(self) -> str:
        return next((str(row["reason"]) for row in self.rows if row.get("reason")), "")

    def feasible(self) -> bool:
        return all(row.get("attack_feasible") is not False for row in self.ok)

    @property
    def seeds(self) -> set[int]:
        return {int(row["seed"]) for row in self.ok}

    def _values(self, metric: str, seeds: set[int] | None) -> list[float]:
        return [float(row[metric]) for row in self.ok if row.get(metric) is not None and (seeds is None or int(row["seed"]) in seeds)]

    def mean(self, metric: str, seeds: set[int] | None = None) -> float | None:
        values = self._values(metric, seeds)
        return statistics.fmean(values) if values else None

    def std(self, metric: str, seeds: set[int] | None = None) -> float:
        values = self._values(metric, seeds)
        return statistics.stdev(values) if len(values) > 1 else 0.0


def _paired(first: _Outcome, second: _Outcome, metric: str) -> tuple[float, float, float, str] | None:
    """Means of both over the seeds both finished, the larger spread, and a note if seeds were left out."""
    seeds = first.seeds & second.seeds
    if not seeds:
        return None
    a, b = first.mean(metric, seeds), second.mean(metric, seeds)
    if a is None or b is None:
        return None
    spread = max(first.std(metric, seeds), second.std(metric, seeds))
    note = "" if seeds == first.seeds == second.seeds else f", seeds {','.join(map(str, sorted(seeds)))}"
    return a, b, spread, note


@dataclass
class SurvivalLine:
    grid: str
    setting: str
    attack: str
    defense: str
    cells: dict[str, str] = field(default_factory=dict)  # scheme -> "backdoor / main" or status
    verdict: str = ""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _short(reason: str, limit: int = 90) -> str:
    reason = reason.removeprefix("config error: ").split("; use ")[0]
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def _cell_text(outcome: _Outcome | None, metric: str | None) -> str:
    if outcome is None:
        return "not run"
    status = outcome.status()
    if status != RunStatus.OK:
        return f"{status} ({_short(outcome.reason())})" if outcome.reason() else status
    main = _pct(outcome.mean(MAIN_ACCURACY.name))
    stopped = [row for row in outcome.rows if row["status"] != RunStatus.OK]
    partial = f" [{len(outcome.ok)}/{len(outcome.rows)} seeds; {len(stopped)} {stopped[0]['status']}]" if stopped else ""
    if metric is None:
        return f"main {main}{partial}"
    if not outcome.feasible():
        return f"infeasible ({_short(outcome.reason())}); main {main}{partial}"
    return f"{_pct(outcome.mean(metric))} / {main}{partial}"


def survival_lines(runs: list[PlannedRun], rows: list[dict[str, Any]], schemes: list[str]) -> list[SurvivalLine]:
    """One line per cell (without its scheme), in study order, with per-scheme cells and a verdict."""
    by_id = {row["run_id"]: row for row in rows}
    cells: dict[tuple[str, str], dict[str, _Outcome]] = {}
    configs: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        setting = "__".join(label if name == "variant" else f"{name}={label}" for name, label in run.levels.items() if name != "scheme") or "-"
        key = (run.grid, setting)
        scheme = run.levels["scheme"]
        cells.setdefault(key, {}).setdefault(scheme, _Outcome([])).rows.append(by_id[run.run_id])
        if run.config:
            configs.setdefault(key, run.config)
    index = {
        (_context(config), _attack_key(config), describe_defense(config)): key for key, config in configs.items()
    }
    lines: list[SurvivalLine] = []
    for key, per_scheme in cells.items():
        config = configs.get(key)
        if config is None:
            continue
        attack_kind = config.get("attack", {"kind": "none"})["kind"]
        metric = _attack_metric(attack_kind)
        line = SurvivalLine(grid=key[0], setting=key[1], attack=describe_attack(config), defense=describe_defense(config))
        line.cells = {scheme: _cell_text(per_scheme.get(scheme), metric) for scheme in schemes}
        if line.defense == "none":
            line.verdict = _attack_verdict(per_scheme, metric) if metric else _clean_verdict(per_scheme)
        elif metric is None:
            line.verdict = "no attack: " + _clean_verdict(per_scheme)
        else:
            counterpart = _undefended(config, index)
            line.verdict = (
                _defense_verdict(per_scheme, cells[counterpart], metric)
                if counterpart is not None
                else "no undefended run of the same attack and setting in this study"
            )
        lines.append(line)
    return lines


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


def _clean_verdict(per_scheme: dict[str, _Outcome]) -> str:
    plain = per_scheme.get(PlainScheme.name)
    base = plain.mean(MAIN_ACCURACY.name) if plain is not None else None
    parts = []
    for scheme, outcome in per_scheme.items():
        if scheme == PlainScheme.name or outcome.status() != RunStatus.OK or base is None:
            continue
        delta = (outcome.mean(MAIN_ACCURACY.name) or 0.0) - base
        parts.append(f"{scheme} {100 * delta:+.2f}")
    return ("main accuracy vs plaintext: " + ", ".join(parts)) if parts else "clean baseline"


def _attack_verdict(per_scheme: dict[str, _Outcome], metric: str) -> str:
    plain = per_scheme.get(PlainScheme.name)
    if plain is None or plain.status() != RunStatus.OK:
        return "no plaintext run to compare with"
    survives: list[str] = []
    changed: list[str] = []
    infeasible: list[str] = []
    stopped: list[str] = []
    for scheme, outcome in per_scheme.items():
        if scheme == PlainScheme.name:
            continue
        if outcome.status() == RunStatus.PENDING:
            continue
        if outcome.status() != RunStatus.OK:
            stopped.append(f"{scheme} {outcome.status()}")
        elif not outcome.feasible():
            infeasible.append(scheme)
        else:
            paired = _paired(plain, outcome, metric)
            if paired is None:
                stopped.append(f"{scheme}: no seed finished in both")
                continue
            base, value, spread, note = paired
            tolerance = max(SAME_TOLERANCE, 2 * spread)
            (survives if abs(value - base) <= tolerance else changed).append(f"{scheme} ({_pct(value)} vs {_pct(base)}{note})")
    parts = []
    if survives:
        parts.append("survives encryption: " + ", ".join(survives))
    if changed:
        parts.append("changed by encryption: " + ", ".join(changed))
    if infeasible:
        parts.append("infeasible under " + ", ".join(infeasible))
    if stopped:
        parts.append("stopped: " + ", ".join(stopped))
    return "; ".join(parts) or "plaintext only"


def _defense_effect(with_defense: _Outcome, without: _Outcome | None, metric: str) -> tuple[str, str]:
    """(verdict word, detail) for one scheme."""
    if with_defense.status() == RunStatus.REFUSED:
        return RunStatus.REFUSED, "cannot be placed"
    if with_defense.status() == RunStatus.PENDING or (without is not None and without.status() == RunStatus.PENDING):
        return RunStatus.PENDING, RunStatus.PENDING
    if without is None or without.status() != RunStatus.OK or with_defense.status() != RunStatus.OK:
        state = with_defense.status() if with_defense.status() != RunStatus.OK else "undefended run missing"
        return state, state
    if not with_defense.feasible() or not without.feasible():
        return "n/a", "attack infeasible"
    paired, main = _paired(without, with_defense, metric), _paired(without, with_defense, MAIN_ACCURACY.name)
    if paired is None or main is None:
        return "no common seed", "no seed finished with and without the defense"
    before, after, _, note = paired
    cost = main[1] - main[0]
    detail = f"{_pct(before)}→{_pct(after)}, main {100 * cost:+.1f}{note}"
    if _lower_is_success(metric):  # the floor and the share below are defined for success rates
        return "no verdict", f"{detail}; {metric} is lower-is-success, which these thresholds do not cover"
    if before < ATTACK_FLOOR:
        return "nothing to stop", detail
    word = "works" if after <= before * (1 - WORKS_SHARE) else "does not work"
    return word, detail


def _defense_verdict(defended: dict[str, _Outcome], undefended: dict[str, _Outcome], metric: str) -> str:
    effects = {scheme: _defense_effect(outcome, undefended.get(scheme), metric) for scheme, outcome in defended.items()}
    parts = [f"{scheme}: {word} ({detail})" if word != detail else f"{scheme}: {word}" for scheme, (word, detail) in effects.items()]
    plain = defended.get(PlainScheme.name)
    if plain is None or effects[PlainScheme.name][0] not in ("works", "does not work"):
        return "; ".join(parts)
    same: list[str] = []
    different: list[str] = []
    for scheme, outcome in defended.items():
        if scheme == PlainScheme.name or effects[scheme][0] not in ("works", "does not work", "nothing to stop"):
            continue
        paired = _paired(plain, outcome, metric)
        if paired is None:
            continue
        base, value, spread, _ = paired
        (same if abs(value - base) <= max(SAME_TOLERANCE, 2 * spread) else different).append(scheme)
    if same and not different:
        if any(effects[scheme][0] != effects[PlainScheme.name][0] for scheme in same):
            parts.append("same attack success as plaintext within the seed spread")
        else:
            parts.append("keeps working under encryption" if effects[PlainScheme.name][0] == "works" else "fails in plaintext and under encryption")
    elif different:
        parts.append("the attack's success with the defense differs from plaintext's under " + ", ".join(different))
    return "; ".join(parts)
