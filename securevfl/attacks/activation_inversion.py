"""Activation inversion at the active party: every passive's per-sample activations ``H_k`` from what it decrypts.

An honest-but-curious active party follows the protocol and looks only at what it legitimately
holds. Under the open schemes (``plain``, ``ckks`` with ``key_holder = "receiver"``) that is
each ``H_k`` itself. The label-private schemes (``key_holder = "active"`` / ``"coordinator"``)
promise that it never decrypts an individual ``H_k``, but with the trainable top it decrypts

- the combined first-layer pre-activation ``Z = sum_k H_k W_k^T`` (batch x top width), with
  ``W_k`` its own weight block for passive ``k``; and
- for its first layer's weight gradient, ``M_k = H_k^T delta`` (bottom output x top width) per
  passive, where ``delta = dL/dZ`` (batch x top width) is a value it computed itself.

Under ``key_holder = "active"`` the active party holds the secret key of every ``Enc(H_k)`` it
receives: decrypting one is a computation on its own view that nobody sees or can refuse, so the
curious active party does exactly that and reads every row (this is why the threat model says the
activations' promise does not hold there). Under ``key_holder = "coordinator"`` it holds no key
and only the combinations below are open to it.

Both are linear in ``H = [H_1 | ... | H_m]``: ``H W^T = Z`` and ``delta^T H_k = M_k^T``. The
attack solves them together (least norm): ``Z`` fixes the component of each row in the row
space of ``W``; the weight-gradient equations fix the rest whenever ``delta`` has full row rank
(batch <= top width). Under the sum top the only equation is ``sum_k H_k = Z``: with one
passive that *is* ``H_1``; with more, the least-norm split ``Z / m`` is the attacker's guess and
is scored as honestly as any other.

The attacker never uses data it could not hold: its inputs are the hook arguments (values its
party decrypted or computed) and the public list of passives. Scoring compares its guesses with
the rows the passives really sent (:class:`~securevfl.attacks.truth.RowTruth`,
evaluation only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from securevfl.attacks.base import Attack, AttackConfigBase, AttackSetting, AttackTruth
from securevfl.attacks.metrics import MetricSpec
from securevfl.crypto import EncryptedTensor
from securevfl.roles import Capability, Role

__all__ = [
    "ACTIVATION_RECOVERY_ERROR",
    "ACTIVATION_ROWS_DETERMINED",
    "ACTIVATION_ROWS_RECOVERED",
    "ActivationInversion",
    "ActivationInversionConfig",
    "NEGLIGIBLE_ROW",
    "InvertedActivations",
    "invert_activations",
    "relative_row_errors",
]

ACTIVATION_ROWS_RECOVERED = MetricSpec(
    "activation_rows_recovered",
    "fraction of the epoch's per-sample activation rows (all passives) the active party recovered within the relative tolerance",
    "higher",
    "activations recovered",
)
ACTIVATION_RECOVERY_ERROR = MetricSpec(
    "activation_recovery_error",
    "median relative L2 error of the active party's recovered activation rows over the epoch",
    "lower",
    "activation error",
)
ACTIVATION_ROWS_DETERMINED = MetricSpec(
    "activation_rows_determined",
    "fraction of the epoch's activation rows the active party's equations determine uniquely (its own view, no truth)",
    "higher",
    "activations determined",
)


class ActivationInversionConfig(AttackConfigBase):
    """Recover every passive's activation rows from the values the active party decrypts."""

    kind: Literal["activation_inversion"] = "activation_inversion"
    tolerance: float = Field(
        default=1e-3, gt=0, lt=1, description="a row counts as recovered when its relative L2 error is at most this"
    )
    rcond: float = Field(default=1e-9, gt=0, lt=1, description="relative cutoff of small singular values in the least squares")


@dataclass(frozen=True)
class InvertedActivations:
    """The recovered rows of one batch, per passive, and which rows the equations pin down."""

    rows: list[np.ndarray]
    """One array (batch x bottom output) per passive, in the order of the weight blocks."""
    determined: np.ndarray
    """Per sample: True when the attacker's equations have a unique solution for that sample's rows."""


