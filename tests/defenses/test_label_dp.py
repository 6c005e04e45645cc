"""The label_dp defense and its accountant.

Accountant: checked against computations made here, independently of dp-accounting: the RDP
of the Gaussian mechanism (alpha / (2 z^2) per release) converted to (epsilon, delta) by the
bound the accountant documents, minimised by hand over its grid of orders; the analytic
Gaussian mechanism of Balle & Wang (ICML 2018, Theorem 8) for the PLD accountant (exact for a
composition of Gaussians); and the composition identity (n releases of multiplier z equal one
of z / sqrt(n)).

Defense: the noise added to the real rows, divided by the independently computed
z * sqrt(2) / B_t, must be standard normal (Kolmogorov-Smirnov, mean and variance tests at
ALPHA = 0.01 for seeded noise and CSPRNG_ALPHA = 1e-6 for unseedable CSPRNG noise, with the
variance test's power against a 15 % error asserted); padding rows stay
bit-for-bit; one step's messages to different passives and packings carry the same draw,
different steps independent draws; end to end, what each passive receives minus the rows the
active party computed is that noise.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import optimize, stats

from securevfl.config import ProtectionConfig, validate_config
from securevfl.defenses import LabelDP, LabelDPConfig, MessageContext, Placement, PlacementError, build_defense, parse_defense_config
from securevfl.defenses.accounting import (
    PRIVACY_COLUMNS,
    accountant_version,
    claim_refusals,
    gaussian_epsilon,
    label_dp_record,
    privacy_columns,
)
from securevfl.defenses.pipeline import DefensePipeline
from securevfl.errors import ConfigError
from securevfl.federation import build_federation
from securevfl.protocols import GRADIENT
from securevfl.schemes import scheme_for
from securevfl.study.table import base_columns, describe_defenses
from securevfl.training import run_training
from tests.helpers import assert_passives_updated_alike, config, random_dataset

ALPHA = 0.01
CSPRNG_ALPHA = 1e-6
"""CSPRNG noise cannot be seeded, so its tests are not deterministic: a correct implementation
fails each at rate ~3 alpha. At 1e-4 that is negligible, and the power checks still hold."""
DELTA = 1e-5


# ============================================================================ accountant
def _hand_rdp_epsilon(z: float, releases: int, delta: float) -> tuple[float, float]:
    """min over orders a of  releases * a / (2 z^2) + ln(1 - 1/a) - (ln delta + ln a) / (a - 1).

    RDP of the Gaussian mechanism with sensitivity 1 and noise z at order a is a / (2 z^2)
    (Mironov 2017), additive under composition; the conversion is Proposition 12 of Canonne,
    Kamath & Steinke 2020, the one dp-accounting documents. The orders are the accountant's
    default grid, written out here: 1.1 .. 10.9 by 0.1, 11 .. 63, 128, 256, 512, 1024.
    """
    orders = np.array([1 + x / 10 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024], dtype=np.float64)
    rdp = releases * orders / (2 * z**2)
    epsilon = rdp + np.log1p(-1 / orders) - (math.log(delta) + np.log(orders)) / (orders - 1)
    best = int(np.argmin(epsilon))
    return float(epsilon[best]), float(orders[best])


def _analytic_gaussian_epsilon(mu: float, delta: float) -> float:
    """Balle & Wang 2018, Thm 8: the epsilon with Phi(mu/2 - eps/mu) - e^eps Phi(-mu/2 - eps/mu) = delta.

    ``mu`` = sensitivity / sigma. Solved with brentq on the log scale (the second term is a
    tiny probability times a huge exponential at large epsilon).
    """

    def excess(eps: float) -> float:
        first = stats.norm.cdf(mu / 2 - eps / mu)
        second = math.exp(eps + stats.norm.logcdf(-mu / 2 - eps / mu))
        return first - second - delta

    return float(optimize.brentq(excess, 0.0, 10 * mu**2 + 50, xtol=1e-12))


def test_rdp_epsilon_matches_the_hand_computation() -> None:
    found = gaussian_epsilon(1.0, 1, DELTA)
    hand, order = _hand_rdp_epsilon(1.0, 1, DELTA)
    assert hand == pytest.approx(2.7 - 0.204794 + 2.233302, abs=1e-6)  # the memo's terms at order 5.4
    assert found.epsilon_rdp == pytest.approx(hand, abs=1e-9)
    assert found.rdp_order == order == pytest.approx(5.4)
    assert found.epsilon_rdp == pytest.approx(4.728507, abs=1e-6)


@pytest.mark.parametrize(("z", "releases"), [(0.3, 2), (3.0, 8), (10.0, 40)])
def test_rdp_epsilon_matches_the_hand_computation_elsewhere(z: float, releases: int) -> None:
    found = gaussian_epsilon(z, releases, DELTA)
    hand, order = _hand_rdp_epsilon(z, releases, DELTA)
    assert found.epsilon_rdp == pytest.approx(hand, rel=1e-9)
    assert found.rdp_order == pytest.approx(order)


@pytest.mark.parametrize(("z", "releases"), [(1.0, 1), (0.3, 2), (3.0, 8), (0.1, 2)])
def test_pld_epsilon_matches_the_analytic_gaussian_mechanism(z: float, releases: int) -> None:
    exact = _analytic_gaussian_epsilon(math.sqrt(releases) / z, DELTA)  # n Gaussians = one with mu = sqrt(n)/z
    found = gaussian_epsilon(z, releases, DELTA)
    assert found.epsilon_pld == pytest.approx(exact, rel=1e-3, abs=1e-3)
    assert found.epsilon_pld < found.epsilon_rdp  # PLD is the tighter of the two
    if (z, releases) == (1.0, 1):
        assert exact == pytest.approx(4.377178, abs=1e-5)


def test_composition_identity() -> None:
    """8 releases of multiplier z * sqrt(8) are one release of multiplier z (Gaussian composition)."""
    for z in (1.0, 3.0):
        composed, single = gaussian_epsilon(z * math.sqrt(8), 8, DELTA), gaussian_epsilon(z, 1, DELTA)
        assert composed.epsilon_rdp == pytest.approx(single.epsilon_rdp, rel=1e-9)
        assert composed.epsilon_pld == pytest.approx(single.epsilon_pld, rel=1e-3)


def test_classic_bound_holds_where_it_applies() -> None:
    """Below epsilon 1 the textbook calibration sigma = sqrt(2 ln(1.25/delta)) / epsilon is valid and looser."""
    found = gaussian_epsilon(5.0, 1, DELTA)
    classic = math.sqrt(2 * math.log(1.25 / DELTA)) / 5.0
    assert found.epsilon_pld <= found.epsilon_rdp <= classic < 1


def test_epsilon_falls_with_the_noise_and_grows_with_the_releases() -> None:
    by_z = [gaussian_epsilon(z, 2, DELTA).epsilon_pld for z in (0.3, 1.0, 3.0, 10.0)]
    by_n = [gaussian_epsilon(1.0, n, DELTA).epsilon_pld for n in (1, 2, 4, 8)]
    assert by_z == sorted(by_z, reverse=True) and by_n == sorted(by_n)


@pytest.mark.parametrize(("z", "releases", "delta"), [(0.0, 1, DELTA), (-1.0, 1, DELTA), (math.inf, 1, DELTA), (1.0, 0, DELTA), (1.0, 1, 0.0), (1.0, 1, 1.0)])
def test_accountant_refuses_meaningless_inputs(z: float, releases: int, delta: float) -> None:
    with pytest.raises(ValueError):
        gaussian_epsilon(z, releases, delta)


def test_accountant_version_is_recorded() -> None:
    assert accountant_version() == "dp-accounting 0.6.0"


# ============================================================================ configuration
def test_config_defaults_and_label() -> None:
    parsed = parse_defense_config({"kind": "label_dp", "noise_multiplier": 0.3})
    assert isinstance(parsed, LabelDPConfig)
    assert (parsed.delta, parsed.noise_source, parsed.on, parsed.placement) == (1e-5, "csprng", "gradient", Placement.PRE_ENCRYPTION)
    assert parsed.label() == "label_dp(noise_multiplier=0.3, noise_source=csprng, gradient, pre_encryption)"
    assert describe_defenses([parsed.model_dump(mode="json")]) == parsed.label()


@pytest.mark.parametrize(
    "table",
    [
        {"kind": "label_dp"},  # the multiplier is required
        {"kind": "label_dp", "noise_multiplier": 0},
        {"kind": "label_dp", "noise_multiplier": -1},
        {"kind": "label_dp", "noise_multiplier": float("nan")},
        {"kind": "label_dp", "noise_multiplier": float("inf")},
        {"kind": "label_dp", "noise_multiplier": 1, "delta": 0},
        {"kind": "label_dp", "noise_multiplier": 1, "delta": 1},
        {"kind": "label_dp", "noise_multiplier": 1, "noise_source": "urandom"},
        {"kind": "label_dp", "noise_multiplier": 1, "variance": 0.1},  # unknown key
        {"kind": "label_dp", "noise_multiplier": 1, "on": "activation", "placement": "post_decryption"},
    ],
)
def test_invalid_tables_are_refused(table: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_defense_config(table)


def test_activation_noise_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="`on` must be 'gradient'"):
        parse_defense_config({"kind": "label_dp", "noise_multiplier": 1, "on": "activation", "placement": "under_encryption"})


def test_post_decryption_is_impossible() -> None:
    config = LabelDPConfig(noise_multiplier=1.0, placement=Placement.POST_DECRYPTION)
    with pytest.raises(PlacementError, match="passive party"):
        build_defense(config, np.random.default_rng(0), preset_depth=0)
    with pytest.raises(ConfigError, match="defense\\[0\\]"):
        validate_config({"defense": [{"kind": "label_dp", "noise_multiplier": 1, "placement": "post_decryption"}]})


def test_under_encryption_loads_under_ckks() -> None:
    loaded = validate_config(
        {"protection": {"scheme": "ckks", "key_holder": "active"}, "defense": [{"kind": "label_dp", "noise_multiplier": 1, "placement": "under_encryption"}]}
    )
    assert loaded.defense[0].placement is Placement.UNDER_ENCRYPTION


# ============================================================================ the noise
def _ctx(step: int, rows: int, receiver: str = "passive_1", sample_axis: int = 0) -> MessageContext:
    return MessageContext(kind="gradient", sender="active", receiver=receiver, step=step, rows=rows, sample_axis=sample_axis)  # type: ignore[arg-type]


def _rejections(standardised: np.ndarray, alpha: float = ALPHA) -> list[str]:
    """Tests (at ``alpha``) that reject ``standardised`` as N(0, 1) samples."""
    n, z = standardised.size, stats.norm.ppf(1 - alpha / 2)
    rejected = []
    if stats.kstest(standardised, "norm").pvalue < alpha:
        rejected.append("ks")
    if abs(standardised.mean()) > z / math.sqrt(n):
        rejected.append("mean")
    if abs(np.mean(standardised**2) - 1) > z * math.sqrt(2 / n):  # Gaussian: var of x^2 is 2
        rejected.append("variance")
    return rejected


def _added_noise(source: str, z: float, steps: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise on the real rows of ``steps`` padded messages (64 rows, 40 to 64 real, 10 wide) and the sigma of each entry."""
    defense = LabelDP(LabelDPConfig(noise_multiplier=z, noise_source=source), np.random.default_rng(seed))  # type: ignore[arg-type]
    data = np.random.default_rng(seed + 1).normal(scale=0.1, size=(steps, 64, 10))
    noise, sigma = [], []
    for step in range(steps):
        rows = 40 + step % 25
        message = data[step].copy()
        message[rows:] = 0.0
        out = defense.apply(message, _ctx(step, rows))
        np.testing.assert_array_equal(out[rows:], 0.0)  # padding untouched, bit for bit
        noise.append((out[:rows] - message[:rows]).ravel())
        sigma.append(np.full(rows * 10, z * math.sqrt(2) / rows))  # the calibration, computed here
    return np.concatenate(noise), np.concatenate(sigma)


