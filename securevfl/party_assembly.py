"""Build one party of a run alone, in its own process: its model, its scheme's wires, its defenses.

What a party is built from: the public configuration and :class:`~securevfl.parties.RunShape`
(what every party agrees on), its own data (:mod:`securevfl.party_data`) and its channel
endpoint (which holds its own identity only). Nothing here sees another party's rows, labels,
model or key: :func:`build_party` builds exactly the objects of party ``name``.
"""

from __future__ import annotations

import numpy as np
import torch

from securevfl.attacks.base import Attack
from securevfl.config import RunConfig
from securevfl.defenses.pipeline import DefensePipeline
from securevfl.errors import ConfigError
from securevfl.parties import ActiveOwn, BottomShape, LocalBlock, LocalParties, PassiveOwn, RunShape, passive_name
from securevfl.party_data import ActiveData, PassiveData
from securevfl.party_models import bottom_model, top_model
from securevfl.protocols import Channel, PhaseTimer
from securevfl.roles import Role

__all__ = ["attach_attack", "build_party", "run_shape"]


def run_shape(config: RunConfig, block_widths: list[int], num_classes: int, n_train: int, n_test: int) -> RunShape:
    """The public facts of a run whose bottom models are the configured Linear/ReLU stacks."""
    n_passive = config.parties.passive
    expected = n_passive + int(config.parties.active_block)
    if len(block_widths) != expected:
        raise ConfigError(f"the run has {expected} feature block(s) (parties.passive = {n_passive}, active_block = {config.parties.active_block}), got {len(block_widths)} block width(s)")
    bottom_out = config.model.resolved_bottom_output(num_classes)
    hidden = tuple(config.model.bottom_hidden)
    relu = (True,) * len(hidden) + (config.model.resolved_output_activation() == "relu",)
    return RunShape(
        passive_names=tuple(passive_name(index) for index in range(n_passive)),
        block_widths=tuple(int(width) for width in block_widths),
        bottoms=tuple(BottomShape((int(width), *hidden, bottom_out), relu) for width in block_widths[:n_passive]),
        bottom_out=bottom_out,
        num_classes=num_classes,
        n_train=n_train,
        n_test=n_test,
    )


def build_party(
    config: RunConfig, run: RunShape, name: str, data: PassiveData | ActiveData | None, channel: Channel, timer: PhaseTimer | None = None
) -> LocalParties:
    """Party ``name`` with only its own ``data`` (None for a coordinator), freshly seeded as in-process."""
    scheme = config.scheme
    timer = timer if timer is not None else PhaseTimer()
    role = run.role_of(name, scheme.key_holder_party)
    own: PassiveOwn | ActiveOwn | None = None
    if role is Role.PASSIVE:
        if not isinstance(data, PassiveData):
            raise ConfigError(f"{name} is a passive party: its data file must hold its feature columns, not {_kind(data)}")
        index = run.passive_names.index(name)
        _check_rows(name, data.x_train, data.x_test, run, run.block_widths[index])
        model, optimizer = bottom_model(config, index, run.block_widths[index], run.bottom_out)
        own = PassiveOwn(x_train=data.x_train, x_test=data.x_test, model=model, optimizer=optimizer, eval_x=dict(data.eval_x))
    elif role is Role.ACTIVE:
        if not isinstance(data, ActiveData):
            raise ConfigError(f"{name} is the active party: its data file must hold the labels, not {_kind(data)}")
        own = _active_own(config, run, name, data)
    elif data is not None:
        raise ConfigError(f"{name} is a key holder and holds no data, but was given {_kind(data)}")
    local = scheme.build_party(name, run, config.model, config.train, own, channel, timer)
    if local.active is not None:
        local.active.defenses = DefensePipeline.build(config.defense, scheme, config.train.seed)
    return local


def attach_attack(local: LocalParties, attack: Attack, role: Role) -> None:
    """Give this process's party the attack it runs (the hooks only; the protocol is unchanged)."""
    if role is Role.PASSIVE and local.passive is not None:
        local.passive.attack = attack
    elif role is Role.ACTIVE and local.active is not None:
        local.active.attack = attack
    elif role is Role.KEY_HOLDER and local.key_holder is not None:
        local.key_holder.run_attack(attack)
    else:
        raise ConfigError(f"attack of role {role.value} cannot run at party {local.name} ({local.role.value})")


def _active_own(config: RunConfig, run: RunShape, name: str, data: ActiveData) -> ActiveOwn:
    if len(data.y_train) != run.n_train or len(data.y_test) != run.n_test:
        raise ConfigError(f"{name}: its labels have {len(data.y_train)}/{len(data.y_test)} train/test rows, the plan says {run.n_train}/{run.n_test}")
    local_block = None
    if run.active_block:
        if data.x_train is None or data.x_test is None:
            raise ConfigError(f"{name}: parties.active_block is set but its data file holds no feature columns")
        _check_rows(name, data.x_train, data.x_test, run, run.block_widths[-1])
        model, optimizer = bottom_model(config, len(run.passive_names), run.block_widths[-1], run.bottom_out)
        local_block = LocalBlock(
            x_train=torch.from_numpy(np.ascontiguousarray(data.x_train, dtype=np.float32)),
            x_test=torch.from_numpy(np.ascontiguousarray(data.x_test, dtype=np.float32)),
            model=model,
            optimizer=optimizer,
        )
    top, top_optimizer = top_model(config, len(run.block_widths), run.bottom_out, run.num_classes)
    return ActiveOwn(
        y_train=data.y_train, y_test=data.y_test, top=top, top_optimizer=top_optimizer, local_block=local_block,
        eval_labels=dict(data.eval_labels), eval_local_x=dict(data.eval_x) if local_block is not None else {},
    )


def _check_rows(name: str, x_train: np.ndarray, x_test: np.ndarray, run: RunShape, width: int) -> None:
    for split, x, rows in (("train", x_train, run.n_train), ("test", x_test, run.n_test)):
        if x.ndim != 2 or x.shape != (rows, width):
            raise ConfigError(f"{name}: its {split} block has shape {tuple(x.shape)}, the plan says ({rows}, {width})")


def _kind(data: object) -> str:
    return "nothing" if data is None else f"{type(data).__name__}"
