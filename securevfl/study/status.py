"""The outcome of one planned run of a study, named once.

``StrEnum``: tables and JSON carry the plain strings (``ok``, ``failed`` ...), code compares
against these members, so a misspelt status is an ``AttributeError``, not a silent mismatch.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from securevfl.attacks import ATTACKS, MAIN_ACCURACY
from securevfl.divergence import COLLAPSE_MARGIN

__all__ = ["AT_CHANCE_NOTE", "STOPPED", "WAITING", "RunStatus", "at_chance_reason", "at_chance_row", "collapse_reason", "failure_status", "private_read_note", "reads_private_data"]


class RunStatus(StrEnum):
    OK = "ok"
    """Trained to the last epoch; ``result.json`` exists."""
    FAILED = "failed"
    """Stopped on a user-level error other than divergence (e.g. missing data): ``failed.json``."""
    DIVERGED = "diverged"
    """Stopped diverged (non-finite, loss above ``train.max_loss``): ``failed.json``.

    An outcome of the setting, reported per seed as such (see :mod:`securevfl.divergence`)."""
    OUT_OF_RANGE = "out_of_range"
    """Stopped because a message left CKKS's precise range (or a kernel's bound): ``failed.json``.

    An outcome of the setting under that CKKS preset, not a divergence of training: told apart so
    the range-stop finding can be read off the tables (a wider preset may train the same setting)."""
    DETECTED = "detected"
    """Stopped because an honest party's protocol check caught the attacker deviating: ``failed.json``.

    An outcome of the attack under that protection (the run cannot go on with a party that broke
    the protocol); its epochs before the stop say what the attacker had by then."""
    COLLAPSED = "collapsed"
    """Trained to the end at chance accuracy: its attack numbers are not successes (``result.json``).

    Training flags it (:mod:`securevfl.divergence`); the study table also calls a run collapsed
    whose last-epoch main accuracy is within 5 points of chance (:func:`collapse_reason`). Not a run whose attack
    reads private data: its numbers stand at any accuracy (:func:`reads_private_data`)."""
    CRASHED = "crashed"
    """Stopped on a bug (a traceback); rerun after the fix."""
    REFUSED = "refused"
    """The configuration rules refuse this combination (e.g. a placement the scheme cannot carry)."""
    SKIPPED = "skipped"
    """Finished in an earlier invocation; not trained again."""
    PENDING = "pending"
    """Nothing on disk yet."""


#: Outcomes of the setting without a number: counted in every comparison, per seed (intent to treat).
STOPPED = (RunStatus.DIVERGED, RunStatus.OUT_OF_RANGE, RunStatus.DETECTED, RunStatus.FAILED, RunStatus.COLLAPSED)
#: No outcome (yet): not trained, or a bug to fix and rerun; left out of comparisons, which say so.
WAITING = (RunStatus.PENDING, RunStatus.CRASHED)


def reads_private_data(config: dict[str, Any], feasible: bool | None = None) -> bool:
    """Whether the run's attack reads another party's private data (:attr:`Attack.reads_private_data`) and ran
    (``feasible`` is not False): what it read is a leak whatever the model's accuracy (an untrained model's gradients
    may even give labels away more easily), so a model at chance leaves those numbers standing. An infeasible attack
    has no such number: its run's only number is the main accuracy, read off the model."""
    kind = str((config.get("attack") or {}).get("kind", "none"))
    return kind in ATTACKS and ATTACKS[kind].reads_private_data and feasible is not False


def at_chance_reason(result: dict[str, Any]) -> str:
    """Why a finished run's model sits at chance ('' if it does not), whatever its attack.

    Training marks a run ``collapsed`` when its main accuracy stayed within
    :data:`~securevfl.divergence.COLLAPSE_MARGIN` of chance for its last ``train.collapse_epochs``
    epochs. The study is stricter: a run whose **last-epoch** main accuracy (the number the tables
    show) is within that margin of chance sits at chance too. Chance is the test set's majority-class
    rate the run recorded (``chance_accuracy``).
    """
    if result.get("outcome") == "collapsed":
        return str(result.get("outcome_reason") or "main accuracy at chance")
    chance, main = result.get("chance_accuracy"), result.get(MAIN_ACCURACY.name)
    if chance is None or main is None or float(main) > float(chance) + COLLAPSE_MARGIN:
        return ""
    return (
        f"last-epoch main accuracy {100 * float(main):.1f} % is within {100 * COLLAPSE_MARGIN:.0f} points of chance "
        f"({100 * float(chance):.1f} %)"
    )


def collapse_reason(result: dict[str, Any]) -> str:
    """Why a finished run counts as collapsed ('' if it does not): its model sits at chance
    (:func:`at_chance_reason`) and its numbers are read off that model — a backdoor, or the main accuracy of a
    run without an attack — so that a model which always predicts the target is never reported as "backdoor
    100 %". A run whose attack reads private data (:func:`reads_private_data`) is not collapsed: what the attacker
    read does not depend on the model, and the table reports the model's accuracy next to it
    (:func:`private_read_note`); its main accuracy still counts as collapsed wherever it is compared
    (:mod:`securevfl.study.verdicts`)."""
    if reads_private_data(result.get("config") or {}, result.get("attack_feasible")):
        return ""
    return at_chance_reason(result)


def private_read_note(result: dict[str, Any]) -> str:
    """The reason column of a finished privacy-attack run whose model sits at chance ('' otherwise): the cost is
    visible, the attack's numbers stand."""
    if not reads_private_data(result.get("config") or {}, result.get("attack_feasible")):
        return ""
    reason = at_chance_reason(result)
    return f"{AT_CHANCE_NOTE[0]}{reason}{AT_CHANCE_NOTE[1]}" if reason else ""


#: how :func:`private_read_note` wraps the at-chance reason (a table's restore reads training's own reason back out of it)
AT_CHANCE_NOTE = ("model at chance (", "); the attack's numbers stand (what it read leaks whatever the model's accuracy); "
                  "its main accuracy counts as collapsed")


def at_chance_row(row: dict[str, Any]) -> bool:
    """A finished privacy-attack row whose model sat at chance (its reason is :func:`private_read_note`'s)."""
    return row.get("status") == RunStatus.OK and str(row.get("reason") or "").startswith(AT_CHANCE_NOTE[0])


#: error type name (``failed.json``'s ``type``) -> the stop it is; any other user-level error is ``failed``
STOP_OF_ERROR = {"TrainingDiverged": RunStatus.DIVERGED, "OutOfRange": RunStatus.OUT_OF_RANGE, "DeviationDetected": RunStatus.DETECTED}


def failure_status(error_type: str | None) -> RunStatus:
    """A stopped run's status from its error's type name: divergence, a CKKS range stop and a detected
    deviation are outcomes of the setting, any other user-level error (missing data ...) a failure."""
    return STOP_OF_ERROR.get(error_type or "", RunStatus.FAILED)
