"""Deterministic seeds: the same run seed gives the same models and the same batch order.

Each consumer (a party's initialisation, an epoch's shuffle) gets its own stream derived
from the run seed, so changing one part of a run (e.g. adding a party) does not reshuffle
the others, and a resumed run regenerates exactly the batches it would have seen.
"""

from __future__ import annotations

import numpy as np
import torch


def derived_seed(seed: int, *labels: int | str) -> int:
    """A 63-bit seed derived from ``seed`` and a path of labels."""
    words = [seed] + [_label_word(label) for label in labels]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def seed_torch(seed: int, *labels: int | str) -> None:
    torch.manual_seed(derived_seed(seed, *labels))


def epoch_batches(n_samples: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The shuffled sample ids of every batch of ``epoch`` (all parties agree on them)."""
    rng = np.random.default_rng(derived_seed(seed, "shuffle", epoch))
    order = rng.permutation(n_samples)
    return [order[start : start + batch_size] for start in range(0, n_samples, batch_size)]


def _label_word(label: int | str) -> int:
    if isinstance(label, int):
        return label
    return int.from_bytes(label.encode("utf-8")[:8].ljust(8, b"\0"), "little")
