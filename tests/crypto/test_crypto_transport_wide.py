"""The ``transport_wide`` preset (issue 15, item 4): ``transport`` with room for gamma-30 activations.

``transport`` refuses inputs above 512, and the gradient-replacement backdoor sends activations of
521-590 on MNIST where the committed ckks/receiver runs stopped on the range check (gamma 30: 569).
``transport_wide`` states a ceiling of 2048 (``max_magnitude``): every value up to it must survive what a transport
message does -- public-key encryption, the wire, a sum of two parties' messages, decryption --
within the preset's stated ``expected_precision``, and anything above it must be refused before
SEAL sees it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securevfl.crypto import EncryptedTensor, Layout, PrecisionError, SecretKeyring, get_preset

WIDE = get_preset("transport_wide")
SECRET = SecretKeyring.generate(WIDE)
PUBLIC = SECRET.public_keyring()
CEILING = WIDE.max_magnitude


def test_transport_wide_states_the_headroom_it_was_added_for() -> None:
    transport = get_preset("transport")
    assert (WIDE.poly_modulus_degree, WIDE.coeff_modulus_bits, WIDE.scale_bits) == (4096, (60,), 37)
    assert CEILING == 2048.0 and transport.max_magnitude == 512.0
    assert CEILING > 569.3  # the gamma-30 activation that stops transport (docs/results/attacks_defenses.md)
    assert not WIDE.supports_rotations and WIDE.depth == 0  # a transport preset: moved and added only
    assert WIDE.expected_precision == 2.0**-17 < 1e-5
    assert WIDE.total_coeff_modulus_bits <= WIDE.security_bound_bits  # 128-bit security, same as transport
    assert WIDE.fingerprint != transport.fingerprint


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fraction=st.floats(0.0, 1.0),
    rows=st.integers(1, 80),
    cols=st.integers(1, 12),
    pattern=st.sampled_from(["uniform", "at_ceiling", "spike", "tiny"]),
    seed=st.integers(0, 2**16),
)
def test_values_up_to_the_ceiling_round_trip(fraction: float, rows: int, cols: int, pattern: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    peak = fraction * CEILING
    values = {
        "uniform": rng.uniform(-peak, peak, (rows, cols)),
        "at_ceiling": CEILING * rng.choice([-1.0, 1.0], (rows, cols)),
        "spike": np.where(rng.random((rows, cols)) < 0.05, CEILING, rng.normal(0.0, 1e-3, (rows, cols))),
        "tiny": rng.normal(0.0, 1e-3, (rows, cols)),  # gradient-sized entries keep their precision too
    }[pattern]
    tensor = EncryptedTensor.encrypt(PUBLIC, values, Layout.ROWS)  # public key: the worst-case noise
    wire = EncryptedTensor.from_bytes(PUBLIC, tensor.to_bytes())
    np.testing.assert_allclose(wire.decrypt(SECRET), values, rtol=0, atol=WIDE.expected_precision)
    # The receiver adds the parties' messages: a sum of two in-range messages still decrypts.
    other = rng.uniform(-CEILING, CEILING, (rows, cols))
    total = EncryptedTensor.sum_of([wire, EncryptedTensor.encrypt(PUBLIC, other, Layout.ROWS)])
    np.testing.assert_allclose(total.decrypt(SECRET), values + other, rtol=0, atol=2 * WIDE.expected_precision)


def test_the_gamma_30_activation_fits_here_and_not_in_transport() -> None:
    values = np.array([[569.285, -12.5, 0.001]])
    np.testing.assert_allclose(
        EncryptedTensor.encrypt(PUBLIC, values, Layout.ROWS).decrypt(SECRET), values, rtol=0, atol=WIDE.expected_precision
    )
    transport = SecretKeyring.generate(get_preset("transport")).public_keyring()
    with pytest.raises(PrecisionError, match="exceeds the bound 512"):
        EncryptedTensor.encrypt(transport, values, Layout.ROWS)


def test_above_the_ceiling_is_refused_before_seal() -> None:
    with pytest.raises(PrecisionError, match="exceeds the bound 2048"):
        EncryptedTensor.encrypt(PUBLIC, np.array([CEILING * 1.001]), Layout.FLAT)
