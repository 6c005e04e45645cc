"""Norm clipping: rows end inside the ball, rows already inside are untouched, directions are kept."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from securevfl.defenses import MessageContext, NormClipping, NormClippingConfig


def _ctx(rows: int, sample_axis: int = 0) -> MessageContext:
    return MessageContext(kind="gradient", sender="active", receiver="passive_1", step=0, rows=rows, sample_axis=sample_axis)


def _clipper(max_norm: float) -> NormClipping:
    return NormClipping(NormClippingConfig(max_norm=max_norm), np.random.default_rng(0))


@settings(max_examples=200, deadline=None)
@given(
    values=st.sampled_from([np.float32, np.float64]).flatmap(
        lambda dtype: arrays(
            dtype,
            array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=10),
            elements=st.floats(-1e4, 1e4, allow_nan=False, width=32),
        )
    ),
    max_norm=st.floats(1e-3, 1e3),
)
def test_clipping_bounds_rows_and_keeps_directions(values: np.ndarray, max_norm: float) -> None:
    out = _clipper(max_norm).apply(values, _ctx(values.shape[0]))
    assert out.shape == values.shape and out.dtype == values.dtype
    norms_in = np.linalg.norm(values.astype(np.float64), axis=1)
    norms_out = np.linalg.norm(out.astype(np.float64), axis=1)
    assert np.all(norms_out <= max_norm), "every row ends inside the ball"
    inside = norms_in <= max_norm
    np.testing.assert_array_equal(out[inside], values[inside])
    for before, after, norm in zip(values[~inside], out[~inside], norms_in[~inside], strict=True):
        before, after = before.astype(np.float64), after.astype(np.float64)
        scale = after @ before / (before @ before)  # positive multiple of the input row
        assert scale > 0
        np.testing.assert_allclose(after, scale * before, rtol=1e-5, atol=1e-6 * max_norm)
        assert np.linalg.norm(after) == pytest.approx(max_norm, rel=1e-5)
        assert scale == pytest.approx(max_norm / norm, rel=1e-5)


def test_padding_rows_and_feature_major_messages() -> None:
    values = np.array([[3.0, 4.0], [0.3, 0.4], [30.0, 40.0]])
    out = _clipper(1.0).apply(values, _ctx(rows=2))
    np.testing.assert_allclose(out[0], [0.6, 0.8], rtol=1e-12)
    np.testing.assert_array_equal(out[1], values[1])
    np.testing.assert_array_equal(out[2], values[2]), "padding samples are not clipped"
    feature_major = _clipper(1.0).apply(np.ascontiguousarray(values.T), _ctx(rows=2, sample_axis=1))
    np.testing.assert_array_equal(feature_major, out.T)


def test_clipping_draws_nothing_and_zero_rows_stay_zero() -> None:
    clipper = _clipper(0.5)
    before = clipper.state_dict()
    out = clipper.apply(np.zeros((3, 4), dtype=np.float32), _ctx(3))
    assert np.all(out == 0)
    assert clipper.state_dict() == before
