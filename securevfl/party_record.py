"""What one party process adds to its result beyond the history: what it held, what it can derive, and the run's facts.

An in-process run's ``result.json`` has ``visibility`` (every party's record of the plaintext it
held), ``derivable`` (what each party can compute from it, :mod:`securevfl.derivable`),
``privacy`` (a label-DP defense's epsilon), ``promises``, the run's ``outcome`` and
``provenance``. With one process per party each party knows only its own part of the first two,
so each writes its own (:func:`party_facts`) and the launcher merges them
(:func:`merge_party_facts`): the gRPC run's result has the same fields as the in-process one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from securevfl.config import RunConfig
from securevfl.defenses.accounting import label_dp_record
from securevfl.derivable import KeyHolderFacts, party_derivations
from securevfl.divergence import outcome
from securevfl.parties import LocalParties, RunShape
from securevfl.promises import promises
from securevfl.protocols.audit import VisibilityLog
from securevfl.provenance import provenance

__all__ = ["merge_party_facts", "party_facts"]


def party_facts(config: RunConfig, shape: RunShape, local: LocalParties, history: list[dict[str, Any]]) -> dict[str, Any]:
    """This party's ``visibility`` and ``derivable`` rows; the active party adds the run-level fields."""
    logs: dict[str, VisibilityLog] = {}
    for party in (local.passive, local.active, local.key_holder):
        if party is not None:
            logs.setdefault(party.name, party.audit)
    holder = config.scheme.key_holder_party
    facts = None if holder is None else KeyHolderFacts(holder, config.protection.flooding_bits > 0)
    inputs = None if local.passive is None else local.passive.x_train.double().numpy()
    record: dict[str, Any] = {
        "visibility": {name: log.to_rows() for name, log in logs.items()},
        "derivable": {
            name: party_derivations(
                name, log, passive_inputs=inputs if local.passive is not None and name == local.passive.name else None,
                key_holder=facts, is_active=name == shape.active_name, batch_size=config.train.batch_size,
                seed=config.train.seed, sum_top=config.model.top == "sum",
            )
            for name, log in logs.items()
        },
    }
    if local.active is not None:
        test_labels = local.active.test_labels(np.arange(shape.n_test)).numpy()
        record |= {
            "privacy": label_dp_record(config, len(history)),
            "promises": promises(config),
            **outcome(history, test_labels, config.train.collapse_epochs),
            "provenance": provenance(),
            "dataset": {  # the public shape every party agreed on (the values stay with their parties)
                "name": config.data.name, "n_train": shape.n_train, "n_test": shape.n_test,
                "n_features": sum(shape.block_widths), "num_classes": shape.num_classes, "block_columns": list(shape.block_widths),
            },
        }
    return record


def merge_party_facts(records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every party's ``visibility`` and ``derivable`` rows in one mapping each, as one process records them."""
    merged: dict[str, Any] = {"visibility": {}, "derivable": {}}
    for record in records.values():
        for field in merged:
            merged[field].update(record.get(field, {}))
    return merged
