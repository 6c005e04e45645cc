"""A study plugin for tests: an attack whose hook kills its worker process, as a segfault or the OOM killer would.

Used by tests/test_study_ray.py to check that a Ray task whose process dies is retried, then
recorded as ``crashed`` beside the run (not lost, not hanging the study).
"""

from __future__ import annotations

import os
from typing import ClassVar, Literal

import numpy as np
from attack_fixtures import RowsSeen, RowsSeenConfig

from securevfl.attacks import ATTACKS, register_attack

EXIT_CODE = 17


class WorkerDiesConfig(RowsSeenConfig):
    kind: Literal["test_worker_dies"] = "test_worker_dies"  # type: ignore[assignment]


class WorkerDies(RowsSeen):
    """Ends the process at the first activation it receives, without any Python cleanup."""

    name: ClassVar[str] = "test_worker_dies"
    config_type = WorkerDiesConfig

    def received_activations(self, step: int, sample_ids: np.ndarray, sender: str, values: np.ndarray) -> None:
        os._exit(EXIT_CODE)


if WorkerDies.name not in ATTACKS:
    register_attack(WorkerDies)
