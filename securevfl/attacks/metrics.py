"""What an attack reports: metric names, their meaning and which direction means the attack won.

Training, result records, study tables, survival verdicts and plots take metric names from the
attack registry (:func:`securevfl.attacks.registry.attack_metrics`), never from string literals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["MAIN_ACCURACY", "MetricSpec"]


@dataclass(frozen=True)
class MetricSpec:
    """One per-epoch metric of an attack (a key of ``history`` entries and of ``result.json``).

    Attributes:
        name: the key, e.g. ``backdoor_accuracy``.
        meaning: one line for reports and docs.
        success: ``"higher"`` if a larger value means the attack succeeds more, ``"lower"`` otherwise.
        short: a short label for table cells and plot legends.
        peak_column: when set, study tables also report the best epoch's value under this
            column (and the epoch under ``<peak_column>_epoch``): an attack whose success fades
            as training goes on is reported at its last epoch *and* at its best.
        cumulative: the value at any moment is everything the attack has achieved so far in the run (a running
            total, not the epoch's share): only such a value, taken when an honest party's check stops the run,
            is the caught attacker's final success (``attack_at_stop``). A per-epoch fraction taken mid-epoch
            counts only that epoch's part and is no such thing.
        blind_guess_scores_chance: the value is a fraction of samples whose label the attacker got right, so a
            blind guess of the most frequent class already scores the data's chance accuracy: study verdicts count
            only success above chance (their floor for "nothing to stop" is chance plus a margin, not a fixed 10 %,
            which on 10 balanced classes *is* chance and on 2 classes is far below it).
        covered_by: the metric giving the fraction of the epoch's samples this one is taken over, when that is not
            all of them (a row request reads only the rows that fit its slot): study cells show it beside the value,
            so that "100 % of the rows read" is not taken for 100 % of the samples.
    """

    name: str
    meaning: str
    success: Literal["higher", "lower"] = "higher"
    short: str = ""
    peak_column: str | None = None
    cumulative: bool = False
    blind_guess_scores_chance: bool = False
    covered_by: str | None = None

    @property
    def label(self) -> str:
        return self.short or self.name.replace("_", " ")


#: The main task's metric (not an attack's): clean test accuracy.
MAIN_ACCURACY = MetricSpec("main_accuracy", "clean test accuracy after the epoch", "higher", "main")