@pytest.mark.parametrize("alpha", [ALPHA, CSPRNG_ALPHA])
def test_the_statistical_tests_have_power(alpha: float) -> None:
    """The variance test at the sample size of ``_added_noise`` rejects a variance 15 % off with probability > 0.99."""
    n = sum(40 + step % 25 for step in range(40)) * 10
    c, z = math.sqrt(2 / n), stats.norm.ppf(1 - alpha / 2)
    ratio = 1.15
    power = stats.norm.sf((1 + z * c - ratio) / (ratio * c)) + stats.norm.cdf((1 - z * c - ratio) / (ratio * c))
    assert power > 0.99


@pytest.mark.parametrize("source", ["csprng", "run_seed"])
@pytest.mark.parametrize("z", [0.1, 3.0])
def test_noise_is_gaussian_with_sigma_z_sqrt2_over_real_rows(source: str, z: float) -> None:
    alpha = CSPRNG_ALPHA if source == "csprng" else ALPHA
    noise, sigma = _added_noise(source, z)
    assert _rejections(noise / sigma, alpha) == []
    # power: a 15 % larger sigma, or the scale of the padded batch (64 rows) instead of the real rows, are rejected
    assert "variance" in _rejections(noise / (sigma / 1.15), alpha)
    padded_sigma = np.full_like(sigma, z * math.sqrt(2) / 64)
    assert "variance" in _rejections(noise / padded_sigma, alpha)


