"""The evaluator's record of true per-sample rows an attack reconstructs (never the attacker's).

Some attacks are scored against values that exist in plaintext only at another party: gradient
inversion against the rows ``dL/dH_k`` the active party computed for the attacking passive,
activation inversion against the rows ``H_k`` each passive sent. The party holding them hands
each batch to its *taps* (``ActiveParty.gradient_taps``, called with the receiving passive;
``PassiveParty.activation_taps``, called with the sending passive, where the rows leave), and
``Federation.run_attack`` attaches a :class:`RowTruth` there.

Why this does not leak to the attacker: the record is part of
:class:`~securevfl.attacks.base.AttackTruth`, which the federation passes only to
``Attack.epoch_metrics`` / ``Attack.artifacts`` (scoring, after the attacker's guesses are
made), never to ``create`` or to a hook; a tap is an in-process function call, not a message, so
no party's channel, visibility audit or byte count sees it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RowTruth"]


class RowTruth:
    """The latest true row of every training sample, per party, for the ``parties`` it keeps.

    Rows are stored as they were computed, before any defense and before encryption. Memory is
    one row per training sample and party (the latest overwrites), so it stays bounded however
    long the run; each sample is in one batch per epoch, so at an epoch's end the record holds
    that epoch's rows.
    """

    def __init__(self, parties: tuple[str, ...], n_samples: int) -> None:
        self.parties = parties
        self.n_samples = n_samples
        self._rows: dict[str, np.ndarray] = {}

    def record(self, step: int, sample_ids: np.ndarray, party: str, rows: np.ndarray) -> None:
        """A tap: keep ``rows`` (batch x width) of ``party`` for ``sample_ids`` if it is one kept."""
        if party not in self.parties:
            return
        values = np.asarray(rows, dtype=np.float64)
        kept = self._rows.get(party)
        if kept is None or kept.shape[1] != values.shape[1]:
            kept = self._rows[party] = np.zeros((self.n_samples, values.shape[1]))
        kept[sample_ids] = values[: len(sample_ids)]

    def rows(self, party: str, sample_ids: np.ndarray) -> np.ndarray | None:
        """The latest true rows of ``sample_ids`` for ``party`` (None if none was ever recorded)."""
        kept = self._rows.get(party)
        return None if kept is None else kept[sample_ids]
