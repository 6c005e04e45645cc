"""Additive noise has the configured distribution, in plaintext and under CKKS encryption.

Statistical protocol. Each sample (16,000+ noise values) goes through three tests at
significance ALPHA = 0.01: a Kolmogorov-Smirnov test against the configured distribution
(N(0, v) or Laplace(0, sqrt(v/2))), a z-test of the mean, and a z-test of the mean square
(known zero mean), whose standard error uses the family's kurtosis (3 for Gaussian, 6 for
Laplace). A correct implementation fails a given seed with probability at most ~3 * ALPHA; the
seeds are fixed, so the suite is deterministic. Power: the same tests must reject noise whose
variance is 15 % too large and noise of the other family at the same variance, and the
variance test's analytic power against the 15 % alternative is asserted to exceed 0.99 at the
sample sizes used, so a pass is evidence rather than luck of a weak test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from securevfl.crypto import ROWS, EncryptedTensor, SecretKeyring, get_preset
from securevfl.defenses import (
    GaussianNoise,
    GaussianNoiseConfig,
    LaplaceNoise,
    LaplaceNoiseConfig,
    MessageContext,
    Placement,
    build_defense,
)
from securevfl.defenses.noise import AdditiveNoise

ALPHA = 0.01
VARIANCE = 0.05  # the paper's threshold above which noise hurt the backdoor
WRONG_RATIO = 1.15
KURTOSIS = {"gaussian_noise": 3.0, "laplace_noise": 6.0}


def _reference(kind: str, variance: float) -> stats.rv_continuous:
    if kind == "gaussian_noise":
        return stats.norm(scale=math.sqrt(variance))
    return stats.laplace(scale=math.sqrt(variance / 2.0))


def _rejections(sample: np.ndarray, kind: str, variance: float) -> list[str]:
    """Names of the tests (at ALPHA) that reject ``sample`` as noise of ``kind`` and ``variance``."""
    n = sample.size
    z = stats.norm.ppf(1 - ALPHA / 2)
    rejected = []
    if stats.kstest(sample, _reference(kind, variance).cdf).pvalue < ALPHA:
        rejected.append("ks")
    if abs(sample.mean()) > z * math.sqrt(variance / n):
        rejected.append("mean")
    if abs(np.mean(sample**2) - variance) > z * variance * math.sqrt((KURTOSIS[kind] - 1) / n):
        rejected.append("variance")
    return rejected


def _variance_test_power(n: int, kind: str, ratio: float) -> float:
    """Analytic power of the mean-square test against a true variance ``ratio`` times the null."""
    z = stats.norm.ppf(1 - ALPHA / 2)
    c = math.sqrt((KURTOSIS[kind] - 1) / n)  # relative standard error of the mean square
    upper, lower = 1 + z * c, 1 - z * c
    return float(stats.norm.sf((upper - ratio) / (ratio * c)) + stats.norm.cdf((lower - ratio) / (ratio * c)))


def _config(kind: str, variance: float, **extra: object) -> GaussianNoiseConfig | LaplaceNoiseConfig:
    if kind == "gaussian_noise":
        return GaussianNoiseConfig(variance=variance, **extra)
    return LaplaceNoiseConfig(variance=variance, **extra)


def _ctx(step: int, rows: int, sample_axis: int = 0) -> MessageContext:
    return MessageContext(kind="gradient", sender="active", receiver="passive_1", step=step, rows=rows, sample_axis=sample_axis)


def _plaintext_noise(kind: str, variance: float, seed: int) -> np.ndarray:
    """Noise added by 8 plaintext messages of 64 x 32 (16,384 values)."""
    defense = build_defense(_config(kind, variance), np.random.default_rng(seed))
    data = np.random.default_rng(seed + 1000).normal(size=(8, 64, 32))
    return np.concatenate([(defense.apply(x, _ctx(i, 64)) - x).ravel() for i, x in enumerate(data)])


KINDS = ["gaussian_noise", "laplace_noise"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_sample_size_gives_the_tests_power(kind: str) -> None:
    assert _variance_test_power(16_000, kind, WRONG_RATIO) > 0.99


@pytest.mark.parametrize("kind", KINDS)
def test_plaintext_noise_has_the_configured_distribution(kind: str) -> None:
    sample = _plaintext_noise(kind, VARIANCE, seed=11)
    assert _rejections(sample, kind, VARIANCE) == []
    # power: a wrong variance and the other family at the same variance are rejected
    assert "variance" in _rejections(_plaintext_noise(kind, WRONG_RATIO * VARIANCE, seed=12), kind, VARIANCE)
    other = KINDS[1 - KINDS.index(kind)]
    assert "ks" in _rejections(sample, other, VARIANCE)


def test_laplace_is_parameterised_by_variance() -> None:
    defense = LaplaceNoise(LaplaceNoiseConfig(variance=0.08), np.random.default_rng(0))
    assert defense.scale == pytest.approx(0.2)  # 2 b^2 = 0.08


@pytest.mark.parametrize("kind", KINDS)
def test_plaintext_noise_keeps_dtype_padding_and_input(kind: str) -> None:
    defense = build_defense(_config(kind, 1.0), np.random.default_rng(0))
    values = np.zeros((6, 4), dtype=np.float32)
    out = defense.apply(values, _ctx(0, rows=4))
    assert out.dtype == np.float32
    assert np.all(values == 0), "the input must not be modified"
    assert np.all(out[:4] != 0)
    assert np.all(out[4:] == 0), "padding samples receive no noise"
    feature_major = defense.apply(np.zeros((4, 6)), _ctx(1, rows=4, sample_axis=1))
    assert np.all(feature_major[:, :4] != 0) and np.all(feature_major[:, 4:] == 0)


# ---------------------------------------------------------------------------- under encryption
@pytest.fixture(scope="module")
def keyring() -> SecretKeyring:
    return SecretKeyring.generate(get_preset("compute"))


def _encrypted_noise(keyring: SecretKeyring, kind: str, variance: float, seed: int) -> np.ndarray:
    """Noise added under encryption to 5 feature-major 32 x 128 messages with 100 real samples (16,000 values).

    Also checks that no level is consumed and that the 28 padding samples stay at zero.
    """
    defense = build_defense(_config(kind, variance, placement=Placement.UNDER_ENCRYPTION), np.random.default_rng(seed))
    data = np.random.default_rng(seed + 1000).uniform(-1, 1, size=(5, 32, 128))
    data[:, :, 100:] = 0.0
    samples = []
    for step, x in enumerate(data):
        tensor = EncryptedTensor.encrypt(keyring, x, ROWS, bound=8.0)
        noisy = defense.apply_encrypted(tensor, _ctx(step, rows=100, sample_axis=1))
        assert noisy.levels_left == tensor.levels_left, "adding noise must not consume a level"
        added = noisy.decrypt() - x
        assert np.max(np.abs(added[:, 100:])) < 1e-5, "padding samples receive no noise"
        samples.append(added[:, :100].ravel())
    return np.concatenate(samples)


@pytest.mark.parametrize("kind", KINDS)
def test_encrypted_noise_has_the_configured_distribution(keyring: SecretKeyring, kind: str) -> None:
    sample = _encrypted_noise(keyring, kind, VARIANCE, seed=21)
    assert sample.size == 16_000
    assert _rejections(sample, kind, VARIANCE) == []
    wrong = _encrypted_noise(keyring, kind, WRONG_RATIO * VARIANCE, seed=22)
    assert "variance" in _rejections(wrong, kind, VARIANCE)
    other = KINDS[1 - KINDS.index(kind)]
    assert "ks" in _rejections(sample, other, VARIANCE)


@pytest.mark.parametrize("defense_type", [GaussianNoise, LaplaceNoise])
def test_encrypted_and_plaintext_noise_are_the_same_draws(keyring: SecretKeyring, defense_type: type[AdditiveNoise]) -> None:
    """Same generator state, same noise: the placement cannot change the distribution."""
    config = defense_type.config_type(variance=0.3)
    plain = defense_type(config, np.random.default_rng(5))
    under = defense_type(config, np.random.default_rng(5))
    x = np.random.default_rng(6).uniform(-1, 1, size=(64, 32))
    expected = plain.apply(x, _ctx(0, 64))
    got = under.apply_encrypted(EncryptedTensor.encrypt(keyring, x, ROWS, levels=0), _ctx(0, 64)).decrypt()
    np.testing.assert_allclose(got, expected, atol=1e-5)
