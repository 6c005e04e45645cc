"""Activation inversion at the active party: what it decrypts under the label-private trainable top gives back every H_k.

The solver is checked on random matrices (exact where the equations determine the rows, least
norm where they do not); end to end, the attacker's recovered rows are compared with the rows
each passive's own bottom model computes, taken independently in this test before every step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from helpers import random_dataset
from securevfl.attacks import parse_attack_config
from securevfl.attacks.activation_inversion import (
    ActivationInversion,
    ActivationInversionConfig,
    invert_activations,
    relative_row_errors,
)
from securevfl.attacks.base import AttackSetting
from securevfl.config import validate_config
from securevfl.errors import ConfigError
from securevfl.federation import build_federation
from securevfl.roles import Capability
from securevfl.training import run_training

RNG = np.random.default_rng(7)


# ---------------------------------------------------------------------- the solver
def test_weight_gradients_determine_the_rows_when_the_batch_fits_the_top_width() -> None:
    batch, top, widths = 6, 10, [8, 8]  # sum of widths 16 > top 10: Z alone cannot, delta (6 x 10) can
    rows = [RNG.normal(size=(batch, w)) for w in widths]
    weights = [RNG.normal(size=(top, w)) for w in widths]
    delta = RNG.normal(size=(batch, top))
    combined = sum(h @ w.T for h, w in zip(rows, weights, strict=True))
    products = [h.T @ delta for h in rows]
    inverted = invert_activations(combined, weights, products, delta)
    assert inverted.determined.all()
    for got, want in zip(inverted.rows, rows, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-9)
    # without the weight gradients only Z's row space is known: not the rows
    alone = invert_activations(combined, weights)
    assert not alone.determined.any()
    assert np.abs(np.hstack(alone.rows) - np.hstack(rows)).max() > 0.1
    np.testing.assert_allclose(np.hstack(alone.rows) @ np.hstack(weights).T, combined, atol=1e-9)  # but consistent with Z


def test_a_batch_larger_than_the_top_width_is_not_determined() -> None:
    batch, top, widths = 20, 10, [8, 8]
    rows = [RNG.normal(size=(batch, w)) for w in widths]
    weights = [RNG.normal(size=(top, w)) for w in widths]
    delta = RNG.normal(size=(batch, top))
    combined = sum(h @ w.T for h, w in zip(rows, weights, strict=True))
    inverted = invert_activations(combined, weights, [h.T @ delta for h in rows], delta)
    assert not inverted.determined.any()
    errors = relative_row_errors(np.hstack(inverted.rows), np.hstack(rows))
    assert np.median(errors) > 0.1  # least norm, not the rows


def test_a_top_at_least_as_wide_as_the_activations_determines_them_from_z_alone() -> None:
    batch, top, widths = 30, 12, [4, 6]
    rows = [RNG.normal(size=(batch, w)) for w in widths]
    weights = [RNG.normal(size=(top, w)) for w in widths]
    combined = sum(h @ w.T for h, w in zip(rows, weights, strict=True))
    inverted = invert_activations(combined, weights)
    assert inverted.determined.all()
    for got, want in zip(inverted.rows, rows, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-9)


def test_the_sum_of_one_passive_is_its_rows_and_of_two_only_their_sum() -> None:
    h1, h2 = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3))
    one = invert_activations(h1, [np.eye(3)])
    assert one.determined.all()
    np.testing.assert_allclose(one.rows[0], h1, atol=1e-12)
    two = invert_activations(h1 + h2, [np.eye(3), np.eye(3)])
    assert not two.determined.any()
    np.testing.assert_allclose(two.rows[0], (h1 + h2) / 2, atol=1e-12)  # the least-norm split, nothing more


def test_relative_errors_measure_a_dead_row_against_a_typical_row() -> None:
    truth = np.array([[3.0, 4.0], [0.0, 0.0]])
    guess = np.array([[3.0, 4.5], [0.0, 1e-7]])
    errors = relative_row_errors(guess, truth)
    assert errors[0] == pytest.approx(0.1)
    assert errors[1] == pytest.approx(1e-7 / (0.01 * np.sqrt(25 / 2)))


# ---------------------------------------------------------------------- end to end
DATA = random_dataset(n_train=48, n_test=16, n_features=16, num_classes=4, seed=3)
BLOCKS = [np.arange(8), np.arange(8, 16)]
# 2 passives x 8 bottom outputs = 16 > top width 12: Z alone cannot determine the rows
TRAINABLE = {"top": "trainable", "bottom_hidden": [], "bottom_output": 8, "top_hidden": [12]}


def _raw(protection: dict[str, Any], batch: int, model: dict[str, Any] = TRAINABLE, passives: int = 2) -> dict[str, Any]:
    return {
        "parties": {"passive": passives, "split": "even"},
        "model": model,
        "train": {"epochs": 1, "batch_size": batch, "lr": 0.05, "progress": False},
        "protection": protection,
        "attack": {"kind": "activation_inversion"},
    }


def _last(protection: dict[str, Any], batch: int, **kwargs: Any) -> dict[str, float]:
    result = run_training(validate_config(_raw(protection, batch, **kwargs)), dataset=DATA)
    assert result["attack_feasible"] is True
    return result["history"][-1]


# undefended: the coordinator's noise flooding perturbs what the active party decrypts (tested below)
LABEL_PRIVATE = [{"scheme": "ckks", "key_holder": "active"}, {"scheme": "ckks", "key_holder": "coordinator", "flooding_bits": 0}]


@pytest.mark.parametrize("protection", LABEL_PRIVATE, ids=["active", "coordinator"])
def test_the_active_party_recovers_every_passives_rows_against_independent_truth(protection: dict[str, Any]) -> None:
    """Batch 8 <= top width 12: the rows the attacker recovers are the rows each bottom model computed."""
    federation = build_federation(validate_config(_raw(protection, batch=8)), DATA, BLOCKS)
    attack = federation.attack_setup.attack  # type: ignore[union-attr]
    assert isinstance(attack, ActivationInversion)
    errors = []
    for step in range(len(DATA.y_train) // 8):
        ids = np.arange(step * 8, (step + 1) * 8)
        with torch.no_grad():  # the truth, from the passives' own models before they update
            truth = {p.name: p.model(p.x_train[ids]).double().numpy() for p in federation.passives}
        federation.train_batch(step, ids)
        for name, rows in truth.items():
            errors.append(relative_row_errors(attack.recovered(name, ids), rows))
    assert federation.active.audit.kinds(per_sample=True) == {"first_layer_preactivation"}  # it never decrypted an H_k
    error = np.concatenate(errors)
    assert error.size == 2 * len(DATA.y_train)
    assert np.median(error) < 1e-4  # CKKS noise, amplified by the conditioning of delta
    assert np.mean(error <= 1e-3) >= 0.9
    # the run's own metrics say the same (scored against the evaluator's record, not this test's)
    metrics = federation.attack_metrics(batch_size=16, step=len(DATA.y_train) // 8 - 1)
    assert metrics["activation_rows_determined"] == 1.0
    assert metrics["activation_rows_recovered"] == pytest.approx(np.mean(error <= 1e-3))
    assert metrics["activation_recovery_error"] == pytest.approx(np.median(error), rel=1e-6)


def test_the_run_reports_recovery_and_its_limit_past_the_top_width() -> None:
    """The solve's limit, where the active party holds no key (a coordinator's, flooding off to isolate the solve)."""
    protection = LABEL_PRIVATE[1]
    fits = _last(protection, batch=8)
    assert fits["activation_rows_determined"] == 1.0 and fits["activation_rows_recovered"] >= 0.9
    assert fits["activation_recovery_error"] < 1e-4
    past = _last(protection, batch=24)  # 24 > 12: the weight gradients leave rows undetermined
    assert past["activation_rows_determined"] < 0.5
    assert past["activation_rows_recovered"] < 0.5 and past["activation_recovery_error"] > 1e-2


def test_a_flooding_coordinator_spoils_the_exact_recovery() -> None:
    """The active party's decryptions come back flooded (sigma ~ 2^15 x CKKS noise): the solve amplifies it."""
    flooded = _last({"scheme": "ckks", "key_holder": "coordinator"}, batch=8)
    assert flooded["activation_rows_recovered"] < 0.5 and flooded["activation_recovery_error"] > 1e-2


