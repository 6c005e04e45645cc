"""The survival table: does each attack survive encryption, does each defense keep working?

One line per study cell (a setting without its scheme), one column per scheme. A line's
verdict compares like with like, never across settings, and is decided on a **95 % paired t
interval over seeds** (:mod:`securevfl.study.statistics`), never on a tolerance that widens with
the spread:

- an **attack** line compares its success metric (backdoor accuracy, label-inference accuracy
  ...) under each CKKS scheme with plaintext, seed by seed: the attack *survives encryption*
  when the 95 % interval of (CKKS - plaintext) lies within +-:data:`EQUIVALENCE_MARGIN`
  (an equivalence test); it is *changed by encryption* when the interval excludes 0 (and is not
  inside the margin); otherwise the line says *inconclusive* with the number of paired seeds
  (always so below 2 paired seeds). *Infeasible* when the attacker could not run it (with the
  reason). A backdoor line also shows the **control** — the clean model's rate of sending the
  same triggered inputs to the target (``backdoor_control`` runs of the same setting) — and the
  paired interval of (backdoor - control).
- a **defense** line (a ``[[defense]]`` list, or the trainable top) compares the same attack
  without that defense in the same setting and scheme: the defense *works* when the 95 %
  interval of (undefended - defended) success lies above 0; it is shown with the size of that
  reduction and its **main-accuracy cost** (defended - undefended main accuracy, mean and
  interval). Below :data:`ATTACK_FLOOR` undefended success there is *nothing to stop*.
  The line ends with *keeps working under encryption* when it works in plaintext and under every
  CKKS scheme, *works in plaintext only* when some CKKS scheme's interval does not exclude 0
  (*not shown to work* there: an interval that includes 0 does not prove the defense useless).

**Intent to treat.** A run that stopped (diverged, failed: e.g. a message left CKKS's range) or
collapsed (main accuracy within 5 points of chance) is an outcome, counted per side and seed,
never dropped. A success verdict (survives / changed / works / not shown to work) needs every seed
with an outcome to have *finished on both sides*; when any seed stopped on either side the
verdict is that stop — e.g. ``ckks/receiver: stops training in 2/5 seeds (2 diverged; plaintext
0/5)`` — and the interval over the seeds finished on both sides is shown as descriptive only
(the seeds that stopped may be exactly those where the attack succeeded; a verdict on the rest
would be selected by its outcome). Pending (and crashed) runs are no outcome yet: they are left
out and the verdict says so.
"""

from __future__ import annotations

import copy
import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from securevfl.attacks import MAIN_ACCURACY, AttackConfigBase, attack_metrics, parse_attack_config, success_metric
from securevfl.attacks.backdoor_control import CONTROL_TARGET_RATE, BackdoorControl
from securevfl.attacks.poison import BackdoorConfig
from securevfl.schemes import PlainScheme
from securevfl.study.spec import PlannedRun
from securevfl.study.statistics import (
    EQUIVALENCE_MARGIN,
    MIN_PAIRS,
    Interval,
    Verdict,
    equivalence,
    mean_interval,
    paired_difference,
    reduction,
)
from securevfl.study.status import STOPPED, WAITING, RunStatus
from securevfl.study.table import describe_defenses

__all__ = ["ATTACK_FLOOR", "EQUIVALENCE_MARGIN", "Comparison", "SurvivalLine", "cell_key", "compare", "survival_lines", "undefended_key"]

#: Below this undefended attack success (mean, fraction), a defense has nothing to remove.
ATTACK_FLOOR = 0.10


def _attack_metric(attack_kind: str) -> str | None:
    return success_metric(attack_kind)


def _lower_is_success(metric: str) -> bool:
    return any(spec.name == metric and spec.success == "lower" for spec in attack_metrics())


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
    def refused(self) -> bool:
        return bool(self.rows) and all(row["status"] == RunStatus.REFUSED for row in self.rows)

    def seeds_with(self, statuses: tuple[str, ...]) -> dict[int, str]:
        return {int(row["seed"]): row["status"] for row in self.rows if row["status"] in statuses}

    @property
    def stopped(self) -> dict[int, str]:
        """seed -> status of the runs that stopped or collapsed (outcomes without a number)."""
        return self.seeds_with(STOPPED)

    @property
    def waiting(self) -> set[int]:
        return set(self.seeds_with(WAITING))

    def values(self, metric: str) -> dict[int, float]:
        """seed -> last-epoch value of the finished runs."""
        return {int(row["seed"]): float(row[metric]) for row in self.ok if row.get(metric) is not None}

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.fmean(values.values()) if values else None


