"""Per-sample label guesses of an attack, and how they are scored and written out.

Every label-reading attack keeps the same record: its latest guess for each training sample,
which samples it guessed this epoch, the accuracy of those guesses against the evaluator's
truth, and a CSV of all guesses. One class, so every such attack scores the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["LabelGuesses"]


class LabelGuesses:
    """The latest guessed label of each of ``n_samples`` training samples (-1: never guessed)."""

    def __init__(self, n_samples: int) -> None:
        self.labels = np.full(n_samples, -1, dtype=np.int64)
        self.seen = np.zeros(n_samples, dtype=bool)

    def guess(self, sample_ids: np.ndarray, labels: np.ndarray) -> None:
        self.labels[sample_ids] = labels
        self.seen[sample_ids] = True

    def epoch_accuracy(self, truth: np.ndarray) -> float | None:
        """Accuracy of the guesses made since the last call (None if there were none); starts a new epoch."""
        if not self.seen.any():
            return None
        accuracy = float(np.mean(self.labels[self.seen] == truth[self.seen]))
        self.seen[:] = False
        return accuracy

    def rows(self, truth: np.ndarray, column: str) -> list[list[Any]]:
        """``sample_id, <column>, true_label`` for every sample ever guessed (header first)."""
        rows: list[list[Any]] = [["sample_id", column, "true_label"]]
        for sample in np.flatnonzero(self.labels >= 0):
            rows.append([int(sample), int(self.labels[sample]), int(truth[sample])])
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {"inferred": self.labels.copy(), "seen": self.seen.copy()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.labels = np.array(state["inferred"], copy=True)
        self.seen = np.array(state["seen"], copy=True)
