"""Sparsification: exact kept counts, top-k choice, mass conservation, row carrying, momentum correction."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from securevfl.crypto import ROWS, EncryptedTensor, SecretKeyring, get_preset
from securevfl.defenses import MessageContext, Placement, PlacementError, Sparsification, SparsificationConfig, kept_entries


def _ctx(step: int, rows: int, receiver: str = "passive_1", sample_axis: int = 0) -> MessageContext:
    return MessageContext(kind="gradient", sender="active", receiver=receiver, step=step, rows=rows, sample_axis=sample_axis)


def _sparsifier(seed: int = 0, **config: object) -> Sparsification:
    return Sparsification(SparsificationConfig(**config), np.random.default_rng(seed))


def _pad(a: np.ndarray | None, rows: int, width: int, dtype: np.dtype) -> np.ndarray:
    """``a`` cut or zero-padded to ``rows`` rows (``None`` is all zeros)."""
    out = np.zeros((rows, width), dtype=dtype)
    if a is not None:
        out[: min(rows, a.shape[0])] = a[:rows]
    return out


# ---------------------------------------------------------------------------- kept counts
@pytest.mark.parametrize(
    ("n", "drop_rate", "kept"),
    [(100, 0.29, 71), (100, 0.99, 1), (10, 0.9, 1), (7, 0.5, 4), (2048, 0.999, 3), (5, 0.0, 5), (0, 0.5, 0), (3, 0.99, 1)],
)
def test_kept_entries_is_the_ceiling_of_the_kept_fraction(n: int, drop_rate: float, kept: int) -> None:
    assert kept_entries(n, drop_rate) == kept


@given(st.integers(0, 10_000), st.integers(0, 999))
def test_kept_entries_matches_exact_arithmetic(n: int, permille: int) -> None:
    drop_rate = permille / 1000
    kept = kept_entries(n, drop_rate)
    assert kept == math.ceil((1 - Fraction(permille, 1000)) * n)
    assert (n == 0 and kept == 0) or 1 <= kept <= n


@pytest.mark.parametrize("selection", ["top_k", "random"])
def test_a_message_without_zeros_keeps_exactly_k_entries(selection: str) -> None:
    defense = _sparsifier(drop_rate=0.9, selection=selection)
    rng = np.random.default_rng(1)
    for step in range(5):
        values = rng.normal(size=(64, 32))
        sent = defense.apply(values, _ctx(step, 64))
        assert np.count_nonzero(sent) == kept_entries(64 * 32, 0.9) == 205


def test_top_k_sends_the_largest_magnitudes_of_message_plus_residual() -> None:
    defense = _sparsifier(drop_rate=0.75)
    rng = np.random.default_rng(2)
    for step in range(4):
        old = defense.residual("active", "passive_1")
        values = rng.normal(size=(16, 8))
        accumulated = values + _pad(old, 16, 8, values.dtype)
        sent = defense.apply(values, _ctx(step, 16))
        magnitudes = np.sort(np.abs(accumulated).ravel())[::-1]
        np.testing.assert_array_equal(np.sort(np.abs(sent[sent != 0]))[::-1], magnitudes[:32])


def test_ties_are_broken_in_row_major_order() -> None:
    defense = _sparsifier(drop_rate=0.5)
    values = np.array([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]])
    sent = defense.apply(values, _ctx(0, 2))
    np.testing.assert_array_equal(sent, [[1.0, -1.0, 1.0], [0.0, 0.0, 0.0]])
    rng = np.random.default_rng(10)
    many_ties = rng.integers(1, 4, size=(32, 32)) * rng.choice([-1.0, 1.0], size=(32, 32))
    flat = many_ties.ravel()
    order = sorted(range(flat.size), key=lambda i: (-abs(flat[i]), i))[: kept_entries(flat.size, 0.7)]
    expected = np.zeros_like(flat)
    expected[order] = flat[order]
    sent = _sparsifier(drop_rate=0.7).apply(many_ties, _ctx(0, 32))
    np.testing.assert_array_equal(sent.ravel(), expected)


def test_zero_drop_rate_sends_everything() -> None:
    defense = _sparsifier(drop_rate=0.0)
    values = np.random.default_rng(3).normal(size=(8, 4))
    np.testing.assert_array_equal(defense.apply(values, _ctx(0, 8)), values)
    assert not np.any(defense.residual("active", "passive_1"))


def test_without_accumulation_nothing_is_kept() -> None:
    defense = _sparsifier(drop_rate=0.5, selection="random", accumulate=False)
    values = np.random.default_rng(4).normal(size=(8, 4))
    sent = defense.apply(values, _ctx(0, 8))
    assert np.count_nonzero(sent) == 16
    np.testing.assert_array_equal(sent[sent != 0], values[sent != 0])
    assert defense.residual("active", "passive_1") is None


# ---------------------------------------------------------------------------- mass conservation
def _messages(dtype: type) -> st.SearchStrategy[list[np.ndarray]]:
    """1-6 messages of a common width and varying row counts (0-12), finite values."""
    elements = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
    return st.integers(1, 6).flatmap(
        lambda width: st.lists(
            st.integers(0, 12).flatmap(lambda rows: arrays(dtype, (rows, width), elements=elements)), min_size=1, max_size=6
        )
    )


@settings(max_examples=150, deadline=None)
@given(
    messages=st.one_of(_messages(np.float32), _messages(np.float64)),
    drop_rate=st.sampled_from([0.0, 0.1, 0.5, 0.75, 0.9, 0.99]),
    selection=st.sampled_from(["top_k", "random"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_mass_is_conserved(messages: list[np.ndarray], drop_rate: float, selection: str, seed: int) -> None:
    """sent + new residual == message + old residual, exactly, at every step, whatever the row counts."""
    defense = _sparsifier(seed, drop_rate=drop_rate, selection=selection)
    for step, values in enumerate(messages):
        rows, width = values.shape
        old = defense.residual("active", "passive_1")
        old_rows = 0 if old is None else old.shape[0]
        sent = defense.apply(values, _ctx(step, rows))
        new = defense.residual("active", "passive_1")
        assert sent.shape == values.shape and sent.dtype == values.dtype
        assert new is not None and new.shape == (max(rows, old_rows), width) and new.dtype == values.dtype
        span = max(rows, old_rows)
        incoming = _pad(values, span, width, values.dtype) + _pad(old, span, width, values.dtype)
        np.testing.assert_array_equal(_pad(sent, span, width, values.dtype) + new, incoming)
        # each entry is either sent or kept, never split
        assert not np.any((_pad(sent, span, width, values.dtype) != 0) & (new != 0))
        k = kept_entries(rows * width, drop_rate)
        nonzero_in = np.count_nonzero(incoming[:rows])
        assert np.count_nonzero(sent) <= k
        if selection == "top_k":
            assert np.count_nonzero(sent) == min(k, nonzero_in)
            if np.any(sent):
                assert np.max(np.abs(new[:rows])) <= np.min(np.abs(sent[sent != 0]))
        else:
            assert np.count_nonzero(sent) >= k - (rows * width - nonzero_in)


def test_shorter_messages_carry_the_other_residual_rows() -> None:
    defense = _sparsifier(drop_rate=0.5)
    first = np.arange(1.0, 17.0).reshape(4, 4)  # 8 largest sent, rows 0-1 withheld
    defense.apply(first, _ctx(0, 4))
    residual = defense.residual("active", "passive_1")
    np.testing.assert_array_equal(residual[2:], 0)
    np.testing.assert_array_equal(residual[:2], first[:2])
    short = np.full((1, 4), 0.5)
    defense.apply(short, _ctx(1, 1))  # takes residual row 0 only
    after = defense.residual("active", "passive_1")
    assert after.shape == (4, 4)
    np.testing.assert_array_equal(after[1:], residual[1:]), "rows beyond the short message are carried untouched"
    long = np.zeros((6, 4))
    defense.apply(long, _ctx(2, 6))
    assert defense.residual("active", "passive_1").shape == (6, 4)


def test_streams_are_kept_per_receiver() -> None:
    defense = _sparsifier(drop_rate=0.5)
    values = np.arange(1.0, 9.0).reshape(2, 4)
    defense.apply(values, _ctx(0, 2, receiver="passive_1"))
    sent_2 = defense.apply(values, _ctx(0, 2, receiver="passive_2"))
    np.testing.assert_array_equal(sent_2, defense.apply(values, _ctx(0, 2, receiver="passive_3")))
    assert defense.residual("active", "passive_4") is None


def test_width_changes_are_refused() -> None:
    defense = _sparsifier(drop_rate=0.5)
    defense.apply(np.ones((2, 4)), _ctx(0, 2))
    with pytest.raises(ValueError, match="4 features"):
        defense.apply(np.ones((2, 3)), _ctx(1, 2))


def test_padding_and_feature_major_messages() -> None:
    """Padding samples pass through; a feature-major message gives the transposed result."""
    values = np.random.default_rng(5).normal(size=(6, 3))
    padded = np.vstack([values, np.full((2, 3), 7.0)])
    sample_major = _sparsifier(drop_rate=0.5).apply(padded, _ctx(0, 6))
    np.testing.assert_array_equal(sample_major[6:], 7.0)
    feature_major = _sparsifier(drop_rate=0.5).apply(np.ascontiguousarray(padded.T), _ctx(0, 6, sample_axis=1))
    np.testing.assert_array_equal(feature_major, sample_major.T)


# ---------------------------------------------------------------------------- momentum correction
def _reference_momentum(messages: list[np.ndarray], drop_rate: float, m: float) -> list[np.ndarray]:
    """Lin et al.'s correction written out for equal-sized messages: u = m u + g; v += u; send top-k of v."""
    u = np.zeros_like(messages[0])
    v = np.zeros_like(messages[0])
    k = kept_entries(u.size, drop_rate)
    sent = []
    for g in messages:
        u = m * u + g
        v = v + u
        chosen = np.argsort(-np.abs(v.ravel()), kind="stable")[:k]
        mask = np.zeros(v.size, dtype=bool)
        mask[chosen] = True
        mask = mask.reshape(v.shape)
        sent.append(np.where(mask, v, 0.0))
        u = np.where(mask, 0.0, u)
        v = np.where(mask, 0.0, v)
    return sent