def test_feature_major_messages_get_the_same_noise_on_the_same_rows() -> None:
    defense = LabelDP(LabelDPConfig(noise_multiplier=1.0), np.random.default_rng(0))
    message = np.zeros((64, 10))
    sample_major = defense.apply(message, _ctx(0, 50))
    feature_major = defense.apply(message.T.copy(), _ctx(0, 50, sample_axis=1))
    np.testing.assert_array_equal(feature_major.T, sample_major)
    assert np.all(sample_major[:50] != 0) and np.all(sample_major[50:] == 0)


@pytest.mark.parametrize("source", ["csprng", "run_seed"])
def test_one_draw_per_step_for_every_passive(source: str) -> None:
    defense = LabelDP(LabelDPConfig(noise_multiplier=1.0, noise_source=source), np.random.default_rng(0))  # type: ignore[arg-type]
    rows = np.random.default_rng(1).normal(size=(64, 10)).astype(np.float32)
    first = [defense.apply(rows, _ctx(7, 64, receiver)) for receiver in ("passive_1", "passive_2", "passive_3")]
    assert first[0].dtype == np.float32
    for other in first[1:]:
        np.testing.assert_array_equal(other, first[0])
    later = defense.apply(rows, _ctx(8, 64))
    correlation = np.corrcoef((later - rows).ravel(), (first[0] - rows).ravel())[0, 1]
    assert abs(correlation) < 5 / math.sqrt(rows.size)  # independent draws (5 standard errors: ~6e-7 for a correct run)