def invert_activations(
    combined: np.ndarray,
    weights: list[np.ndarray],
    products: list[np.ndarray] | None = None,
    delta: np.ndarray | None = None,
    rcond: float = 1e-9,
) -> InvertedActivations:
    """Least-norm ``H = [H_1 | ... | H_m]`` with ``H W^T = Z`` and ``delta^T H_k = M_k^T``.

    Args:
        combined: ``Z`` (batch x top width), the combination the active party decrypts.
        weights: ``W_k`` (top width x bottom output) per passive; identities under the sum top.
        products: ``M_k = H_k^T delta`` (bottom output x top width) per passive, or None (sum top).
        delta: ``dL/dZ`` (batch x top width), needed with ``products``.

    ``Z`` fixes ``H`` on the row space of ``W``; the remaining (null-space) coordinates ``A``
    solve ``delta^T A = (M^T - delta^T H_0) Q`` with ``Q`` a basis of the null space. Sample
    ``b`` is determined when the null space is empty or ``e_b`` is orthogonal to the null space
    of ``delta^T`` (always, when ``delta`` has full row rank).
    """
    z = np.asarray(combined, dtype=np.float64)
    w = np.hstack([np.asarray(block, dtype=np.float64) for block in weights])  # top width x sum of widths
    batch, width = z.shape[0], w.shape[1]
    u, s, vt = np.linalg.svd(w, full_matrices=True)
    rank = int(np.sum(s > rcond * s.max())) if s.size and s.max() > 0 else 0
    row_space, null_space = vt[:rank].T, vt[rank:].T  # width x rank, width x (width - rank)
    h = (z @ u[:, :rank] / s[:rank]) @ row_space.T
    determined = np.full(batch, null_space.shape[1] == 0)
    if null_space.shape[1] > 0 and products is not None and delta is not None:
        d = np.asarray(delta, dtype=np.float64)
        m_t = np.hstack([np.asarray(p, dtype=np.float64).T for p in products])  # top width x width
        target = (m_t - d.T @ h) @ null_space
        coords, *_ = np.linalg.lstsq(d.T, target, rcond=rcond)
        h = h + coords @ null_space.T
        determined = _determined_samples(d, rcond)
    split = np.cumsum([np.asarray(block).shape[1] for block in weights])[:-1]
    assert h.shape == (batch, width)
    return InvertedActivations(rows=np.split(h, split, axis=1), determined=determined)


def _determined_samples(delta: np.ndarray, rcond: float) -> np.ndarray:
    """Samples whose unknowns ``delta^T a = c`` fixes: ``e_b`` orthogonal to the null space of ``delta^T``."""
    batch = delta.shape[0]
    _, s, vt = np.linalg.svd(delta.T, full_matrices=True)  # delta^T: top width x batch
    rank = int(np.sum(s > rcond * s.max())) if s.size and s.max() > 0 else 0
    null = vt[rank:]  # (batch - rank) x batch
    if null.shape[0] == 0:
        return np.ones(batch, dtype=bool)
    return np.linalg.norm(null, axis=0) < 1e-6


#: A true row shorter than this fraction of the rows' RMS norm is measured against that much instead.
NEGLIGIBLE_ROW = 1e-2


