"""A malicious active party has single passives' activations decrypted where the coordinator expects their sum.

The threat (docs/threat-model.md, the own-slot finding): under the sum top with a coordinator holding the
key, the active party is allowed only ``S = sum_k H_k``. The coordinator cannot tell ``Enc(H_k)`` from
``Enc(S)``: same shape, same range, and the active party's requests are masked by the active party
itself. So at every step this attack sends each passive's ``Enc(H_k)``, as received, in a request
named like the sum, before its honest one (the policy's evaluation budget has room for them), and
scores the rows it reads against the passives' true activations.

Pairwise activation masks (``protection.activation_masks``, :mod:`securevfl.protocols.pairwise_masks`)
are the defence: the coordinator still answers (a masked request looks like any other), but
``Enc(H_k + M_k)`` decrypts to ``H_k`` under a uniform mask of half-width ``protection.mask_half_width``
that only the sum cancels, and no row is read. The reads are flooded by the key holder, so a row
counts as read within a relative L2 error of 5 % by default (``tolerance``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from securevfl.attacks.activation_reads import ActivationReads
from securevfl.attacks.base import Attack, AttackConfigBase, AttackSetting, AttackTruth
from securevfl.attacks.metrics import MetricSpec
from securevfl.crypto import EncryptedTensor
from securevfl.protocols.errors import ProtocolError, RequestRefusedError
from securevfl.protocols.keyholder import CONTENT_REFUSAL
from securevfl.roles import Capability, Role

__all__ = ["OWN_SLOT_ROWS", "ActiveOwnSlot", "ActiveOwnSlotConfig"]

OWN_SLOT_ROWS = MetricSpec(
    "own_slot_activation_rows",
    "fraction of the epoch's per-sample activation rows (all passives) the active party read by having single passives' "
    "Enc(H_k) decrypted in requests named like the sum (within the relative tolerance)",
    "higher",
    "activations via own slot",
)


class ActiveOwnSlotConfig(AttackConfigBase):
    """Have each passive's Enc(H_k) decrypted where the key holder expects the sum of all of them."""

    kind: Literal["active_own_slot"] = "active_own_slot"
    start_step: int = Field(default=0, ge=0, description="first training step at which the crafted requests are sent")
    tolerance: float = Field(
        default=0.05, gt=0, lt=1,
        description="an activation row counts as read when its relative L2 error is at most this (the reads are flooded)",
    )


class ActiveOwnSlot(Attack):
    """A malicious active party spending spare request slots on single passives' activations (see the module)."""

    name: ClassVar[str] = "active_own_slot"
    config_type = ActiveOwnSlotConfig
    role: ClassVar[Role] = Role.ACTIVE
    requires = (frozenset({Capability.DECRYPTION_REQUESTS, Capability.COMBINED_ACTIVATIONS}),)
    infeasible_because = (
        "the active party sends no decryption request another party's key answers (it holds the key itself, or "
        "receives the activations in the clear)"
    )
    metrics = (OWN_SLOT_ROWS,)
    success_metric = OWN_SLOT_ROWS.name
    reads_private_data = True
    scores_activations = True
    activation_truth_optional = True  # sealed passives hold no activations: only "nothing read" can be scored

    def __init__(self, party: str, n_samples: int, passives: tuple[str, ...], start_step: int, tolerance: float) -> None:
        super().__init__(party)
        self.start_step = start_step
        self.passives = passives
        self._received: list[tuple[str, EncryptedTensor]] = []
        self._pending: list[tuple[str, np.ndarray]] = []
        self._reads = ActivationReads(n_samples, passives, tolerance)
        self.requests_answered = 0
        self.refused: str | None = None
        self.stopped = False

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: Any) -> ActiveOwnSlot:
        assert isinstance(config, ActiveOwnSlotConfig)
        return cls(setting.party, len(setting.dataset.y_train), setting.passives, config.start_step, config.tolerance)

    # ------------------------------------------------------------------ hooks
    def encrypted_activations(self, step: int, sender: str, tensor: EncryptedTensor) -> None:
        if not self.stopped and step >= self.start_step:
            self._received.append((sender, tensor))

    def extra_requests(self, step: int, what: str, honest: EncryptedTensor, reveal: Callable[[EncryptedTensor], np.ndarray]) -> None:
        received, self._received = self._received, []
        if self.stopped or what != "activation_sum":
            return
        for sender, tensor in received:
            try:
                values = np.asarray(reveal(tensor))
            except ProtocolError as exc:  # refused: a content refusal is a strike, and a second would cut it off
                self.refused = str(exc)
                if isinstance(exc, RequestRefusedError) and exc.reason == CONTENT_REFUSAL:
                    self.stopped = True
                return
            self.requests_answered += 1
            self._pending.append((sender, values))

    def combined_activations(self, step: int, sample_ids: np.ndarray, values: np.ndarray) -> None:
        pending, self._pending = self._pending, []
        for sender, plain in pending:
            self._reads.store(sender, sample_ids, plain)

    # ------------------------------------------------------------------ results
    def epoch_metrics(self, truth: AttackTruth) -> dict[str, float]:
        recovered = self._reads.fraction_recovered(truth)
        return {} if recovered is None else {OWN_SLOT_ROWS.name: recovered}

    def summary(self) -> dict[str, Any]:
        return {"requests_answered": self.requests_answered, "stopped_after_a_refusal": self.stopped, "last_refusal": self.refused}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stopped": self.stopped, "requests_answered": self.requests_answered}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.stopped = bool(state.get("stopped", False))
        self.requests_answered = int(state.get("requests_answered", 0))
