"""Gradient inversion at a passive party: per-sample gradient rows from its batch-summed parameter gradients.

An honest-but-curious passive follows the protocol and looks only at what it legitimately
holds. Its first layer's batch-summed gradient is ``dW1|db1 = D1^T [X | 1]``, where ``X`` are its
own inputs of the batch and ``D1`` (batch x hidden) the per-sample gradients at that layer's
pre-activation. When the batch is no larger than the rank of ``[X | 1]`` (MNIST half image:
393 columns, batch 64), the least-squares solution of ``[X | 1]^T D1 = (dW1|db1)^T`` *is* ``D1``.
Going up one layer at a time with its own weights and ReLU masks (``D_l = (D_{l+1} W_{l+1}) * M_l``,
solved per sample on the active units) it reaches ``G = dL/dH``, the rows the label-private
schemes encrypt — and under the sum top the label is ``argmin G_b`` (see label inference).

This is what the label-private schemes hand a passive through masked decryption, so it is a
leak of those schemes, not of a deviation from the protocol (issue 12 builds the hardening).
Under the open schemes the passive computes the same gradients itself; the attack runs there too,
for comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from securevfl.attacks.base import Attack, AttackConfigBase, AttackSetting, AttackTruth
from securevfl.attacks.label_guesses import LabelGuesses
from securevfl.attacks.metrics import MetricSpec
from securevfl.models import linear_stack
from securevfl.roles import Capability

if TYPE_CHECKING:
    from torch import nn

__all__ = ["GradientInversion", "GradientInversionConfig", "INVERSION_FULL_RANK", "INVERSION_LABEL_ACCURACY"]

INVERSION_LABEL_ACCURACY = MetricSpec(
    "inversion_label_accuracy",
    "fraction of the epoch's training samples whose label the passive read off its inverted gradient rows",
    "higher",
    "inversion labels",
)
INVERSION_FULL_RANK = MetricSpec(
    "inversion_full_rank",
    "fraction of the epoch's batches whose first-layer inputs had full row rank (the inversion is then exact)",
    "higher",
    "inversion exact",
)


class GradientInversionConfig(AttackConfigBase):
    """Invert the batch-summed parameter gradients the passive learns into per-sample gradient rows."""

    kind: Literal["gradient_inversion"] = "gradient_inversion"
    rcond: float = Field(default=1e-9, gt=0, lt=1, description="relative cutoff of small singular values in the least squares")


class GradientInversion(Attack):
    """Recovers G = dL/dH row by row from dW|db, then each label as argmin of its row (sum top)."""

    name: ClassVar[str] = "gradient_inversion"
    config_type = GradientInversionConfig
    requires = (frozenset({Capability.BATCH_SUMMED_PARAMETER_GRADIENTS, Capability.OWN_PLAINTEXT}),)
    infeasible_because = "the attacker learns no parameter gradient of its own"
    metrics = (INVERSION_LABEL_ACCURACY, INVERSION_FULL_RANK)
    success_metric = INVERSION_LABEL_ACCURACY.name

    def __init__(self, party: str, own_x: np.ndarray, rcond: float) -> None:
        super().__init__(party)
        self._x = np.asarray(own_x, dtype=np.float64)
        self.rcond = rcond
        self._guesses = LabelGuesses(len(own_x))
        self._batches = 0
        self._full_rank = 0

    @classmethod
    def infeasibility(cls, granted: frozenset[Capability], setting: AttackSetting) -> str | None:
        reason = super().infeasibility(granted, setting)
        classes = setting.dataset.num_classes
        if reason is None and (setting.top != "sum" or setting.bottom_output != classes):
            reason = (
                "under a trainable top the recovered rows are dL/dH of its first layer, not one entry per class: "
                "they need norm or direction scoring, which this attack does not do yet"
            )
        return reason

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: Any) -> GradientInversion:
        assert isinstance(config, GradientInversionConfig) and setting.columns is not None
        return cls(setting.party, setting.dataset.x_train[:, setting.columns], config.rcond)

    def revealed_parameter_gradients(
        self, step: int, sample_ids: np.ndarray, gradients: list[np.ndarray], model: nn.Module
    ) -> None:
        rows = invert_gradient_rows(self._x[sample_ids], gradients, model, self.rcond)
        self._guesses.guess(sample_ids, np.argmin(rows.gradient, axis=1))
        self._batches += 1
        self._full_rank += int(rows.exact)

    def epoch_metrics(self, truth: AttackTruth) -> dict[str, float]:
        accuracy = self._guesses.epoch_accuracy(truth.y_train)
        if accuracy is None:
            return {}
        metrics = {INVERSION_LABEL_ACCURACY.name: accuracy, INVERSION_FULL_RANK.name: self._full_rank / self._batches}
        self._batches = self._full_rank = 0
        return metrics

    def artifacts(self, truth: AttackTruth) -> Mapping[str, list[list[Any]]]:
        return {"inverted_labels": self._guesses.rows(truth.y_train, "inverted_label")}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self._guesses.state_dict(), "batches": self._batches, "full_rank": self._full_rank}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._guesses.load_state_dict(state)
        self._batches, self._full_rank = int(state["batches"]), int(state["full_rank"])


class InvertedRows:
    """The recovered per-sample gradient rows ``G`` (batch x outputs), and how far to trust them.

    ``exact``: the first layer's inputs had full row rank, so its per-sample gradients are the
    true ones. ``determined[b]``: every solve for sample b up the stack had a unique solution
    (enough active ReLU units); where it is false the row is the least-norm one.
    """

    def __init__(self, gradient: np.ndarray, exact: bool, determined: np.ndarray) -> None:
        self.gradient = gradient
        self.exact = exact
        self.determined = determined


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
    gradient = delta if top_mask is None else np.where(top_mask > 0, delta, 0.0)
    if top_mask is not None:
        determined &= top_mask.all(axis=1)
    return InvertedRows(gradient, exact, determined)


def _solve_row(weight: np.ndarray, below: np.ndarray, known: np.ndarray | None, rcond: float) -> tuple[np.ndarray, bool]:
    """The row ``d`` (out) with ``(d @ weight)[known] = below[known]`` (least squares), and whether it is unique."""
    rows = weight.T if known is None else weight.T[known]
    target = below if known is None else below[known]
    if rows.shape[0] == 0:
        return np.zeros(weight.shape[0]), False
    solution, _, rank, _ = np.linalg.lstsq(rows, target, rcond=rcond)
    return solution, bool(rank == weight.shape[0])