def test_momentum_correction_follows_lin_et_al() -> None:
    messages = list(np.random.default_rng(6).normal(size=(6, 8, 4)))
    defense = _sparsifier(drop_rate=0.75, momentum_correction=True, momentum=0.5)
    got = [defense.apply(g, _ctx(i, 8)) for i, g in enumerate(messages)]
    for mine, ref in zip(got, _reference_momentum(messages, 0.75, 0.5), strict=True):
        np.testing.assert_array_equal(mine, ref)


def test_momentum_zero_is_plain_accumulation() -> None:
    messages = list(np.random.default_rng(7).normal(size=(5, 8, 4)))
    with_m = _sparsifier(drop_rate=0.75, momentum_correction=True, momentum=0.0)
    plain = _sparsifier(drop_rate=0.75)
    for i, g in enumerate(messages):
        np.testing.assert_array_equal(with_m.apply(g, _ctx(i, 8)), plain.apply(g, _ctx(i, 8)))


@settings(max_examples=60, deadline=None)
@given(messages=_messages(np.float64), drop_rate=st.sampled_from([0.0, 0.5, 0.9]), momentum=st.sampled_from([0.0, 0.5, 0.9]))
def test_momentum_correction_invariants(messages: list[np.ndarray], drop_rate: float, momentum: float) -> None:
    """sent + v' == v + (m u + g) on the message's rows; sent entries are zeroed in u and v; carried rows frozen."""
    defense = _sparsifier(drop_rate=drop_rate, momentum_correction=True, momentum=momentum)
    for step, g in enumerate(messages):
        rows, width = g.shape
        u_old = defense.velocity("active", "passive_1")
        v_old = defense.residual("active", "passive_1")
        old_rows = 0 if v_old is None else v_old.shape[0]
        span = max(rows, old_rows)
        sent = defense.apply(g, _ctx(step, rows))
        u_new = defense.velocity("active", "passive_1")
        v_new = defense.residual("active", "passive_1")
        u_head = momentum * _pad(u_old, rows, width, g.dtype) + g
        np.testing.assert_array_equal(sent + v_new[:rows], _pad(v_old, rows, width, g.dtype) + u_head)
        assert not np.any(u_new[:rows][sent != 0]), "sent entries restart their velocity"
        withheld = v_new[:rows] != 0
        np.testing.assert_array_equal(u_new[:rows][withheld], u_head[withheld])
        np.testing.assert_array_equal(v_new[rows:], _pad(v_old, span, width, g.dtype)[rows:])
        np.testing.assert_array_equal(u_new[rows:], _pad(u_old, span, width, g.dtype)[rows:])


