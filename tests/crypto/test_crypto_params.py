from __future__ import annotations

import pytest

from securevfl.crypto import MAX_COEFF_MODULUS_BITS_128, PRESETS, CkksParameters, SecurityError, get_preset, preset_names


def test_presets_exist_and_report_their_properties() -> None:
    assert preset_names()[:3] == ["transport", "compute", "deep"]  # transport_wide follows: test_crypto_transport_wide.py
    transport, compute, deep = (get_preset(n) for n in preset_names()[:3])
    assert (transport.poly_modulus_degree, transport.depth, transport.slots) == (4096, 0, 2048)
    assert not transport.supports_rotations
    assert (compute.poly_modulus_degree, compute.coeff_modulus_bits, compute.scale_bits) == (8192, (60, 40, 40, 60), 40)
    assert (compute.depth, compute.slots) == (2, 4096)
    assert deep.poly_modulus_degree == 16384 and deep.depth > compute.depth
    for params in PRESETS.values():
        summary = params.summary()
        assert summary["total_coeff_modulus_bits"] <= summary["security_bound_bits"]
        assert 1 < params.max_magnitude < params.decrypt_ceiling
        if params.depth > 0:
            assert params.max_magnitude**2 <= params.decrypt_ceiling  # a product of two inputs still decrypts
        else:  # nothing is multiplied: the square root of the power-of-two ceiling
            assert params.max_magnitude == 2.0 ** (params.headroom_bits // 2)
        assert 0 < params.expected_precision < 1e-5


def test_an_even_headroom_with_levels_gets_a_bound_whose_square_fits() -> None:
    """Headroom 20 (60 - 39 - 1): 2^10 squared is the power of two itself, above the margined ceiling."""
    params = CkksParameters(8192, (60, 39, 39, 60), 39)
    assert params.headroom_bits == 20 and params.depth == 2
    assert params.max_magnitude == 2.0**9 and params.max_magnitude**2 <= params.decrypt_ceiling < 2.0**20


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="transport"):
        get_preset("fast")


@pytest.mark.parametrize("n,bound", sorted(MAX_COEFF_MODULUS_BITS_128.items()))
def test_modulus_above_the_128_bit_bound_is_refused_naming_the_bound(n: int, bound: int) -> None:
    prime = 60 if n >= 4096 else bound // 2 + 1
    count = bound // prime + 1
    with pytest.raises(SecurityError, match=f"bound of {bound} bits for N={n}"):
        CkksParameters(n, (prime,) * count, min(prime - 3, 20))


def test_modulus_at_the_bound_is_accepted() -> None:
    params = CkksParameters(8192, (60, 49, 49, 60), 40)
    assert params.total_coeff_modulus_bits == 218 and params.depth == 2


@pytest.mark.parametrize(
    "n,bits,scale",
    [(3000, (60,), 40), (8192, (), 40), (8192, (61, 60), 40), (8192, (60, 40, 60), 58), (8192, (10, 60), 5)],
)
def test_malformed_parameters_are_refused(n: int, bits: tuple[int, ...], scale: int) -> None:
    with pytest.raises(SecurityError):
        CkksParameters(n, bits, scale)


def test_fingerprint_ignores_the_name_but_not_the_numbers() -> None:
    a = CkksParameters(8192, (60, 40, 40, 60), 40, name="mine")
    assert a.fingerprint == get_preset("compute").fingerprint
    assert a == get_preset("compute")
    assert CkksParameters(8192, (60, 40, 40, 60), 39).fingerprint != a.fingerprint


def test_dict_round_trip_reapplies_the_security_check() -> None:
    params = get_preset("deep")
    assert CkksParameters.from_dict(params.to_dict()) == params
    with pytest.raises(SecurityError):
        CkksParameters.from_dict({**params.to_dict(), "coeff_modulus_bits": [60] * 8})
    with pytest.raises(SecurityError):
        CkksParameters.from_dict({"poly_modulus_degree": 8192})