@dataclass(frozen=True)
class Comparison:
    """Two sides of a comparison over the same seeds: the paired interval and who stopped.

    ``difference`` is ``second - first`` over the seeds finished on both; ``stopped_first`` /
    ``stopped_second`` map seed -> status over the seeds both sides have an outcome for;
    ``waiting`` are seeds without an outcome yet on some side.
    """

    difference: Interval
    stopped_first: dict[int, str]
    stopped_second: dict[int, str]
    seeds: tuple[int, ...]
    waiting: tuple[int, ...]

    @property
    def complete(self) -> bool:
        """Every seed with an outcome on both sides finished on both: a verdict may be drawn."""
        return not self.stopped_first and not self.stopped_second

    def stop_text(self, first: str, second: str) -> str:
        return f"{second} {_stop_counts(self.stopped_second, len(self.seeds))}, {first} {_stop_counts(self.stopped_first, len(self.seeds))}"

    def pending_text(self) -> str:
        return f"; provisional: seed(s) {','.join(map(str, self.waiting))} not finished yet" if self.waiting else ""


def _stop_counts(stopped: dict[int, str], total: int) -> str:
    counts: dict[str, int] = {}
    for status in stopped.values():
        counts[status] = counts.get(status, 0) + 1
    detail = f" ({', '.join(f'{n} {status}' for status, n in sorted(counts.items()))})" if counts else ""
    return f"stopped {len(stopped)}/{total}{detail}"


def compare(first: _Outcome, second: _Outcome, metric: str) -> Comparison:
    """Pair ``first`` and ``second`` by seed: the interval of (second - first) and the stopped runs of each side.

    A seed counts when both sides have an outcome for it (finished, stopped or collapsed); a seed
    still pending (or crashed) on either side is left out and named.
    """
    def outcome_seeds(side: _Outcome) -> set[int]:
        return {int(row["seed"]) for row in side.rows if row["status"] == RunStatus.OK or row["status"] in STOPPED}

    seeds = outcome_seeds(first) & outcome_seeds(second)
    waiting = (first.waiting | second.waiting) - seeds
    a = {s: v for s, v in first.values(metric).items() if s in seeds}
    b = {s: v for s, v in second.values(metric).items() if s in seeds}
    return Comparison(
        difference=paired_difference(a, b),
        stopped_first={s: st for s, st in first.stopped.items() if s in seeds},
        stopped_second={s: st for s, st in second.stopped.items() if s in seeds},
        seeds=tuple(sorted(seeds)),
        waiting=tuple(sorted(waiting)),
    )


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


def _cell_text(outcome: _Outcome | None, metric: str | None, control: _Outcome | None = None) -> str:
    if outcome is None:
        return "not run"
    status = outcome.status()
    if status != RunStatus.OK:
        return f"{status} ({_short(outcome.reason())})" if outcome.reason() else status
    main = _pct(outcome.mean(MAIN_ACCURACY.name))
    stopped = outcome.stopped
    with_outcome = len(outcome.ok) + len(stopped)
    partial = f" [{_stop_counts(stopped, with_outcome)}]" if stopped else ""
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
    return f"{_pct(outcome.mean(metric))}{control_text} / {main}{partial}"


def cell_key(run: PlannedRun) -> tuple[str, str]:
    """(grid, setting): the run's cell without its scheme and seed."""
    setting = "__".join(label if name == "variant" else f"{name}={label}" for name, label in run.levels.items() if name != "scheme") or "-"
    return run.grid, setting


def survival_lines(runs: list[PlannedRun], rows: list[dict[str, Any]], schemes: list[str]) -> list[SurvivalLine]:
    """One line per cell (without its scheme), in study order, with per-scheme cells and a verdict."""
    by_id = {row["run_id"]: row for row in rows}
    cells: dict[tuple[str, str], dict[str, _Outcome]] = {}
    configs: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        key = cell_key(run)
        scheme = run.levels["scheme"]
        cells.setdefault(key, {}).setdefault(scheme, _Outcome([])).rows.append(by_id[run.run_id])
        if run.config:
            configs.setdefault(key, run.config)
    index = {
        (_context(config), _attack_key(config), describe_defense(config)): key for key, config in configs.items()
    }
    controls = {
        (_context(config), _backdoor_key(config)): key
        for key, config in configs.items()
        if _attack_of(config).kind == BackdoorControl.name and not config.get("defense")
    }
    lines: list[SurvivalLine] = []
    for key, per_scheme in cells.items():
        config = configs.get(key)
        if config is None:
            continue
        attack_kind = config.get("attack", {"kind": "none"})["kind"]
        metric = _attack_metric(attack_kind)
        line = SurvivalLine(grid=key[0], setting=key[1], attack=describe_attack(config), defense=describe_defense(config))
        control_key = controls.get((_context(config), _backdoor_key(config))) if line.defense == "none" and metric else None
        control = cells[control_key] if control_key is not None else {}
        line.cells = {scheme: _cell_text(per_scheme.get(scheme), metric, control.get(scheme)) for scheme in schemes}
        if line.defense == "none":
            if metric:
                line.verdict = _attack_verdict(per_scheme, metric)
                if control:
                    line.verdict = _control_verdict(per_scheme, control, metric) + "; " + line.verdict
            else:
                line.verdict = _clean_verdict(per_scheme)
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


