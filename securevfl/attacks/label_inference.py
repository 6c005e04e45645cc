"""Label inference from the sign pattern of gradient rows (Liu et al., section 5.3).

With a softmax-sum top and cross-entropy, the gradient row a passive party receives for a
sample is ``(S - onehot(y)) / B``: every entry is positive except the one of the true class,
which is ``S_y - 1 < 0``. The attacker reads the label off as the index of the smallest entry.
It needs the plaintext rows; under a label-private scheme it holds only ciphertexts, and a
sign is not something CKKS can compute, so the attack is infeasible there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np

from securevfl.attacks.base import Attack, AttackConfigBase, AttackSetting, AttackTruth
from securevfl.attacks.label_guesses import LabelGuesses
from securevfl.attacks.metrics import MetricSpec
from securevfl.roles import Capability

__all__ = ["LABEL_INFERENCE_ACCURACY", "LabelInference", "LabelInferenceConfig"]

LABEL_INFERENCE_ACCURACY = MetricSpec(
    "label_inference_accuracy",
    "fraction of the epoch's training samples whose label the attacker inferred correctly",
    "higher",
    "label inference",
    blind_guess_scores_chance=True,
)


class LabelInferenceConfig(AttackConfigBase):
    """Infer each training sample's label from the sign pattern of the gradient row it receives."""

    kind: Literal["label_inference"] = "label_inference"


class LabelInference(Attack):
    """Infers a label for every training sample it receives a gradient row for; alters nothing."""

    name: ClassVar[str] = "label_inference"
    config_type = LabelInferenceConfig
    requires = (frozenset({Capability.PLAINTEXT_GRADIENT_ROWS}),)
    infeasible_because = (
        "the attacker holds only encrypted gradient rows and never a plaintext one; reading a sign needs "
        "a comparison, which CKKS cannot evaluate, and the key holder only decrypts masked batch sums"
    )
    metrics = (LABEL_INFERENCE_ACCURACY,)
    success_metric = LABEL_INFERENCE_ACCURACY.name
    reads_private_data = True
    observes_only = True

    def __init__(self, party: str, n_train: int) -> None:
        super().__init__(party)
        self._guesses = LabelGuesses(n_train)

    @classmethod
    def infeasibility(cls, granted: frozenset[Capability], setting: AttackSetting) -> str | None:
        reason = super().infeasibility(granted, setting)
        classes = setting.dataset.num_classes
        if reason is None and setting.bottom_output != classes:
            reason = (
                f"the gradient rows have {setting.bottom_output} entries, not one per class ({classes}): "
                "with a trainable top the sign pattern no longer names the label"
            )
        elif reason is None and setting.top != "sum":
            reason = "with a trainable top the gradient rows are dL/dH of its first layer: their signs name no label"
        return reason

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: Any) -> LabelInference:
        return cls(setting.party, len(setting.dataset.y_train))

    def incoming_gradient(self, step: int, sample_ids: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        self._guesses.guess(sample_ids, np.argmin(gradient, axis=1))
        return gradient

    def epoch_metrics(self, truth: AttackTruth) -> dict[str, float]:
        """Accuracy of the labels inferred during the epoch just finished."""
        accuracy = self._guesses.epoch_accuracy(truth.y_train)
        return {} if accuracy is None else {LABEL_INFERENCE_ACCURACY.name: accuracy}

    def artifacts(self, truth: AttackTruth) -> Mapping[str, list[list[Any]]]:
        return {"inferred_labels": self._guesses.rows(truth.y_train, "inferred_label")}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **self._guesses.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._guesses.load_state_dict(state)
