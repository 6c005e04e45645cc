"""Kernels (sums, matmul, row gather/replace) against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto import (
    COLUMNS,
    FLAT,
    ROWS,
    DepthError,
    EncryptedTensor,
    LayoutError,
    MatmulPlan,
    MissingRotationKeyError,
    PublicKeyring,
    SecretKeyring,
    get_preset,
    rotations,
)

TOL = 1e-4  # a few key switches and one rescale: errors stay around 1e-6 for values of order 1


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.random.default_rng(3).uniform(-1, 1, (64, 32))


@pytest.mark.parametrize("layout", [ROWS, COLUMNS])
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_sums_match_numpy(
    compute_public: PublicKeyring, compute_secret: SecretKeyring, batch: np.ndarray, layout: str, axis: int | None
) -> None:
    tensor = EncryptedTensor.encrypt(compute_public, batch, layout, bound=1)
    result = tensor.sum(axis)
    expected = batch.sum(axis=axis)
    assert result.shape == np.shape(expected)
    np.testing.assert_allclose(result.decrypt(compute_secret), expected, atol=TOL)


def test_sums_over_several_ciphertexts_and_flat_views(compute_secret: SecretKeyring) -> None:
    values = np.random.default_rng(4).uniform(-1, 1, (300, 20))  # 300 rows at stride 32: 3 ciphertexts
    rows = EncryptedTensor.encrypt(compute_secret, values, ROWS, bound=1)
    assert rows.num_ciphertexts == 3
    np.testing.assert_allclose(rows.sum(0).decrypt(), values.sum(0), atol=TOL)
    np.testing.assert_allclose(rows.sum(1).decrypt(), values.sum(1), atol=TOL)
    np.testing.assert_allclose(rows.sum().decrypt(), values.sum(), atol=TOL)
    flat = EncryptedTensor.encrypt(compute_secret, values[:, :16], FLAT, bound=1)  # power-of-two width
    np.testing.assert_allclose(flat.sum(0).decrypt(), values[:, :16].sum(0), atol=TOL)
    cube = np.random.default_rng(5).uniform(-1, 1, (10, 3, 4))
    cube_rows = EncryptedTensor.encrypt(compute_secret, cube, ROWS, bound=1)
    np.testing.assert_allclose(cube_rows.sum(0).decrypt(), cube.sum(0), atol=TOL)
    with pytest.raises(LayoutError):
        cube_rows.sum(1)
    with pytest.raises(LayoutError, match="ROWS or COLUMNS"):
        EncryptedTensor.encrypt(compute_secret, values, FLAT, bound=1).sum(0)


def test_reducing_a_reduction_zeroes_the_padding_first(compute_secret: SecretKeyring, batch: np.ndarray) -> None:
    tensor = EncryptedTensor.encrypt(compute_secret, batch, ROWS, bound=1)
    row_sums = tensor.sum(1)
    assert not row_sums.padding_clean
    total = row_sums.sum()
    assert total.levels_left == tensor.levels_left - 1  # one mask multiply
    np.testing.assert_allclose(total.decrypt(), batch.sum(), atol=TOL)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.05, 0.3]))
def test_matmul_matches_numpy(
    compute_public: PublicKeyring, compute_secret: SecretKeyring, batch: np.ndarray, seed: int, scale: float
) -> None:
    weights = np.random.default_rng(seed).normal(0, scale, (32, 32))
    tensor = EncryptedTensor.encrypt(compute_public, batch, ROWS, bound=1)
    product = tensor @ weights
    assert product.shape == (64, 32) and product.layout is ROWS and product.levels_left == 1
    np.testing.assert_allclose(product.decrypt(compute_secret), batch @ weights, atol=TOL)


def test_matmul_narrow_output_multi_ciphertext_and_plan_reuse(compute_secret: SecretKeyring) -> None:
    rng = np.random.default_rng(6)
    values = rng.uniform(-1, 1, (300, 16))  # stride 16: 256 rows per ciphertext -> 2 ciphertexts
    weights = rng.normal(0, 0.3, (16, 8))
    tensor = EncryptedTensor.encrypt(compute_secret, values, ROWS, bound=1)
    assert tensor.num_ciphertexts == 2
    plan = MatmulPlan(compute_secret, tensor.packing, weights)
    first, second = tensor @ plan, (tensor * 1.0) @ plan
    np.testing.assert_allclose(first.decrypt(), values @ weights, atol=TOL)
    np.testing.assert_allclose(second.decrypt(), values @ weights, atol=TOL)
    # the chained result can be multiplied again (depth 2)
    np.testing.assert_allclose((first @ rng.normal(0, 0.3, (8, 8))).decrypt().shape, (300, 8))


def test_left_matmul_through_the_columns_layout(compute_secret: SecretKeyring, batch: np.ndarray) -> None:
    """X^T g: the parameter-gradient shape of a linear layer, with g encrypted feature-major."""
    inputs = np.random.default_rng(8).uniform(-1, 1, (64, 16))
    gradient = EncryptedTensor.encrypt(compute_secret, batch, COLUMNS, bound=1)
    result = inputs.T @ gradient
    assert result.shape == (16, 32) and result.layout is COLUMNS
    np.testing.assert_allclose(result.decrypt(), inputs.T @ batch, atol=TOL)


def test_matmul_layout_and_shape_errors(compute_secret: SecretKeyring, batch: np.ndarray) -> None:
    rows = EncryptedTensor.encrypt(compute_secret, batch, ROWS, bound=1)
    with pytest.raises(LayoutError, match="cannot multiply"):
        rows @ np.ones((31, 4))
    with pytest.raises(LayoutError, match="stride"):
        rows @ np.ones((32, 40))
    with pytest.raises(LayoutError, match="COLUMNS"):
        np.ones((3, 64)) @ rows
    with pytest.raises(LayoutError, match="ROWS"):
        EncryptedTensor.encrypt(compute_secret, batch, COLUMNS, bound=1) @ np.ones((32, 4))
    with pytest.raises(LayoutError, match="ROWS"):
        EncryptedTensor.encrypt(compute_secret, np.ones((4, 3, 2)), ROWS) @ np.ones((6, 2))


def test_matmul_needs_its_rotation_keys(batch: np.ndarray) -> None:
    keyring = SecretKeyring.generate(get_preset("compute"), rotations.matmul_steps(32, 32)[:3])
    tensor = EncryptedTensor.encrypt(keyring, batch, ROWS, bound=1)
    with pytest.raises(MissingRotationKeyError, match="rotation_steps"):
        tensor @ np.eye(32)
    exact = keyring.with_rotation_steps(rotations.matmul_steps(32, 32))
    tensor = EncryptedTensor.encrypt(exact, batch, ROWS, bound=1)
    np.testing.assert_allclose((tensor @ np.eye(32)).decrypt(), batch, atol=TOL)


def test_matmul_overflow_is_refused(compute_secret: SecretKeyring, batch: np.ndarray) -> None:
    from crypto import PrecisionError

    tensor = EncryptedTensor.encrypt(compute_secret, batch, ROWS)  # default bound 512
    with pytest.raises(PrecisionError, match="matmul"):
        tensor @ np.full((32, 32), 50.0)


@pytest.mark.parametrize("row", [0, 5, 63])
def test_gather_row(compute_public: PublicKeyring, compute_secret: SecretKeyring, batch: np.ndarray, row: int) -> None:
    tensor = EncryptedTensor.encrypt(compute_public, batch, ROWS, bound=1)
    gathered = tensor.gather_row(row, scale=-2.5)
    assert gathered.shape == (1, 32) and gathered.levels_left == 1
    np.testing.assert_allclose(gathered.decrypt(compute_secret), -2.5 * batch[row : row + 1], atol=TOL)


def test_gather_row_from_a_later_ciphertext(compute_secret: SecretKeyring) -> None:
    values = np.random.default_rng(9).uniform(-1, 1, (300, 32))  # 128 rows per ciphertext
    tensor = EncryptedTensor.encrypt(compute_secret, values, ROWS, bound=1)
    np.testing.assert_allclose(tensor.gather_row(-3).decrypt(), values[-3:-2], atol=TOL)
    with pytest.raises(LayoutError, match="out of range"):
        tensor.gather_row(300)


@pytest.mark.parametrize("targets", [[3], [0, 1, 2], [10, 40, 63]])
def test_replace_rows_with_a_gathered_scaled_row(
    compute_public: PublicKeyring, compute_secret: SecretKeyring, batch: np.ndarray, targets: list[int]
) -> None:
    """The ciphertext-domain gradient replacement: rows j1..jn := gamma * row i."""
    gamma, source = 10.0, 17
    tensor = EncryptedTensor.encrypt(compute_public, batch, ROWS, bound=1)
    expected = batch.copy()
    expected[targets] = gamma * batch[source]
    folded = tensor.replace_rows(targets, tensor.gather_row(source, scale=gamma))
    assert folded.levels_left == 1  # gamma folded into the gather: one level in total
    np.testing.assert_allclose(folded.decrypt(compute_secret), expected, atol=TOL)
    separate = tensor.replace_rows(targets, tensor.gather_row(source), scale=gamma)
    assert separate.levels_left == 0
    np.testing.assert_allclose(separate.decrypt(compute_secret), expected, atol=TOL)


def test_replace_rows_with_a_row_from_another_message(compute_secret: SecretKeyring) -> None:
    rng = np.random.default_rng(10)
    values, recorded = rng.uniform(-1, 1, (300, 32)), rng.uniform(-1, 1, 32)
    tensor = EncryptedTensor.encrypt(compute_secret, values, ROWS, bound=1)
    row = EncryptedTensor.encrypt(compute_secret, recorded, FLAT, bound=1)
    out = tensor.replace_rows([5, 200, 299], row, scale=3.0)
    expected = values.copy()
    expected[[5, 200, 299]] = 3.0 * recorded
    np.testing.assert_allclose(out.decrypt(), expected, atol=TOL)
    with pytest.raises(LayoutError, match="replace_rows needs"):
        tensor.replace_rows([1], EncryptedTensor.encrypt(compute_secret, recorded[:16], FLAT))


def test_row_kernels_need_depth_and_rows_layout(compute_secret: SecretKeyring, batch: np.ndarray) -> None:
    last = EncryptedTensor.encrypt(compute_secret, batch, ROWS, bound=1, levels=0)
    with pytest.raises(DepthError):
        last.gather_row(1)
    with pytest.raises(LayoutError, match="ROWS"):
        EncryptedTensor.encrypt(compute_secret, batch, COLUMNS, bound=1).gather_row(1)


def test_rotation_step_helpers_cover_the_kernels(batch: np.ndarray) -> None:
    params = get_preset("compute")
    tensor_packing = EncryptedTensor.encrypt(
        SecretKeyring.generate(params), batch, ROWS, bound=1
    ).packing
    steps = set(rotations.sum_steps(tensor_packing, 0)) | set(rotations.sum_steps(tensor_packing, 1))
    steps |= set(rotations.row_gather_steps(tensor_packing, 9)) | set(rotations.row_replace_steps(tensor_packing, [2, 4]))
    keyring = SecretKeyring.generate(params, steps)
    tensor = EncryptedTensor.encrypt(keyring, batch, ROWS, bound=1)
    np.testing.assert_allclose(tensor.sum(0).decrypt(), batch.sum(0), atol=TOL)
    np.testing.assert_allclose(tensor.sum(1).decrypt(), batch.sum(1), atol=TOL)
    replaced = tensor.replace_rows([2, 4], tensor.gather_row(9))
    expected = batch.copy()
    expected[[2, 4]] = batch[9]
    np.testing.assert_allclose(replaced.decrypt(), expected, atol=TOL)
