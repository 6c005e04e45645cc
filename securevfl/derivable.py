"""What each party can *derive* from what it held: the visibility audit's second column.

The visibility audit records what a party held in plaintext. "Party X never holds Y" is not the
privacy question; what X can compute from what it holds is. This module computes, from the run
itself (the party's own data, the batches, the key holder's settings, the audit), the derivations
the threat model names (docs/threat-model.md), each with the attack in the project that performs
it:

- a passive that learned batch-summed parameter gradients derives the per-sample gradient rows
  (and, under the sum top, the labels) whenever its batch is no larger than the rank of its inputs
  ``[X | 1]``: measured as the fraction of the run's batches where that holds (``gradient_inversion``);
- a party that received unflooded decryptions from a key holder derives its secret key
  (``key_recovery``);
- the active party, when it holds the key, can decrypt each passive's activations it receives; under
  a trainable top it derives them from ``H_k^T delta`` when ``delta`` has full row rank
  (``activation_inversion``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from securevfl.protocols.audit import VisibilityLog
from securevfl.seeding import epoch_batches

if TYPE_CHECKING:
    from securevfl.scheduler import Federation

__all__ = ["Derivation", "KeyHolderFacts", "derivable", "party_derivations"]

#: Batches checked for the rank condition (the first epoch's, at most this many).
RANK_BATCHES = 200


@dataclass(frozen=True)
class Derivation:
    """One thing a party can compute from what it held."""

    what: str
    source: str
    how: str
    measure: float | None
    """How often it holds, where computed (e.g. fraction of batches where it is exact)."""
    attack: str


def _full_rank_fraction(x: np.ndarray, batch_size: int, seed: int) -> float:
    batches = epoch_batches(len(x), batch_size, seed, 0)[:RANK_BATCHES]
    exact = 0
    for ids in batches:
        inputs = np.hstack([x[ids], np.ones((len(ids), 1))])
        exact += int(np.linalg.matrix_rank(inputs) == len(ids))
    return exact / len(batches)


@dataclass(frozen=True)
class KeyHolderFacts:
    """What every party knows of the run's key holder: its name and whether its decryptions are flooded."""

    name: str
    flooded: bool


def party_derivations(
    name: str,
    audit: VisibilityLog,
    *,
    passive_inputs: np.ndarray | None,
    key_holder: KeyHolderFacts | None,
    is_active: bool,
    batch_size: int,
    seed: int,
    sum_top: bool,
) -> list[dict[str, Any]]:
    """One party's derivations from its own audit and inputs (each party process computes its own).

    ``passive_inputs``: the passive's own training columns (None for any other party);
    ``key_holder``: the run's single key holder, if it has one (the label-private schemes).
    """
    out: list[Derivation] = []
    if passive_inputs is not None:
        learned = {s.kind for s in audit.sightings() if not s.per_sample}
        if "parameter_gradient" in learned:
            out.append(
                Derivation(
                    "per-sample gradient rows dL/dH" + (" and every label (argmin)" if sum_top else ""),
                    "batch-summed parameter gradients [dW|db]",
                    "least squares on its own [X|1]; exact in the batches where batch <= rank([X|1])",
                    _full_rank_fraction(passive_inputs, batch_size, seed),
                    "gradient_inversion",
                )
            )
    if key_holder is not None and name != key_holder.name and not key_holder.flooded:
        if any(s.source == key_holder.name for s in audit.sightings()):
            out.append(
                Derivation(
                    "the key holder's secret key (then every ciphertext under it)",
                    f"unflooded decryptions from {key_holder.name}",
                    "Li-Micciancio: two chosen decryptions solve for the key",
                    None,
                    "key_recovery",
                )
            )
    if is_active and key_holder is not None and key_holder.name == name:
        out.append(
            Derivation(
                "each passive's activation rows H_k",
                "the ciphertexts Enc(H_k) it receives, under the key it holds",
                "decryption (the protocol has it decrypt only their combination; nothing stops it)",
                1.0,
                "none needed",
            )
        )
    elif is_active and key_holder is not None and "top_weight_gradient" in audit.kinds():
        out.append(
            Derivation(
                "each passive's activation rows H_k",
                "H_k^T delta (top weight gradient) with its own delta",
                "least squares; exact when delta has full row rank (batch <= top width at most)",
                None,
                "activation_inversion",
            )
        )
    return [asdict(d) for d in out]


def derivable(federation: Federation, batch_size: int, seed: int, sum_top: bool) -> dict[str, list[dict[str, Any]]]:
    """Every party's derivations, as JSON-ready rows (empty list: nothing beyond what it held)."""
    service = federation.key_holder.service if federation.key_holder is not None else None
    facts = None if service is None else KeyHolderFacts(service.name, service.flooding.enabled)
    inputs = {passive.name: passive.x_train.double().numpy() for passive in federation.passives}
    active = federation.active
    out: dict[str, list[dict[str, Any]]] = {}
    for party, log in federation.audits().items():
        out[party] = party_derivations(
            party, log, passive_inputs=inputs.get(party), key_holder=facts,
            is_active=party == active.name, batch_size=batch_size, seed=seed, sum_top=sum_top,
        )
    return out