def test_under_the_sum_top_one_passive_is_read_and_two_are_not_claimed() -> None:
    protection = LABEL_PRIVATE[1]  # the coordinator holds the key: the active party has only the sum
    sum_top = {"top": "sum", "bottom_hidden": [6]}
    one = _last(protection, batch=8, model=sum_top, passives=1)
    assert one["activation_rows_recovered"] == 1.0 and one["activation_rows_determined"] == 1.0
    two = _last(protection, batch=8, model=sum_top)
    assert two["activation_rows_determined"] == 0.0
    assert two["activation_rows_recovered"] < 0.1 and two["activation_recovery_error"] > 0.1


@pytest.mark.parametrize("model", [TRAINABLE, {"top": "sum", "bottom_hidden": [6]}], ids=["trainable", "sum"])
def test_an_active_key_holder_decrypts_every_passives_rows_whatever_the_batch_or_top(model: dict[str, Any]) -> None:
    """key_holder = "active": the threat model's "does not hold". The active party holds the key of every Enc(H_k) it
    receives; decrypting one is invisible to everyone else, so the curious party reads every row, past the top width
    (batch 24 > 12) and under the sum of two passives, where the protocol's own decryptions determine none."""
    last = _last(LABEL_PRIVATE[0], batch=24, model=model)
    assert last["activation_rows_recovered"] == 1.0 and last["activation_rows_determined"] == 1.0
    assert last["activation_recovery_error"] < 1e-5  # CKKS noise only
    # its key holder decrypted only what an honest run's does: the rows were read with its own key, outside any request
    kinds = []
    for attack in ({"kind": "activation_inversion"}, {"kind": "none"}):
        federation = build_federation(validate_config({**_raw(LABEL_PRIVATE[0], batch=8, model=model), "attack": attack}), DATA, BLOCKS)
        federation.train_batch(0, np.arange(8))
        kinds.append(federation.active.audit.kinds(per_sample=True))
    assert kinds[0] == kinds[1]


