"""Gradient inversion at a passive party: per-sample gradient rows from its batch-summed parameter gradients.

An honest-but-curious passive follows the protocol and looks only at what it legitimately
holds. Its first layer's batch-summed gradient is ``dW1|db1 = D1^T [X | 1]``, where ``X`` are its
own inputs of the batch and ``D1`` (batch x hidden) the per-sample gradients at that layer's
pre-activation. When the batch is no larger than the rank of ``[X | 1]`` (MNIST half image:
393 columns, batch 64), the least-squares solution of ``[X | 1]^T D1 = (dW1|db1)^T`` *is* ``D1``.
Going up one layer at a time with its own weights and ReLU masks (``D_l = (D_{l+1} W_{l+1}) * M_l``,
solved per sample on the active units) it reaches ``G = dL/dH``, the rows the label-private
schemes encrypt — and under the sum top the label is ``argmin G_b`` (see label inference).
Under a trainable top no entry of ``G_b`` is a class's; the rows are scored instead by
direction, clustering and (two classes) norm (:mod:`securevfl.attacks.row_scoring`), with the
labels of a few of the attacker's own samples it is assumed to know.

This is what the label-private schemes hand a passive through masked decryption, so it is a
leak of those schemes, not of a deviation from the protocol (issue 12 builds the hardening).
Under the open schemes the passive computes the same gradients itself; the attack runs there too,
for comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from securevfl.attacks.base import Attack, AttackConfigBase, AttackSetting, AttackTruth
from securevfl.attacks.label_guesses import LabelGuesses
from securevfl.attacks.metrics import MetricSpec
from securevfl.attacks.row_scoring import cluster_labels, direction_labels, norm_labels
from securevfl.models import linear_stack
from securevfl.roles import Capability
from securevfl.seeding import derived_seed

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "GradientInversion",
    "GradientInversionConfig",
    "INVERSION_BEST_LABEL_ACCURACY",
    "INVERSION_CLUSTER_ACCURACY",
    "INVERSION_DIRECTION_ACCURACY",
    "INVERSION_FULL_RANK",
    "INVERSION_LABEL_ACCURACY",
    "INVERSION_NORM_ACCURACY",
    "INVERSION_ROWS_RECOVERED",
]

INVERSION_LABEL_ACCURACY = MetricSpec(
    "inversion_label_accuracy",
    "fraction of the epoch's training samples whose label the passive read off its inverted gradient rows "
    "(argmin under the sum top, direction scoring under a trainable top)",
    "higher",
    "inversion labels",
    blind_guess_scores_chance=True,
)
INVERSION_FULL_RANK = MetricSpec(
    "inversion_full_rank",
    "fraction of the epoch's batches whose first-layer inputs had full row rank (the inversion is then exact)",
    "higher",
    "inversion exact",
)
INVERSION_ROWS_RECOVERED = MetricSpec(
    "inversion_rows_recovered",
    "fraction of the epoch's inverted gradient rows within the relative tolerance (row_tolerance, L2) of the true rows",
    "higher",
    "rows recovered",
)
INVERSION_DIRECTION_ACCURACY = MetricSpec(
    "inversion_direction_accuracy",
    "label accuracy of direction scoring: cosine to the mean inverted row of each class's known-label samples",
    "higher",
    "inversion direction",
    blind_guess_scores_chance=True,
)
INVERSION_CLUSTER_ACCURACY = MetricSpec(
    "inversion_cluster_accuracy",
    "label accuracy of k-means on the unit inverted rows, clusters named by the known-label samples in them",
    "higher",
    "inversion cluster",
    blind_guess_scores_chance=True,
)
INVERSION_NORM_ACCURACY = MetricSpec(
    "inversion_norm_accuracy",
    "label accuracy of norm scoring of the inverted rows (two classes only)",
    "higher",
    "inversion norm",
    blind_guess_scores_chance=True,
)
INVERSION_BEST_LABEL_ACCURACY = MetricSpec(
    "inversion_best_label_accuracy",
    "the best label accuracy over the inversion's scorers, picked in hindsight by the evaluator",
    "higher",
    "inversion best",
    blind_guess_scores_chance=True,
)


class GradientInversionConfig(AttackConfigBase):
    """Invert the batch-summed parameter gradients the passive learns into per-sample gradient rows."""

    kind: Literal["gradient_inversion"] = "gradient_inversion"
    rcond: float = Field(default=1e-9, gt=0, lt=1, description="relative cutoff of small singular values in the least squares")
    known_labels_per_class: int = Field(
        default=2, ge=1, le=1000, description="samples of each class whose labels the attacker knows (direction and cluster scoring)"
    )
    row_tolerance: float = Field(
        default=1e-3, gt=0, lt=1, description="an inverted row counts as recovered within this relative L2 error of the true row"
    )


class GradientInversion(Attack):
    """Recovers G = dL/dH row by row from dW|db, then reads labels off the rows.

    Guesses are made at the end of each epoch from the epoch's inverted rows and the known
    labels only; the truth (labels, true rows) is used afterwards, to score them.
    """

    name: ClassVar[str] = "gradient_inversion"
    config_type = GradientInversionConfig
    requires = (frozenset({Capability.BATCH_SUMMED_PARAMETER_GRADIENTS, Capability.OWN_PLAINTEXT}),)
    infeasible_because = "the attacker learns no parameter gradient of its own"
    metrics = (
        INVERSION_LABEL_ACCURACY,
        INVERSION_FULL_RANK,
        INVERSION_ROWS_RECOVERED,
        INVERSION_DIRECTION_ACCURACY,
        INVERSION_CLUSTER_ACCURACY,
        INVERSION_NORM_ACCURACY,
        INVERSION_BEST_LABEL_ACCURACY,
    )
    success_metric = INVERSION_LABEL_ACCURACY.name
    reads_private_data = True
    observes_only = True
    scores_gradient_rows = True

    def __init__(self, party: str, own_x: np.ndarray, config: GradientInversionConfig, known: KnownLabels, top: str, seed: int) -> None:
        super().__init__(party)
        self._x = np.asarray(own_x, dtype=np.float64)
        self.rcond = config.rcond
        self.tolerance = config.row_tolerance
        self.known = known
        self.top = top
        self._seed = seed
        self._guesses = LabelGuesses(len(own_x))
        self._rows = EpochRows(len(own_x))
        self._batches = 0
        self._full_rank = 0

    @classmethod
    def infeasibility(cls, granted: frozenset[Capability], setting: AttackSetting) -> str | None:
        reason = super().infeasibility(granted, setting)
        if reason is None and setting.top == "sum" and setting.bottom_output != setting.dataset.num_classes:
            reason = f"under the sum top the rows need one entry per class ({setting.dataset.num_classes}), not {setting.bottom_output}"
        return reason

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: Any) -> GradientInversion:
        assert isinstance(config, GradientInversionConfig) and setting.columns is not None
        rng = np.random.default_rng(derived_seed(setting.seed, "attack", "known labels"))
        known = KnownLabels.draw(setting.dataset.y_train, setting.dataset.num_classes, config.known_labels_per_class, rng)
        own_x = setting.dataset.x_train[:, setting.columns]
        return cls(setting.party, own_x, config, known, setting.top, setting.seed)

    def summary(self) -> dict[str, Any]:
        return {"known_label_samples": len(self.known.ids), "row_tolerance": self.tolerance}

    def revealed_parameter_gradients(
        self, step: int, sample_ids: np.ndarray, gradients: list[np.ndarray], model: nn.Module
    ) -> None:
        rows = invert_gradient_rows(self._x[sample_ids], gradients, model, self.rcond)
        self._rows.keep(sample_ids, rows.gradient, rows.observable)
        self._batches += 1
        self._full_rank += int(rows.exact)

    def epoch_metrics(self, truth: AttackTruth) -> dict[str, float]:
        ids = self._rows.epoch_ids()
        if len(ids) == 0:
            return {}
        guesses = self._guess(ids)  # the attacker's own data only
        scored = ids[~np.isin(ids, self.known.ids)]  # the known labels are given, not guessed
        metrics = {INVERSION_FULL_RANK.name: self._full_rank / self._batches}
        headline = "argmin" if self.top == "sum" else "direction"
        if len(scored) and headline in guesses:
            accuracies = {name: float(np.mean(labels == truth.y_train[scored])) for name, labels in guesses.items()}
            self._guesses.guess(scored, guesses[headline])
            metrics[INVERSION_LABEL_ACCURACY.name] = float(self._guesses.epoch_accuracy(truth.y_train))  # type: ignore[arg-type]
            metrics[INVERSION_BEST_LABEL_ACCURACY.name] = max(accuracies.values())
            metrics.update({SCORER_METRICS[name].name: value for name, value in accuracies.items() if name in SCORER_METRICS})
        recovered = self._rows_recovered(ids, truth)
        if recovered is not None:
            metrics[INVERSION_ROWS_RECOVERED.name] = recovered
        self._batches = self._full_rank = 0
        self._rows.new_epoch()
        return metrics

    def _guess(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Labels of the epoch's non-known samples, per scorer, from inverted rows and known labels alone."""
        rows = self._rows.rows[ids]
        in_epoch = np.isin(self.known.ids, ids)
        known_rows, known_labels = self._rows.rows[self.known.ids[in_epoch]], self.known.labels[in_epoch]
        unknown = ~np.isin(ids, self.known.ids)
        guesses: dict[str, np.ndarray] = {}
        if self.top == "sum":
            # the sum over epochs, not the latest row: a row perturbed by noise (the key holder's
            # flooding, a defense) still has its label's entry negative in expectation every epoch
            guesses["argmin"] = np.argmin(self._rows.accumulated[ids][unknown], axis=1)
            guesses["argmin_latest"] = np.argmin(rows[unknown], axis=1)
        classes = self.known.classes
        if len(known_labels):
            guesses["direction"] = direction_labels(rows[unknown], known_rows, known_labels, classes)
            positions = np.flatnonzero(np.isin(ids, self.known.ids))  # ids and known ids are both sorted
            rng = np.random.default_rng(derived_seed(self._seed, "attack", "clusters"))
            labels = cluster_labels(rows, positions, known_labels, classes, rng)
            guesses["cluster"] = labels[unknown]
            if classes == 2:
                guesses["norm"] = norm_labels(rows[unknown], known_rows, known_labels)
        return guesses

    def _rows_recovered(self, ids: np.ndarray, truth: AttackTruth) -> float | None:
        """Share of the epoch's rows within ``row_tolerance`` of the truth, on the entries that reach the passive.

        Where the passive's own output ReLU is off, dL/dH never reaches its parameters, so no
        inversion can return it and those entries are left out of both rows.
        """
        true = None if truth.gradient_rows is None else truth.gradient_rows.rows(self.party, ids)
        if true is None or true.shape != self._rows.rows[ids].shape:
            return None
        observable = self._rows.observable[ids]
        true = np.where(observable, true, 0.0)
        error = np.linalg.norm(self._rows.rows[ids] - true, axis=1)
        return float(np.mean(error <= self.tolerance * np.linalg.norm(true, axis=1)))

    def artifacts(self, truth: AttackTruth) -> Mapping[str, list[list[Any]]]:
        return {"inverted_labels": self._guesses.rows(truth.y_train, "inverted_label")}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(), **self._guesses.state_dict(), "batches": self._batches, "full_rank": self._full_rank,
            "accumulated_rows": self._rows.accumulated.copy(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._guesses.load_state_dict(state)
        self._batches, self._full_rank = int(state["batches"]), int(state["full_rank"])
        accumulated = np.array(state.get("accumulated_rows", np.zeros((self._rows.n_samples, 0))), dtype=np.float64)
        self._rows.accumulated = accumulated
        if self._rows.rows.shape[1] != accumulated.shape[1]:
            self._rows.rows = np.zeros_like(accumulated)
            self._rows.observable = np.zeros(accumulated.shape, dtype=bool)


#: Which metric each scorer's accuracy goes to (argmin is the headline under the sum top).
SCORER_METRICS: dict[str, MetricSpec] = {
    "direction": INVERSION_DIRECTION_ACCURACY,
    "cluster": INVERSION_CLUSTER_ACCURACY,
    "norm": INVERSION_NORM_ACCURACY,
}


@dataclass(frozen=True)
class KnownLabels:
    """Samples of its own whose labels the attacker knows (a few per class), the premise of Li et al.'s scorers."""

    ids: np.ndarray
    labels: np.ndarray
    classes: int

    @classmethod
    def draw(cls, y_train: np.ndarray, classes: int, per_class: int, rng: np.random.Generator) -> KnownLabels:
        """``per_class`` random samples of every class (fewer where a class has fewer)."""
        picked = [rng.choice(np.flatnonzero(y_train == label), size=min(per_class, int(np.sum(y_train == label))), replace=False)
                  for label in range(classes)]
        ids = np.sort(np.concatenate(picked).astype(np.int64))
        return cls(ids=ids, labels=np.asarray(y_train[ids], dtype=np.int64), classes=classes)


class EpochRows:
    """The latest inverted row of each training sample in the current epoch, and which entries reach the passive."""

    def __init__(self, n_samples: int) -> None:
        self.n_samples = n_samples
        self.rows = np.zeros((n_samples, 0))
        self.observable = np.zeros((n_samples, 0), dtype=bool)
        self.accumulated = np.zeros((n_samples, 0))
        """Every sample's inverted rows summed over all epochs: noise on a row averages out, its label's sign stays."""
        self.seen = np.zeros(n_samples, dtype=bool)

    def keep(self, sample_ids: np.ndarray, rows: np.ndarray, observable: np.ndarray) -> None:
        if self.rows.shape[1] != rows.shape[1]:
            self.rows = np.zeros((self.n_samples, rows.shape[1]))
            self.observable = np.zeros((self.n_samples, rows.shape[1]), dtype=bool)
            self.accumulated = np.zeros((self.n_samples, rows.shape[1]))
        self.rows[sample_ids], self.observable[sample_ids] = rows, observable
        self.accumulated[sample_ids] += rows
        self.seen[sample_ids] = True

    def epoch_ids(self) -> np.ndarray:
        return np.flatnonzero(self.seen)

    def new_epoch(self) -> None:
        self.seen[:] = False


class InvertedRows:
    """The recovered per-sample gradient rows ``G`` (batch x outputs), and how far to trust them.

    ``exact``: the first layer's inputs had full row rank, so its per-sample gradients are the
    true ones. ``determined[b]``: every solve for sample b up the stack had a unique solution
    (enough active ReLU units); where it is false the row is the least-norm one.
    ``observable``: the entries of ``G`` that reach the passive's parameters at all (all of them,
    unless its model ends in a ReLU; then those of active output units).
    """

    def __init__(self, gradient: np.ndarray, exact: bool, determined: np.ndarray, observable: np.ndarray) -> None:
        self.gradient = gradient
        self.exact = exact
        self.determined = determined
        self.observable = observable


@torch.no_grad()
def invert_gradient_rows(x: np.ndarray, gradients: list[np.ndarray], model: nn.Module, rcond: float = 1e-9) -> InvertedRows:
    """Per-sample ``dL/dH`` from the batch-summed ``[dW_l | db_l]`` of a Linear/ReLU stack.

    Args:
        x: the batch's inputs (batch x features), the passive's own.
        gradients: ``[dW_l | db_l]`` per layer, as revealed (before the update).
        model: the passive's bottom model with the weights the gradients were taken at.
    """
    stack = linear_stack(model)
    batch = x.shape[0]
    inputs = np.hstack([x, np.ones((batch, 1))])
    # ReLU masks of every layer's pre-activation, from the attacker's own forward pass
    masks: list[np.ndarray | None] = []
    activations = torch.from_numpy(x).to(stack[0][0].weight.dtype)
    for linear, relu in stack:
        pre = linear(activations)
        masks.append((pre > 0).double().numpy() if relu else None)
        activations = torch.relu(pre) if relu else pre
    # first layer: [X|1]^T D1 = (dW1|db1)^T, exact when [X|1] has full row rank
    delta, *_ = np.linalg.lstsq(inputs.T, np.asarray(gradients[0], dtype=np.float64).T, rcond=rcond)
    exact = bool(np.linalg.matrix_rank(inputs) == batch)
    # up the stack, one sample at a time: D_l[b, known] = (D_{l+1}[b] W_{l+1})[known]
    determined = np.ones(batch, dtype=bool)
    for layer in range(1, len(stack)):
        weight = stack[layer][0].weight.double().numpy()  # out x in
        known = masks[layer - 1]
        solved = [_solve_row(weight, delta[b], None if known is None else known[b] > 0, rcond) for b in range(batch)]
        delta = np.stack([row for row, _ in solved])
        determined &= np.array([unique for _, unique in solved])
    # the top layer's pre-activation gradient is G where no ReLU follows (or where it is active)
    top_mask = masks[-1]
    observable = np.ones(delta.shape, dtype=bool) if top_mask is None else top_mask > 0
    gradient = np.where(observable, delta, 0.0)
    if top_mask is not None:
        determined &= top_mask.all(axis=1)
    return InvertedRows(gradient, exact, determined, observable)


def _solve_row(weight: np.ndarray, below: np.ndarray, known: np.ndarray | None, rcond: float) -> tuple[np.ndarray, bool]:
    """The row ``d`` (out) with ``(d @ weight)[known] = below[known]`` (least squares), and whether it is unique."""
    rows = weight.T if known is None else weight.T[known]
    target = below if known is None else below[known]
    if rows.shape[0] == 0:
        return np.zeros(weight.shape[0]), False
    solution, _, rank, _ = np.linalg.lstsq(rows, target, rcond=rcond)
    return solution, bool(rank == weight.shape[0])
