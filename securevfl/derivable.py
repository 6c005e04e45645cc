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

from securevfl.seeding import epoch_batches

if TYPE_CHECKING:
    from securevfl.scheduler import Federation

__all__ = ["Derivation", "derivable"]

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


def derivable(federation: Federation, batch_size: int, seed: int, sum_top: bool) -> dict[str, list[dict[str, Any]]]:
    """Every party's derivations, as JSON-ready rows (empty list: nothing beyond what it held)."""
    out: dict[str, list[Derivation]] = {name: [] for name in federation.audits()}
    service = federation.key_holder.service if federation.key_holder is not None else None
    for passive in federation.passives:
        learned = {s.kind for s in passive.audit.sightings() if not s.per_sample}
        if "parameter_gradient" in learned:
            fraction = _full_rank_fraction(passive.x_train.double().numpy(), batch_size, seed)
            out[passive.name].append(
                Derivation(
                    "per-sample gradient rows dL/dH" + (" and every label (argmin)" if sum_top else ""),
                    "batch-summed parameter gradients [dW|db]",
                    "least squares on its own [X|1]; exact in the batches where batch <= rank([X|1])",
                    fraction,
                    "gradient_inversion",
                )
            )
    if service is not None:
        for party, log in federation.audits().items():
            answered = any(s.source == service.name for s in log.sightings()) and party != service.name
            if answered and not service.flooding.enabled:
                out[party].append(
                    Derivation(
                        "the key holder's secret key (then every ciphertext under it)",
                        f"unflooded decryptions from {service.name}",
                        "Li-Micciancio: two chosen decryptions solve for the key",
                        None,
                        "key_recovery",
                    )
                )
        active = federation.active
        if service.name == active.name:
            out[active.name].append(
                Derivation(
                    "each passive's activation rows H_k",
                    "the ciphertexts Enc(H_k) it receives, under the key it holds",
                    "decryption (the protocol has it decrypt only their combination; nothing stops it)",
                    1.0,
                    "none needed",
                )
            )
        elif "top_weight_gradient" in active.audit.kinds():
            out[active.name].append(
                Derivation(
                    "each passive's activation rows H_k",
                    "H_k^T delta (top weight gradient) with its own delta",
                    "least squares; exact when delta has full row rank (batch <= top width at most)",
                    None,
                    "activation_inversion",
                )
            )
    return {party: [asdict(d) for d in derivations] for party, derivations in out.items()}
