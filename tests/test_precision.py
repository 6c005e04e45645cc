"""How the one-key-holder schemes scale gradients for precision (securevfl/schemes/label_private/precision.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from securevfl.config import load_config
from securevfl.protocols.errors import ProtocolError
from securevfl.schemes.label_private.precision import SCALE_META, gradient_scale, received_gradient_scale
from securevfl.training import run_training

DIGITS_CKKS = Path(__file__).resolve().parents[1] / "examples" / "digits_ckks.toml"


def test_the_scale_is_the_batch_size_halved_until_the_rows_fit_the_bound() -> None:
    assert gradient_scale(64) == 64.0
    assert gradient_scale(64, np.array([0.05, -0.01]), bound=4.0) == 64.0  # 3.2 <= 4
    assert gradient_scale(64, np.array([0.1, -0.02]), bound=4.0) == 32.0  # 6.4 > 4, 3.2 fits
    assert gradient_scale(64, np.array([-1.0]), bound=4.0) == 4.0
    assert gradient_scale(50, np.zeros(3), bound=4.0) == 50.0
    for rows, peak in [(64, 0.37), (17, 2.5), (1, 9.0)]:
        factor = gradient_scale(rows, np.array([peak]), bound=4.0)
        assert peak * factor <= 4.0 and (factor == rows or peak * factor * 2 > 4.0)
        assert math.log2(rows / factor) == int(math.log2(rows / factor))


@pytest.mark.parametrize("value", [None, 0, -4, float("nan"), float("inf"), 48.0, 128.0, True, "64"])
def test_a_receiver_refuses_a_scale_that_is_not_a_halving_of_its_batch(value: object) -> None:
    meta = {} if value is None else {SCALE_META: value}
    with pytest.raises(ProtocolError, match="active"):
        received_gradient_scale(meta, 64, "active")


def test_a_receiver_accepts_every_halving() -> None:
    assert [received_gradient_scale({SCALE_META: 64 / 2**k}, 64, "active") for k in range(4)] == [64, 32, 16, 8]


def test_noisy_rows_past_the_bound_are_sent_at_a_smaller_scale_and_train_exactly_like_plaintext() -> None:
    """Label-DP noise (z = 1: per-sample sigma 1.41) pushes rows past gradient_bound = 4: the scale halves, nothing diverges.

    The noise comes from the run seed (reproducible), so the unflooded CKKS run and the plaintext run
    draw the same noise and must agree up to CKKS error.
    """
    setting = [
        "train.epochs=1", "train.progress=false", "data.train_limit=256", "data.test_limit=64",
        'defense=[{kind="label_dp", on="gradient", noise_multiplier=1.0, noise_source="run_seed"}]',
    ]
    plain = run_training(load_config(DIGITS_CKKS, [*setting, "protection.scheme=plain"]))
    blind = run_training(load_config(DIGITS_CKKS, [
        *setting, "protection.key_holder=coordinator", "protection.preset=compute", "protection.flooding_bits=0"]))
    assert blind["outcome"] == plain["outcome"] == "ok"
    assert abs(blind["history"][-1]["loss"] - plain["history"][-1]["loss"]) < 1e-4
    assert blind["history"][-1]["main_accuracy"] == plain["history"][-1]["main_accuracy"]