class _FakeCiphertext:
    """Just what the pipeline and ``apply_encrypted`` touch: a shape and ``add_plain`` (records the plaintext)."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape
        self.levels_left = 0
        self.added: np.ndarray | None = None

    def add_plain(self, plain: np.ndarray) -> _FakeCiphertext:
        self.added = plain
        return self


@pytest.mark.parametrize("source", ["csprng", "run_seed"])
def test_under_encryption_packings_share_the_draw_and_steps_do_not(source: str) -> None:
    """The pipeline rewinds a defense's generator between packings; that must not repeat a draw across steps."""
    pipeline = DefensePipeline.build(
        [parse_defense_config({"kind": "label_dp", "noise_multiplier": 1.0, "placement": "under_encryption", "noise_source": source})],
        scheme_for(ProtectionConfig(scheme="ckks", key_holder="active")),
        seed=3,
    )
    noises = []
    for step in range(3):
        for receiver in ("passive_1", "passive_2"):
            ctx = _ctx(step, 60, receiver)
            feature_major, batch_major = _FakeCiphertext((10, 64)), _FakeCiphertext((64, 10))
            pipeline.encrypted([(feature_major, MessageContext(**{**ctx.__dict__, "sample_axis": 1})), (batch_major, ctx)])  # type: ignore[list-item]
            assert feature_major.added is not None and batch_major.added is not None
            np.testing.assert_array_equal(feature_major.added.T, batch_major.added)
            assert np.all(batch_major.added[60:] == 0)
            noises.append(batch_major.added[:60])
    for step in range(3):
        np.testing.assert_array_equal(noises[2 * step], noises[2 * step + 1])  # both passives
    assert not np.array_equal(noises[0], noises[2]) and not np.array_equal(noises[2], noises[4])


def test_run_seed_noise_is_reproducible_and_survives_a_checkpoint() -> None:
    config_ = LabelDPConfig(noise_multiplier=1.0, noise_source="run_seed")
    first, second = LabelDP(config_, np.random.default_rng(9)), LabelDP(config_, np.random.default_rng(9))
    message = np.zeros((64, 10))
    np.testing.assert_array_equal(first.apply(message, _ctx(0, 64)), second.apply(message, _ctx(0, 64)))
    resumed = LabelDP(config_, np.random.default_rng(9))
    resumed.load_state_dict(first.state_dict())
    np.testing.assert_array_equal(resumed.apply(message, _ctx(1, 64)), first.apply(message, _ctx(1, 64)))
    csprng = LabelDP(LabelDPConfig(noise_multiplier=1.0), np.random.default_rng(9))
    assert not np.array_equal(csprng.apply(message, _ctx(0, 64)), LabelDP(LabelDPConfig(noise_multiplier=1.0), np.random.default_rng(9)).apply(message, _ctx(0, 64)))


