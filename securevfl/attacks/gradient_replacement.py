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
  gradient rows and in its own (plaintext) per-row inputs, so it needs no decryption. It drops
  the poisoned rows' honest contribution by giving them weight 0 in its own forward cache, and
  adds, for each poisoned row i, a backpropagation of the *recorded ciphertexts* through a
  cache whose only non-zero row is the recorded row's position, filled with sample i's inputs
  and ReLU masks and weighted by ``gamma``. That is exactly ``gamma * g_rec`` backpropagated
  through sample i, with the same multiplicative depth as an honest step.

With ``blur_activations`` the attacker sends N(0, ``blur_variance``) rows instead of its
poisoned samples' activations while training, so a trainable top cannot learn to map the
poisoned activations back to their true labels; at inference it sends the real activations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from securevfl.attacks.base import Backprop, Capability, PassiveAttack
from securevfl.attacks.poison import BackdoorData

if TYPE_CHECKING:
    from securevfl.crypto import EncryptedTensor
    from securevfl.schemes.label_private.backprop import ForwardCache

__all__ = ["GradientReplacement"]


class GradientReplacement(PassiveAttack):
    """Algorithm 2 (optionally with Algorithm 3) at one passive party."""

    name: ClassVar[str] = "gradient_replacement"
    requires = (
        frozenset({Capability.PLAINTEXT_GRADIENT_ROWS, Capability.OWN_PLAINTEXT}),
        frozenset({Capability.CIPHERTEXT_GRADIENT_ROWS, Capability.OWN_PLAINTEXT}),
    )
    infeasible_because = "the attacker can address no gradient rows, plaintext or encrypted"

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
        self._recorded_encrypted: tuple[EncryptedTensor, EncryptedTensor | None, int] | None = None
        self._pending_encrypted_state: dict[str, Any] | None = None
        self.replaced_rows = 0

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
    def encrypted_gradients(
        self,
        step: int,
        sample_ids: np.ndarray,
        cache: ForwardCache,
        gradient_t: EncryptedTensor,
        gradient: EncryptedTensor | None,
        backprop: Backprop,
    ) -> list[EncryptedTensor]:
        self._restore_encrypted(gradient_t)
        targets = self._positions(sample_ids, self._known)
        if targets.size and (self.record == "latest" or self._recorded_encrypted is None):
            self._recorded_encrypted = (gradient_t, gradient, int(targets[-1]))
        poisoned = self._positions(sample_ids, self._poisoned)
        if poisoned.size == 0 or self._recorded_encrypted is None:
            return backprop(cache, gradient_t, gradient)
        weight = np.array(cache.row_weight, copy=True)
        weight[poisoned] = 0.0
        results = backprop(replace(cache, row_weight=weight), gradient_t, gradient)
        recorded_t, recorded, row = self._recorded_encrypted
        for sample_row in poisoned:
            extra = backprop(_single_row_cache(cache, sample_row, row, self.gamma), recorded_t, recorded)
            results = [total + part for total, part in zip(results, extra, strict=True)]
        self.replaced_rows += int(poisoned.size)
        return results

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            **super().state_dict(),
            "rng": dict(self._rng.bit_generator.state),
            "recorded": None if self._recorded is None else self._recorded.copy(),
            "replaced_rows": self.replaced_rows,
            "recorded_encrypted": self._pending_encrypted_state,
        }
        if self._recorded_encrypted is not None:
            recorded_t, recorded, row = self._recorded_encrypted
            state["recorded_encrypted"] = {
                "gradient_t": recorded_t.to_bytes(),
                "gradient": None if recorded is None else recorded.to_bytes(),
                "row": row,
            }
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._rng.bit_generator.state = dict(state["rng"])
        self._recorded = None if state["recorded"] is None else np.array(state["recorded"], copy=True)
        self.replaced_rows = int(state["replaced_rows"])
        self._recorded_encrypted = None
        self._pending_encrypted_state = state["recorded_encrypted"]

    def _restore_encrypted(self, like: EncryptedTensor) -> None:
        """Deserialize recorded ciphertexts of a checkpoint, under the keyring of ``like``."""
        pending = self._pending_encrypted_state
        if pending is None:
            return
        from securevfl.crypto import EncryptedTensor

        keyring = like.keyring
        recorded = None if pending["gradient"] is None else EncryptedTensor.from_bytes(keyring, pending["gradient"])
        self._recorded_encrypted = (EncryptedTensor.from_bytes(keyring, pending["gradient_t"]), recorded, int(pending["row"]))
        self._pending_encrypted_state = None


def _single_row_cache(cache: ForwardCache, source: int, row: int, weight: float) -> ForwardCache:
    """A cache holding sample ``source``'s inputs and masks at position ``row``, weighted, zero elsewhere."""

    def moved(values: np.ndarray) -> np.ndarray:
        out = np.zeros_like(values)
        out[row] = values[source]
        return out

    row_weight = np.zeros_like(cache.row_weight)
    row_weight[row] = weight
    return replace(
        cache,
        layer_inputs=[moved(a) for a in cache.layer_inputs],
        relu_masks=[None if m is None else moved(m) for m in cache.relu_masks],
        row_weight=row_weight,
    )
