"""Each party's freshly seeded model, built alone from the public configuration.

Every model is seeded from its own stream of the run seed (:func:`securevfl.seeding.seed_torch`
with the party's label), so a party building only its own model in its own process gets exactly
the parameters the in-process run gives it, whatever the other parties do.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import torch
from torch import nn

from securevfl.config import RunConfig
from securevfl.models import build_bottom_model, build_top_model
from securevfl.seeding import seed_torch

__all__ = ["bottom_model", "sgd", "top_model"]

#: torch's global generator is shared by every thread of a process: a model is seeded and built
#: under this lock, so parties built at once in threads (tests) each draw from their own stream.
_SEEDING = threading.Lock()


def bottom_model(config: RunConfig, index: int, in_features: int, bottom_out: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Block ``index``'s bottom model (passives in order, then the active party's own block) and its optimizer."""
    with _SEEDING:
        seed_torch(config.train.seed, "bottom", index)
        model = build_bottom_model(in_features, config.model.bottom_hidden, bottom_out, config.model.resolved_output_activation())
    return model, sgd(model.parameters(), config)


def top_model(config: RunConfig, n_blocks: int, bottom_out: int, num_classes: int) -> tuple[nn.Module, torch.optim.Optimizer | None]:
    """The active party's top model over ``n_blocks`` bottom outputs, and its optimizer (None: nothing to train)."""
    with _SEEDING:
        seed_torch(config.train.seed, "top")
        top = build_top_model(config.model.top, [bottom_out] * n_blocks, config.model.top_hidden, num_classes)
    params = list(top.parameters())
    return top, (sgd(params, config) if params else None)


def sgd(params: Iterable[nn.Parameter], config: RunConfig) -> torch.optim.Optimizer:
    train = config.train
    return torch.optim.SGD(params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
