"""SEAL objects at the edge of what the library accepts (issue 14, item 7).

Values that pass the library's bound check always pass SEAL's encoder: the check (``value_bound <= ceiling_at(level)``, the
decryptable ceiling plus the bits of every prime still above the first) must be at least as strict as SEAL's own "encoded
values are too large" check, for every preset, level and slot pattern: a value the library accepts
must never reach SEAL and fail there with SEAL's error type.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securevfl.crypto import EncryptedTensor, Layout, PrecisionError, SecretKeyring, get_preset, preset_names

KEYS = {name: SecretKeyring.generate(get_preset(name)) for name in preset_names()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(KEYS)),
    level_fraction=st.floats(0, 1),
    pattern=st.sampled_from(["constant", "alternating", "random", "spike"]),
    scale=st.floats(0.5, 1.5),
    seed=st.integers(0, 2**16),
)
def test_accepted_values_always_encode(name: str, level_fraction: float, pattern: str, scale: float, seed: int) -> None:
    keyring = KEYS[name]
    params = keyring.params
    levels = round(level_fraction * params.depth)
    ceiling = params.ceiling_at(levels)
    n = 64
    rng = np.random.default_rng(seed)
    values = {
        "constant": np.full(n, ceiling),
        "alternating": ceiling * (-1.0) ** np.arange(n),
        "random": rng.uniform(-ceiling, ceiling, n),
        "spike": np.where(np.arange(n) == 0, ceiling, 0.0),
    }[pattern] * scale
    bound = float(np.max(np.abs(values)))
    try:
        tensor = EncryptedTensor.encrypt(keyring, values, Layout.FLAT, bound=bound, levels=levels)
    except PrecisionError:
        assert bound > ceiling  # refused by the library's own check, with its own error type
        return
    assert bound <= ceiling
    np.testing.assert_allclose(tensor.decrypt(), values, atol=1e-6 * ceiling)


def test_a_bound_above_the_ceiling_is_refused_before_seal() -> None:
    keyring = KEYS["compute"]
    params = keyring.params
    with pytest.raises(PrecisionError, match="decryptable ceiling"):
        EncryptedTensor.encrypt(keyring, np.zeros(4), Layout.FLAT, bound=params.ceiling_at(params.depth) * 2)
    with pytest.raises(PrecisionError, match="decryptable ceiling"):
        EncryptedTensor.encrypt(keyring, np.zeros(4), Layout.FLAT, bound=params.decrypt_ceiling * 2, levels=0)


def test_a_large_value_may_travel_high_but_must_come_down_before_the_last_level() -> None:
    """Above the last level's ceiling at the top levels: products must bring it back before it can drop."""
    keyring = KEYS["compute"]
    params = keyring.params
    assert params.ceiling_at(0) == params.decrypt_ceiling and params.ceiling_at(2) == params.decrypt_ceiling * 2.0**80
    big = params.decrypt_ceiling * 256
    values = np.array([big, -big / 2, 3.0, 0.0])
    tensor = EncryptedTensor.encrypt(keyring, values, Layout.FLAT, bound=big)
    np.testing.assert_allclose(tensor.decrypt(), values, atol=1e-3)
    with pytest.raises(PrecisionError, match="mod_switch_to"):
        tensor.mod_switch_to_last()
    with pytest.raises(PrecisionError, match="mod_switch_to_last"):
        tensor.to_bytes(mod_switch_to_last=True)
    one_down = tensor.multiply_plain(np.ones(4))  # one level lower the room is still 2**40 times larger
    with pytest.raises(PrecisionError, match="multiply_plain"):
        one_down.multiply_plain(np.ones(4))  # at the last level the result would exceed its ceiling
    back = tensor.scale(1 / 256).scale(1.0)  # 2 levels down, the value back under the last ceiling
    assert back.levels_left == 0
    np.testing.assert_allclose(back.decrypt(), values / 256, atol=1e-3)


