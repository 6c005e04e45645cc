"""Round trips and elementwise operations against numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securevfl.crypto import (
    COLUMNS,
    FLAT,
    ROWS,
    ContextMismatchError,
    DepthError,
    EncryptedTensor,
    LayoutError,
    PrecisionError,
    PublicKeyring,
    SecretKeyring,
)

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

shapes = st.lists(st.integers(1, 70), min_size=1, max_size=3).map(tuple)


@st.composite
def array_and_layout(draw: st.DrawFn) -> tuple[np.ndarray, str]:
    shape = draw(shapes)
    fits_rows = math.prod(shape[1:]) <= 2048  # a ROWS block must fit one transport ciphertext
    layout = draw(st.sampled_from([FLAT] + ([ROWS] if fits_rows else []) + ([COLUMNS] if len(shape) == 2 else [])))
    seed = draw(st.integers(0, 2**31 - 1))
    magnitude = draw(st.sampled_from([1e-3, 1.0, 500.0]))
    values = np.random.default_rng(seed).uniform(-magnitude, magnitude, shape)
    return values, layout


@SETTINGS
@given(case=array_and_layout(), role=st.sampled_from(["secret", "public"]))
def test_round_trip_within_the_stated_precision(
    case: tuple[np.ndarray, str], role: str, transport_secret: SecretKeyring, transport_public: PublicKeyring
) -> None:
    values, layout = case
    keyring = transport_secret if role == "secret" else transport_public
    tensor = EncryptedTensor.encrypt(keyring, values, layout)
    assert tensor.shape == values.shape
    restored = EncryptedTensor.from_bytes(transport_secret, tensor.to_bytes()).decrypt()
    assert restored.shape == values.shape and restored.dtype == np.float64
    assert np.max(np.abs(restored - values)) <= transport_secret.params.expected_precision


@SETTINGS
@given(case=array_and_layout())
def test_compute_round_trip_spills_into_several_ciphertexts(
    case: tuple[np.ndarray, str], compute_public: PublicKeyring, compute_secret: SecretKeyring
) -> None:
    values, layout = case
    tensor = EncryptedTensor.encrypt(compute_public, np.tile(values, 3) if values.ndim == 1 else values, layout)
    expected = np.tile(values, 3) if values.ndim == 1 else values
    assert np.max(np.abs(tensor.decrypt(compute_secret) - expected)) <= compute_secret.params.expected_precision


def test_many_ciphertexts_and_layout_geometry(transport_secret: SecretKeyring) -> None:
    values = np.random.default_rng(0).uniform(-1, 1, (100, 50))
    flat = EncryptedTensor.encrypt(transport_secret, values, FLAT)
    rows = EncryptedTensor.encrypt(transport_secret, values, ROWS)
    cols = EncryptedTensor.encrypt(transport_secret, values, COLUMNS)
    assert flat.num_ciphertexts == math.ceil(5000 / 2048) == 3
    assert rows.num_ciphertexts == math.ceil(100 / (2048 // 64)) == 4
    assert cols.num_ciphertexts == math.ceil(50 / (2048 // 128)) == 4
    for tensor in (flat, rows, cols):
        np.testing.assert_allclose(tensor.decrypt(), values, atol=1e-6)
    np.testing.assert_allclose(cols.T.decrypt(), values.T, atol=1e-6)


def test_deep_preset_round_trip() -> None:
    from securevfl.crypto import get_preset

    keyring = SecretKeyring.generate(get_preset("deep"))
    values = np.linspace(-3, 3, 5000).reshape(50, 100)
    tensor = EncryptedTensor.encrypt(keyring.public_keyring(), values, ROWS)
    assert tensor.levels_left == keyring.params.depth
    out = EncryptedTensor.from_bytes(keyring, tensor.to_bytes(mod_switch_to_last=True)).decrypt()
    assert np.max(np.abs(out - values)) <= keyring.params.expected_precision


def test_dtypes_and_torch(compute_secret: SecretKeyring) -> None:
    as_float32 = EncryptedTensor.encrypt(compute_secret, np.ones((2, 3), dtype=np.float32))
    assert as_float32.decrypt().dtype == np.float32
    source = torch.randn(8, 4, dtype=torch.float32)
    tensor = EncryptedTensor.encrypt(compute_secret, source, ROWS)
    out = tensor.decrypt_torch()
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (8, 4)
    torch.testing.assert_close(out, source, atol=1e-5, rtol=0)
    integers = EncryptedTensor.encrypt(compute_secret, [1, 2, 3])
    np.testing.assert_allclose(integers.decrypt(), [1, 2, 3], atol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused(compute_secret: SecretKeyring, bad: float) -> None:
    with pytest.raises(PrecisionError, match="NaN or Inf"):
        EncryptedTensor.encrypt(compute_secret, np.array([1.0, bad]))
    tensor = EncryptedTensor.encrypt(compute_secret, np.ones(2))
    with pytest.raises(PrecisionError, match="NaN or Inf"):
        tensor + np.array([0.0, bad])
    with pytest.raises(PrecisionError):
        tensor * bad


def test_out_of_range_values_are_refused_naming_the_bound(compute_secret: SecretKeyring) -> None:
    limit = compute_secret.params.max_magnitude
    EncryptedTensor.encrypt(compute_secret, np.array([limit, -limit]))
    with pytest.raises(PrecisionError, match="exceeds the bound 512"):
        EncryptedTensor.encrypt(compute_secret, np.array([limit * 1.01]))
    with pytest.raises(PrecisionError, match="exceeds the bound 2"):
        EncryptedTensor.encrypt(compute_secret, np.array([3.0]), bound=2.0)
    with pytest.raises(PrecisionError, match="ceiling"):
        EncryptedTensor.encrypt(compute_secret, np.array([3.0]), bound=1e9, levels=0)  # last level: 2^19
    EncryptedTensor.encrypt(compute_secret, np.array([3.0]), bound=1e9)  # top level: 2^99 of room
    with pytest.raises(PrecisionError, match="ceiling"):
        EncryptedTensor.encrypt(compute_secret, np.array([3.0]), bound=1e31)


def test_worst_case_growth_is_refused_before_computing(compute_secret: SecretKeyring) -> None:
    tensor = EncryptedTensor.encrypt(compute_secret, np.ones(4), levels=1)  # bound 512
    with pytest.raises(PrecisionError, match="ceiling"):
        tensor * 2000.0  # lands on the last level, above its 2^19
    last = EncryptedTensor.encrypt(compute_secret, np.ones(4), levels=0)
    with pytest.raises(PrecisionError, match="ceiling"):
        EncryptedTensor.sum_of([last] * 1100)
    small = EncryptedTensor.encrypt(compute_secret, np.ones(4), bound=1.0)
    assert (small * 2000.0).value_bound == 2000.0


def test_elementwise_operations_match_numpy(compute_secret: SecretKeyring, compute_public: PublicKeyring, rng: np.random.Generator) -> None:
    a_values, b_values = rng.uniform(-2, 2, (2, 30, 20))
    noise = rng.normal(0, 0.1, (30, 20))
    mask = (rng.random((30, 20)) < 0.5).astype(float)
    a = EncryptedTensor.encrypt(compute_public, a_values, ROWS, bound=4)
    b = EncryptedTensor.encrypt(compute_public, b_values, ROWS, bound=4)
    checks = {
        "add": (a + b, a_values + b_values),
        "sub": (a - b, a_values - b_values),
        "neg": (-a, -a_values),
        "noise": (a + noise, a_values + noise),
        "plain_minus": (1.0 - a, 1.0 - a_values),
        "scale": (a * -0.37, a_values * -0.37),
        "divide": (a / 4.0, a_values / 4.0),
        "mask": (a * mask, a_values * mask),
        "broadcast_row": (a * np.arange(20), a_values * np.arange(20)),
        "sum_of": (EncryptedTensor.sum_of([a, b, a]), 2 * a_values + b_values),
        "chain": ((a * mask + noise) * 0.5 - b, (a_values * mask + noise) * 0.5 - b_values),
    }
    for name, (encrypted, expected) in checks.items():
        np.testing.assert_allclose(encrypted.decrypt(compute_secret), expected, atol=1e-5, err_msg=name)


def test_mismatches_raise_clear_errors(
    compute_secret: SecretKeyring, other_compute_secret: SecretKeyring, transport_secret: SecretKeyring
) -> None:
    a = EncryptedTensor.encrypt(compute_secret, np.ones((4, 8)), ROWS)
    with pytest.raises(LayoutError, match="shape mismatch"):
        a + EncryptedTensor.encrypt(compute_secret, np.ones((8, 4)), ROWS)
    with pytest.raises(LayoutError, match="layout mismatch"):
        a + EncryptedTensor.encrypt(compute_secret, np.ones((4, 8)), FLAT)
    with pytest.raises(LayoutError, match="stride"):
        a - EncryptedTensor.encrypt(compute_secret, np.ones((4, 8)), ROWS, stride=16)
    with pytest.raises(ContextMismatchError):
        a + EncryptedTensor.encrypt(other_compute_secret, np.ones((4, 8)), ROWS)
    with pytest.raises(ContextMismatchError):
        a + EncryptedTensor.encrypt(transport_secret, np.ones((4, 8)), ROWS)
    with pytest.raises(ContextMismatchError):
        a.decrypt(other_compute_secret)
    with pytest.raises(LayoutError, match="broadcast"):
        a + np.ones(3)
    with pytest.raises(TypeError, match="ciphertext-by-ciphertext"):
        a * a
    with pytest.raises(LayoutError, match="COLUMNS layout is for 2-D"):
        EncryptedTensor.encrypt(compute_secret, np.ones(3), COLUMNS)
    with pytest.raises(LayoutError, match="does not fit one ciphertext"):
        EncryptedTensor.encrypt(compute_secret, np.ones((2, 5000)), ROWS)
    with pytest.raises(LayoutError, match="power of two"):
        EncryptedTensor.encrypt(compute_secret, np.ones((4, 8)), ROWS, stride=12)


def test_depth_is_enforced(transport_secret: SecretKeyring, compute_secret: SecretKeyring) -> None:
    transport = EncryptedTensor.encrypt(transport_secret, np.ones(4))
    with pytest.raises(DepthError, match="none left"):
        transport * 2.0
    np.testing.assert_allclose((transport + transport).decrypt(), 2 * np.ones(4), atol=1e-6)
    tensor = EncryptedTensor.encrypt(compute_secret, np.ones(4), bound=1)
    assert tensor.levels_left == 2
    twice = tensor * 0.5 * 0.5
    assert twice.levels_left == 0
    with pytest.raises(DepthError):
        twice * 0.5
    low = EncryptedTensor.encrypt(compute_secret, np.ones(4), levels=0)
    assert low.levels_left == 0
    # operands at different levels are aligned automatically
    np.testing.assert_allclose((twice + tensor).decrypt(), 1.25 * np.ones(4), atol=1e-5)
