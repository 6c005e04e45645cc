"""The evaluator's record of the true activations ``H_k`` every passive sent in training.

An attack that reconstructs a passive's activation rows (activation inversion at the active
party) is scored against the rows the passive actually computed, the way a label guess is
scored against ``y_train``. Under the label-private schemes those rows exist in plaintext only
at their passive, so each passive hands the rows it sends to its *activation taps*
(``PassiveParty.activation_taps``, called where the rows leave: ``PassiveParty.outgoing``) and
the run attaches this record there (``Federation.run_attack``).

Why this does not leak to the attacker: the record is part of
:class:`~securevfl.attacks.base.AttackTruth`, which the federation passes only to
``Attack.epoch_metrics`` / ``Attack.artifacts`` (scoring, after the attacker's guesses are
made), never to ``create`` or to a hook; the tap is an in-process function call at the passive,
not a message, so no party's channel, visibility audit or byte count sees it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ActivationTruth"]


class ActivationTruth:
    """The latest true activation row of every training sample, per passive party.

    Rows are stored as the passive sends them (after its own ``outgoing_activations`` hook,
    before encryption and before any defense at the active party): the values an attacker at the
    active party would like to read. Memory is one row per training sample and passive (the
    latest overwrites), so it stays bounded however long the run; each sample is in one batch per
    epoch, so at an epoch's end the record holds that epoch's rows.
    """

    def __init__(self, passives: tuple[str, ...], n_samples: int) -> None:
        self.passives = passives
        self.n_samples = n_samples
        self._rows: dict[str, np.ndarray] = {}

    def record(self, step: int, sample_ids: np.ndarray, passive: str, rows: np.ndarray) -> None:
        """An activation tap: keep the rows (batch x width) ``passive`` sent for ``sample_ids``."""
        values = np.asarray(rows, dtype=np.float64)
        kept = self._rows.get(passive)
        if kept is None or kept.shape[1] != values.shape[1]:
            kept = self._rows[passive] = np.zeros((self.n_samples, values.shape[1]))
        kept[sample_ids] = values[: len(sample_ids)]

    def rows(self, passive: str, sample_ids: np.ndarray) -> np.ndarray | None:
        """The latest true rows of ``sample_ids`` from ``passive`` (None if it never sent any)."""
        kept = self._rows.get(passive)
        return None if kept is None else kept[sample_ids]
