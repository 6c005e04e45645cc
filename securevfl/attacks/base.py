"""The attack interface: hooks at a passive party, and what each attack needs from a scheme.

An attack is a plug-in of one passive party. The party calls it at three points of its
protocol round and never branches on the kind of attack:

- :meth:`PassiveAttack.outgoing_activations`: the rows it is about to send (training only);
- :meth:`PassiveAttack.incoming_gradient`: the plaintext gradient rows it received, when it
  can decrypt them;
- :meth:`PassiveAttack.encrypted_gradients`: its homomorphic backpropagation, when it holds
  only ciphertext gradient rows (the label-private schemes).

Each attack declares the :class:`Capability` sets under which it works. A scheme grants a
set of capabilities to the attacker; when none of the attack's alternatives is granted, the
run records the attack as infeasible with the reason and trains without it, instead of
running a weakened variant.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from securevfl.roles import Capability

if TYPE_CHECKING:
    from securevfl.crypto import EncryptedTensor
    from securevfl.schemes.label_private.backprop import ForwardCache

__all__ = ["AttackTruth", "Backprop", "Capability", "PassiveAttack"]


@dataclass(frozen=True)
class AttackTruth:
    """Ground truth the *evaluator* compares an attack's outputs with (never given to the attacker)."""

    y_train: np.ndarray


#: The attacker's own homomorphic backpropagation: (cache, Enc(G^T), Enc(G) or None) -> Enc(dW|db) per layer.
Backprop = Callable[["ForwardCache", "EncryptedTensor", "EncryptedTensor | None"], list["EncryptedTensor"]]


class PassiveAttack(ABC):
    """Base class of an attack run by one passive party. Every hook defaults to honest behaviour."""

    name: ClassVar[str]
    requires: ClassVar[tuple[frozenset[Capability], ...]]
    """Alternatives: the attack works if the scheme grants every capability of any one set."""
    infeasible_because: ClassVar[str]
    """Why the attack cannot run when no alternative is granted (completes "infeasible: ...")."""

    def __init__(self, party: str) -> None:
        self.party = party

    @classmethod
    def infeasibility(cls, granted: frozenset[Capability]) -> str | None:
        """None when the attack can run with ``granted``; otherwise the reason it cannot."""
        if any(needs <= granted for needs in cls.requires):
            return None
        return cls.infeasible_because

    def outgoing_activations(self, step: int, sample_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The activation rows to send for a training batch (default: the real ones)."""
        return values

    def incoming_gradient(self, step: int, sample_ids: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        """The gradient rows to train the bottom model on (default: those received)."""
        return gradient

    def encrypted_gradients(
        self,
        step: int,
        sample_ids: np.ndarray,
        cache: ForwardCache,
        gradient_t: EncryptedTensor,
        gradient: EncryptedTensor | None,
        backprop: Backprop,
    ) -> list[EncryptedTensor]:
        """Encrypted parameter gradients from encrypted gradient rows (default: honest backprop)."""
        return backprop(cache, gradient_t, gradient)

    def epoch_metrics(self, truth: AttackTruth) -> dict[str, float]:
        """Metrics of the attack's own outputs over the last epoch (e.g. inferred labels)."""
        return {}

    def artifacts(self, truth: AttackTruth) -> Mapping[str, list[list[Any]]]:
        """Per-sample outputs to write as CSV tables (file stem -> rows, header first)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.name}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != self.name:
            raise ValueError(f"state of attack {state.get('kind')!r} cannot be loaded into {self.name!r}")