# ============================================================================ in a run
def _federation(defense: list[dict[str, Any]], batch: int = 48, top: str = "sum"):  # type: ignore[no-untyped-def]
    dataset = random_dataset(batch, 8, 8, 4, seed=5)
    blocks = [np.arange(0, 4), np.arange(4, 8)]
    model = {"top": top, "bottom_hidden": [6]} if top == "sum" else {"top": top, "bottom_hidden": [], "bottom_output": 4, "top_hidden": [5]}
    run = config(parties={"passive": 2, "split": "even"}, model=model, train={"lr": 0.1, "seed": 5, "batch_size": batch}, defense=defense)
    return build_federation(run, dataset, blocks)


def test_each_passive_receives_the_true_rows_plus_one_shared_calibrated_draw() -> None:
    """End to end, plain scheme: received minus computed rows, over 30 steps, is N(0, (z sqrt(2)/B)^2), same for both passives.

    With the reproducible noise source, so the statistical check is deterministic here (one chance
    rejection at alpha 1e-4 once failed CI); the CSPRNG draw is the same code path but the source and
    is checked on its own in ``test_noise_is_gaussian_with_sigma_z_sqrt2_over_real_rows``.
    """
    z, batch = 0.5, 48
    federation = _federation([{"kind": "label_dp", "noise_multiplier": z, "noise_source": "run_seed"}], batch=batch)
    computed: dict[tuple[int, str], np.ndarray] = {}
    federation.active.gradient_taps.append(lambda step, ids, passive, rows: computed.__setitem__((step, passive), rows.copy()))
    ids = np.arange(batch)
    noise = []
    for step in range(30):
        for party in federation.passives:
            party.forward(step, ids)
        federation.active.train_step(step, ids)
        received = {name: np.asarray(federation.channel.receive(name, GRADIENT, sender="active").payload) for name in ("passive_1", "passive_2")}
        np.testing.assert_array_equal(received["passive_1"], received["passive_2"])
        noise.append((received["passive_1"] - computed[(step, "passive_1")]).ravel())
        np.testing.assert_array_equal(computed[(step, "passive_1")], computed[(step, "passive_2")])  # sum top: same rows
    standardised = np.concatenate(noise).astype(np.float64) / (z * math.sqrt(2) / batch)
    assert _rejections(standardised) == []
    assert "variance" in _rejections(standardised * 1.15)  # and the test would see a 15 % error


def _run_config(**overrides: Any) -> Any:
    sections: dict[str, Any] = {
        "parties": {"passive": 2, "split": "even"},
        "model": {"top": "sum", "bottom_hidden": [6]},
        "train": {"epochs": 2, "batch_size": 16, "lr": 0.1, "seed": 1, "progress": False, "checkpoint": False},
        "defense": [{"kind": "label_dp", "noise_multiplier": 2.0}],
    }
    sections.update(overrides)
    return config(**sections)


def test_the_result_records_epsilon_per_epoch_and_the_table_shows_it(tmp_path: Path) -> None:
    dataset = random_dataset(64, 16, 8, 4, seed=2)
    result = run_training(_run_config(), tmp_path / "run", dataset=dataset)
    privacy = result["privacy"]
    assert privacy["claimed"] is True and privacy["reason"] is None
    assert [entry["releases"] for entry in privacy["per_epoch"]] == [1, 2]
    for entry in privacy["per_epoch"]:
        expected = gaussian_epsilon(2.0, entry["epoch"], DELTA)
        assert entry["epsilon_pld"] == expected.epsilon_pld and entry["epsilon_rdp"] == expected.epsilon_rdp
    assert privacy["epsilon_pld"] == privacy["per_epoch"][-1]["epsilon_pld"]
    assert privacy["accountant"] == "dp-accounting 0.6.0" and privacy["delta"] == DELTA
    assert set(PRIVACY_COLUMNS) <= set(base_columns())
    columns = privacy_columns(privacy)
    assert columns["dp_epsilon_pld"] == privacy["epsilon_pld"] and columns["dp_delta"] == DELTA and columns["dp_unclaimed_reason"] is None
    assert result["history"][0].keys() == {"epoch", "main_accuracy", "loss"}  # the history keeps its shape
    without = run_training(_run_config(defense=[]), dataset=dataset)
    assert without["privacy"] is None and privacy_columns(None) == dict.fromkeys(PRIVACY_COLUMNS)


