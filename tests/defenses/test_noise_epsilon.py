"""The epsilon of the additive noise defenses (``gaussian_noise``, ``laplace_noise``) with ``clip_norm``.

Checked against computations independent of :mod:`securevfl.defenses.accounting`: the
accountants of dp-accounting called here with the parameters written out by hand, the exact
composition of Gaussian mechanisms (one Gaussian mechanism of ``mu = sqrt(n) / z``, Balle & Wang
2018), and the closed form of pure Laplace composition (``n * 2 C / b``). Definitions:
docs/defenses.md, "Noise", "Epsilon".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant
from scipy import optimize, stats

from securevfl.config import validate_config
from securevfl.defenses import GaussianNoiseConfig, LaplaceNoiseConfig, MessageContext, build_defense, parse_defense_config
from securevfl.defenses.accounting import PRIVACY_COLUMNS, label_dp_record, noise_record, privacy_columns
from securevfl.errors import ConfigError
from securevfl.study.table import base_columns
from securevfl.training import run_training
from tests.helpers import config, random_dataset

DELTA = 1e-5


def _run(defense: list[dict[str, Any]], epochs: int = 3, **overrides: Any) -> Any:
    sections: dict[str, Any] = {
        "parties": {"passive": 2, "split": "even"},
        "model": {"top": "sum", "bottom_hidden": [6]},
        "train": {"epochs": epochs, "batch_size": 16, "lr": 0.1, "seed": 1, "progress": False, "checkpoint": False},
        "defense": defense,
    }
    sections.update(overrides)
    return config(**sections)


def _gaussian(variance: float, clip_norm: float | None = None, **more: Any) -> dict[str, Any]:
    table = {"kind": "gaussian_noise", "variance": variance, "noise_source": "csprng", **more}
    if clip_norm is not None:
        table["clip_norm"] = clip_norm
    return table


def _laplace(variance: float, clip_norm: float | None = None, **more: Any) -> dict[str, Any]:
    return {**_gaussian(variance, clip_norm, **more), "kind": "laplace_noise"}


def _analytic_gaussian_epsilon(mu: float, delta: float) -> float:
    """Balle & Wang 2018, Thm 8: the epsilon with Phi(mu/2 - eps/mu) - e^eps Phi(-mu/2 - eps/mu) = delta."""

    def excess(eps: float) -> float:
        return stats.norm.cdf(mu / 2 - eps / mu) - math.exp(eps + stats.norm.logcdf(-mu / 2 - eps / mu)) - delta

    return float(optimize.brentq(excess, 0.0, 10 * mu**2 + 50, xtol=1e-12))


# ============================================================================ against independent computations
def test_gaussian_epsilon_matches_dp_accounting_called_directly() -> None:
    """variance 0.04 (sigma 0.2), clip_norm 0.05: sensitivity 2 C = 0.1, z = 2; 3 epochs = 3 releases."""
    record = noise_record(_run([_gaussian(0.04, 0.05)], epochs=3), 3)
    assert record is not None and record["claimed"] is True and record["reason"] is None
    assert record["sigma"] == pytest.approx(0.2) and record["sensitivity"] == pytest.approx(0.1)
    assert record["noise_multiplier"] == pytest.approx(2.0)

    event = dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(noise_multiplier=2.0), 3)
    rdp = RdpAccountant()
    rdp.compose(event)
    pld = PLDAccountant()  # default discretisation (1e-4), not the record's relative one
    pld.compose(event)
    assert record["epsilon_rdp"] == pytest.approx(rdp.get_epsilon(DELTA), rel=1e-9)
    assert record["epsilon_pld"] == pytest.approx(pld.get_epsilon(DELTA), rel=1e-3)
    exact = _analytic_gaussian_epsilon(math.sqrt(3) / 2.0, DELTA)
    assert record["epsilon_pld"] == pytest.approx(exact, rel=1e-3)
    assert record["epsilon_pld"] < record["epsilon_rdp"]
    assert [entry["releases"] for entry in record["per_epoch"]] == [1, 2, 3]
    assert record["delta"] == DELTA and record["accountant"] == "dp-accounting 0.6.0"


def test_laplace_epsilon_matches_the_closed_form_and_dp_accounting() -> None:
    """b = 0.1 (variance 2 b^2 = 0.02), L1 clip 0.05: each release is 2 C / b = 1-DP; 4 epochs give exactly 4 at delta 0."""
    record = noise_record(_run([_laplace(0.02, 0.05)], epochs=4), 4)
    assert record is not None and record["claimed"] is True
    assert record["laplace_scale"] == pytest.approx(0.1) and record["clip"] == "L1"
    assert record["noise_multiplier"] == pytest.approx(1.0)
    assert [entry["epsilon_pure"] for entry in record["per_epoch"]] == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert record["epsilon_pure"] == pytest.approx(4 * 2 * 0.05 / 0.1)

    event = dp_event.SelfComposedDpEvent(dp_event.LaplaceDpEvent(noise_multiplier=1.0), 4)
    rdp = RdpAccountant()
    rdp.compose(event)
    pld = PLDAccountant()
    pld.compose(event)
    assert record["epsilon_rdp"] == pytest.approx(rdp.get_epsilon(DELTA), rel=1e-9)
    assert record["epsilon_pld"] == pytest.approx(pld.get_epsilon(DELTA), rel=1e-3)
    # at delta > 0 the PLD epsilon can only improve on pure composition (up to its grid step)
    assert record["epsilon_pld"] <= record["epsilon_pure"] * (1 + 1e-3)


def test_a_norm_clipping_before_gaussian_noise_is_its_bound() -> None:
    """An L2 norm_clipping before the noise bounds the rows like clip_norm (the smaller of the two applies)."""
    run = _run([{"kind": "norm_clipping", "max_norm": 0.05}, _gaussian(0.04)])
    record = noise_record(run, 3)
    assert record is not None and record["claimed"] is True and "norm_clipping" in record["clip_source"]
    assert record["epsilon_pld"] == noise_record(_run([_gaussian(0.04, 0.05)]), 3)["epsilon_pld"]  # type: ignore[index]
    both = noise_record(_run([{"kind": "norm_clipping", "max_norm": 0.05}, _gaussian(0.04, 0.02)]), 3)
    assert both is not None and both["clip_norm"] == 0.02 and both["clip_source"] == "clip_norm"


# ============================================================================ no bound, no claim
@pytest.mark.parametrize("table", [_gaussian(0.04), _laplace(0.04), {"kind": "gaussian_noise", "variance": 0.04}])
def test_without_a_clip_the_epsilon_is_infinite_with_the_reason(table: dict[str, Any]) -> None:
    record = noise_record(_run([table]), 2)
    assert record is not None and record["claimed"] is False
    assert record["reason"].startswith("no sensitivity bound")
    assert record["epsilon_pld"] == record["epsilon_rdp"] == math.inf
    assert all(entry["epsilon_pld"] == math.inf for entry in record["per_epoch"])
    columns = privacy_columns(record)
    assert columns["dp_epsilon_pld"] == math.inf and columns["dp_unclaimed_reason"].startswith("no sensitivity bound")


def test_an_l2_clip_is_no_bound_for_laplace_noise() -> None:
    record = noise_record(_run([{"kind": "norm_clipping", "max_norm": 0.05}, _laplace(0.04)]), 2)
    assert record is not None and record["epsilon_pld"] == math.inf and "L1" in record["reason"]


@pytest.mark.parametrize(
    ("defenses", "overrides", "reason"),
    [
        ([_gaussian(0.04, 0.05, noise_source="run_seed")], {}, "train.seed"),
        ([{"kind": "sparsification", "drop_rate": 0.5}, _gaussian(0.04, 0.05)], {}, "sparsification"),
        ([_laplace(0.04, 0.05)], {"parties": {"passive": 2, "split": "even", "active_block": True}}, "local block"),
        ([_gaussian(0.04, 0.05)], {"model": {"top": "trainable", "bottom_hidden": [], "bottom_output": 4, "top_hidden": [5]}}, "trainable"),
    ],
)
def test_a_bound_without_the_conditions_claims_nothing(defenses: list[dict[str, Any]], overrides: dict[str, Any], reason: str) -> None:
    record = noise_record(_run(defenses, **overrides), 2)
    assert record is not None and record["claimed"] is False and reason in record["reason"]
    assert record["epsilon_pld"] is None and record["epsilon_rdp"] is None and record["noise_multiplier"] is not None


def test_activation_noise_is_not_accounted_and_label_dp_keeps_its_record() -> None:
    activation = {"kind": "gaussian_noise", "variance": 0.04, "on": "activation", "placement": "post_decryption"}
    record = noise_record(_run([activation]), 2)
    assert record is not None and record["claimed"] is False and record["epsilon_pld"] is None and "activations" in record["reason"]
    both = label_dp_record(_run([activation, {"kind": "label_dp", "noise_multiplier": 1.0}]), 2)
    assert both is not None and both["defense"] == "label_dp" and both["claimed"] is True
    assert noise_record(_run([]), 2) is None and label_dp_record(_run([]), 2) is None


def test_later_defenses_are_post_processing_of_the_first_noise() -> None:
    first = noise_record(_run([_gaussian(0.04, 0.05), _laplace(0.5), {"kind": "sparsification", "drop_rate": 0.5}]), 2)
    assert first is not None and first["defense_index"] == 0 and first["claimed"] is True
    assert first["epsilon_pld"] == noise_record(_run([_gaussian(0.04, 0.05)]), 2)["epsilon_pld"]  # type: ignore[index]


# ============================================================================ monotonicity
@pytest.mark.parametrize("make", [_gaussian, _laplace])
def test_epsilon_falls_with_the_noise_and_grows_with_the_epochs(make: Any) -> None:
    variances = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    by_noise = [noise_record(_run([make(v, 0.05)]), 3)["epsilon_pld"] for v in variances]  # type: ignore[index]
    assert all(a > b for a, b in zip(by_noise, by_noise[1:], strict=False)), by_noise
    per_epoch = [entry["epsilon_pld"] for entry in noise_record(_run([make(1e-2, 0.05)], epochs=6), 6)["per_epoch"]]  # type: ignore[index]
    assert all(a < b for a, b in zip(per_epoch, per_epoch[1:], strict=False)), per_epoch
    by_clip = [noise_record(_run([make(1e-2, c)]), 3)["epsilon_pld"] for c in (0.01, 0.05, 0.2)]  # type: ignore[index]
    assert all(a < b for a, b in zip(by_clip, by_clip[1:], strict=False)), by_clip


# ============================================================================ configuration
@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"kind": "gaussian_noise", "variance": 0}, "variance"),
        ({"kind": "laplace_noise", "variance": -1}, "variance"),
        ({"kind": "gaussian_noise"}, "variance"),
        ({"kind": "gaussian_noise", "variance": 0.1, "clip_norm": 0}, "clip_norm"),
        ({"kind": "laplace_noise", "variance": 0.1, "clip_norm": -0.5}, "clip_norm"),
        ({"kind": "gaussian_noise", "variance": 0.1, "clip_norm": 1, "delta": 0}, "delta"),
        ({"kind": "gaussian_noise", "variance": 0.1, "clip_norm": 1, "delta": 1}, "delta"),
        ({"kind": "laplace_noise", "variance": 0.1, "noise_source": "urandom"}, "noise_source"),
    ],
)
def test_invalid_values_are_one_clear_line(table: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config({"defense": [table]})
    message = str(caught.value)
    assert "\n" not in message and field in message and message.startswith("config error: defense.0")


def test_a_clip_under_encryption_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config(
            {"protection": {"scheme": "ckks", "key_holder": "active"}, "defense": [_gaussian(0.1, 1.0, placement="under_encryption")]}
        )
    message = str(caught.value)
    assert "\n" not in message and "clip_norm" in message and "pre_encryption" in message
    # without the clip the same placement loads (the noise alone needs no comparison)
    validate_config({"protection": {"scheme": "ckks", "key_holder": "active"}, "defense": [_gaussian(0.1, placement="under_encryption")]})


def test_labels_show_the_new_fields_only_when_set() -> None:
    assert parse_defense_config({"kind": "gaussian_noise", "variance": 0.1}).label() == "gaussian_noise(variance=0.1, gradient, pre_encryption)"
    assert parse_defense_config(_laplace(0.1, 0.5)).label() == "laplace_noise(variance=0.1, clip_norm=0.5, noise_source=csprng, gradient, pre_encryption)"
    config_ = parse_defense_config(_gaussian(0.1, 0.5))
    assert parse_defense_config(config_.model_dump(mode="json")) == config_


# ============================================================================ the mechanism the accounting describes
def _ctx(step: int, rows: int, receiver: str = "passive_1") -> MessageContext:
    return MessageContext(kind="gradient", sender="active", receiver=receiver, step=step, rows=rows)


@pytest.mark.parametrize(("config_type", "order"), [(GaussianNoiseConfig, 2), (LaplaceNoiseConfig, 1)])
def test_rows_are_clipped_in_their_norm_before_the_noise(config_type: Any, order: int) -> None:
    rows = np.random.default_rng(3).normal(size=(12, 5)) * np.linspace(0.01, 3, 12)[:, None]
    config_ = config_type(variance=0.01, clip_norm=0.5)
    out = build_defense(config_, np.random.default_rng(7)).apply(rows, _ctx(0, 12))
    shadow = build_defense(config_, np.random.default_rng(7))
    clipped = out - shadow.draw((12, 5))  # run_seed: the same generator gives the same noise
    norms = np.linalg.norm(clipped, ord=order, axis=1)
    assert norms.max() <= 0.5 + 1e-9
    inside = np.linalg.norm(rows, ord=order, axis=1) <= 0.5
    assert inside.any() and np.allclose(clipped[inside], rows[inside], atol=1e-12)
    assert np.allclose(clipped[~inside] / norms[~inside, None] * np.linalg.norm(rows[~inside], ord=order, axis=1)[:, None], rows[~inside])


def test_unclipped_run_seed_noise_is_as_before() -> None:
    rows = np.zeros((4, 3))
    out = build_defense(GaussianNoiseConfig(variance=0.25), np.random.default_rng(11)).apply(rows, _ctx(0, 4))
    assert np.array_equal(out, np.random.default_rng(11).normal(0.0, 0.5, size=(4, 3)))


@pytest.mark.parametrize("kind", ["gaussian_noise", "laplace_noise"])
def test_csprng_noise_is_one_draw_per_step_for_every_passive(kind: str) -> None:
    defense = build_defense(parse_defense_config({**_gaussian(0.01, 1.0), "kind": kind}), np.random.default_rng(0))
    rows = np.random.default_rng(1).normal(size=(8, 4)) * 0.1
    first, second = defense.apply(rows, _ctx(5, 8, "passive_1")), defense.apply(rows, _ctx(5, 8, "passive_2"))
    assert np.array_equal(first, second)
    assert not np.array_equal(first, defense.apply(rows, _ctx(6, 8, "passive_1")))


@pytest.mark.parametrize("kind", ["gaussian_noise", "laplace_noise"])
def test_csprng_noise_has_the_configured_distribution(kind: str) -> None:
    defense = build_defense(parse_defense_config({**_gaussian(0.02), "kind": kind}), np.random.default_rng(0))
    noise = defense.apply(np.zeros((100_000, 2)), _ctx(0, 100_000)).ravel()
    b = math.sqrt(0.02 / 2)
    reference = stats.norm(scale=math.sqrt(0.02)) if kind == "gaussian_noise" else stats.laplace(scale=b)
    assert stats.kstest(noise, reference.cdf).pvalue > 1e-6  # fails at rate 1e-6 when correct; 200,000 draws still see a ~2.4 % scale error


# ============================================================================ end to end
def test_the_result_and_the_study_table_carry_the_epsilon(tmp_path: Path) -> None:
    dataset = random_dataset(64, 16, 8, 4, seed=2)
    result = run_training(_run([_gaussian(0.04, 0.05)], epochs=2), tmp_path / "run", dataset=dataset)
    privacy = result["privacy"]
    assert privacy["claimed"] is True and privacy["defense"] == "gaussian_noise"
    assert privacy["epsilon_pld"] == noise_record(_run([_gaussian(0.04, 0.05)]), 2)["epsilon_pld"]  # type: ignore[index]
    assert set(PRIVACY_COLUMNS) <= set(base_columns())
    assert privacy_columns(privacy)["dp_epsilon_pld"] == privacy["epsilon_pld"]

    unbounded = run_training(_run([_laplace(0.04)], epochs=1), tmp_path / "inf", dataset=dataset)
    assert unbounded["privacy"]["epsilon_pld"] == math.inf
    written = json.loads((tmp_path / "inf" / "result.json").read_text())
    assert written["privacy"]["epsilon_pld"] == math.inf and written["privacy"]["reason"].startswith("no sensitivity bound")
