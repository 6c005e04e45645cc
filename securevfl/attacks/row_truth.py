"""The evaluator's record of the true gradient rows ``dL/dH_k`` one passive was answered with.

An attack that reconstructs gradient rows (gradient inversion) is scored against the rows the
active party actually computed for the attacking passive, the way a label guess is scored
against ``y_train``. Those rows exist in plaintext only at the active party, so the active
party hands each ``dL/dH_k`` it computes to its *gradient taps* (``ActiveParty.gradient_taps``),
and the run attaches this record there (``Federation.run_attack``).

Why this does not leak to the attacker: the record is part of :class:`AttackTruth`, which the
federation passes only to ``Attack.epoch_metrics`` / ``Attack.artifacts`` (scoring, after the
attacker's guesses are made), never to ``create`` or to a hook; the tap is an in-process
function call at the active party, not a message, so no party's channel, visibility audit or
byte count sees it; and it keeps only the rows addressed to the attacking party.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GradientRowTruth"]


class GradientRowTruth:
    """The latest true row ``dL/dH`` of every training sample, as computed for ``party``.

    Rows are stored before any defense and before encryption: the gradient the active party
    meant for the passive. Memory is one row per training sample (the latest overwrites), so it
    stays bounded however long the run.
    """

    def __init__(self, party: str, n_samples: int) -> None:
        self.party = party
        self.n_samples = n_samples
        self._rows: np.ndarray | None = None

    def record(self, step: int, sample_ids: np.ndarray, receiver: str, rows: np.ndarray) -> None:
        """A gradient tap: keep ``rows`` (batch x width) when they are addressed to :attr:`party`."""
        if receiver != self.party:
            return
        values = np.asarray(rows, dtype=np.float64)
        if self._rows is None or self._rows.shape[1] != values.shape[1]:
            self._rows = np.zeros((self.n_samples, values.shape[1]))
        self._rows[sample_ids] = values[: len(sample_ids)]

    def rows(self, sample_ids: np.ndarray) -> np.ndarray | None:
        """The latest true rows of ``sample_ids`` (None if nothing was ever recorded)."""
        return None if self._rows is None else self._rows[sample_ids]
