"""Which protection schemes the benchmark measures, and how much of an epoch each one runs.

A scheme whose epoch takes seconds to minutes is run for a whole epoch; one whose epoch would
take hours (the label-private schemes at MNIST size) is run for a few steps and a slice of the
evaluation, and its epoch is *extrapolated* from them. Every result carries which of the two
happened, so the report can never present an estimate as a measurement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from securevfl.bench.workload import EpochShape
from securevfl.config import ProtectionConfig, RunConfig, validate_config
from securevfl.errors import ConfigError
from securevfl.schemes import scheme_for

__all__ = ["PAILLIER", "QUICK_ROWS", "SchemeSpec", "run_config", "scheme_matrix", "select_schemes"]

Mode = Literal["epoch", "steps"]
Top = Literal["sum", "trainable"]


@dataclass(frozen=True)
class SchemeSpec:
    """One row of the overhead table.

    ``mode = "epoch"`` runs every training step of an epoch and the whole test evaluation;
    ``mode = "steps"`` runs the epoch's first ``warmup`` steps untimed, then ``steps`` timed
    ones, and evaluates ``eval_samples`` test samples, and the epoch is extrapolated from those.
    """

    scheme: Literal["plain", "ckks"]
    key_holder: Literal["receiver", "active", "coordinator"] | None = None
    preset: str | None = None
    mode: Mode = "steps"
    steps: int = 10
    warmup: int = 1
    eval_samples: int = 1024

    @property
    def protection(self) -> ProtectionConfig:
        settings = {"scheme": self.scheme, "key_holder": self.key_holder, "preset": self.preset}
        return ProtectionConfig.model_validate({key: value for key, value in settings.items() if value is not None})

    @property
    def key(self) -> str:
        """Stable identifier used in the JSON, the table and ``--only``: the scheme's label with its preset."""
        return scheme_for(self.protection).label(with_preset=True)

    @property
    def label_private(self) -> bool:
        return scheme_for(self.protection).label_private

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.key}


#: Training and test rows every scheme loads with ``--quick`` (the full run loads a whole MNIST epoch).
QUICK_ROWS = (2048, 1024)


def scheme_matrix(quick: bool) -> list[SchemeSpec]:
    """Plaintext, then every CKKS key holder with every preset it accepts.

    ``transport`` has no multiplicative level, so the label-private schemes (which
    backpropagate under encryption) cannot use it; the config layer refuses that combination.
    ``--quick`` keeps each key holder's default preset and runs a handful of steps of each
    (everything extrapolated). The full run measures plaintext and the receiver scheme over
    whole epochs and the label-private schemes, whose MNIST epoch takes ten minutes to an hour
    on two cores, over a few steps.
    """
    if quick:  # QUICK_ROWS must hold warmup + steps batches of every spec
        return [
            SchemeSpec("plain", mode="steps", steps=20, warmup=2, eval_samples=1024),
            SchemeSpec("ckks", "receiver", "transport", mode="steps", steps=8, warmup=1, eval_samples=1024),
            SchemeSpec("ckks", "active", "compute", mode="steps", steps=2, warmup=1, eval_samples=256),
            SchemeSpec("ckks", "coordinator", "compute", mode="steps", steps=2, warmup=1, eval_samples=256),
        ]
    return [
        SchemeSpec("plain", mode="epoch"),
        SchemeSpec("ckks", "receiver", "transport", mode="epoch"),
        SchemeSpec("ckks", "receiver", "compute", mode="epoch"),
        SchemeSpec("ckks", "receiver", "deep", mode="epoch"),
        SchemeSpec("ckks", "active", "compute", mode="steps", steps=20, warmup=1, eval_samples=1024),
        SchemeSpec("ckks", "coordinator", "compute", mode="steps", steps=20, warmup=1, eval_samples=1024),
        SchemeSpec("ckks", "active", "deep", mode="steps", steps=3, warmup=1, eval_samples=1024),
        SchemeSpec("ckks", "coordinator", "deep", mode="steps", steps=3, warmup=1, eval_samples=1024),
    ]


#: ``--only`` name of the Paillier baseline (not a federation run, so not a :class:`SchemeSpec`).
PAILLIER = "paillier"


def select_schemes(specs: list[SchemeSpec], only: list[str] | tuple[str, ...]) -> list[SchemeSpec]:
    """The specs named in ``only`` (keys such as ``plain`` or ``ckks/receiver/transport``); all if empty.

    ``paillier`` is accepted and skipped here: it selects the Paillier baseline, not a run.
    """
    if not only:
        return specs
    known = [spec.key for spec in specs] + [PAILLIER]
    unknown = [key for key in only if key not in known]
    if unknown:
        raise ConfigError(f"bench --only: unknown scheme(s) {', '.join(unknown)} (known: {', '.join(known)})")
    return [spec for spec in specs if spec.key in only]


def run_config(spec: SchemeSpec, top: Top, shape: EpochShape, seed: int = 0) -> RunConfig:
    """The run configuration of the seed paper's MNIST setting under ``spec``'s protection.

    Two passive parties split the 28x28 image by rows (392 pixels each); batch 64, SGD with
    lr 0.01. ``top = "sum"``: bottom 392 -> 32 (ReLU) -> 10, so every message is 64x10;
    ``top = "trainable"``: bottom 392 -> 32 (ReLU), messages 64x32.
    """
    model: dict[str, Any] = {"top": top, "bottom_hidden": [32]}
    if top == "trainable":
        model = {"top": "trainable", "bottom_hidden": [], "bottom_output": 32,
                 "bottom_output_activation": "relu", "top_hidden": [32]}
    raw: dict[str, Any] = {
        "parties": {"passive": 2, "split": "rows"},
        "model": model,
        "train": {
            "epochs": 1, "batch_size": shape.batch_size, "eval_batch_size": shape.eval_batch_size,
            "lr": 0.01, "seed": seed, "progress": False, "checkpoint": False, "threads": 1,
        },
    }
    if spec.scheme == "ckks":
        raw["protection"] = {"scheme": "ckks", "key_holder": spec.key_holder, "preset": spec.preset}
    return validate_config(raw)
