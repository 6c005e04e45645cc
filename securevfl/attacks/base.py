"""The attack interface: a config model, a role, the capabilities it needs, its metrics, and hooks.

An attack is a plug-in of one party. It declares

- :attr:`Attack.config_type`: its own ``[attack]`` model (``kind`` selects it);
- :attr:`Attack.role`: where it runs (passive, active, key holder, or an observer of the channel);
- :attr:`Attack.requires`: alternatives of :class:`~securevfl.roles.Capability` sets; a scheme
  grants capabilities per role, and when none of the alternatives is granted the run records
  the attack as infeasible with :attr:`Attack.infeasible_because` and trains without it,
  instead of running a weakened variant;
- :attr:`Attack.metrics`: what it reports per epoch (names, meaning, direction).

Its party calls the hooks of :mod:`securevfl.attacks.hooks`; every hook defaults to honest
behaviour. Adding an attack is one module with its config and class, its test, and one line in
:mod:`securevfl.attacks.registry` (or :func:`~securevfl.attacks.registry.register_attack`).
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from securevfl.attacks.metrics import MetricSpec
from securevfl.attacks.truth import RowTruth
from securevfl.roles import Capability, Role

if TYPE_CHECKING:
    from torch import nn

    from securevfl.attacks.hooks import EncryptedBackprop
    from securevfl.crypto import EncryptedTensor
    from securevfl.data import VFLDataset

__all__ = ["Attack", "AttackConfigBase", "AttackPlan", "AttackSetting", "AttackTruth", "NoAttackConfig"]


class AttackConfigBase(BaseModel):
    """Fields every ``[attack]`` table has; each attack extends it with its own."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    table_columns: ClassVar[dict[str, str]] = {}
    """Study-table column -> config field, for the knobs a study table shows (e.g. ``gamma``)."""

    kind: str
    party: str | None = Field(default=None, description="the attacking party; default: the last passive (passive attacks)")

    @property
    def active(self) -> bool:
        return self.kind != "none"

    def label(self) -> str:
        """How reports name this attack with its settings (override to show the knobs that matter)."""
        return self.kind.replace("_", " ")


class NoAttackConfig(AttackConfigBase):
    """Every party follows the protocol."""

    kind: Literal["none"] = "none"


@dataclass(frozen=True)
class AttackTruth:
    """Ground truth the *evaluator* compares an attack's outputs with (never given to the attacker)."""

    y_train: np.ndarray
    gradient_rows: RowTruth | None = None
    """The true rows dL/dH the attacking passive was answered with (attacks with ``scores_gradient_rows``)."""
    activations: RowTruth | None = None
    """The passives' true training activations (attacks with ``scores_activations``; see :mod:`.truth`)."""
    passive_inputs: Mapping[str, np.ndarray] | None = None
    """Each passive's training feature columns, by name (attacks with ``scores_passive_inputs``)."""


#: What a malicious passive needs to abuse the key holder: ciphertext rows of its own and a request
#: slot in which another party's key decrypts for it (the label-private schemes' passives).
DECRYPTION_REQUESTS = frozenset({Capability.CIPHERTEXT_GRADIENT_ROWS, Capability.BATCH_SUMMED_PARAMETER_GRADIENTS})
NO_DECRYPTION_REQUESTS = "the attacker has no decryption request of its own to spend (no key holder decrypts for it)"


@dataclass(frozen=True)
class AttackSetting:
    """What an attack is prepared from: the data, who attacks, and the run's public facts."""

    dataset: VFLDataset
    party: str
    columns: np.ndarray | None
    """The attacking party's global feature columns (passive attackers), else None."""
    bottom_output: int
    seed: int
    top: str = "sum"
    """The active party's top model (``sum`` or ``trainable``): public, agreed architecture."""
    passives: tuple[str, ...] = ()
    """The passive parties, in block order: public membership of the federation."""


@dataclass
class AttackPlan:
    """What an attack changes before training, whether or not it turns out feasible.

    ``dataset`` replaces the run's data (e.g. a trigger in the attacker's own columns);
    ``eval_splits`` are extra evaluation sets, each ``name -> (global feature rows, labels)``,
    whose predictions ``evaluate`` turns into metrics; ``summary`` goes to result.json's
    ``attack`` record.
    """

    dataset: VFLDataset | None = None
    eval_splits: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def evaluate(self, predictions: Mapping[str, np.ndarray]) -> dict[str, float]:
        """Metrics from the predictions on :attr:`eval_splits` (none by default)."""
        return {}


