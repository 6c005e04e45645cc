"""Assemble parties from a configuration and drive one protocol round at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from securevfl.crypto import PublicKeyring, SecretKeyring, get_preset
from securevfl.protocols import InProcessChannel, Message, MessageKind, PhaseTimer
from securevfl.protocols.audit import VisibilityLog
from securevfl.protocols.keyholder import KeyHolder, MaskedKeyHolderClient
from securevfl.protocols.masking import MaskSampler
from securevfl.protocols.protection import PartyProtection, PlainProtection, ReceiverKeyProtection
from securevfl.protocols.phases import Phase
from securevfl.attacks import AttackSetup, BackdoorData, prepare_attack
from securevfl.blind.backprop import linear_stack
from securevfl.blind.plan import BottomPlan, TopPlan, plan_for_stack
from securevfl.config import RunConfig
from securevfl.data import VFLDataset
from securevfl.errors import ConfigError
from securevfl.defenses.pipeline import DefensePipeline
from securevfl.models import build_bottom_model, build_top_model
from securevfl.parties import ActiveParty, LocalBlock, PassiveParty
from securevfl.parties.blind import BlindActiveParty, BlindPassiveParty, Bounds, CoordinatorParty
from securevfl.seeding import seed_torch

ACTIVE_NAME = "active"
COORDINATOR_NAME = "coordinator"
PUBLIC_KEY = MessageKind.PUBLIC_KEY
BACKDOOR_SPLIT = "backdoor"


def passive_name(index: int) -> str:
    return f"passive_{index + 1}"


@dataclass
class Federation:
    """All parties of one simulated deployment, wired to one channel."""

    passives: list[PassiveParty]
    active: ActiveParty
    channel: InProcessChannel
    timer: PhaseTimer = field(default_factory=PhaseTimer)
    coordinator: CoordinatorParty | None = None
    attack_setup: AttackSetup | None = None

    def train_batch(self, step: int, sample_ids: np.ndarray) -> float:
        """One round of the protocol: activations up, gradients down, every party updates."""
        for party in self.passives:
            party.send_activations(step, sample_ids)
        loss = self.active.train_step(step, sample_ids)
        for party in self.passives:
            party.apply_gradients(step)
        return loss

    def evaluate(self, n_test: int, batch_size: int, step: int = 0) -> float:
        """Clean test accuracy, computed through the same message path as training."""
        predictions = self.predict_split("test", n_test, batch_size, step)
        return float((predictions == self.active.test_labels(np.arange(n_test))).double().mean())

    def predict_split(self, split: str, n_samples: int, batch_size: int, step: int = 0) -> torch.Tensor:
        """The active party's predictions for every sample of an evaluation split, in order."""
        batches = []
        for start in range(0, n_samples, batch_size):
            ids = np.arange(start, min(start + batch_size, n_samples))
            for party in self.passives:
                party.send_eval_activations(step, ids, split)
            batches.append(self.active.predict(step, ids, split))
        return torch.cat(batches)

    def attack_metrics(self, batch_size: int, step: int = 0) -> dict[str, float]:
        """Backdoor accuracy on the triggered test samples, and the attack's own metrics."""
        setup = self.attack_setup
        if setup is None or not setup.config.active:
            return {}
        metrics: dict[str, float] = {}
        if setup.backdoor is not None:
            predictions = self.predict_split(BACKDOOR_SPLIT, len(setup.backdoor.triggered_test), batch_size, step)
            metrics["backdoor_accuracy"] = float((predictions == setup.backdoor.target_label).double().mean())
        if setup.attack is not None and setup.truth is not None:
            metrics.update(setup.attack.epoch_metrics(setup.truth))
        return metrics

    def audits(self) -> dict[str, VisibilityLog]:
        """Every party's record of the plaintext values it has held."""
        parties: list[PassiveParty | ActiveParty | CoordinatorParty] = [*self.passives, self.active]
        if self.coordinator is not None:
            parties.append(self.coordinator)
        return {party.name: party.audit for party in parties}

    def state_dict(self) -> dict[str, object]:
        return {
            "passives": {party.name: party.state_dict() for party in self.passives},
            "active": self.active.state_dict(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        passives = state["passives"]
        for party in self.passives:
            party.load_state_dict(passives[party.name])  # type: ignore[index]
        self.active.load_state_dict(state["active"])  # type: ignore[arg-type]


@dataclass
class _Models:
    """Freshly seeded models of every party, before they are handed to party objects."""

    bottoms: list[tuple[torch.nn.Module, torch.optim.Optimizer]]
    local_block: LocalBlock | None
    top: torch.nn.Module
    top_optimizer: torch.optim.Optimizer | None
    bottom_out: int


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
    """
    models = _build_models(config, dataset, blocks, bottom_models)
    protection = config.protection
    names = [passive_name(index) for index in range(config.parties.passive)]
    setup = prepare_attack(
        config.attack, dataset, blocks, names, protection.scheme, protection.key_holder, models.bottom_out, config.train.seed
    )
    data = setup.dataset if setup.dataset is not None else dataset
    if protection.blind:
        federation = _assemble_blind(config, data, blocks, models)
    else:
        federation = _assemble_open(config, data, blocks, models)
    federation.attack_setup = setup
    federation.active.defenses = DefensePipeline.build(config.defense, protection.scheme, protection.key_holder, config.train.seed)
    if setup.attack is not None:
        federation.passives[names.index(setup.party)].attack = setup.attack  # type: ignore[arg-type]
    if setup.backdoor is not None:
        _add_backdoor_split(federation, data, blocks, setup.backdoor)
    return federation


def _add_backdoor_split(federation: Federation, dataset: VFLDataset, blocks: list[np.ndarray], backdoor: BackdoorData) -> None:
    """The triggered test samples as an evaluation split every party holds its columns of."""
    rows = backdoor.triggered_test
    x = backdoor.apply_trigger(dataset.x_test, rows)[rows]
    for index, party in enumerate(federation.passives):
        party.add_eval_split(BACKDOOR_SPLIT, x[:, blocks[index]])
    local = x[:, blocks[len(federation.passives)]] if federation.active.local_block is not None else None
    federation.active.add_eval_split(BACKDOOR_SPLIT, dataset.y_test[rows], local)


def _build_models(
    config: RunConfig, dataset: VFLDataset, blocks: list[np.ndarray], given: Sequence[torch.nn.Module] | None
) -> _Models:
    model_cfg, train_cfg = config.model, config.train
    n_passive = config.parties.passive
    bottom_out = model_cfg.resolved_bottom_output(dataset.num_classes)
    activation = model_cfg.resolved_output_activation()
    if given is not None:
        _check_given_models(config, given, blocks, bottom_out)

    def make_bottom(index: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        if given is not None:
            model = given[index]
        else:
            seed_torch(train_cfg.seed, "bottom", index)
            model = build_bottom_model(len(blocks[index]), model_cfg.bottom_hidden, bottom_out, activation)
        return model, _sgd(model.parameters(), config)

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
    seed_torch(train_cfg.seed, "top")
    top = build_top_model(model_cfg.top, [bottom_out] * len(blocks), model_cfg.top_hidden, dataset.num_classes)
    top_params = list(top.parameters())
    top_optimizer = _sgd(top_params, config) if top_params else None
    return _Models(bottoms, local_block, top, top_optimizer, bottom_out)


def _check_given_models(
    config: RunConfig, models: Sequence[torch.nn.Module], blocks: list[np.ndarray], bottom_out: int
) -> None:
    """A user's bottom models: one per block, each mapping its block's columns to ``bottom_out`` units."""
    if len(models) != len(blocks):
        raise ConfigError(f"bottom_models: {len(models)} model(s) given for {len(blocks)} feature block(s)")
    for index, (model, block) in enumerate(zip(models, blocks, strict=True)):
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"bottom_models[{index}] is a {type(model).__name__}, not a torch.nn.Module")
        if config.protection.blind:
            try:
                linear_stack(model)
            except ValueError as exc:
                raise ConfigError(
                    f"bottom_models[{index}]: key_holder = {config.protection.key_holder!r} backpropagates the bottom "
                    f"model under encryption: {exc}"
                ) from None
        try:
            with torch.no_grad():
                width = model(torch.zeros(1, len(block))).shape
        except Exception as exc:  # a user's module may raise anything on a wrong input width
            raise ConfigError(f"bottom_models[{index}] cannot take its block of {len(block)} column(s): {exc}") from None
        if tuple(width) != (1, bottom_out):
            raise ConfigError(
                f"bottom_models[{index}] outputs shape {tuple(width)} for one sample; the configured top needs "
                f"(1, {bottom_out}) (model.bottom_output)"
            )


def _assemble_open(
    config: RunConfig, dataset: VFLDataset, blocks: list[np.ndarray], models: _Models
) -> Federation:
    """plain, or ckks with key_holder = receiver: every party decrypts what is sent to it."""
    channel, timer = InProcessChannel(), PhaseTimer()

    def protection(party: str) -> PartyProtection:
        if config.protection.scheme == "plain":
            return PlainProtection()
        return ReceiverKeyProtection(party, config.protection.preset, timer)

    passives = [
        PassiveParty(**_passive_args(index, dataset, blocks, models, channel, timer), protection=protection(passive_name(index)))
        for index in range(len(models.bottoms))
    ]
    active = ActiveParty(**_active_args(dataset, models, passives, channel, timer), protection=protection(ACTIVE_NAME))
    _exchange_keys(channel, active.name, active.protection, {p.name: p.protection for p in passives})  # type: ignore[misc]
    return Federation(passives=passives, active=active, channel=channel, timer=timer)


def _exchange_keys(
    channel: InProcessChannel, active: str, active_protection: PartyProtection, passives: dict[str, PartyProtection]
) -> None:
    """Each party announces its public material to the peers that send to it, over the channel.

    Passives send to the active party and the active party sends to every passive, so the
    active party's announcement goes to all passives and each passive's to the active party.
    The bytes are accounted under the ``public_key`` message kind.
    """
    routes = [(active, active_protection, name, protection) for name, protection in passives.items()]
    routes += [(name, protection, active, active_protection) for name, protection in passives.items()]
    for sender, sender_protection, receiver, receiver_protection in routes:
        announcement = sender_protection.announcement()
        if announcement is None:
            continue
        message = _announce(channel, sender, receiver, announcement)
        receiver_protection.learn_peer(sender, message.payload)


def _announce(channel: InProcessChannel, sender: str, receiver: str, announcement: bytes) -> Message:
    channel.send(Message(PUBLIC_KEY, sender, receiver, 0, announcement, codec="key"))
    return channel.receive(receiver, PUBLIC_KEY, sender=sender)


def _assemble_blind(
    config: RunConfig, dataset: VFLDataset, blocks: list[np.ndarray], models: _Models
) -> Federation:
    """ckks with key_holder = active or coordinator: one key, masked decryption for the rest."""
    protection, model_cfg = config.protection, config.model
    channel, timer = InProcessChannel(), PhaseTimer()
    batch = config.train.batch_size
    plans: dict[str, BottomPlan] = {
        passive_name(index): plan_for_stack(batch, linear_stack(models.bottoms[index][0]))
        for index in range(config.parties.passive)
    }
    depth = get_preset(protection.preset).depth
    for name, plan in plans.items():
        if plan.depth() > depth:
            raise ConfigError(
                f"{name}'s bottom model needs {plan.depth()} multiplicative level(s) per backpropagation segment but "
                f"preset {protection.preset!r} offers {depth}"
            )
    top_plan = None
    if model_cfg.top == "trainable":
        hidden = model_cfg.top_hidden[0] if model_cfg.top_hidden else dataset.num_classes
        top_plan = TopPlan(batch=batch, part_width=models.bottom_out, hidden=hidden)
    steps: set[int] = set().union(*(plan.rotation_steps() for plan in plans.values()))
    if top_plan is not None:
        steps |= top_plan.rotation_steps()

    holder_name = ACTIVE_NAME if protection.key_holder == "active" else COORDINATOR_NAME
    with timer.phase(Phase.KEYGEN):
        secret = SecretKeyring.generate(get_preset(protection.preset), rotation_steps=sorted(steps))
    bounds = Bounds(activation=protection.activation_bound, gradient=protection.gradient_bound)

    passives = [
        BlindPassiveParty(
            **_passive_args(index, dataset, blocks, models, channel, timer),
            plan=plans[passive_name(index)],
            top_plan=top_plan,
            bounds=bounds,
        )
        for index in range(len(models.bottoms))
    ]
    active = BlindActiveParty(
        **_active_args(dataset, models, passives, channel, timer), passive_plans=plans, top_plan=top_plan, bounds=bounds
    )
    audit = active.audit if holder_name == ACTIVE_NAME else VisibilityLog(COORDINATOR_NAME)
    key_holder = KeyHolder(holder_name, secret, timer, audit)
    coordinator = None
    if holder_name == ACTIVE_NAME:
        active.hold_key(key_holder)
    else:
        coordinator = CoordinatorParty(key_holder)

    def deliver(requester: str) -> None:
        key_holder.serve(channel, requester)

    announcement = key_holder.announcement()
    clients = [party for party in (*passives, active) if party.name != holder_name]
    for party in clients:
        message = _announce(channel, holder_name, party.name, announcement)
        public = PublicKeyring.from_bytes(message.payload)
        masks = MaskSampler(protection.mask_half_width)
        party.connect(MaskedKeyHolderClient(party.name, holder_name, public, channel, deliver, masks, timer))
    return Federation(passives=passives, active=active, channel=channel, timer=timer, coordinator=coordinator)  # type: ignore[arg-type]


def _passive_args(
    index: int, dataset: VFLDataset, blocks: list[np.ndarray], models: _Models, channel: InProcessChannel, timer: PhaseTimer
) -> dict[str, object]:
    """What every passive party is made of, whatever the scheme: its own columns and model."""
    model, optimizer = models.bottoms[index]
    return {
        "name": passive_name(index),
        "x_train": dataset.x_train[:, blocks[index]],
        "x_test": dataset.x_test[:, blocks[index]],
        "model": model,
        "optimizer": optimizer,
        "channel": channel,
        "active_name": ACTIVE_NAME,
        "timer": timer,
    }


def _active_args(
    dataset: VFLDataset, models: _Models, passives: list[PassiveParty], channel: InProcessChannel, timer: PhaseTimer
) -> dict[str, object]:
    """What the active party is made of, whatever the scheme: labels, top model, own block."""
    return {
        "name": ACTIVE_NAME,
        "y_train": dataset.y_train,
        "y_test": dataset.y_test,
        "top": models.top,
        "top_optimizer": models.top_optimizer,
        "passive_names": [party.name for party in passives],
        "channel": channel,
        "timer": timer,
        "local_block": models.local_block,
    }


def _sgd(params, config: RunConfig) -> torch.optim.Optimizer:  # type: ignore[no-untyped-def]
    train = config.train
    return torch.optim.SGD(params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