def test_a_trainable_top_runs_the_noise_but_claims_no_epsilon() -> None:
    dataset = random_dataset(64, 16, 8, 4, seed=2)
    trainable = _run_config(model={"top": "trainable", "bottom_hidden": [], "bottom_output": 4, "top_hidden": [5]})
    result = run_training(trainable, dataset=dataset)
    privacy = result["privacy"]
    assert privacy["claimed"] is False and "trainable" in privacy["reason"]
    assert privacy["epsilon_pld"] is None and privacy["epsilon_rdp"] is None
    assert all(entry["epsilon_pld"] is None for entry in privacy["per_epoch"]) and len(privacy["per_epoch"]) == 2
    assert privacy_columns(privacy)["dp_epsilon_pld"] is None and "trainable" in privacy_columns(privacy)["dp_unclaimed_reason"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"parties": {"passive": 2, "split": "even", "active_block": True}}, "local block"),
        ({"defense": [{"kind": "label_dp", "noise_multiplier": 1.0, "noise_source": "run_seed"}]}, "train.seed"),
        ({"defense": [{"kind": "sparsification", "drop_rate": 0.5}, {"kind": "label_dp", "noise_multiplier": 1.0}]}, "sparsification"),
        ({"defense": [{"kind": "label_dp", "noise_multiplier": 1.0}, {"kind": "label_dp", "noise_multiplier": 2.0}]}, "exactly one"),
    ],
)
def test_other_settings_without_a_claim(overrides: dict[str, Any], reason: str) -> None:
    run = _run_config(**overrides)
    assert any(reason in text for text in claim_refusals(run))
    record = label_dp_record(run, 3)
    assert record is not None and record["claimed"] is False and reason in record["reason"] and record["epsilon_pld"] is None


@pytest.mark.parametrize(
    "defenses",
    [
        [{"kind": "label_dp", "noise_multiplier": 1.0}, {"kind": "sparsification", "drop_rate": 0.5}],  # after the noise
        [{"kind": "gaussian_noise", "variance": 0.1, "on": "activation", "placement": "post_decryption"}, {"kind": "label_dp", "noise_multiplier": 1.0}],
    ],
)
def test_post_processing_and_activation_defenses_keep_the_claim(defenses: list[dict[str, Any]]) -> None:
    run = _run_config(defense=defenses)
    assert claim_refusals(run) == []
    record = label_dp_record(run, 2)
    assert record is not None and record["epsilon_pld"] == gaussian_epsilon(1.0, 2, DELTA).epsilon_pld


def test_pre_encryption_defenses_run_before_under_encryption_ones() -> None:
    """Execution order, not list order, decides what runs before the noise."""
    ckks = {"scheme": "ckks", "key_holder": "active"}
    run = _run_config(
        protection=ckks,
        defense=[{"kind": "label_dp", "noise_multiplier": 1.0, "placement": "under_encryption"}, {"kind": "norm_clipping", "max_norm": 1.0}],
    )
    assert any("norm_clipping" in text for text in claim_refusals(run))


def test_label_private_scheme_adds_the_same_noise_under_encryption_as_before_it() -> None:
    """ckks/active with a hidden layer (G^T and G both sent): one shared draw, so the passives' update equals the plaintext one."""
    ids = np.arange(8)

    def federation(protection: dict[str, Any], placement: str):  # type: ignore[no-untyped-def]
        dataset = random_dataset(16, 4, 6, 3, 3)
        defense = [{"kind": "label_dp", "noise_multiplier": 3.0, "noise_source": "run_seed", "placement": placement}]
        sections = {"parties": {"passive": 2, "split": "even"}, "model": {"top": "sum", "bottom_hidden": [3]}, "train": {"lr": 0.5, "seed": 3, "batch_size": 8}}
        return build_federation(config(**sections, protection=protection, defense=defense), dataset, [np.arange(0, 3), np.arange(3, 6)])

    encrypted = federation({"scheme": "ckks", "key_holder": "active", "preset": "compute", "flooding_bits": 0}, "under_encryption")
    reference = federation({"scheme": "plain"}, "pre_encryption")
    baseline = build_federation(
        config(parties={"passive": 2, "split": "even"}, model={"top": "sum", "bottom_hidden": [3]}, train={"lr": 0.5, "seed": 3, "batch_size": 8}),
        random_dataset(16, 4, 6, 3, 3),
        [np.arange(0, 3), np.arange(3, 6)],
    )
    for run in (encrypted, reference, baseline):
        run.train_batch(0, ids)
    assert_passives_updated_alike(encrypted, reference, baseline)