def relative_row_errors(guess: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``||guess_b - truth_b|| / max(||truth_b||, NEGLIGIBLE_ROW x RMS row norm)`` per row.

    Relative error is undefined for a dead row (every ReLU unit zero, common with few units) and
    meaningless for a nearly dead one: CKKS decryption leaves an absolute error of about 1e-7 on
    every entry, so even the rows the active party simply *receives* under ``key_holder =
    "receiver"`` would miss a relative tolerance there. Such rows are measured against 1 % of a
    typical row's norm, i.e. as an absolute error on the scale of the activations.
    """
    norms = np.linalg.norm(truth, axis=1)
    scale = float(np.sqrt(np.mean(norms**2))) if norms.size else 0.0
    floor = max(NEGLIGIBLE_ROW * scale, np.finfo(np.float64).tiny)
    return np.linalg.norm(guess - truth, axis=1) / np.maximum(norms, floor)


@dataclass
class _Pending:
    """One label-private batch while the active party's decryptions of it arrive."""

    step: int
    sample_ids: np.ndarray
    combined: np.ndarray
    blocks: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    """passive -> (M_k, delta, W_k)."""


class ActivationInversion(Attack):
    """Recovers each passive's activation rows from what the active party decrypts (or simply receives)."""

    name: ClassVar[str] = "activation_inversion"
    config_type = ActivationInversionConfig
    role = Role.ACTIVE
    requires = (frozenset({Capability.PLAINTEXT_ACTIVATION_ROWS}), frozenset({Capability.COMBINED_ACTIVATIONS}))
    infeasible_because = "the active party holds neither the passives' activation rows nor a combination of them"
    metrics = (ACTIVATION_ROWS_RECOVERED, ACTIVATION_RECOVERY_ERROR, ACTIVATION_ROWS_DETERMINED)
    success_metric = ACTIVATION_ROWS_RECOVERED.name
    reads_private_data = True
    observes_only = True
    scores_activations = True

    def __init__(self, party: str, passives: tuple[str, ...], n_samples: int, top: str, tolerance: float, rcond: float) -> None:
        super().__init__(party)
        self.passives = passives
        self.n_samples = n_samples
        self.top = top
        self.tolerance = tolerance
        self.rcond = rcond
        self._guesses: dict[str, np.ndarray] = {}
        self._seen = {passive: np.zeros(n_samples, dtype=bool) for passive in passives}
        self._determined = {passive: np.zeros(n_samples, dtype=bool) for passive in passives}
        self._pending: _Pending | None = None
        self._own_key: list[tuple[str, EncryptedTensor]] = []  # this step's Enc(H_k) under the active party's own key
        self._read_directly: set[str] = set()  # passives whose rows of this step were decrypted, not solved for

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: Any) -> ActivationInversion:
        assert isinstance(config, ActivationInversionConfig)
        return cls(setting.party, setting.passives, len(setting.dataset.y_train), setting.top, config.tolerance, config.rcond)

    # ------------------------------------------------------------------ what the active party holds
    def received_activations(self, step: int, sample_ids: np.ndarray, sender: str, values: np.ndarray) -> None:
        """Open schemes: the rows themselves (the guess is what it read, scored like any other)."""
        self._guess(sender, sample_ids, values, np.ones(len(sample_ids), dtype=bool))

    def encrypted_activations(self, step: int, sender: str, tensor: EncryptedTensor) -> None:
        """Label-private schemes: one passive's ``Enc(H_k)``; kept when the active party holds its secret key."""
        if tensor.keyring.is_private():
            self._own_key.append((sender, tensor))

    def combined_activations(self, step: int, sample_ids: np.ndarray, values: np.ndarray) -> None:
        """Label-private schemes: the sum (sum top, solved at once) or the first-layer pre-activation (kept).

        Rows it could decrypt with its own key (``key_holder = "active"``) are read, not solved for.
        """
        self._read_directly = set()
        own, self._own_key = self._own_key, []
        n = len(sample_ids)
        for sender, tensor in own:
            rows = tensor.decrypt().astype(np.float64)  # batch x width (a sealed layer, which sends H^T, refuses this attack)
            self._guess(sender, np.asarray(sample_ids), rows, np.ones(n, dtype=bool))
            self._read_directly.add(sender)
        self._pending = _Pending(step, np.asarray(sample_ids).copy(), np.asarray(values, dtype=np.float64))
        if self.top == "sum":
            identity = np.eye(values.shape[1])
            self._solve(invert_activations(values, [identity] * len(self.passives), rcond=self.rcond))

    def revealed_top_weight_gradient(
        self, step: int, sample_ids: np.ndarray, passive: str, values: np.ndarray, delta: np.ndarray, weight: np.ndarray
    ) -> None:
        """Label-private trainable top: one passive's ``H_k^T delta``; solved once every passive's arrived."""
        pending = self._pending
        if pending is None or pending.step != step or not np.array_equal(pending.sample_ids, sample_ids):
            raise RuntimeError(f"{self.party}: a top weight gradient of step {step} came without its combined pre-activation")
        pending.blocks[passive] = (values, delta, weight)
        if set(pending.blocks) == set(self.passives):
            blocks = [pending.blocks[p] for p in self.passives]
            inverted = invert_activations(
                pending.combined, [w for _, _, w in blocks], [m for m, _, _ in blocks], blocks[0][1], rcond=self.rcond
            )
            self._solve(inverted)

    def _solve(self, inverted: InvertedActivations) -> None:
        assert self._pending is not None
        for passive, rows in zip(self.passives, inverted.rows, strict=True):
            if passive not in self._read_directly:  # a decrypted row is the row itself; a solve would only blur it
                self._guess(passive, self._pending.sample_ids, rows, inverted.determined)
        self._pending = None

    def _guess(self, passive: str, sample_ids: np.ndarray, rows: np.ndarray, determined: np.ndarray) -> None:
        guesses = self._guesses.get(passive)
        if guesses is None or guesses.shape[1] != rows.shape[1]:
            guesses = self._guesses[passive] = np.zeros((self.n_samples, rows.shape[1]))
        guesses[sample_ids] = rows
        self._seen[passive][sample_ids] = True
        self._determined[passive][sample_ids] = determined

    def recovered(self, passive: str, sample_ids: np.ndarray) -> np.ndarray:
        """The attacker's latest recovered rows of ``passive`` for ``sample_ids`` (zeros where it never guessed)."""
        guesses = self._guesses.get(passive)
        return np.zeros((len(sample_ids), 0)) if guesses is None else guesses[sample_ids].copy()

    # ------------------------------------------------------------------ scoring (evaluator side)
    def epoch_metrics(self, truth: AttackTruth) -> dict[str, float]:
        """Score the epoch's guesses against the rows the passives sent; starts a new epoch."""
        if truth.activations is None:
            raise RuntimeError("activation inversion is scored against the passives' activations, but none were recorded")
        errors, determined = [], []
        for passive in self.passives:
            ids = np.flatnonzero(self._seen[passive])
            true_rows = truth.activations.rows(passive, ids)
            if ids.size == 0 or true_rows is None:
                continue
            errors.append(relative_row_errors(self._guesses[passive][ids], true_rows))
            determined.append(self._determined[passive][ids])
            self._seen[passive][:] = False
        if not errors:
            return {}
        error = np.concatenate(errors)
        return {
            ACTIVATION_ROWS_RECOVERED.name: float(np.mean(error <= self.tolerance)),
            ACTIVATION_RECOVERY_ERROR.name: float(np.median(error)),
            ACTIVATION_ROWS_DETERMINED.name: float(np.mean(np.concatenate(determined))),
        }

    def summary(self) -> dict[str, Any]:
        return {"tolerance": self.tolerance}

    def state_dict(self) -> dict[str, Any]:
        """Nothing between epochs: guesses are scored and cleared at each epoch's end, before a checkpoint."""
        return super().state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
