"""The outcome of one planned run of a study, named once.

``StrEnum``: tables and JSON carry the plain strings (``ok``, ``failed`` ...), code compares
against these members, so a misspelt status is an ``AttributeError``, not a silent mismatch.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["STOPPED", "WAITING", "RunStatus"]


class RunStatus(StrEnum):
    OK = "ok"
    """Trained to the last epoch; ``result.json`` exists."""
    FAILED = "failed"
    """Stopped on a user-level error other than divergence (e.g. missing data): ``failed.json``."""
    DIVERGED = "diverged"
    """Stopped diverged (non-finite, loss above ``train.max_loss``, left CKKS's range): ``failed.json``.

    An outcome of the setting, reported per seed as such (see :mod:`securevfl.divergence`)."""
    COLLAPSED = "collapsed"
    """Trained to the end at chance accuracy: its attack numbers are not successes (``result.json``).

    Training flags it (:mod:`securevfl.divergence`); the study table also calls a run collapsed
    whose last-epoch main accuracy is within 5 points of chance (:func:`securevfl.study.table.collapse_reason`)."""
    CRASHED = "crashed"
    """Stopped on a bug (a traceback); rerun after the fix."""
    REFUSED = "refused"
    """The configuration rules refuse this combination (e.g. a placement the scheme cannot carry)."""
    SKIPPED = "skipped"
    """Finished in an earlier invocation; not trained again."""
    PENDING = "pending"
    """Nothing on disk yet."""


#: Outcomes of the setting without a number: counted in every comparison, per seed (intent to treat).
STOPPED = (RunStatus.DIVERGED, RunStatus.FAILED, RunStatus.COLLAPSED)
#: No outcome (yet): not trained, or a bug to fix and rerun; left out of comparisons, which say so.
WAITING = (RunStatus.PENDING, RunStatus.CRASHED)
