"""A malicious active party steers one passive's update and reads that passive's feature similarities from the sums.

The threat (docs/threat-model.md, *gradient steering*; found by a red-team pass on the pairwise masks,
2026-11-27): under the sum top every passive should train on the same gradient rows ``delta``, and the
active party learns only the sum ``S = sum_k H_k``. It chooses ``delta``, though. This attack

1. freezes the passives from ``start_step`` on (zero gradient rows to all of them: the same bytes for
   every passive, nothing the coordinator can object to) and records ``S`` for every training sample
   over one sweep of the data;
2. at the step that completes the sweep, sends the target passive alone a probe: gradient rows that are
   zero except ``probe`` at batch row ``r``, output ``r`` (one probe per output, the first rows of that
   batch), and the others zero rows;
3. records ``S`` over another frozen sweep: only the target moved, so ``S_after - S_before`` is the
   target passive's own activation change. With a one-layer bottom its output-``r`` column is
   ``-lr * probe * (<x_j, x_i> + 1)`` over every sample ``i``: a row of the target passive's private
   feature Gram matrix (``j``, the probed sample); with hidden layers a mixture of that and the hidden
   representation's Gram row. The after-sweep is the next probe's before-sweep.

The freeze assumes plain SGD on the passives (``train.momentum = 0``, ``train.weight_decay = 0``, the paper's
setting): with momentum or weight decay a zero gradient does not stop a model, and the attack reads less (red-team
review: momentum 0.9, 0 of 3 rows; weight decay 0.05, 1 of 3), so it under-reports there.

Each completed probe is scored against the target's true Gram row ``<x_j, x_i> + 1`` (Pearson correlation
over the training samples); a row counts as read at ``threshold``. The training stops where the attack
runs (it freezes the passives): runs let the model train honestly until ``start_step``.

The defence: pairwise activation masks with the coordinator's gradient agreement
(:mod:`securevfl.protocols.gradient_agreement`): each passive reports the digest of the gradient it
received, and the coordinator refuses the active party's next request when they differ, before any sum
after the probe is decrypted. The run then stops as ``detected`` (:class:`~securevfl.errors.DeviationDetected`)
with nothing read. Without the masks (or under ``ckks/active``, where the active party holds the key) the
rows are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from securevfl.attacks.base import Attack, AttackConfigBase, AttackPlan, AttackSetting, AttackTruth
from securevfl.attacks.metrics import MetricSpec
from securevfl.errors import ConfigError
from securevfl.roles import Capability, Role

__all__ = ["STEERING_CORRELATION", "STEERING_ROWS", "GradientSteering", "GradientSteeringConfig", "gram_row_correlation"]

STEERING_ROWS = MetricSpec(
    "steering_gram_rows",
    "fraction of the probes (one sample each) whose row of the target passive's feature Gram matrix (<x_j, x_i> + 1 over "
    "every training sample i) the active party read from the activation sums by steering that passive's update alone "
    "(Pearson correlation at least attack.threshold); 0 before a probe completes",
    "higher",
    "Gram rows via steering",
    cumulative=True,  # over every probe read so far in the run
)
STEERING_CORRELATION = MetricSpec(
    "steering_gram_correlation",
    "mean Pearson correlation of the rows the steering attack read with the target passive's true feature Gram rows",
    "higher",
    "steering correlation",
    cumulative=True,
)


class GradientSteeringConfig(AttackConfigBase):
    """Freeze the passives, probe one of them alone, and read its feature Gram rows from the sums."""

    kind: Literal["gradient_steering"] = "gradient_steering"
    target: str | None = Field(default=None, description="the passive whose features are probed; default: the first passive")
    start_step: int = Field(default=0, ge=0, description="first step of the attack (the passives train honestly before it)")
    probe: float = Field(
        default=1.0, gt=0, le=8,
        description="the probe entry, in units of 1 / batch size (the largest entry an honest mean-loss gradient row has)",
    )
    threshold: float = Field(default=0.9, gt=0, lt=1, description="a Gram row counts as read at this Pearson correlation")


def gram_row_correlation(read: np.ndarray, inputs: np.ndarray, sample: int) -> float:
    """Pearson correlation of ``read`` (one value per training sample) with ``<x_sample, x_i> + 1`` over every ``i``."""
    x = np.asarray(inputs, dtype=np.float64)
    truth = x @ x[sample] + 1.0
    if np.std(read) == 0 or np.std(truth) == 0:
        return 0.0
    return float(np.corrcoef(read, truth)[0, 1])


class GradientSteering(Attack):
    """A malicious active party probing one passive's update on its own (see the module)."""

    name: ClassVar[str] = "gradient_steering"
    config_type = GradientSteeringConfig
    role: ClassVar[Role] = Role.ACTIVE
    requires = (frozenset({Capability.COMBINED_ACTIVATIONS}),)
    infeasible_because = (
        "the active party receives each passive's activations on their own (or the scheme is not label-private): "
        "there is no sum to separate"
    )
    metrics = (STEERING_ROWS, STEERING_CORRELATION)
    success_metric = STEERING_ROWS.name
    reads_private_data = True
    scores_passive_inputs = True

    def __init__(self, party: str, n_samples: int, target: int, start_step: int, probe: float, threshold: float) -> None:
        super().__init__(party)
        self.n_samples, self.target, self.start_step = n_samples, target, start_step
        self.probe, self.threshold = probe, threshold
        self._before: np.ndarray | None = None  # S of every sample over the last complete sweep
        self._sweep: np.ndarray | None = None  # S of the sweep under way
        self._covered = np.zeros(n_samples, dtype=bool)
        self._probes: list[tuple[int, int]] = []  # (sample, output) of the probe whose after-sweep is under way
        self._probe_now = False
        self._reads: list[tuple[int, np.ndarray]] = []  # (sample, read Gram row) awaiting scoring
        self._scores: list[float] = []
        self.probes_sent = 0

    @classmethod
    def infeasibility(cls, granted: frozenset[Capability], setting: AttackSetting) -> str | None:
        if len(setting.passives) < 2:
            return "with one passive the sum is its activations: there is nothing to separate"
        if setting.top != "sum":
            return ("written for the sum top: under a trainable top the decrypted values mix the passives' activations with "
                    "the active party's own first-layer weights, which it trains on")
        return super().infeasibility(granted, setting)

    @classmethod
    def create(cls, config: AttackConfigBase, setting: AttackSetting, plan: AttackPlan) -> GradientSteering:
        assert isinstance(config, GradientSteeringConfig)
        target = config.target or setting.passives[0]
        if target not in setting.passives:
            raise ConfigError(f"attack.target {target!r} is not a passive party (passives: {', '.join(setting.passives)})")
        return cls(setting.party, len(setting.dataset.y_train), setting.passives.index(target), config.start_step, config.probe, config.threshold)

    def summary(self) -> dict[str, Any]:
        return {"probes_sent": self.probes_sent, "probes_read": len(self._scores) + len(self._reads)}

    # ------------------------------------------------------------------ hooks
    def combined_activations(self, step: int, sample_ids: np.ndarray, values: np.ndarray) -> None:
        if step < self.start_step:
            return
        rows = np.asarray(values, dtype=np.float64)[: len(sample_ids)]
        if self._sweep is None:
            self._sweep = np.zeros((self.n_samples, rows.shape[1]))
        self._sweep[sample_ids] = rows
        self._covered[sample_ids] = True
        if not self._covered.all():
            return
        if self._probes and self._before is not None:  # only the target moved since the before-sweep
            change = self._sweep - self._before
            self._reads += [(sample, -change[:, output]) for sample, output in self._probes]
            self._probes = []
        self._before, self._covered[:] = self._sweep.copy(), False
        self._probe_now = True

    def outgoing_gradients(self, step: int, sample_ids: np.ndarray, gradients: list[np.ndarray]) -> list[np.ndarray]:
        if step < self.start_step:
            return gradients
        steered = [np.zeros_like(g) for g in gradients]
        if self._probe_now:
            self._probe_now = False
            rows = steered[self.target]
            probes = min(len(sample_ids), rows.shape[1])
            for r in range(probes):
                rows[r, r] = self.probe / len(sample_ids)
            self._probes = [(int(sample_ids[r]), r) for r in range(probes)]
            self.probes_sent += probes
        return steered

    # ------------------------------------------------------------------ results
    def epoch_metrics(self, truth: AttackTruth) -> dict[str, float]:
        if truth.passive_inputs is None:  # a party process without the passives' columns: unscored
            return {}
        inputs = list(truth.passive_inputs.values())[self.target]
        self._scores += [gram_row_correlation(read, inputs, sample) for sample, read in self._reads]
        self._reads = []
        if not self._scores:
            return {STEERING_ROWS.name: 0.0}
        scores = np.array(self._scores)
        return {STEERING_ROWS.name: float(np.mean(scores >= self.threshold)), STEERING_CORRELATION.name: float(np.mean(scores))}

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "before": self._before, "sweep": self._sweep, "covered": self._covered.copy(),
            "probes": [list(p) for p in self._probes], "probe_now": self._probe_now,
            "reads": [(sample, read.copy()) for sample, read in self._reads], "scores": list(self._scores),
            "probes_sent": self.probes_sent,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._before = None if state["before"] is None else np.asarray(state["before"], dtype=np.float64)
        self._sweep = None if state["sweep"] is None else np.asarray(state["sweep"], dtype=np.float64)
        self._covered = np.asarray(state["covered"], dtype=bool)
        self._probes = [(int(s), int(o)) for s, o in state["probes"]]
        self._probe_now = bool(state["probe_now"])
        self._reads = [(int(s), np.asarray(r, dtype=np.float64)) for s, r in state["reads"]]
        self._scores = [float(v) for v in state["scores"]]
        self.probes_sent = int(state["probes_sent"])
