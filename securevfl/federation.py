"""Assemble the parties of a run from its configuration: models, attack, defenses, and the scheme's wires."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from securevfl.attacks import prepare_attack
from securevfl.attacks.setup import AttackSetup
from securevfl.config import RunConfig
from securevfl.data import VFLDataset
from securevfl.defenses.pipeline import DefensePipeline
from securevfl.errors import ConfigError
from securevfl.parties import ACTIVE_NAME, LocalBlock, PartyModels, passive_name
from securevfl.party_models import bottom_model, sgd, top_model
from securevfl.scheduler import Federation
from securevfl.schemes import Role, Scheme, scheme_for

__all__ = ["Federation", "build_federation", "prepare_run_attack"]


def build_federation(
    config: RunConfig,
    dataset: VFLDataset,
    blocks: list[np.ndarray],
    bottom_models: Sequence[torch.nn.Module] | None = None,
) -> Federation:
    """Create every party with only its own columns, labels and freshly seeded parameters.

    ``blocks`` are column-index arrays, passive blocks first, then the active party's own
    block when ``parties.active_block`` is set. The configured attack (if any) poisons the
    attacker's own columns and hooks into the attacking party; the configured defenses go to
    the active party. ``bottom_models`` replaces the configured Linear/ReLU bottom models.
    The parties exchange their public keys over the channel before this returns.
    """
    scheme = scheme_for(config.protection)
    models = _build_models(config, scheme, dataset, blocks, bottom_models)
    setup = prepare_run_attack(config, dataset, blocks)
    data = setup.dataset if setup.dataset is not None else dataset
    federation = scheme.assemble(config.model, config.train, data, blocks, models)
    federation.connect()
    federation.active.defenses = DefensePipeline.build(config.defense, scheme, config.train.seed)
    federation.run_attack(setup)
    for split, (x, labels) in setup.plan.eval_splits.items():
        _add_eval_split(federation, split, x, labels, blocks)
    return federation


def prepare_run_attack(config: RunConfig, dataset: VFLDataset, blocks: list[np.ndarray]) -> AttackSetup:
    """The configured attack of a run: its party, its data changes and evaluation splits, the attack itself.

    The experimenter's step, made from the whole data set before any party exists: the in-process
    run and the exporter of per-party data (:mod:`securevfl.loopback`) make the same one.
    """
    scheme = scheme_for(config.protection)
    names = [passive_name(index) for index in range(config.parties.passive)]
    parties = {Role.PASSIVE: names, Role.ACTIVE: [ACTIVE_NAME], Role.OBSERVER: ["channel"]}
    if scheme.key_holder_party is not None:
        parties[Role.KEY_HOLDER] = [scheme.key_holder_party]
    granted = {role: scheme.capabilities.granted(role) for role in Role}
    bottom_out = config.model.resolved_bottom_output(dataset.num_classes)
    return prepare_attack(config.attack, dataset, blocks, parties, granted, bottom_out, config.train.seed, top=config.model.top)


def _add_eval_split(federation: Federation, split: str, x: np.ndarray, labels: np.ndarray, blocks: list[np.ndarray]) -> None:
    """An evaluation set (global feature rows) every party holds its own columns of."""
    for index, party in enumerate(federation.passives):
        party.add_eval_split(split, x[:, blocks[index]])
    local = x[:, blocks[len(federation.passives)]] if federation.active.local_block is not None else None
    federation.active.add_eval_split(split, labels, local)


def _build_models(
    config: RunConfig,
    scheme: Scheme,
    dataset: VFLDataset,
    blocks: list[np.ndarray],
    given: Sequence[torch.nn.Module] | None,
) -> PartyModels:
    n_passive = config.parties.passive
    bottom_out = config.model.resolved_bottom_output(dataset.num_classes)
    if given is not None:
        _check_given_models(scheme, given, blocks, bottom_out)

    def make_bottom(index: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        if given is not None:
            return given[index], sgd(given[index].parameters(), config)
        return bottom_model(config, index, len(blocks[index]), bottom_out)

    bottoms = [make_bottom(index) for index in range(n_passive)]
    local_block = None
    if config.parties.active_block:
        columns = blocks[n_passive]
        model, optimizer = make_bottom(n_passive)
        local_block = LocalBlock(
            x_train=torch.from_numpy(np.ascontiguousarray(dataset.x_train[:, columns], dtype=np.float32)),
            x_test=torch.from_numpy(np.ascontiguousarray(dataset.x_test[:, columns], dtype=np.float32)),
            model=model,
            optimizer=optimizer,
        )
    top, top_optimizer = top_model(config, len(blocks), bottom_out, dataset.num_classes)
    return PartyModels(bottoms, local_block, top, top_optimizer, bottom_out)


def _check_given_models(scheme: Scheme, models: Sequence[torch.nn.Module], blocks: list[np.ndarray], bottom_out: int) -> None:
    """A user's bottom models: one per block, each mapping its block's columns to ``bottom_out`` units."""
    if len(models) != len(blocks):
        raise ConfigError(f"bottom_models: {len(models)} model(s) given for {len(blocks)} feature block(s)")
    for index, (model, block) in enumerate(zip(models, blocks, strict=True)):
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"bottom_models[{index}] is a {type(model).__name__}, not a torch.nn.Module")
        try:
            scheme.check_bottom_model(index, model)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        was_training = model.training
        try:  # eval mode: BatchNorm refuses a batch of one in training mode and would learn from the probe
            with torch.no_grad():
                width = model.eval()(torch.zeros(1, len(block))).shape
        except Exception as exc:  # a user's module may raise anything on a wrong input width
            raise ConfigError(f"bottom_models[{index}] cannot take its block of {len(block)} column(s): {exc}") from None
        finally:
            model.train(was_training)
        if tuple(width) != (1, bottom_out):
            raise ConfigError(
                f"bottom_models[{index}] outputs shape {tuple(width)} for one sample; the configured top needs "
                f"(1, {bottom_out}) (model.bottom_output)"
            )
