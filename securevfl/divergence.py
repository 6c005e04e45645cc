"""When a run has diverged or collapsed: one definition, applied to every scheme.

A CKKS run used to stop on the range check while the plaintext run of the same setting
"succeeded" with a loss of 7,574 and 4 % accuracy, and a study compared the two as results.
Every scheme now applies the same rules after each epoch:

- **diverged** (the run stops, :class:`~securevfl.errors.TrainingDiverged`): a non-finite value, a
  message outside CKKS's precise range, or an epoch's training loss above ``train.max_loss``
  (default ``10 * ln(classes)``: ten times the loss of a uniform guess);
- **collapsed** (the run finishes, ``result.json`` says ``outcome: collapsed``): main accuracy no more
  than 5 points above chance — the test set's majority-class rate — for the last
  ``train.collapse_epochs`` epochs (default 3).

A study carries both as their own statuses (``diverged``, ``collapsed``), never as results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from securevfl.errors import TrainingDiverged

__all__ = ["COLLAPSE_MARGIN", "check_loss", "loss_bound", "outcome"]

#: Main accuracy at most this much above chance (absolute) counts as chance.
COLLAPSE_MARGIN = 0.05


def loss_bound(max_loss: float | None, num_classes: int) -> float:
    """The configured bound, or ten times the cross-entropy of a uniform guess."""
    return max_loss if max_loss is not None else 10.0 * math.log(num_classes)


def check_loss(loss: float, bound: float, epoch: int) -> None:
    """Stop the run if the epoch's training loss is not finite or above ``bound``."""
    if not math.isfinite(loss) or loss > bound:
        raise TrainingDiverged(
            f"training diverged at epoch {epoch}: loss {loss:.6g} is above the bound {bound:.6g} (train.max_loss); "
            "try a smaller train.lr"
        )


def chance_accuracy(test_labels: np.ndarray) -> float:
    """The accuracy of always predicting the most frequent test class."""
    counts = np.bincount(np.asarray(test_labels, dtype=np.int64))
    return float(counts.max() / counts.sum()) if counts.sum() else 0.0


def outcome(history: Sequence[dict[str, Any]], test_labels: np.ndarray, epochs: int) -> dict[str, Any]:
    """``{"outcome": "ok" | "collapsed", "chance_accuracy": ..., "outcome_reason": ...}`` for a finished run."""
    chance = chance_accuracy(test_labels)
    last = [entry["main_accuracy"] for entry in history[-epochs:]]
    collapsed = len(last) == epochs and all(a <= chance + COLLAPSE_MARGIN for a in last)
    reason = (
        f"main accuracy no more than {COLLAPSE_MARGIN:.0%} above chance ({chance:.1%}) for the last {epochs} epoch(s)" if collapsed else ""
    )
    return {"outcome": "collapsed" if collapsed else "ok", "chance_accuracy": chance, "outcome_reason": reason}
