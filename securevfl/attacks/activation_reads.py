"""Activation rows an active party read, per passive and sample, scored against the passives' true rows.

Shared by the attacks that read ``H_k`` rows one way or another (a recovered key, a request slot of its
own): they store what they read as it comes and report, per epoch, the fraction of every passive's
samples whose row they read within a relative tolerance.
"""

from __future__ import annotations

import numpy as np

from securevfl.attacks.activation_inversion import relative_row_errors
from securevfl.attacks.base import AttackTruth

__all__ = ["ActivationReads"]


class ActivationReads:
    """What was read this epoch: the latest row per (passive, sample), and which samples were read."""

    def __init__(self, n_samples: int, passives: tuple[str, ...], tolerance: float) -> None:
        self.n_samples = n_samples
        self.passives = passives
        self.tolerance = tolerance
        self._rows: dict[str, np.ndarray] = {}
        self._read: dict[str, np.ndarray] = {}

    def store(self, sender: str, sample_ids: np.ndarray, plain: np.ndarray) -> None:
        """Rows of ``sender`` for ``sample_ids``; a sealed passive's ``H^T``, padded to the batch, is turned back."""
        n = len(sample_ids)
        rows = plain if plain.shape[0] == n else plain.T[:n]
        if sender not in self._rows:
            self._rows[sender] = np.zeros((self.n_samples, rows.shape[1]))
            self._read[sender] = np.zeros(self.n_samples, dtype=bool)
        self._rows[sender][sample_ids] = rows
        self._read[sender][sample_ids] = True

    def fraction_recovered(self, truth: AttackTruth) -> float | None:
        """Rows read within the tolerance over every passive's samples, then forgotten (the next epoch starts anew).

        None when nobody holds the activations in plaintext (sealed layers) but some row was read: it cannot be
        scored; 0.0 when nothing was read at all, whatever the rows were.
        """
        record = truth.activations
        if record is None:
            return 0.0 if not any(read.any() for read in self._read.values()) else None
        recovered = 0
        for sender in self.passives:
            read = self._read.get(sender)
            if read is None or not read.any():
                continue
            ids = np.flatnonzero(read)
            true_rows = record.rows(sender, ids)
            if true_rows is None:
                continue
            recovered += int(np.sum(relative_row_errors(self._rows[sender][ids], true_rows) <= self.tolerance))
            read[:] = False
        total = self.n_samples * len(self.passives)
        return recovered / total if total else 0.0
