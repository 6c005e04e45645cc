"""The gradient-replacement backdoor (Liu et al., Algorithm 2) and activation blurring (Algorithm 3).

The attacker knows a few clean samples of the target class. Whenever one of them is in a
batch, it records the gradient row it receives for it (the latest recording wins). For every
poisoned sample in a batch (its own features carry the trigger) it trains as if the active
party had sent ``gamma`` times the recorded row. Rows of one batch are handled record-first:
a target sample recorded in a batch already serves the poisoned rows of the same batch. Until
a first recording exists, poisoned rows keep the gradient they received. ``record = "first"``
keeps the first recording instead of the latest (a variant: early in training the target
sample's gradient is large; the latest one shrinks as the model learns to classify it).

Two implementations of the same decisions:

- **plaintext rows** (the attacker decrypts its gradients): overwrite the rows.
- **ciphertext rows** (label-private schemes): the attacker's backpropagation is linear in the
  gradient rows and in its own (plaintext) per-row inputs, so it needs no decryption. Through
  the :class:`~securevfl.attacks.hooks.EncryptedBackprop` hook it drops the poisoned rows'
  honest contribution (row weight 0) and adds, for each poisoned row i, a backpropagation of the
  *recorded ciphertexts'* row through sample i's inputs and ReLU masks, weighted by ``gamma``.
  That is exactly ``gamma * g_rec`` backpropagated through sample i, with the same
  multiplicative depth as an honest step.

With ``blur_activations`` the attacker sends N(0, ``blur_variance``) rows instead of its
poisoned samples' activations while training, so a trainable top cannot learn to map the
poisoned activations back to their true labels; at inference it sends the real activations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from securevfl.attacks.base import Attack, AttackConfigBase, AttackSetting
from securevfl.attacks.hooks import EncryptedBackprop, EncryptedGradientRows
from securevfl.attacks.poison import BACKDOOR_ACCURACY, BackdoorConfig, BackdoorData, BackdoorPlan, plan_backdoor
from securevfl.errors import SecureVFLError
from securevfl.protocols.errors import ProtocolError
from securevfl.roles import Capability
from securevfl.seeding import derived_seed

if TYPE_CHECKING:
    from securevfl.crypto import EncryptedTensor

__all__ = ["GradientReplacement", "GradientReplacementConfig"]


class GradientReplacementConfig(BackdoorConfig):
    """The backdoor of Liu et al. (Algorithm 2), optionally with activation blurring (Algorithm 3).

    Write ``gamma`` times the gradient row recorded for a known target-class sample into the rows
    of the attacker's poisoned samples. With ``blur_activations`` it also sends random rows for
    its poisoned samples during training, the variant the paper uses against a trainable top.
    """

    table_columns: ClassVar[dict[str, str]] = {"gamma": "gamma", "blur": "blur_activations"}

    kind: Literal["gradient_replacement"] = "gradient_replacement"
    gamma: float = Field(default=10.0, gt=0, description="amplification of the replaced gradient rows")
    record: Literal["latest", "first"] = Field(
        default="latest",
        description="which received row of a known target sample to replay: the latest (Algorithm 2) or the first",
    )
    blur_activations: bool = Field(default=False, description="send random rows for poisoned samples while training")
    blur_variance: float = Field(default=1e-6, gt=0, description="variance of the random rows (Algorithm 3)")

    def label(self) -> str:
        extra = " + blurring" if self.blur_activations else ""
        extra += ", first row" if self.record == "first" else ""
        extra += f", {self.known_target_samples} known target samples" if self.known_target_samples != 1 else ""
        return f"gradient replacement, gamma {self.gamma:g}{extra}"


class GradientReplacement(Attack):
    """Algorithm 2 (optionally with Algorithm 3) at one passive party."""

    name: ClassVar[str] = "gradient_replacement"
    config_type = GradientReplacementConfig
    requires = (
        frozenset({Capability.PLAINTEXT_GRADIENT_ROWS, Capability.OWN_PLAINTEXT}),
        frozenset({Capability.CIPHERTEXT_GRADIENT_ROWS, Capability.OWN_PLAINTEXT}),
    )
    infeasible_because = "the attacker can address no gradient rows, plaintext or encrypted"
    metrics = (BACKDOOR_ACCURACY,)
    success_metric = BACKDOOR_ACCURACY.name

    def __init__(
        self,
        party: str,
        backdoor: BackdoorData,
        gamma: float,
        blur_variance: float | None,
        rng: np.random.Generator,
        record: str = "latest",
    ) -> None:
        super().__init__(party)
        if record not in ("latest", "first"):
            raise ValueError(f"record must be 'latest' or 'first', got {record!r}")
        self.record = record
        self.backdoor = backdoor
        self.gamma = float(gamma)
        self.blur_std = None if blur_variance is None else math.sqrt(blur_variance)
        self._rng = rng
        self._poisoned = backdoor.poisoned_train
        self._known = backdoor.known_target
        self._recorded: np.ndarray | None = None
        self._recorded_encrypted: tuple[EncryptedGradientRows, int] | None = None
        self.replaced_rows = 0
        self.refused_rows = 0
        """Rows it could not replace because the key holder refused the extra refresh they need."""

    # ------------------------------------------------------------------ preparation
    @classmethod
    def plan(cls, config: AttackConfigBase, setting: AttackSetting) -> BackdoorPlan:
        assert isinstance(config, GradientReplacementConfig) and setting.columns is not None
        rng = np.random.default_rng(derived_seed(setting.seed, "attack", "samples"))
        backdoor = plan_backdoor(setting.dataset, setting.columns, config.model_copy(update={"party": setting.party}), rng)
        return BackdoorPlan.of(setting.dataset, backdoor)

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: Any) -> GradientReplacement:
        assert isinstance(config, GradientReplacementConfig) and isinstance(plan, BackdoorPlan) and plan.backdoor is not None
        blur = config.blur_variance if config.blur_activations else None
        rng = np.random.default_rng(derived_seed(setting.seed, "attack", "blur"))
        return cls(setting.party, plan.backdoor, config.gamma, blur, rng, record=config.record)

    def summary(self) -> dict[str, Any]:
        return {
            "gamma": self.gamma,
            "record": self.record,
            "blur_activations": self.blur_std is not None,
            "replaced_rows": self.replaced_rows,
            "refused_rows": self.refused_rows,
        }

    # ------------------------------------------------------------------ helpers
    def _positions(self, sample_ids: np.ndarray, pool: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(sample_ids, pool))

    # ------------------------------------------------------------------ Algorithm 3
    def outgoing_activations(self, step: int, sample_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        if self.blur_std is None:
            return values
        rows = self._positions(sample_ids, self._poisoned)
        if rows.size == 0:
            return values
        blurred = np.array(values, copy=True)
        blurred[rows] = self._rng.normal(0.0, self.blur_std, size=(rows.size, values.shape[1])).astype(values.dtype)
        return blurred

    # ------------------------------------------------------------------ Algorithm 2, plaintext rows
    def incoming_gradient(self, step: int, sample_ids: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        targets = self._positions(sample_ids, self._known)
        if targets.size and (self.record == "latest" or self._recorded is None):
            self._recorded = np.array(gradient[targets[-1]], copy=True)
        poisoned = self._positions(sample_ids, self._poisoned)
        if poisoned.size == 0 or self._recorded is None:
            return gradient
        out = np.array(gradient, copy=True)
        out[poisoned] = self.gamma * self._recorded
        self.replaced_rows += int(poisoned.size)
        return out

    # ------------------------------------------------------------------ Algorithm 2, ciphertext rows
    def encrypted_gradients(self, step: int, sample_ids: np.ndarray, backprop: EncryptedBackprop) -> list[EncryptedTensor]:
        targets = self._positions(sample_ids, self._known)
        if targets.size and (self.record == "latest" or self._recorded_encrypted is None):
            self._recorded_encrypted = (backprop.gradient, int(targets[-1]))
        poisoned = self._positions(sample_ids, self._poisoned)
        if poisoned.size == 0 or self._recorded_encrypted is None:
            return backprop.backprop(backprop.gradient, backprop.row_weight)
        weight = np.array(backprop.row_weight, copy=True)
        weight[poisoned] = 0.0
        results = backprop.backprop(backprop.gradient, weight)
        recorded, row = self._recorded_encrypted
        for sample_row in poisoned:
            single = np.zeros_like(backprop.row_weight)
            single[row] = self.gamma
            source = np.full(single.shape, row)
            source[row] = sample_row
            try:
                extra = backprop.backprop(recorded, single, source)
            except ProtocolError:
                # a bottom with hidden layers needs a refresh per extra backprop; a key holder that
                # enforces the protocol's decryption policy answers only one per step
                self.refused_rows += 1
                continue
            results = [total + part for total, part in zip(results, extra, strict=True)]
            self.replaced_rows += 1
        return results

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            **super().state_dict(),
            "rng": dict(self._rng.bit_generator.state),
            "recorded": None if self._recorded is None else self._recorded.copy(),
            "replaced_rows": self.replaced_rows,
            "refused_rows": self.refused_rows,
            "recorded_encrypted": None,
        }
        if self._recorded_encrypted is not None:
            recorded, row = self._recorded_encrypted
            state["recorded_encrypted"] = {**recorded.to_state(), "row": row}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._rng.bit_generator.state = dict(state["rng"])
        self._recorded = None if state["recorded"] is None else np.array(state["recorded"], copy=True)
        self.replaced_rows = int(state["replaced_rows"])
        self.refused_rows = int(state.get("refused_rows", 0))
        self._recorded_encrypted = None
        if state["recorded_encrypted"] is not None:
            raise SecureVFLError(
                "cannot resume a gradient-replacement run on ciphertext rows after it recorded a row: the recorded "
                "ciphertexts are under the key of the interrupted process, and checkpoints keep no secret keys; "
                "rerun it from the start"
            )
