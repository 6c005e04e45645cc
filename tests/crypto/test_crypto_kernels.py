"""Kernels (sums, matmul, row gather/replace) against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securevfl.crypto import (
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
    from securevfl.crypto import PrecisionError

    weights = np.full((32, 32), 50.0)  # worst case 512 x 32 x 50 = 819,200 > 2^19, the last level's ceiling
    last = EncryptedTensor.encrypt(compute_secret, batch, ROWS, levels=1)  # default bound 512
    with pytest.raises(PrecisionError, match="matmul"):
        last @ weights
    # from the top level the result lands one level higher, where 40 more bits of room remain
    high = EncryptedTensor.encrypt(compute_secret, batch, ROWS) @ weights
    assert high.levels_left == 1
    np.testing.assert_allclose(high.decrypt(compute_secret), batch @ weights, rtol=1e-6, atol=1e-3)


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


# --------------------------------------------------------------------------- replicated matmul


@pytest.fixture(scope="module")
def replicated_secret() -> SecretKeyring:
    """Exactly the keys of the replicated products below (no power-of-two keys to compose with)."""
    steps = (
        set(rotations.matmul_steps(32, 32, stride=64))
        | set(rotations.matmul_steps(32, 16, stride=64))
        | set(rotations.matmul_steps(64, 16, stride=128))
    )
    return SecretKeyring.generate(get_preset("compute"), steps)


def _matmul_tolerance(keyring: SecretKeyring, bound: float, weights: np.ndarray) -> float:
    """The preset's stated round-trip precision, scaled by the product's operand bounds.

    A fresh error e becomes at most e * (largest column L1 norm of W); the rotations, rescales and
    the encoding of W add errors of the same order as e itself, for values of order ``bound``.
    """
    l1 = float(np.abs(weights).sum(axis=0).max()) if weights.size else 0.0
    return 4 * keyring.params.expected_precision * (1 + bound * (1 + l1))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch_rows=st.integers(1, 64),
    d=st.integers(1, 32),
    k=st.integers(1, 32),
    seed=st.integers(0, 2**31 - 1),
    public=st.booleans(),
)
def test_replicated_matmul_matches_numpy(
    compute_public: PublicKeyring, compute_secret: SecretKeyring, batch_rows: int, d: int, k: int, seed: int, public: bool
) -> None:
    rng = np.random.default_rng(seed)
    values = rng.uniform(-1, 1, (batch_rows, d))
    weights = rng.normal(0, 0.3, (d, k))
    stride = rotations.matmul_stride(d, k)
    assert stride >= rotations.replicated_copies(d, k) * d >= d + k - 1
    keyring = compute_public if public else compute_secret
    tensor = EncryptedTensor.encrypt(keyring, values, ROWS, bound=1, stride=stride)
    # forced: with the power-of-two keys of these keyrings "auto" may prefer the general path's exact keys
    plan = MatmulPlan(keyring, tensor.packing, weights, method="replicated")
    assert plan.num_diagonals == d
    product = tensor @ plan
    assert product.shape == (batch_rows, k) and product.layout is ROWS and product.packing.stride == stride
    assert product.padding_clean and product.levels_left == tensor.levels_left - 1
    result = product.decrypt(compute_secret)
    np.testing.assert_allclose(result, values @ weights, atol=_matmul_tolerance(compute_secret, 1, weights))
    # padding really is zero: the raw slots outside the k output columns of every block decrypt to ~0
    raw = np.concatenate([compute_secret.decrypt_vector(c) for c in product.ciphertexts]).reshape(-1, stride)
    raw[:batch_rows, :k] = 0.0
    assert np.max(np.abs(raw)) < _matmul_tolerance(compute_secret, 1, weights)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batch_rows=st.integers(1, 64),
    d=st.integers(1, 32),
    k=st.integers(1, 32),
    seed=st.integers(0, 2**31 - 1),
)
def test_diagonal_matmul_matches_numpy_for_random_shapes(
    compute_secret: SecretKeyring, batch_rows: int, d: int, k: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    values = rng.uniform(-1, 1, (batch_rows, d))
    weights = rng.normal(0, 0.3, (d, k))
    tensor = EncryptedTensor.encrypt(compute_secret, values, ROWS, bound=1, stride=rotations.next_power_of_two(max(d, k)))
    plan = MatmulPlan(compute_secret, tensor.packing, weights, method="diagonal")
    assert plan.num_diagonals == d + k - 1
    np.testing.assert_allclose(
        (tensor @ plan).decrypt(), values @ weights, atol=_matmul_tolerance(compute_secret, 1, weights)
    )


def test_replicated_matmul_with_exactly_its_keys_and_a_fresh_one_level_input() -> None:
    rng = np.random.default_rng(11)
    values, weights = rng.uniform(-1, 1, (64, 32)), rng.normal(0, 0.2, (32, 32))
    steps = rotations.matmul_steps(32, 32, stride=64)
    assert steps == [-32, 1, 4]  # row copy, input rotations (rot_1 chained), output groups (rot_4, Horner)
    keyring = SecretKeyring.generate(get_preset("compute"), steps)
    public = PublicKeyring.from_bytes(keyring.public_keyring().to_bytes())
    tol = _matmul_tolerance(keyring, 1, weights)
    for levels in (None, 1):
        tensor = EncryptedTensor.encrypt(public, values, ROWS, bound=1, stride=64, levels=levels)
        wire = EncryptedTensor.from_bytes(public, tensor.to_bytes())
        plan = MatmulPlan(public, wire.packing, weights)
        assert plan.method == "replicated" and plan.rotations == 11
        product = wire @ plan
        assert product.levels_left == tensor.levels_left - 1
        np.testing.assert_allclose(product.decrypt(keyring), values @ weights, atol=tol)
        np.testing.assert_allclose((wire @ weights).decrypt(keyring), values @ weights, atol=tol)
    # the general path's keys are not there: forcing it names a missing step
    tensor = EncryptedTensor.encrypt(public, values, ROWS, bound=1, stride=64)
    with pytest.raises(MissingRotationKeyError):
        tensor @ MatmulPlan(public, tensor.packing, weights, method="diagonal")
    # a default-stride tensor cannot take the replicated path, and these keys do not serve the general one
    with pytest.raises(MissingRotationKeyError):
        EncryptedTensor.encrypt(public, values, ROWS, bound=1) @ weights


def test_matmul_steps_stay_backward_compatible() -> None:
    assert rotations.matmul_steps(32, 32) == rotations.diagonal_matmul_steps(32, 32)
    assert rotations.matmul_steps(32, 32, stride=32) == rotations.diagonal_matmul_steps(32, 32)
    assert rotations.matmul_steps(32, 32, stride=64) == rotations.replicated_matmul_steps(32, 32)
    assert rotations.matmul_stride(32, 32) == 64 and rotations.matmul_stride(16, 32) == 64
    assert rotations.replicated_split(32) == (4, 8)
    # auto keeps the general path when the keyring only holds its keys, even with room to replicate
    keyring = SecretKeyring.generate(get_preset("compute"), rotations.matmul_steps(32, 32))
    values = np.random.default_rng(12).uniform(-1, 1, (64, 32))
    tensor = EncryptedTensor.encrypt(keyring, values, ROWS, bound=1, stride=64)
    plan = MatmulPlan(keyring, tensor.packing, np.eye(32))
    assert plan.method == "diagonal"
    np.testing.assert_allclose((tensor @ plan).decrypt(), values, atol=TOL)


def test_replicated_matmul_over_several_ciphertexts_plan_reuse_and_prepare(replicated_secret: SecretKeyring) -> None:
    compute_secret = replicated_secret
    rng = np.random.default_rng(13)
    values = rng.uniform(-1, 1, (300, 32))  # stride 64: 64 rows per ciphertext -> 5 ciphertexts, last one partial
    weights, second = rng.normal(0, 0.2, (32, 32)), rng.normal(0, 0.2, (32, 16))
    tensor = EncryptedTensor.encrypt(compute_secret, values, ROWS, bound=1, stride=64)
    assert tensor.num_ciphertexts == 5
    plan = MatmulPlan(compute_secret, tensor.packing, weights).prepare()
    assert plan.method == "replicated"
    first = tensor @ plan
    again = tensor.mod_switch_to(1) @ plan
    np.testing.assert_allclose(first.decrypt(), values @ weights, atol=TOL)
    np.testing.assert_allclose(again.decrypt(), values @ weights, atol=TOL)
    # the output is clean ROWS with the same stride: it chains into a second replicated product
    chained = first @ second
    np.testing.assert_allclose(chained.decrypt(), values @ weights @ second, atol=TOL)
    with pytest.raises(DepthError):
        plan.prepare(0)


def test_matmul_reads_only_data_slots_when_padding_is_not_clean(compute_secret: SecretKeyring) -> None:
    """Junk in the padding (e.g. bytes from a producer that did not zero it): the general path runs."""
    rng = np.random.default_rng(14)
    values, weights = rng.uniform(-1, 1, (64, 32)), rng.normal(0, 0.2, (32, 32))
    clean = EncryptedTensor.encrypt(compute_secret, values, ROWS, bound=1, stride=64)
    slots = clean.packing.pack(values)[0]
    junk = rng.uniform(-1, 1, slots.shape) * (clean.packing.pack(np.ones_like(values))[0] == 0)
    dirty = EncryptedTensor(
        compute_secret,
        clean.packing,
        [compute_secret.encrypt_vector(slots + junk)],
        value_bound=1,
        dtype=np.float64,
        padding_clean=False,
    )
    np.testing.assert_allclose((dirty @ weights).decrypt(), values @ weights, atol=TOL)
    assert (dirty @ weights).padding_clean


def test_left_matmul_takes_the_replicated_path_with_a_wide_column_stride(replicated_secret: SecretKeyring) -> None:
    compute_secret = replicated_secret
    rng = np.random.default_rng(15)
    gradient = rng.uniform(-1, 1, (64, 32))
    inputs = rng.uniform(-1, 1, (64, 16))
    stride = rotations.matmul_stride(64, 16)  # rows of X are the inner dimension of A @ X
    assert stride == 128
    tensor = EncryptedTensor.encrypt(compute_secret, gradient, COLUMNS, bound=1, stride=stride)
    assert MatmulPlan(compute_secret, tensor.T.packing, inputs).method == "replicated"
    result = inputs.T @ tensor
    np.testing.assert_allclose(result.decrypt(), inputs.T @ gradient, atol=TOL)


def test_matmul_plan_method_errors(compute_secret: SecretKeyring, batch: np.ndarray) -> None:
    tensor = EncryptedTensor.encrypt(compute_secret, batch, ROWS, bound=1)  # stride 32: no room for copies
    with pytest.raises(LayoutError, match="matmul_stride"):
        MatmulPlan(compute_secret, tensor.packing, np.eye(32), method="replicated")
    with pytest.raises(ValueError, match="method"):
        MatmulPlan(compute_secret, tensor.packing, np.eye(32), method="fast")
    assert MatmulPlan(compute_secret, tensor.packing, np.eye(32)).method == "diagonal"


@pytest.mark.parametrize(
    "name",
    ["identity", "permutation", "first_and_last_diagonal", "zeros", "below_precision"],
)
def test_replicated_matmul_with_sparse_weights(replicated_secret: SecretKeyring, name: str) -> None:
    """Empty diagonals and empty groups are skipped (SEAL refuses products with a zero plaintext)."""
    rng = np.random.default_rng(16)
    values = rng.uniform(-1, 1, (64, 32))
    eye = np.eye(32)
    weights = {
        "identity": eye,
        "permutation": np.roll(eye, 5, axis=0),
        # generalized diagonals t = 0 and t = 31 only: groups 0 and 7, the six between are empty
        "first_and_last_diagonal": eye * 0.5 + np.roll(eye, -1, axis=0) * 0.25,
        "zeros": np.zeros((32, 32)),
        "below_precision": np.full((32, 32), 1e-14),
    }[name]
    tensor = EncryptedTensor.encrypt(replicated_secret, values, ROWS, bound=1, stride=64)
    plan = MatmulPlan(replicated_secret, tensor.packing, weights)
    assert plan.method == "replicated"
    product = tensor @ plan
    assert product.levels_left == tensor.levels_left - 1
    np.testing.assert_allclose(product.decrypt(), values @ weights, atol=TOL)
