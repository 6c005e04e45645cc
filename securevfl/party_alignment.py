"""A planned run's sample alignment: each party keeps the samples every party holds, in one agreed order.

Under ``alignment = "psi"`` in the plan, every party's data block holds *its own* rows with its
own sample ids (any order, samples the others lack included). After the attempt handshake and
before anything else of the run, the active party and every passive run the private set
intersection of :mod:`securevfl.alignment` (ECDH PSI of openmined-psi): once over the training
ids, once over the test ids. Each party then keeps exactly the intersection's rows, in the order
the active party's secret HMAC key fixes, and the run's sample counts are the intersection's.

The active party keeps its order key in its output folder (``alignment_order.key``, mode 0600,
never sent) so that a resumed attempt aligns to the same order as the interrupted one: the
checkpoints hold models trained on that order. A coordinator holds no samples; every party that
aligned tells it the two counts and a digest of the two aligned id lists (its decryption policy
budgets requests by the counts), and it starts only if all of them agree. Until 2026-11-27 only
the active party told it, and a red-team pass had a malicious active party announce 10^7 samples,
which raised the coordinator's evaluation budget from 8 to 78,128 decryptions per step.

What each party learns is :mod:`securevfl.alignment`'s account: the intersection, the set sizes
and, for the active party, each passive's pairwise intersection with it; never an id outside
what it holds itself.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from securevfl.alignment import align_as_active, align_as_passive, ids_digest
from securevfl.errors import ConfigError
from securevfl.files import atomic_write
from securevfl.party_data import ActiveData, PassiveData
from securevfl.plan import Plan
from securevfl.protocols import Channel, Message, MessageKind, ProtocolError

__all__ = ["ORDER_KEY_NAME", "AlignedRun", "align_planned_run"]

ORDER_KEY_NAME = "alignment_order.key"
_ORDER_KEY_BYTES = 32
_EMPTY = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class AlignedRun:
    """A party's data after the alignment (None for a coordinator) and the run's sample counts."""

    data: PassiveData | ActiveData | None
    n_train: int
    n_test: int
    seconds: float = 0.0


def align_planned_run(channel: Channel, plan: Plan, party: str, data: PassiveData | ActiveData | None, out_dir: Path | None) -> AlignedRun:
    """Run party ``party``'s side of the alignment (module docstring); every peer runs its own at the same time."""
    shape = plan.run_shape()
    active, passives = shape.active_name, list(shape.passive_names)
    role = plan.party(party).role
    coordinator = next((entry.name for entry in plan.parties if entry.role == "coordinator"), None)
    if role == "coordinator":
        return _counts_every_party_agrees_on(channel, party, [active, *passives])
    assert data is not None
    if data.eval_x or (isinstance(data, ActiveData) and data.eval_labels):
        raise ConfigError(f"{party}: alignment = 'psi' aligns the training and test rows only, but its data holds extra evaluation sets")
    if isinstance(data, ActiveData):
        key = _order_key(out_dir)
        train = align_as_active(channel, party, passives, _ids(data.train_ids), order_key=key)
        test = align_as_active(channel, party, passives, _ids(data.test_ids), order_key=key)
        aligned: PassiveData | ActiveData = replace(
            data, y_train=train.take(data.y_train), y_test=test.take(data.y_test), train_ids=train.take(data.train_ids), test_ids=test.take(data.test_ids),
            x_train=None if data.x_train is None else train.take(data.x_train), x_test=None if data.x_test is None else test.take(data.x_test),
        )
    else:
        train = align_as_passive(channel, party, active, _ids(data.train_ids))
        test = align_as_passive(channel, party, active, _ids(data.test_ids))
        aligned = replace(
            data, x_train=train.take(data.x_train), x_test=test.take(data.x_test), train_ids=train.take(data.train_ids), test_ids=test.take(data.test_ids),
        )
    if coordinator is not None:
        meta = {"n_train": len(train.ids), "n_test": len(test.ids), "digest": _alignment_digest(train.ids, test.ids)}
        channel.send(Message(MessageKind.ALIGNMENT, party, coordinator, 0, _EMPTY, meta=meta))
    return AlignedRun(aligned, len(train.ids), len(test.ids), seconds=train.seconds + test.seconds)


def _alignment_digest(train_ids: Sequence[str], test_ids: Sequence[str]) -> str:
    """What every aligned party tells the coordinator besides the counts: SHA-256 of both ordered id lists (the order is
    the active party's secret permutation, so the digest names no id a guess could confirm)."""
    return hashlib.sha256(ids_digest(train_ids) + ids_digest(test_ids)).hexdigest()


def _counts_every_party_agrees_on(channel: Channel, party: str, senders: Sequence[str]) -> AlignedRun:
    """The coordinator's side: the counts and digest from every party that aligned; one line if any differs."""
    announced: dict[str, tuple[int, int, str]] = {}
    for sender in senders:
        meta = channel.receive(party, MessageKind.ALIGNMENT, sender=sender).meta
        n_train, n_test, digest = meta.get("n_train"), meta.get("n_test"), meta.get("digest")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in (n_train, n_test)) or not isinstance(digest, str):
            raise ProtocolError(f"{party}: {sender}'s alignment counts are not positive integers with a digest ({n_train!r}, {n_test!r})")
        announced[sender] = (int(n_train), int(n_test), digest)  # type: ignore[arg-type]
    if len(set(announced.values())) > 1:
        told = "; ".join(f"{sender} {n_train} / {n_test} ({digest[:12]}...)" for sender, (n_train, n_test, digest) in announced.items())
        raise ProtocolError(f"{party}: the parties do not agree on the aligned samples (training / test counts): {told}")
    n_train, n_test, _ = next(iter(announced.values()))
    return AlignedRun(None, n_train, n_test)


def _ids(values: np.ndarray) -> Sequence[str]:
    """Sample ids as the PSI takes them: text (integers written in decimal)."""
    return [str(value) for value in np.asarray(values).tolist()]


def _order_key(out_dir: Path | None) -> bytes:
    """The active party's secret order key: kept in its folder so a resumed attempt aligns to the same order."""
    if out_dir is None:
        return secrets.token_bytes(_ORDER_KEY_BYTES)
    path = out_dir / ORDER_KEY_NAME
    if path.is_file():
        key = path.read_bytes()
        if len(key) != _ORDER_KEY_BYTES:
            raise ConfigError(f"{path} is not an alignment order key ({len(key)} bytes, expected {_ORDER_KEY_BYTES})")
        return key
    key = secrets.token_bytes(_ORDER_KEY_BYTES)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, key)
    os.chmod(path, 0o600)
    return key