def _points(interval: Interval) -> str:
    """A paired difference of fractions in points, its interval clipped to the [-100, 100] it can take."""
    return interval.clipped(-1.0, 1.0).text(signed=True)


def _clean_verdict(per_scheme: dict[str, _Outcome]) -> str:
    """Main accuracy (and a control's target rate) of each CKKS scheme vs plaintext, paired by seed."""
    plain = per_scheme.get(PlainScheme.name)
    parts: list[str] = []
    mains: list[str] = []
    if plain is not None and plain.mean(CONTROL_TARGET_RATE.name) is not None:
        rate = mean_interval(list(plain.values(CONTROL_TARGET_RATE.name).values())).clipped(0.0, 1.0)
        parts.append(f"control: the clean model sends {rate.text()} % of the triggered inputs to the target (plain)")
    for scheme, outcome in per_scheme.items():
        if scheme == PlainScheme.name or plain is None or outcome.refused:
            continue
        comparison = compare(plain, outcome, MAIN_ACCURACY.name)
        if not comparison.seeds:
            continue
        text = f"{scheme} main Δ {_points(comparison.difference)}"
        if not comparison.complete:
            text += f" ({comparison.stop_text(PlainScheme.name, scheme)})"
        mains.append(text + comparison.pending_text())
    if mains:
        parts.append("vs plaintext, paired by seed (points, 95 % CI): " + ", ".join(mains))
    return "; ".join(parts) or "clean baseline"


def _control_verdict(per_scheme: dict[str, _Outcome], control: dict[str, _Outcome], metric: str) -> str:
    """The backdoor against the clean model's target rate on the same triggered inputs, per scheme."""
    parts = []
    for scheme, outcome in per_scheme.items():
        clean = control.get(scheme)
        if clean is None or outcome.status() != RunStatus.OK or clean.status() != RunStatus.OK or not outcome.feasible():
            continue
        base = {s: v for s, v in clean.values(CONTROL_TARGET_RATE.name).items()}
        attacked = outcome.values(metric)
        difference = paired_difference(base, attacked)
        stopped = {s: st for s, st in outcome.stopped.items()}
        note = f", attacked runs {_stop_counts(stopped, len(outcome.ok) + len(stopped))}" if stopped else ""
        parts.append(f"{scheme} {_points(difference)}{note}")
    return ("backdoor − control (clean model, same triggered inputs): " + ", ".join(parts)) if parts else "control not comparable"


def _attack_verdict(per_scheme: dict[str, _Outcome], metric: str) -> str:
    plain = per_scheme.get(PlainScheme.name)
    if plain is None or plain.status() != RunStatus.OK and not plain.stopped:
        return "no plaintext run to compare with"
    survives: list[str] = []
    changed: list[str] = []
    inconclusive: list[str] = []
    infeasible: list[str] = []
    stopped: list[str] = []
    refused: list[str] = []
    for scheme, outcome in per_scheme.items():
        if scheme == PlainScheme.name or outcome.status() == RunStatus.PENDING:
            continue
        if outcome.refused:
            refused.append(scheme)
            continue
        if outcome.ok and not outcome.feasible():
            infeasible.append(scheme)
            continue
        comparison = compare(plain, outcome, metric)
        if not comparison.seeds:
            stopped.append(f"{scheme}: no seed with an outcome on both sides")
            continue
        detail = f"Δ {_points(comparison.difference)}, n={comparison.difference.n}{comparison.pending_text()}"
        if not comparison.complete:
            finished = f" (seeds finished on both: {detail})" if comparison.difference.n else " (no seed finished on both)"
            stopped.append(f"{comparison.stop_text(PlainScheme.name, scheme)}; no success verdict{finished}")
            continue
        if comparison.difference.n < MIN_PAIRS:
            detail += f"; fewer than {MIN_PAIRS} paired seeds"
        verdict = equivalence(comparison.difference)
        {Verdict.EQUIVALENT: survives, Verdict.DIFFERS: changed, Verdict.INCONCLUSIVE: inconclusive}[verdict].append(f"{scheme} ({detail})")
    parts = []
    if survives:
        parts.append(f"survives encryption (CKKS − plain within ±{100 * EQUIVALENCE_MARGIN:.0f}): " + ", ".join(survives))
    if changed:
        parts.append("changed by encryption: " + ", ".join(changed))
    if inconclusive:
        parts.append("inconclusive: " + ", ".join(inconclusive))
    if infeasible:
        parts.append("infeasible under " + ", ".join(infeasible))
    if stopped:
        parts.append("stopped: " + "; ".join(stopped))
    if refused:
        parts.append("refused under " + ", ".join(refused))
    base = plain.mean(metric)
    if (survives or changed or inconclusive) and base is not None and not _lower_is_success(metric) and base < ATTACK_FLOOR:
        parts.append(f"note: the attack reaches only {_pct(base)} % in plaintext")
    if plain.stopped and not stopped:
        parts.append(f"plaintext {_stop_counts(plain.stopped, len(plain.ok) + len(plain.stopped))}")
    return "; ".join(parts) or "plaintext only"


