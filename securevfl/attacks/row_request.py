"""A malicious passive reads its gradient rows through an expected decryption request.

The key holder's decryption policy admits only the requests the protocol expects — kinds, shapes,
counts per step — and floods every answer. It cannot see what a request of an expected shape
*holds*. The passive's last layer reveals ``[dW_L | db_L]`` of shape ``(outputs, in_L + 1)``; the
passive holds ``Enc(G^T)`` of shape ``(outputs, batch)`` in ROWS blocks of a stride at least the
batch. Declaring those very ciphertexts as a tensor of the expected shape (same rows, same
stride, narrower blocks) makes a request the policy admits, and the key holder decrypts the first
``in_L + 1`` columns of ``G^T``: that many samples' gradient rows per step, with only the fresh
encryption's tiny noise to flood. Under the sum top each label is ``argmin G_b``.

This is why docs/threat-model.md makes no label promise against a malicious passive under the
label-private schemes with a decryption slot; the sealed source layer, where a passive has no
decryption slot, is the variant that tests otherwise. The passive's last-layer update of the
step is lost (it spent the slot); it trains on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from securevfl.attacks.base import DECRYPTION_REQUESTS, NO_DECRYPTION_REQUESTS, Attack, AttackConfigBase, AttackSetting, AttackTruth
from securevfl.attacks.label_guesses import LabelGuesses
from securevfl.attacks.metrics import MetricSpec
from securevfl.crypto import EncryptedTensor, Layout, LayoutError, Packing
from securevfl.roles import Capability

if TYPE_CHECKING:
    from torch import nn

    from securevfl.attacks.hooks import EncryptedBackprop

__all__ = ["ROW_REQUEST_LABEL_ACCURACY", "RowRequest", "RowRequestConfig"]

ROW_REQUEST_LABEL_ACCURACY = MetricSpec(
    "row_request_label_accuracy",
    "fraction of the samples read this epoch whose label the passive read from gradient rows it had decrypted in its own request slot",
    "higher",
    "labels via request",
    blind_guess_scores_chance=True,
    covered_by="row_request_coverage",
)
ROW_REQUEST_COVERAGE = MetricSpec(
    "row_request_coverage",
    "fraction of the epoch's training samples whose gradient row the passive had decrypted",
    "higher",
    "rows read",
)


class RowRequestConfig(AttackConfigBase):
    """Have the key holder decrypt the passive's own gradient rows in its last layer's request slot."""

    kind: Literal["row_request"] = "row_request"


class RowRequest(Attack):
    """Relabels ``Enc(G^T)`` as the last layer's parameter gradient and reads the rows back."""

    name: ClassVar[str] = "row_request"
    config_type = RowRequestConfig
    requires = (DECRYPTION_REQUESTS,)
    infeasible_because = NO_DECRYPTION_REQUESTS
    metrics = (ROW_REQUEST_LABEL_ACCURACY, ROW_REQUEST_COVERAGE)
    success_metric = ROW_REQUEST_LABEL_ACCURACY.name
    reads_private_data = True

    def __init__(self, party: str, n_samples: int) -> None:
        super().__init__(party)
        self._guesses = LabelGuesses(n_samples)
        self._read: np.ndarray | None = None
        self.unusable: str | None = None
        self._epoch_samples: set[int] = set()

    @classmethod
    def infeasibility(cls, granted: frozenset[Capability], setting: AttackSetting) -> str | None:
        reason = super().infeasibility(granted, setting)
        if reason is None and (setting.top != "sum" or setting.bottom_output != setting.dataset.num_classes):
            reason = "it reads labels as argmin of the rows, which needs the sum top (one entry per class)"
        return reason

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: Any) -> RowRequest:
        return cls(setting.party, len(setting.dataset.y_train))

    def encrypted_gradients(self, step: int, sample_ids: np.ndarray, backprop: EncryptedBackprop) -> list[EncryptedTensor]:
        honest = backprop.backprop(backprop.gradient, backprop.row_weight)
        self._epoch_samples.update(int(i) for i in sample_ids)
        rows_t = backprop.gradient.feature_major  # Enc(G^T): outputs x padded batch, ROWS
        target = honest[-1].shape  # (outputs, in_L + 1): what the last layer's request must look like
        width = min(target[1], len(sample_ids))
        try:
            packing = Packing.create(target, Layout.ROWS, rows_t.keyring.params.slots, rows_t.packing.stride)
        except LayoutError as exc:
            self.unusable = f"its gradient rows cannot pass as a {target} request: {exc}"
            return honest
        if target[0] != rows_t.shape[0] or packing.num_ciphertexts != rows_t.num_ciphertexts:
            self.unusable = f"its gradient rows ({rows_t.shape}) do not fill a {target} request's ciphertexts"
            return honest
        disguised = EncryptedTensor(
            rows_t.keyring, packing, rows_t.ciphertexts, value_bound=rows_t.value_bound, dtype=np.dtype(np.float64)
        )
        self._read = np.asarray(sample_ids)[:width]
        return [*honest[:-1], disguised]

    def revealed_parameter_gradients(
        self, step: int, sample_ids: np.ndarray, gradients: list[np.ndarray], model: nn.Module
    ) -> None:
        if self._read is None:
            return
        rows = np.asarray(gradients[-1])[:, : len(self._read)].T  # G rows of the samples read
        self._guesses.guess(self._read, np.argmin(rows, axis=1))
        self._read = None

    def epoch_metrics(self, truth: AttackTruth) -> dict[str, float]:
        if self.unusable is not None:
            return {}
        seen = int(self._guesses.seen.sum())
        accuracy = self._guesses.epoch_accuracy(truth.y_train)
        metrics = {ROW_REQUEST_COVERAGE.name: seen / max(len(self._epoch_samples), 1)}
        self._epoch_samples = set()
        if accuracy is not None:
            metrics[ROW_REQUEST_LABEL_ACCURACY.name] = accuracy
        return metrics

    def summary(self) -> dict[str, Any]:
        return {"not_run": self.unusable} if self.unusable is not None else {}

    def artifacts(self, truth: AttackTruth) -> Mapping[str, list[list[Any]]]:
        return {"row_request_labels": self._guesses.rows(truth.y_train, "label_read")}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self._guesses.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._guesses.load_state_dict(state)
