"""Run every party of a configured run in its own thread, each built alone from its own data (test harness).

What one OS process per party will do, without a network: a :class:`ThreadedNetwork` moves the
signed frames, each party has its own endpoint and identity, is built by
:func:`securevfl.party_assembly.build_party` from only its own cut of the data set and runs
:func:`securevfl.party_runner.run_party`. The attack, if any, is prepared once by the
experimenter (as the loopback exporter does) and handed to its party only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from securevfl.attacks.base import AttackTruth
from securevfl.config import RunConfig
from securevfl.data import VFLDataset, partition_columns
from securevfl.federation import prepare_run_attack
from securevfl.parties import LocalParties, RunShape
from securevfl.party_assembly import attach_attack, build_party, run_shape
from securevfl.party_data import ActiveData, PassiveData, cut_party_data
from securevfl.party_runner import PartyEndpoint, PartyOutcome, run_party
from securevfl.protocols import Identity, Roster
from securevfl.protocols.threaded_channel import ThreadedNetwork


@dataclass
class ThreadedRun:
    """What every party's thread built and produced."""

    shape: RunShape
    data: dict[str, PassiveData | ActiveData | None]
    parties: dict[str, LocalParties] = field(default_factory=dict)
    outcomes: dict[str, PartyOutcome] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    network: ThreadedNetwork | None = None

    @property
    def history(self) -> list[dict]:
        """The active party's history with the attacker's own metrics merged in, as one process records it."""
        merged = [dict(entry) for entry in self.outcomes["active"].history]
        for outcome in self.outcomes.values():
            for entry, extra in zip(merged, outcome.attack_history, strict=False):
                entry.update(extra)
        return merged


def run_in_threads(config: RunConfig, dataset: VFLDataset, *, receive_timeout: float = 120.0, score_attack: bool = False) -> ThreadedRun:
    """Every party of ``config`` in its own thread; raises the first party's error, if any."""
    blocks = partition_columns(dataset, config.parties)
    setup = prepare_run_attack(config, dataset, blocks)
    data_set = setup.dataset if setup.dataset is not None else dataset
    shape = run_shape(config, [len(block) for block in blocks], dataset.num_classes, len(dataset.y_train), len(dataset.y_test))
    names = config.scheme.party_names(shape)
    data = {
        name: cut_party_data(data_set, blocks, shape.passive_names, name, setup.plan.eval_splits)
        if name in (*shape.passive_names, shape.active_name) else None
        for name in names
    }
    identities = {name: Identity.generate(name) for name in names}
    roster = Roster.of(identities.values())
    network = ThreadedNetwork()
    result = ThreadedRun(shape=shape, data=data, network=network)
    built = threading.Barrier(len(names))

    def party(name: str) -> None:
        try:
            endpoint = PartyEndpoint(network.endpoint(identities[name], roster, receive_timeout=receive_timeout))
            local = build_party(config, shape, name, data[name], endpoint)
            attack = setup.attack if setup.party == name else None
            if attack is not None:
                attach_attack(local, attack, setup.role)  # type: ignore[arg-type]
            result.parties[name] = local
            built.wait(timeout=receive_timeout)  # so a test can inspect every party before any trains
            truth = AttackTruth(y_train=data_set.y_train) if score_attack and attack is not None else None
            result.outcomes[name] = run_party(
                config, shape, local, endpoint,
                evaluate_splits=setup.plan.evaluate if name == shape.active_name and setup.plan.eval_splits else None,
                attack=attack, attack_truth=truth,
            )
        except BaseException as exc:  # reported to the test below
            result.errors[name] = exc
            built.abort()

    threads = [threading.Thread(target=party, args=(name,), name=name) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result
