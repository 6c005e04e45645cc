"""The rules by which the survival table decides: an attack *survives* or is *changed by*
encryption, a defense (or a key holder's hardening) *works*, is *not shown to work* or has
*nothing to stop*, and what a line says when runs stopped.

:mod:`securevfl.study.survival` builds the table's lines (which runs form a line, which line is
its undefended, control or unhardened counterpart) and hands each line's per-scheme outcomes to
the functions here; they exist apart so that the rules and their wording can be read, and
changed, in one place. A line's verdict compares like with like, never across settings, and is
decided on a **95 % paired t interval over seeds** (:mod:`securevfl.study.statistics`), never on
a tolerance that widens with the spread:

- an **attack** line compares its success metric (the registry's ``success_metric``: backdoor
  accuracy, label-inference accuracy ...) under each CKKS scheme with plaintext, seed by seed:
  the attack *survives encryption* when the 95 % interval of (CKKS - plaintext) lies within
  +-:data:`EQUIVALENCE_MARGIN` (an equivalence test); it is *changed by encryption* when the
  interval excludes 0 (and is not inside the margin); otherwise the line says *inconclusive*
  with the number of paired seeds (always so below 2 paired seeds). *Infeasible* when the
  attacker could not run it (with the reason). When plaintext has **no outcome to compare with**
  (attacks that need a key holder or a decryptor: refused or infeasible in plaintext), each
  scheme's own success is given instead, mean and 95 % t interval over its seeds.
- every **backdoor** line (undefended or defended) also shows the **control** — the clean
  model's rate of sending the same triggered inputs to the target (``backdoor_control`` runs of
  the same setting and model) — and the paired interval of (backdoor - control).
- a **defense** line (a ``[[defense]]`` list, or the trainable top) compares the same attack
  without that defense in the same setting and scheme: the defense *works* when the 95 %
  interval of (undefended - defended) success lies above 0. Every such verdict shows the
  undefended success (mean and interval over the paired seeds) and is qualified *against a weak
  attack* when the undefended cell's mean over every seed it finished, or over the paired seeds,
  is below :data:`WORKING_ATTACK` (80 %): not a test of the defense; the
  report lists the verdicts against a working attack apart (:class:`Judgement`). It gives the
  size of the reduction and the **main-accuracy cost** twice: against the attacked model
  (defended - undefended) and against the **clean** model (defended - clean: the control, else an
  ``attack.kind = none`` cell of the same setting), each a paired interval. Below
  :data:`ATTACK_FLOOR` undefended success there is *nothing to stop* (for labels read, below the data's chance
  accuracy plus 5 points when that is higher: :func:`attack_floor`).
  The line ends with *keeps working under encryption* when it works in plaintext and under every
  CKKS scheme, *works in plaintext only* when some CKKS scheme's interval does not exclude 0
  (*not shown to work* there: an interval that includes 0 does not prove the defense useless).
  A reduction whose whole interval lies below :data:`EQUIVALENCE_MARGIN` (5 points) is
  *negligible*, not *works*; one whose whole interval lies within +-5 points is *no effect*; one whose
  whole interval lies below 0 (and not within +-5 points) *strengthens the attack*. When
  seeds stopped, a defense still *works* if it works at every value the stopped runs could have had
  (:func:`_robust_reduction`: every corner of their [0, 1] ranges). A defense or hardening that leaves the attacker nothing to run on
  (the attack is infeasible with it, feasible without: the sealed layer against gradient
  inversion) *works*, with the success it took away and its main-accuracy cost.
  A defended line (and the trainable top) under several schemes is also compared with itself in
  plaintext, like an attack line (*this line, CKKS vs plaintext: ...*).
- an attack that **only observes** (``Attack.observes_only``: gradient inversion, label
  inference, activation inversion) leaves training honest, so its line also gives each scheme's
  main accuracy against plaintext, paired by seed, as a clean line does.
- a **hardening**: a line whose key holder is harder (more ``flooding_bits``, ``decryption_policy
  = protocol`` over ``none``, a sealed passive layer) than another line of the same setting,
  attack and defense is compared with it like a defense with its undefended line
  (``hardening flooding 30 bits vs 0: ... works (unhardened 100.0 [..] → 0.0, reduction ...)``).

An attack that ran and read nothing reports a success of 0 itself (key recovery when flooding
kept the key: ``key_recovery_label_accuracy = 0``); one unusable in the setting reports nothing
and has no value.

**Intent to treat.** A run that stopped (any status of :data:`~securevfl.study.status.STOPPED`:
diverged, failed, out of CKKS's range ...) or collapsed (main accuracy within 5 points of chance) is an outcome, counted per side and seed,
never dropped. A success verdict (survives / changed / works / not shown to work) needs every seed
with an outcome to have *finished on both sides*; when any seed stopped on either side the
verdict is that stop — e.g. ``ckks/receiver: stops training in 2/5 seeds (2 diverged; plaintext
0/5)`` — and the interval over the seeds finished on both sides is shown as descriptive only
(the seeds that stopped may be exactly those where the attack succeeded; a verdict on the rest
would be selected by its outcome). One exception: when every seed that stopped did so on *both*
sides alike (same status, stop epochs at most :data:`STOP_EPOCH_TOLERANCE` apart), encryption did
not change which seeds finish, the seeds finished on both are the same seeds chosen by neither
side, and they decide the attack's verdict (*stops alike: seed 1 diverged at epochs 26 / 27*).
Pending (and crashed) runs are no outcome yet: they are left out and the verdict says so.
A ``detected`` run whose attack reads private data recorded what the attacker had read when the check
stopped it (``<metric>_at_stop``, :meth:`_Outcome.caught`): the attacker keeps that and reads nothing
more, so it is that seed's success, a value and not an unknown; the verdict names those seeds. Its
main accuracy has no number (training stopped): the cost of a detection is the stop itself.

This module does not import :mod:`securevfl.study.survival` (which imports it).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from securevfl.attacks import MAIN_ACCURACY, MetricSpec, attack_metrics
from securevfl.attacks.backdoor_control import CONTROL_TARGET_RATE
from securevfl.divergence import COLLAPSE_MARGIN
from securevfl.schemes import PlainScheme
from securevfl.study.statistics import (
    EQUIVALENCE_MARGIN,
    MIN_PAIRS,
    Interval,
    Verdict,
    equivalence,
    mean_interval,
    paired_difference,
    reduction,
    reduction_bounds,
    robust_reduction,
)
from securevfl.study.status import STOPPED, WAITING, RunStatus, at_chance_row
from securevfl.study.table import at_stop_column

__all__ = [
    "ATTACK_FLOOR",
    "attack_floor",
    "EQUIVALENCE_MARGIN",
    "WORKING_ATTACK",
    "Comparison",
    "Judgement",
    "compare",
]

#: Below this undefended attack success (mean, fraction), a defense has nothing to remove.
ATTACK_FLOOR = 0.10
#: The word of a defense judged against an attack below :func:`attack_floor`: no test of the defense (listed with
#: the verdicts against a weak attack, without those words: it says more).
NOTHING_TO_STOP = "nothing to stop"
#: A defense under which the attack succeeds more, the paired reduction's whole interval below 0 (and beyond the
#: equivalence margin): a finding, not a mere "not shown to work".
STRENGTHENS = "strengthens the attack"
#: A defense is tested only against an attack that works: undefended success (mean over the paired seeds) at least this.
WORKING_ATTACK = 0.80


def _spec(metric: str) -> MetricSpec | None:
    """The registered attack metric called ``metric`` (None for the main accuracy or an unknown name)."""
    return next((spec for spec in attack_metrics() if spec.name == metric), None)


def _lower_is_success(metric: str) -> bool:
    spec = _spec(metric)
    return spec is not None and spec.success == "lower"


def attack_floor(metric: str, *outcomes: _Outcome | None) -> tuple[float, str]:
    """The undefended success below which there is nothing to stop, and the words that say why when not the fixed one.

    :data:`ATTACK_FLOOR`, except for labels read (``MetricSpec.blind_guess_scores_chance``): a blind guess of the
    most frequent class scores the data's chance accuracy, so a read within
    :data:`~securevfl.divergence.COLLAPSE_MARGIN` of it is a read at chance (the chance of the ``outcomes``' runs,
    the largest when they differ; the fixed floor where no run recorded one).
    """
    spec = _spec(metric)
    if spec is None or not spec.blind_guess_scores_chance:
        return ATTACK_FLOOR, ""
    chances = [float(row["chance_accuracy"]) for outcome in outcomes if outcome is not None for row in outcome.rows
               if row.get("chance_accuracy") is not None]
    if not chances or max(chances) + COLLAPSE_MARGIN <= ATTACK_FLOOR:
        return ATTACK_FLOOR, ""
    chance = max(chances)
    return chance + COLLAPSE_MARGIN, f" (labels: chance {_pct(chance)} % + {100 * COLLAPSE_MARGIN:.0f} points)"


def _success_value(row: dict[str, Any], metric: str) -> float | None:
    """The row's value of ``metric`` (None when the run did not report it).

    An attack that ran and read nothing reports 0 itself (key recovery with the key kept by the key
    holder's flooding reports ``key_recovery_label_accuracy = 0``), so a hardening that stops it has a
    number to be compared on; an attack unusable in the setting reports nothing and stays without one.
    """
    return None if row.get(metric) is None else float(row[metric])


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
        """seed -> status of the runs that stopped or collapsed (outcomes without a finished run's number)."""
        return self.seeds_with(STOPPED)

    def caught(self, metric: str) -> dict[int, float]:
        """seed -> a caught attacker's success at the stop (``detected`` runs that recorded ``metric`` then).

        An honest party's check stopped the run: the attacker keeps what it had read and reads nothing more, so
        that value is its final success, not an imputation; a backdoor (success read off the model) records none."""
        column = at_stop_column(metric)
        return {int(row["seed"]): float(row[column]) for row in self.rows
                if row["status"] == RunStatus.DETECTED and row.get(column) is not None}

    def stopped_without(self, metric: str) -> dict[int, str]:
        """seed -> status of the stopped runs without a value of ``metric`` (a caught attacker's success is a value);
        for the main accuracy also the privacy-attack runs whose model sat at chance (``collapsed`` there, like a
        clean run at chance: :func:`~securevfl.study.status.at_chance_row`)."""
        caught = self.caught(metric)
        stopped = {seed: status for seed, status in self.stopped.items() if seed not in caught}
        if metric == MAIN_ACCURACY.name:
            stopped.update({seed: RunStatus.COLLAPSED for seed in self.at_chance})
        return stopped

    @property
    def at_chance(self) -> set[int]:
        """Seeds of finished privacy-attack runs whose model sat at chance: their attack numbers stand, their main
        accuracy is no number (it counts as collapsed in every main-accuracy comparison)."""
        return {int(row["seed"]) for row in self.ok if at_chance_row(row)}

    @property
    def waiting(self) -> set[int]:
        return set(self.seeds_with(WAITING))

    def values(self, metric: str) -> dict[int, float]:
        """seed -> last-epoch value of the finished runs (see :func:`_success_value`), and a caught attacker's
        success at the stop (:meth:`caught`)."""
        values = {int(row["seed"]): _success_value(row, metric) for row in self.ok}
        at_chance = self.at_chance if metric == MAIN_ACCURACY.name else set()  # a model at chance: no main-accuracy number
        finished = {seed: value for seed, value in values.items() if value is not None and seed not in at_chance}
        return {**finished, **self.caught(metric)}

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.fmean(values.values()) if values else None


@dataclass(frozen=True)
class Comparison:
    """Two sides of a comparison over the same seeds: the paired interval and who stopped.

    ``difference`` is ``second - first`` over the seeds with a value on both (finished, or a caught attacker's
    success at the stop); ``stopped_first`` / ``stopped_second`` map seed -> status of the runs without one, over
    the seeds both sides have an outcome for; ``waiting`` are seeds without an outcome yet on some side;
    ``caught`` the paired seeds where a side counts at its success at the stop (``detected``).
    """

    difference: Interval
    stopped_first: dict[int, str]
    stopped_second: dict[int, str]
    seeds: tuple[int, ...]
    waiting: tuple[int, ...]
    caught: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        """Every seed with an outcome on both sides finished on both: a verdict may be drawn."""
        return not self.stopped_first and not self.stopped_second

    def stop_text(self, first: str, second: str) -> str:
        return f"{second} {_stop_counts(self.stopped_second, len(self.seeds))}, {first} {_stop_counts(self.stopped_first, len(self.seeds))}"

    def pending_text(self) -> str:
        return f"; provisional: seed(s) {','.join(map(str, self.waiting))} not finished yet" if self.waiting else ""

    def caught_text(self) -> str:
        return (f"; seed(s) {','.join(map(str, self.caught))} detected by a check: counted at the attacker's success at the stop"
                if self.caught else "")


def _stop_detail(stopped: dict[int, str]) -> str:
    """`` (1 diverged, 2 out_of_range)``: how many seeds stopped with each status ('' when none)."""
    counts: dict[str, int] = {}
    for status in stopped.values():
        counts[status] = counts.get(status, 0) + 1
    return f" ({', '.join(f'{n} {status}' for status, n in sorted(counts.items()))})" if counts else ""


def _stop_counts(stopped: dict[int, str], total: int) -> str:
    return f"stopped {len(stopped)}/{total}{_stop_detail(stopped)}"


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
    difference = paired_difference(a, b)
    return Comparison(
        difference=difference,
        stopped_first={s: st for s, st in first.stopped_without(metric).items() if s in seeds},
        stopped_second={s: st for s, st in second.stopped_without(metric).items() if s in seeds},
        seeds=tuple(sorted(seeds)),
        waiting=tuple(sorted(waiting)),
        caught=tuple(sorted((set(first.caught(metric)) | set(second.caught(metric))) & set(difference.seeds))),
    )


@dataclass(frozen=True)
class Judgement:
    """One scheme's defense (or hardening) verdict and the undefended success it was judged against.

    ``working`` is True when that success reaches :data:`WORKING_ATTACK` both over every seed the
    undefended cell finished and over the seeds the comparison pairs, False when either is below,
    None when it does not apply (no number, or a lower-is-success metric): the report lists the
    verdicts against a working attack apart.
    """

    scheme: str
    what: str  # the defense, or "hardening <a> vs <b>"
    word: str
    undefended: Interval | None
    working: bool | None
    reduction: Interval | None = None
    clean_cost: Interval | None = None
    made_infeasible: bool = False  # the defended side ran no attack: see _Effect.made_infeasible

    @property
    def seeds(self) -> int:
        """How many seeds the verdict rests on: the paired ones, or the undefended cell's for a verdict without a pair."""
        if self.reduction is not None and self.reduction.mean is not None:
            return self.reduction.n
        return self.undefended.n if self.undefended is not None else 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _short(reason: str, limit: int = 90) -> str:
    reason = reason.removeprefix("config error: ").split("; use ")[0]
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


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
        text = _main_difference(plain, outcome, f"{scheme} main Δ", (PlainScheme.name, scheme))
        if text is not None:
            mains.append(text)
    if mains:
        parts.append("vs plaintext, paired by seed (points, 95 % CI): " + ", ".join(mains))
    return "; ".join(parts) or "clean baseline"


def _main_difference(base: _Outcome, outcome: _Outcome, head: str, names: tuple[str, str], with_n: bool = False) -> str | None:
    """``<head> -5.7 [-7.1, -4.2]``: main accuracy of ``outcome`` against ``base``, paired by seed, with who stopped and
    which seeds are still pending; None when no seed has an outcome on both sides."""
    comparison = compare(base, outcome, MAIN_ACCURACY.name)
    if not comparison.seeds:
        return None
    text = f"{head} {_points(comparison.difference)}" + (f", n={comparison.difference.n}" if with_n else "")
    if not comparison.complete:
        text += f" ({comparison.stop_text(*names)})"
    return text + comparison.pending_text()


def _defense_cost_verdict(per_scheme: dict[str, _Outcome], clean: dict[str, _Outcome]) -> str:
    """A defense trained without any attack against the clean model of its setting, per scheme, paired by seed:
    the defense's own main-accuracy cost, apart from any attack's damage it might prevent."""
    parts = []
    for scheme, outcome in per_scheme.items():
        base = clean.get(scheme)
        if base is None or outcome.refused or base.refused:
            continue
        text = _main_difference(base, outcome, f"{scheme} main", ("clean", "defended"), with_n=True)
        if text is not None:
            parts.append(text)
    return ("the defense's own cost, without an attack, against the clean model (points, paired by seed): " + ", ".join(parts)) \
        if parts else "no clean run of this setting to cost the defense against"


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


def _plain_missing(plain: _Outcome | None, metric: str) -> str:
    """Why plaintext has no outcome to compare the attack with ('' when it has one).

    Attacks that need a key holder or a decryptor (key recovery, row request) cannot run in
    plaintext: their plaintext cell is refused or reports the attack infeasible.
    """
    if plain is None:
        return "not run"
    if plain.refused:
        return f"refused ({_short(plain.reason())})"
    if plain.stopped:
        return ""
    if plain.ok and not plain.feasible():
        return f"attack infeasible ({_short(plain.reason())})"
    if not plain.ok:
        return str(plain.status())
    return "" if plain.values(metric) else "no success value recorded"


def _own_word(outcome: _Outcome, metric: str) -> str:
    """A scheme's own success in a word or two (an attack plaintext cannot run): ``100.0 %``, ``infeasible``, ``stopped 1/3``."""
    if outcome.refused:
        return "refused"
    if outcome.ok and not outcome.feasible():
        return "infeasible"
    values, stopped, caught = outcome.values(metric), outcome.stopped_without(metric), outcome.caught(metric)
    if stopped:
        return f"stopped {len(stopped)}/{len(values) + len(stopped)}"
    detected = f" ({len(caught)} detected)" if caught else ""
    return f"{100 * statistics.fmean(values.values()):.1f} %{detected}" if values else str(outcome.status())


def _own_success(scheme: str, outcome: _Outcome, metric: str) -> str:
    """One scheme's own attack success: mean and 95 % t interval over the seeds (stopped seeds are outcomes)."""
    if outcome.refused:
        return f"{scheme}: refused ({_short(outcome.reason())})"
    if outcome.ok and not outcome.feasible():
        return f"{scheme}: infeasible ({_short(outcome.reason())})"
    values = outcome.values(metric)
    stopped = outcome.stopped_without(metric)
    total = len(values) + len(stopped)
    if total == 0:
        return f"{scheme}: {outcome.status()}"
    waiting = f"; provisional: seed(s) {','.join(map(str, sorted(outcome.waiting)))} not finished yet" if outcome.waiting else ""
    success = mean_interval(list(values.values()), sorted(values)).clipped(0.0, 1.0)
    label = next((spec.label for spec in attack_metrics() if spec.name == metric), metric)
    if stopped:
        finished = f" ({label} over the {len(values)} with a value: {success.text()}, descriptive only)" if values else ""
        return f"{scheme}: stops training in {len(stopped)}/{total} seeds{_stop_detail(stopped)}; no success verdict{finished}{waiting}"
    caught = outcome.caught(metric)
    detected = f" ({len(caught)} detected by a check: the attacker's success at the stop)" if caught else ""
    return f"{scheme}: {label} {success.text()} in {len(values)}/{total} seeds{detected}{waiting}"


def _own_success_verdict(per_scheme: dict[str, _Outcome], metric: str, missing: str) -> str:
    """No plaintext outcome to pair with: each CKKS scheme's own success over seeds, never 'inconclusive (n=0)'."""
    parts = [_own_success(scheme, outcome, metric) for scheme, outcome in per_scheme.items() if scheme != PlainScheme.name]
    if not parts:  # a plaintext-only grid whose runs have no outcome yet: nothing to say but that
        return f"plain: {missing}"
    return f"no plaintext outcome to compare with (plain: {missing}); each scheme's own success, mean [95 % t interval] over seeds: {'; '.join(parts)}"


def _attack_verdict(per_scheme: dict[str, _Outcome], metric: str, words: dict[str, str] | None = None, defended: bool = False) -> str:
    """An attack line's verdict, each CKKS scheme against plaintext; ``words`` (if given) receives each scheme's
    one-word outcome for the report's compact table (survives / changed / inconclusive / stopped / infeasible ...).
    ``defended``: the line carries a defense, so a low plaintext success is the defense's effect, not a weak attack."""
    words = {} if words is None else words
    plain = per_scheme.get(PlainScheme.name)
    missing = _plain_missing(plain, metric)
    if missing:
        for scheme, outcome in per_scheme.items():
            words[scheme] = _own_word(outcome, metric)
        return _own_success_verdict(per_scheme, metric, missing)
    assert plain is not None
    words[PlainScheme.name] = _own_word(plain, metric)  # the reference every CKKS scheme is compared with: its own success
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
            words[scheme] = "refused"
            continue
        if outcome.ok and not outcome.feasible():
            infeasible.append(scheme)
            words[scheme] = "infeasible"
            continue
        comparison = compare(plain, outcome, metric)
        if not comparison.seeds:
            stopped.append(f"{scheme}: no seed with an outcome on both sides")
            words[scheme] = "stopped"
            continue
        detail = f"Δ {_points(comparison.difference)}, n={comparison.difference.n}{comparison.caught_text()}{comparison.pending_text()}"
        if not comparison.complete:
            alike = stops_alike(plain, outcome, comparison.seeds)
            if alike is None or comparison.difference.n < MIN_PAIRS:
                finished = f" (seeds finished on both: {detail})" if comparison.difference.n else " (no seed finished on both)"
                same = f"; stops alike ({alike}) but fewer than {MIN_PAIRS} seeds finished on both" if alike is not None else ""
                by_seed = "" if alike is not None else stops_by_seed(plain, outcome, comparison.seeds, (PlainScheme.name, scheme))
                stopped.append(f"{comparison.stop_text(PlainScheme.name, scheme)}{by_seed}{same}; no success verdict{finished}")
                words[scheme] = "stopped"
                continue
            # every seed stopped (or finished) the same way with and without encryption: the seeds finished on both
            # are the same on both sides, chosen by neither side's outcome, so they can carry the verdict
            detail += f"; stops alike: {alike}"
        if comparison.difference.n < MIN_PAIRS:
            detail += f"; fewer than {MIN_PAIRS} paired seeds"
        verdict = equivalence(comparison.difference)
        {Verdict.EQUIVALENT: survives, Verdict.DIFFERS: changed, Verdict.INCONCLUSIVE: inconclusive}[verdict].append(f"{scheme} ({detail})")
        words[scheme] = {Verdict.EQUIVALENT: "survives", Verdict.DIFFERS: f"changed {_points(comparison.difference)}",
                         Verdict.INCONCLUSIVE: "inconclusive"}[verdict]
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
    floor, why = attack_floor(metric, plain)
    if (survives or changed or inconclusive) and base is not None and not _lower_is_success(metric) and base < floor and not defended:
        parts.append(f"note: the attack reaches only {_pct(base)} % in plaintext{why}")
    if plain.stopped and not stopped:
        parts.append(f"plaintext {_stop_counts(plain.stopped, len(plain.ok) + len(plain.stopped))}")
    return "; ".join(parts) or "plaintext only"


#: Two runs of one seed "stop alike" when both stopped with the same status within this many epochs of each other.
STOP_EPOCH_TOLERANCE = 2


def _stop_epoch(outcome: _Outcome, seed: int) -> int | None:
    row = next((row for row in outcome.rows if int(row["seed"]) == seed), None)
    epoch = None if row is None else row.get("stopped_at_epoch")
    return None if epoch is None else int(epoch)


def _stopped_as(outcome: _Outcome, seed: int) -> str | None:
    """How the seed's run stopped in training: a diverged run the table relabels ``collapsed`` (it sat at chance before it
    diverged, ``stopped_as = diverged``) stopped like its diverged twin, whichever side one noisy epoch put above chance."""
    row = next((row for row in outcome.rows if int(row["seed"]) == seed), None)
    return None if row is None else str(row.get("stopped_as") or row["status"])


def stops_by_seed(first: _Outcome, second: _Outcome, seeds: tuple[int, ...], names: tuple[str, str]) -> str:
    """`` (both stopped: seed 1, plain diverged at epoch 3, ckks/receiver out_of_range at epoch 3)``: each seed that stopped
    on both sides (not alike: another kind, or epochs further apart), how and when, so that two stops in the same
    epoch are seen even where their kinds differ and no verdict can rest on them."""
    parts = []
    for seed in seeds:
        if seed not in first.stopped or seed not in second.stopped:
            continue
        sides = []
        for name, outcome in zip(names, (first, second), strict=True):
            epoch = _stop_epoch(outcome, seed)
            sides.append(f"{name} {_stopped_as(outcome, seed)}" + (f" at epoch {epoch}" if epoch is not None else ""))
        parts.append(f"seed {seed}, {', '.join(sides)}")
    return f" (both stopped: {'; '.join(parts)})" if parts else ""


def stops_alike(first: _Outcome, second: _Outcome, seeds: tuple[int, ...]) -> str | None:
    """``seed 1 diverged at epochs 26 / 27``: the seeds that stopped, when each stopped on both sides alike; else None.

    Alike: the same status (diverged with diverged; a CKKS range stop is never like a divergence)
    and, when both record it, stop epochs at most :data:`STOP_EPOCH_TOLERANCE` apart. Then
    encryption did not change which seeds finish, and the seeds finished on both sides are not
    selected by what encryption did. None when some seed stopped on one side only or otherwise,
    and when no seed stopped at all.
    """
    parts = []
    for seed in seeds:
        a, b = first.stopped.get(seed), second.stopped.get(seed)
        if a is None and b is None:
            continue
        if a != b and (a is None or b is None or _stopped_as(first, seed) != _stopped_as(second, seed)):
            return None
        epochs = (_stop_epoch(first, seed), _stop_epoch(second, seed))
        if None not in epochs and abs(epochs[0] - epochs[1]) > STOP_EPOCH_TOLERANCE:  # type: ignore[operator]
            return None
        at = f" at epochs {epochs[0]} / {epochs[1]}" if None not in epochs else ""
        parts.append(f"seed {seed} {_stopped_as(first, seed)}{at}")
    return ", ".join(parts) or None


@dataclass(frozen=True)
class _Effect:
    """One scheme's defense verdict: the word, its detail, and the undefended success it was judged against."""

    word: str
    detail: str
    undefended: Interval | None = None
    weak: bool = False
    reduction: Interval | None = None
    """undefended - defended success, paired (the lowest corner's interval when stopped seeds were bounded)."""
    clean_cost: Interval | None = None
    """defended - clean main accuracy, paired: what the defended model gave up against the honest one."""
    lower: bool = False
    """The success metric is lower-is-success (an error): the 80 % working-attack bar does not apply."""
    made_infeasible: bool = False
    """The defended side ran no attack (e.g. the sealed layer leaves it nothing to run on): a verdict by the attack's
    own capability check, with no defended success to subtract."""

    @property
    def working(self) -> bool | None:
        """Whether the attack this verdict was judged against works; None when that cannot be said (a lower-is-success
        metric, no undefended number, or fewer than 2 undefended seeds finished: one seed decides nothing)."""
        if self.lower or self.undefended is None or self.undefended.mean is None or self.undefended.n < MIN_PAIRS:
            return None
        return not self.weak

    def text(self, scheme: str) -> str:
        word = f"{self.word} against a weak attack" if self.weak and self.word != NOTHING_TO_STOP else self.word
        return f"{scheme}: {word} ({self.detail})" if self.detail != self.word else f"{scheme}: {word}"


def _clean_cost(clean: _Outcome | None, with_defense: _Outcome, n: int) -> str:
    """``, -17.2 [..] vs clean``: the defended model's main accuracy against the model trained without
    attack (the control), paired by seed; its own n when it pairs other seeds than the success's ``n``."""
    if clean is None or clean.refused:
        return ""
    cost = compare(clean, with_defense, MAIN_ACCURACY.name)
    if not cost.difference.n:
        return ""
    notes = [f"n={cost.difference.n}"] if cost.difference.n != n else []
    if not cost.complete:
        notes.append(cost.stop_text("clean", "defended"))
    return f", {_points(cost.difference)} vs clean" + (f" ({'; '.join(notes)})" if notes else "")


def _defense_effect(
    with_defense: _Outcome, without: _Outcome | None, metric: str, clean: _Outcome | None = None, reference: str = "undefended"
) -> _Effect:
    """One scheme's verdict on a defense (or a hardening): the reduction of the attack's success, paired by seed.

    The undefended success (mean and interval over the paired seeds) is always shown: below
    :data:`WORKING_ATTACK` the attack was too weak for the verdict to test the defense. The main
    accuracy cost is given against the undefended (attacked) model and against the clean model.
    """
    if with_defense.refused:
        return _Effect(RunStatus.REFUSED, "cannot be placed")
    if without is None or without.refused:
        return _Effect(f"{reference} run missing", f"{reference} run missing")
    lower = _lower_is_success(metric)
    if with_defense.ok and without.ok and not without.feasible():
        return _Effect("n/a", "attack infeasible")
    if with_defense.ok and without.ok and not with_defense.feasible():
        return _made_infeasible(with_defense, without, metric, reference, lower)
    success = compare(without, with_defense, metric) if lower else compare(with_defense, without, metric)  # the reduction
    if not success.seeds:
        if success.waiting:
            return _Effect(RunStatus.PENDING, RunStatus.PENDING)
        return _Effect("no common seed", f"no seed with an outcome with and without the {'hardening' if reference == 'unhardened' else 'defense'}")
    paired = set(success.difference.seeds)  # before and after over the same seeds as the interval
    undefended = mean_interval([v for s, v in without.values(metric).items() if s in paired], sorted(paired)).clipped(0.0, 1.0)
    after = _mean_over(with_defense.values(metric), paired)
    main = compare(without, with_defense, MAIN_ACCURACY.name)  # defended - undefended main accuracy (negative: a cost)
    side = "hardened" if reference == "unhardened" else "defended"
    main_stops = "" if main.complete else f" ({main.stop_text(reference, side)})"  # e.g. detected runs: no main accuracy
    # whether the attack works is the reference cell's property, over every seed it finished: the same for every
    # defense judged against it, not decided again over the seeds a defended cell happens to share with it
    attack = _reference_success(without, metric, lower)
    # weak when the reference's mean over all its seeds, or over the seeds this comparison pairs, is below the bar: the
    # reduction was measured where the attack was that strong
    weak = not lower and any(i.mean is not None and i.mean < WORKING_ATTACK for i in (attack, undefended))
    own = "" if set(attack.seeds) == paired else f"; over the {attack.n} seed(s) it finished {attack.text()}"
    head = f"{reference} {undefended.text()}{own}" + (f" < {100 * WORKING_ATTACK:.0f} %: not a test of the defense;" if weak else "")
    detail = (
        f"{head} → {_pct(after)}, reduction {_points(success.difference)}, main {_points(main.difference)} vs {reference}{main_stops}"
        f"{_clean_cost(clean, with_defense, success.difference.n)}, n={success.difference.n}{success.caught_text()}{success.pending_text()}"
    )
    cost = compare(clean, with_defense, MAIN_ACCURACY.name).difference if clean is not None and not clean.refused else None
    numbers = {"reduction": success.difference, "clean_cost": cost if cost is not None and cost.n else None, "lower": lower}
    stops, stopped_word = "", "stopped"
    if not success.complete:
        defended_stops, undefended_stops = (success.stopped_second, success.stopped_first) if lower else (success.stopped_first, success.stopped_second)
        n = len(success.seeds)
        stops = f"{side} {_stop_counts(defended_stops, n)}, {reference} {_stop_counts(undefended_stops, n)}"
        if not defended_stops:  # every defended run trained: it is the reference that stopped, not the defense's runs
            stopped_word = f"no verdict ({reference} stopped)"
    floor, why = attack_floor(metric, without, with_defense)
    if not lower and attack.mean is not None and attack.mean < floor:  # before any stop: no attack to stop at all
        # below the floor is below the working-attack bar too: listed with the verdicts that test no defense
        return _Effect(NOTHING_TO_STOP, f"{stops}; {detail}{why}" if stops else f"{detail}{why}", attack, True, **numbers)
    if stops:
        robust = _robust_reduction(success, with_defense, without, metric, lower)
        if robust is not None and robust[0]:
            worst = robust[1]
            return _Effect("works", f"{stops}; works at every value the stopped runs could have had (lowest: {_points(worst)}, "
                                    f"n={worst.n}) (seeds finished on both: {detail})", attack, weak, **{**numbers, "reduction": worst})
        finished = f" (seeds finished on both: {detail})" if success.difference.n else " (no seed finished on both)"
        return _Effect(stopped_word, f"{stops}; no verdict{finished}", attack, weak, **numbers)
    works = reduction(success.difference)
    if works is None:
        return _Effect("inconclusive", f"{detail}; fewer than {MIN_PAIRS} paired seeds", attack, weak, **numbers)
    high = success.difference.high
    if works and high is not None and high < EQUIVALENCE_MARGIN:  # a real but tiny reduction is no defense
        return _Effect("negligible", f"{detail}; the whole interval is below {100 * EQUIVALENCE_MARGIN:.0f} points", attack, weak, **numbers)
    if not works and equivalence(success.difference) is Verdict.EQUIVALENT:  # shown to change nothing, not merely unshown
        return _Effect("no effect", f"{detail}; the whole interval is within ±{100 * EQUIVALENCE_MARGIN:.0f} points", attack, weak, **numbers)
    if not works and not lower and high is not None and high < 0:  # the attack succeeds more with the defense: said as such
        return _Effect(STRENGTHENS, f"{detail}; the whole interval is below 0: the attack succeeds more with it", attack, weak, **numbers)
    return _Effect("works" if works else "not shown to work", detail, attack, weak, **numbers)


def _reference_success(without: _Outcome, metric: str, lower: bool = False) -> Interval:
    """The undefended (reference) cell's success over every seed it finished: whether the attack works at all."""
    values = without.values(metric)
    interval = mean_interval([values[s] for s in sorted(values)], sorted(values))
    return interval if lower else interval.clipped(0.0, 1.0)  # a lower-is-success metric (an error) need not be a fraction


def _robust_reduction(success: Comparison, with_defense: _Outcome, without: _Outcome, metric: str, lower: bool) -> tuple[bool, Interval] | None:
    """The reduction with every stopped run's missing value anywhere it could have been (intent to treat, as a bound).

    A success fraction lies in [0, 1]: a stopped defended run could have left the attack anywhere from
    failure to full success, a stopped undefended run likewise. :func:`robust_reduction` tries every
    corner of those ranges; the defense works only if it works at all of them, so no outcome of the
    stopped runs, had they finished, could undo the verdict. None for a lower-is-success metric (its
    values have no upper bound to impute from: no verdict is drawn then).
    """
    if lower:
        return None
    return robust_reduction(*reduction_bounds(without.values(metric), with_defense.values(metric), success.seeds))


def _made_infeasible(with_defense: _Outcome, without: _Outcome, metric: str, reference: str, lower: bool) -> _Effect:
    """The defense (or hardening, e.g. the sealed layer) leaves the attacker nothing to run on, where it ran without it.

    That is the strongest effect a defense can have: it *works* when the attack succeeded without
    it (at least :data:`ATTACK_FLOOR`), over the seeds it ran on; the main-accuracy cost is paired
    by seed as for any defense.
    """
    values = without.values(metric)
    undefended = mean_interval(list(values.values()), sorted(values)).clipped(0.0, 1.0)
    main = compare(without, with_defense, MAIN_ACCURACY.name)
    detail = (
        f"attack made infeasible: {_short(with_defense.reason())}; {reference} {undefended.text()} over {len(values)} seed(s), "
        f"main {_points(main.difference)} vs {reference}, n={main.difference.n}"
    )
    if lower or undefended.mean is None:
        return _Effect("n/a", detail)
    weak = undefended.mean < WORKING_ATTACK
    if with_defense.stopped or without.stopped:  # intent to treat: a stopped run is an outcome, never skipped
        side = "hardened" if reference == "unhardened" else "defended"
        n = len(with_defense.ok) + len(with_defense.stopped)
        stops = f"{side} {_stop_counts(with_defense.stopped, n)}, {reference} {_stop_counts(without.stopped, len(without.ok) + len(without.stopped))}"
        return _Effect("stopped", f"{stops}; no verdict ({detail})", undefended, weak)
    floor, why = attack_floor(metric, without, with_defense)
    if undefended.mean < floor:
        return _Effect(NOTHING_TO_STOP, f"{detail}{why}", undefended, weak, made_infeasible=True)
    return _Effect("works", detail, undefended, weak, made_infeasible=True)


def _mean_over(values: dict[int, float], seeds: set[int]) -> float | None:
    chosen = [value for seed, value in values.items() if seed in seeds]
    return statistics.fmean(chosen) if chosen else None


def _defense_verdict(
    defended: dict[str, _Outcome],
    undefended: dict[str, _Outcome],
    metric: str,
    clean: dict[str, _Outcome],
    what: str,
    reference: str = "undefended",
) -> tuple[str, list[Judgement]]:
    """Each scheme's effect, the line's summary over schemes, and the judgements for the report's summary."""
    effects = {
        scheme: _defense_effect(outcome, undefended.get(scheme), metric, clean.get(scheme), reference) for scheme, outcome in defended.items()
    }
    parts = [effect.text(scheme) for scheme, effect in effects.items()]
    plain = effects.get(PlainScheme.name)
    ckks = {scheme: effect for scheme, effect in effects.items() if scheme != PlainScheme.name and effect.word not in (RunStatus.REFUSED, "n/a")}
    if plain is not None and plain.word == "works" and ckks:
        weak = " (against a weak attack: not a test of the defense)" if plain.weak or any(e.weak for e in ckks.values()) else ""
        if all(effect.word == "works" for effect in ckks.values()):
            parts.append("keeps working under encryption" + weak)
        elif any(effect.word in ("not shown to work", "no effect", STRENGTHENS) for effect in ckks.values()):
            parts.append("works in plaintext only" + weak)
    judgements = [
        Judgement(scheme, what, effect.word, effect.undefended, effect.working, effect.reduction, effect.clean_cost, effect.made_infeasible)
        for scheme, effect in effects.items() if effect.undefended is not None
    ]
    return "; ".join(parts), judgements