@pytest.mark.parametrize("protection", [{"scheme": "plain"}, {"scheme": "ckks", "key_holder": "receiver"}], ids=["plain", "receiver"])
def test_under_the_open_schemes_the_rows_are_simply_read(protection: dict[str, Any]) -> None:
    for model in (TRAINABLE, {"top": "sum", "bottom_hidden": [6]}):
        last = _last(protection, batch=24, model=model)  # any batch: it holds the rows themselves
        assert last["activation_rows_recovered"] == 1.0 and last["activation_rows_determined"] == 1.0
        assert last["activation_recovery_error"] < (1e-12 if protection["scheme"] == "plain" else 1e-5)


def test_the_attacker_holds_no_truth() -> None:
    """The evaluator's record of the passives' rows is reachable from the run's truth, never from the attack."""
    federation = build_federation(validate_config(_raw(LABEL_PRIVATE[0], batch=8)), DATA, BLOCKS)
    setup = federation.attack_setup
    assert setup is not None and setup.truth is not None and setup.truth.activations is not None
    federation.train_batch(0, np.arange(8))
    recorded = list(setup.truth.activations._rows.values())
    assert len(recorded) == 2
    pending: list[object] = [setup.attack]
    visited: set[int] = set()
    while pending:  # everything the attack object holds, however deep
        value = pending.pop()
        if id(value) in visited:
            continue
        visited.add(id(value))
        assert value is not setup.truth.activations and value is not setup.truth
        if isinstance(value, np.ndarray):
            assert not any(np.shares_memory(value, rows) for rows in recorded)
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list | tuple | set):
            pending.extend(value)
        elif hasattr(value, "__dict__"):
            pending.extend(vars(value).values())


# ---------------------------------------------------------------------- configuration
def test_config_is_validated() -> None:
    config = parse_attack_config({"kind": "activation_inversion", "tolerance": 1e-2})
    assert isinstance(config, ActivationInversionConfig) and config.tolerance == 1e-2 and config.party is None
    assert parse_attack_config({"kind": "activation_inversion", "gamma": 3.0}).kind == "activation_inversion"  # another kind's key
    for bad in ({"tolerance": 0}, {"tolerance": 1.5}, {"rcond": -1.0}):
        with pytest.raises(ValidationError):
            parse_attack_config({"kind": "activation_inversion", **bad})
    with pytest.raises(ConfigError, match="unknown key 'attack.tolerence'; did you mean 'tolerance'"):
        validate_config({"attack": {"kind": "activation_inversion", "tolerence": 1e-3}})
    with pytest.raises(ConfigError, match="attack.party 'passive_1' is not a active party"):
        run_training(validate_config({**_raw({"scheme": "plain"}, 8), "attack": {"kind": "activation_inversion", "party": "passive_1"}}), dataset=DATA)


def test_it_needs_activation_rows_or_their_combination() -> None:
    setting = AttackSetting(dataset=DATA, party="active", columns=None, bottom_output=8, seed=0, passives=("passive_1",))
    assert ActivationInversion.infeasibility(frozenset({Capability.COMBINED_ACTIVATIONS}), setting) is None
    assert ActivationInversion.infeasibility(frozenset({Capability.PLAINTEXT_ACTIVATION_ROWS}), setting) is None
    assert "neither" in str(ActivationInversion.infeasibility(frozenset({Capability.FRAMES}), setting))


def test_reading_with_its_own_key_leaves_every_ciphertext_as_it_arrived() -> None:
    """observes_only under CKKS: the attack's decryption reads each Enc(H_k); the bytes the protocol goes on with are unchanged."""
    import hashlib

    federation = build_federation(validate_config(_raw(LABEL_PRIVATE[0], batch=8)), DATA, BLOCKS)
    attack = federation.attack_setup.attack  # type: ignore[union-attr]
    seen: list[tuple[object, str]] = []
    hook, combined = attack.encrypted_activations, attack.combined_activations

    def spy(step: int, sender: str, tensor: object) -> None:
        seen.append((tensor, hashlib.sha256(tensor.to_bytes()).hexdigest()))  # type: ignore[attr-defined]
        hook(step, sender, tensor)  # type: ignore[arg-type]

    after: list[bool] = []

    def then_compare(step: int, sample_ids: np.ndarray, values: np.ndarray) -> None:
        combined(step, sample_ids, values)  # the attack decrypts what spy handed it
        after.extend(hashlib.sha256(tensor.to_bytes()).hexdigest() == digest for tensor, digest in seen)  # type: ignore[attr-defined]
        seen.clear()

    attack.encrypted_activations, attack.combined_activations = spy, then_compare  # type: ignore[method-assign]
    for step in range(2):
        federation.train_batch(step, np.arange(step * 8, (step + 1) * 8))
    assert len(after) == 4 and all(after)  # 2 steps x 2 passives
    assert attack.recovered("passive_1", np.arange(8)).any()  # it did read them