# ---------------------------------------------------------------------------- under encryption
@pytest.fixture(scope="module")
def keyring() -> SecretKeyring:
    return SecretKeyring.generate(get_preset("compute"))


def test_random_k_under_encryption_is_the_plaintext_mask(keyring: SecretKeyring) -> None:
    config = SparsificationConfig(drop_rate=0.75, selection="random", accumulate=False, placement=Placement.UNDER_ENCRYPTION)
    plain = Sparsification(config, np.random.default_rng(8))
    under = Sparsification(config, np.random.default_rng(8))
    x = np.random.default_rng(9).uniform(0.5, 1.0, size=(16, 40))  # feature-major, 32 real samples, 8 padding
    x[:, 32:] = 0.0
    ctx = _ctx(0, 32, sample_axis=1)
    tensor = EncryptedTensor.encrypt(keyring, x, ROWS, levels=1)
    out = under.apply_encrypted(tensor, ctx)
    assert out.levels_left == tensor.levels_left - 1
    expected = plain.apply(x, ctx)
    np.testing.assert_allclose(out.decrypt(), expected, atol=1e-5)
    assert np.count_nonzero(expected) == kept_entries(16 * 32, 0.75)


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"selection": "top_k"}, "needs the plaintext"),
        ({"selection": "random", "accumulate": True}, "losing one multiplicative level per step"),
        ({"selection": "random", "accumulate": False}, "needs one multiplicative level, but only 0"),
    ],
)
def test_impossible_encrypted_sparsification_is_refused(keyring: SecretKeyring, config: dict, reason: str) -> None:
    defense = _sparsifier(drop_rate=0.5, **config)
    tensor = EncryptedTensor.encrypt(keyring, np.ones((4, 4)), ROWS, levels=0)
    with pytest.raises(PlacementError, match=reason):
        defense.apply_encrypted(tensor, _ctx(0, 4))