class Attack(ABC):
    """Base class of every attack. Every hook defaults to honest behaviour."""

    name: ClassVar[str]
    config_type: ClassVar[type[AttackConfigBase]]
    role: ClassVar[Role] = Role.PASSIVE
    requires: ClassVar[tuple[frozenset[Capability], ...]]
    """Alternatives: the attack works if the scheme grants every capability of any one set."""
    infeasible_because: ClassVar[str]
    """Why the attack cannot run when no alternative is granted (completes "infeasible: ...")."""
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    success_metric: ClassVar[str | None] = None
    """The metric that says how well the attack succeeded (survival verdicts compare it)."""
    scores_gradient_rows: ClassVar[bool] = False
    """Its truth records the attacking passive's true gradient rows (:class:`~securevfl.attacks.truth.RowTruth`)."""
    scores_activations: ClassVar[bool] = False
    """Its truth records every passive's true training activations (:class:`~securevfl.attacks.truth.RowTruth`)."""
    scores_passive_inputs: ClassVar[bool] = False
    """Its truth holds every passive's training feature columns (what an attack on the passives' features is scored against)."""
    activation_truth_optional: ClassVar[bool] = False
    """It still runs, unscored on activations, where no passive holds its activations in plaintext (sealed layers)."""
    observes_only: ClassVar[bool] = False
    """It only reads what its party is given and sends nothing else: the run trains exactly as an honest one,
    so its main accuracy is the honest model's (the survival table then also compares that, CKKS vs plaintext)."""
    reads_private_data: ClassVar[bool] = False
    """Its success is a read of another party's private data (labels, activations, features, the key), not a
    behaviour of the trained model: its numbers stand in a run whose model sits at chance, so the study does not
    call that run collapsed (it reports the model's accuracy next to them). False for a backdoor, whose success is
    read off the model's predictions (at chance, "backdoor 100 %" is a model that always predicts the target)."""
    deviates: ClassVar[bool] = True
    """It may send what an honest party would not (unless it ``observes_only``), so an honest party's check may refuse
    it: a refusal then stops the run as ``detected`` (:class:`~securevfl.errors.DeviationDetected`), an outcome, where
    in a run without such an attack it is a bug. False for an honest party's plug-in (``backdoor_control``)."""

    @classmethod
    def may_be_refused(cls) -> bool:
        """Whether a refusal by an honest party's check is this attack being caught (see :attr:`deviates`)."""
        return cls.deviates and not cls.observes_only

    def __init__(self, party: str) -> None:
        self.party = party

    # ------------------------------------------------------------------ preparation
    @classmethod
    def plan(cls, config: AttackConfigBase, setting: AttackSetting) -> AttackPlan:
        """Data changes and evaluation sets, made before feasibility is known (default: none)."""
        return AttackPlan()

    @classmethod
    def infeasibility(cls, granted: frozenset[Capability], setting: AttackSetting) -> str | None:
        """None when the attack can run with ``granted`` in ``setting``; otherwise the reason it cannot."""
        if any(needs <= granted for needs in cls.requires):
            return None
        return cls.infeasible_because

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: AttackPlan) -> Attack:
        """The running attack (called only when it is feasible)."""
        return cls(setting.party)

    def summary(self) -> dict[str, Any]:
        """Attack-specific facts for result.json's ``attack`` record (e.g. how many rows it replaced)."""
        return {}

    # ------------------------------------------------------------------ passive hooks
    def outgoing_activations(self, step: int, sample_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The activation rows to send for a training batch (default: the real ones)."""
        return values

    def incoming_gradient(self, step: int, sample_ids: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        """The gradient rows to train the bottom model on (default: those received)."""
        return gradient

    def encrypted_gradients(self, step: int, sample_ids: np.ndarray, backprop: EncryptedBackprop) -> list[EncryptedTensor]:
        """Encrypted parameter gradients from encrypted gradient rows (default: honest backprop)."""
        return backprop.backprop(backprop.gradient, backprop.row_weight)

    def gradient_request_refused(self, step: int, reason: str) -> bool:
        """The key holder refused a parameter-gradient request of this step (after :meth:`encrypted_gradients`).

        Return True if the attack sent what was refused and takes the refusal as its outcome: the
        passive then goes on without this step's update. The default (an honest request refused)
        returns False, and the refusal stops the run.
        """
        return False

    def revealed_parameter_gradients(
        self, step: int, sample_ids: np.ndarray, gradients: list[np.ndarray], model: nn.Module
    ) -> None:
        """The batch-summed ``[dW | db]`` of each Linear layer of the passive's ``model``, before its update.

        Under the label-private schemes the passive learns them by masked decryption; under the open
        schemes it computes them itself. ``model`` is the attacker's own (weights not yet updated).
        Observe only.
        """

    # ------------------------------------------------------------------ active hooks
    def received_activations(self, step: int, sample_ids: np.ndarray, sender: str, values: np.ndarray) -> None:
        """One passive's activation rows, where the active party decrypts (or receives) them."""

    def combined_activations(self, step: int, sample_ids: np.ndarray, values: np.ndarray) -> None:
        """The combination of activations the active party decrypts under a label-private scheme."""

    def encrypted_activations(self, step: int, sender: str, tensor: EncryptedTensor) -> None:
        """One passive's encrypted activations as the active party receives them (label-private schemes). Observe only."""

    def extra_requests(self, step: int, what: str, honest: EncryptedTensor, reveal: Callable[[EncryptedTensor], np.ndarray]) -> None:
        """Before its party has ``honest`` decrypted by a key holder it does not host.

        The active party (coordinator scheme): before each of its combined values; a passive
        (one-key-holder schemes, open layer): before its first layer's parameter gradient.
        ``reveal`` sends another request of the same kind (``what``) and returns its reply: a
        malicious party may spend whatever request budget the key holder leaves it (a request the
        policy counts takes the slot of the honest one). It raises
        :class:`~securevfl.protocols.errors.ProtocolError` when the key holder refuses.
        """

    def outgoing_gradients(self, step: int, sample_ids: np.ndarray, gradients: list[np.ndarray]) -> list[np.ndarray]:
        """The gradient rows ``dL/dH_k`` the active party is about to send each passive (label-private schemes), in
        passive order; return what to send instead. Where the honest protocol sends every passive the same rows (the
        sum top) and the returned rows differ, the party encrypts each passive's rows on its own, whatever the
        one-ciphertext rule of :mod:`~securevfl.protocols.gradient_agreement` says: a malicious active party's choice."""
        return gradients

    def revealed_top_weight_gradient(
        self, step: int, sample_ids: np.ndarray, passive: str, values: np.ndarray, delta: np.ndarray, weight: np.ndarray
    ) -> None:
        """The batch-summed ``H_k^T delta`` (bottom output x top width) the active party decrypts for ``passive``.

        Label-private schemes with a trainable top: it is passive ``k``'s block of the first top
        layer's weight gradient. ``delta`` (batch x top width) is dL/d(first-layer pre-activation),
        which the active party computed itself; ``weight`` (top width x bottom output) is its own
        weight block for ``passive``, at which the combined pre-activation was taken. Observe only.
        """

    # ------------------------------------------------------------------ key holder and observer hooks
    def decrypted_request(self, step: int, requester: str, values: np.ndarray) -> None:
        """A value the key holder decrypted for ``requester`` (masked, if the requester masked it)."""

    def observed_frame(self, frame: bytes) -> None:
        """A frame on the channel, as a relay or eavesdropper sees it."""

    # ------------------------------------------------------------------ results
    def epoch_metrics(self, truth: AttackTruth) -> dict[str, float]:
        """Metrics of the attack's own outputs over the last epoch (e.g. inferred labels)."""
        return {}

    def read_at_stop(self, truth: AttackTruth) -> dict[str, float]:
        """What this attacker holds when an honest party's check has stopped the run (``attack_at_stop``): its own
        cumulative metrics (:attr:`MetricSpec.cumulative`: everything it read so far in the run), scored against the
        truth without a protocol message (the run has stopped). A per-epoch fraction taken mid-epoch would count only
        that epoch's part (a key recovered in epoch 1 and stopped early in epoch 2 would read 0), so such metrics are
        left out: that seed stays an unknown. Empty for an attack judged by the model's predictions (a backdoor: no
        model to ask) and where the truth it is scored on is not at hand (a party process)."""
        if not self.reads_private_data:
            return {}
        cumulative = {spec.name for spec in self.metrics if spec.cumulative}
        if not cumulative:
            return {}
        return {name: value for name, value in self.epoch_metrics(truth).items() if name in cumulative}

    def artifacts(self, truth: AttackTruth) -> Mapping[str, list[list[Any]]]:
        """Per-sample outputs to write as CSV tables (file stem -> rows, header first)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.name}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != self.name:
            raise ValueError(f"state of attack {state.get('kind')!r} cannot be loaded into {self.name!r}")