def test_a_ciphertext_flagged_out_of_ntt_form_is_refused_at_load() -> None:
    import tenseal.sealapi as sealapi

    from securevfl.crypto import SerializationError
    from securevfl.crypto._sealio import save_to_bytes

    keyring = KEYS["compute"]
    tensor = EncryptedTensor.encrypt(keyring, np.ones(8), Layout.FLAT, bound=1.0)
    coefficient_form = sealapi.Ciphertext()
    keyring.evaluator.transform_from_ntt(tensor.ciphertexts[0], coefficient_form)
    with pytest.raises(SerializationError, match="not in NTT form"):
        keyring.load_ciphertext(save_to_bytes(coefficient_form))
    assert keyring.load_ciphertext(save_to_bytes(tensor.ciphertexts[0])).is_ntt_form()


def test_two_thousand_mutated_ciphertexts_raise_only_the_crypto_layers_errors() -> None:
    """Flips, cuts and splices of encrypted-tensor bytes, with the digest recomputed half the time so
    SEAL's loader and the header checks see the damage: only ``CryptoError`` subclasses escape."""
    from securevfl.crypto import CryptoError
    from securevfl.crypto.wire import _DIGEST_BYTES, _digest

    keyring = KEYS["transport"]
    rng = np.random.default_rng(2026)
    seeds = [
        EncryptedTensor.encrypt(keyring, rng.normal(size=(4, 3)), Layout.ROWS, bound=8.0).to_bytes(),
        EncryptedTensor.encrypt(keyring, rng.normal(size=20), Layout.FLAT, bound=8.0).to_bytes(),
    ]
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(2000):
        data = bytearray(seeds[trial % 2])
        for _ in range(int(rng.integers(1, 4))):
            action = rng.integers(0, 3)
            position = int(rng.integers(0, len(data)))
            if action == 0:
                data[position] ^= 1 << int(rng.integers(0, 8))
            elif action == 1:
                data = data[: max(1, position)]
            else:
                data[position:position] = rng.integers(0, 256, size=int(rng.integers(1, 9))).astype(np.uint8).tobytes()
        if trial % 2 and len(data) > _DIGEST_BYTES:
            body = bytes(data[:-_DIGEST_BYTES])
            data = bytearray(body + _digest(body))
        try:
            EncryptedTensor.from_bytes(keyring, bytes(data))
            outcomes["loaded"] += 1
        except CryptoError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 1500, outcomes


def test_a_sum_at_the_power_of_two_is_refused_not_decrypted_with_its_sign_flipped() -> None:
    """Two full rows at ``transport_bound`` (2^18) add to 2^19, 7.45e-9 above what decrypts (q0 / 2 / scale).

    Before the ceiling's margin the bound check let the sum through and it decrypted to -2^19 on every slot
    (measured: -524287.99999998516 for 524288): silent garbage. It must be a range error now.
    """
    keyring = KEYS["transport"]
    params = keyring.params
    row = np.full(params.slots, params.transport_bound)
    tensor = EncryptedTensor.encrypt(keyring, row, Layout.FLAT, bound=params.transport_bound, levels=0)
    np.testing.assert_allclose(tensor.decrypt(), row, atol=1e-6)  # the row itself is carried exactly
    with pytest.raises(PrecisionError, match="decryptable ceiling 523776 "):
        _ = tensor + tensor


@pytest.mark.parametrize("name", sorted(KEYS))
def test_the_ceiling_lies_below_what_seals_own_primes_decrypt_at_every_level(name: str) -> None:
    """``ceiling_at(l)`` against the chain SEAL really built: prod(q_0..q_l) / (2 x scale), with room to spare.

    The powers of two the ceiling is named after are above it: SEAL's primes lie below their powers of two.
    """
    keyring = KEYS[name]
    params = keyring.params
    primes = [modulus.value() for modulus in keyring.seal_context.key_context_data().parms().coeff_modulus()]
    assert 2 ** params.headroom_bits * params.scale * 2 > primes[0]  # the unmargined ceiling is above what decrypts
    for levels in range(params.depth + 1):
        decryptable = math.prod(primes[: levels + 1]) / (2 * params.scale)
        assert params.ceiling_at(levels) * (1 + 1e-4) <= decryptable, (name, levels)