def _defense_effect(with_defense: _Outcome, without: _Outcome | None, metric: str) -> tuple[str, str]:
    """(verdict word, detail) for one scheme."""
    if with_defense.refused:
        return RunStatus.REFUSED, "cannot be placed"
    if without is None or without.refused:
        return "undefended run missing", "undefended run missing"
    if with_defense.ok and without.ok and (not with_defense.feasible() or not without.feasible()):
        return "n/a", "attack infeasible"
    lower = _lower_is_success(metric)
    success = compare(with_defense, without, metric)  # without - with: the reduction (higher-is-success)
    if lower:
        success = compare(without, with_defense, metric)  # with - without: the reduction of a lower-is-success metric
    main = compare(without, with_defense, MAIN_ACCURACY.name)  # with - without: the main-accuracy change (negative: a cost)
    if not success.seeds:
        if success.waiting:
            return RunStatus.PENDING, RunStatus.PENDING
        return "no common seed", "no seed with an outcome with and without the defense"
    paired = set(success.difference.seeds)  # before and after over the same seeds as the interval
    before = _mean_over(without.values(metric), paired)
    after = _mean_over(with_defense.values(metric), paired)
    detail = (
        f"{_pct(before)}→{_pct(after)}, reduction {_points(success.difference)}, main {_points(main.difference)}, "
        f"n={success.difference.n}{success.pending_text()}"
    )
    if not success.complete:
        defended_stops, undefended_stops = (success.stopped_second, success.stopped_first) if lower else (success.stopped_first, success.stopped_second)
        n = len(success.seeds)
        stops = f"defended {_stop_counts(defended_stops, n)}, undefended {_stop_counts(undefended_stops, n)}"
        finished = f" (seeds finished on both: {detail})" if success.difference.n else " (no seed finished on both)"
        return "stopped", f"{stops}; no verdict{finished}"
    if not lower and before is not None and before < ATTACK_FLOOR:
        return "nothing to stop", detail
    works = reduction(success.difference)
    if works is None:
        return "inconclusive", f"{detail}; fewer than {MIN_PAIRS} paired seeds"
    return ("works" if works else "not shown to work"), detail


def _mean_over(values: dict[int, float], seeds: set[int]) -> float | None:
    chosen = [value for seed, value in values.items() if seed in seeds]
    return statistics.fmean(chosen) if chosen else None


def _defense_verdict(defended: dict[str, _Outcome], undefended: dict[str, _Outcome], metric: str) -> str:
    effects = {scheme: _defense_effect(outcome, undefended.get(scheme), metric) for scheme, outcome in defended.items()}
    parts = [f"{scheme}: {word} ({detail})" if word != detail else f"{scheme}: {word}" for scheme, (word, detail) in effects.items()]
    plain_word = effects.get(PlainScheme.name, ("", ""))[0]
    ckks = {scheme: word for scheme, (word, _) in effects.items() if scheme != PlainScheme.name and word not in (RunStatus.REFUSED, "n/a")}
    if plain_word == "works" and ckks:
        if all(word == "works" for word in ckks.values()):
            parts.append("keeps working under encryption")
        elif any(word == "not shown to work" for word in ckks.values()):
            parts.append("works in plaintext only")
    return "; ".join(parts)
