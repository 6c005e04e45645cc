"""A rotation carries no key-dependent offset (crypto.kernels.rotate).

SEAL's key switching adds ``(q_0 / 2P)(1 + X + ... + X^(N-1)) e_0`` per key switch, ``e_0`` the Galois key's
error: 1,400-14,600 noise units per rotation at the compute preset depending on the key pair (measured
2026-11-27), which made whether a key holder refused an honest request a property of the run's keys.
``rotate`` subtracts it; checked against the decryption of the unrotated ciphertext (numpy's roll).
"""

from __future__ import annotations

import numpy as np
import pytest

from securevfl.crypto import SecretKeyring, get_preset, kernels
from securevfl.crypto.flooding import noise_unit

PARAMS = get_preset("compute")
STEPS = (1, 8, 3)  # 3 = 1 + 2: a composed rotation (two key switches)


def _largest_imaginary(keyring: SecretKeyring, ciphertext: object) -> float:
    return float(np.max(np.abs(keyring.decrypt_vector_complex(ciphertext).imag))) / noise_unit(PARAMS)


@pytest.mark.parametrize("key_pair", range(3))
def test_a_rotation_adds_only_key_independent_noise_and_keeps_the_values(key_pair: int) -> None:
    keyring = SecretKeyring.generate(PARAMS, [1, 2, 8])
    values = np.random.default_rng(key_pair).uniform(-4, 4, PARAMS.slots)
    fresh = keyring.encrypt_vector(values, PARAMS.depth)
    for step in STEPS:
        rotated = kernels.rotate(keyring, fresh, step)
        np.testing.assert_allclose(keyring.decrypt_vector_complex(rotated).real, np.roll(values, -step), atol=1e-6)
        # with the offset: 1,400-14,600 units over 5 key pairs (at least 1,401 in 40 rotations); without: 420-740
        assert _largest_imaginary(keyring, rotated) < 1_200 * (2 if step == 3 else 1)


def test_the_offset_is_made_once_per_keyring_step_and_level() -> None:
    keyring = SecretKeyring.generate(PARAMS, [1])
    fresh = keyring.encrypt_vector(np.ones(PARAMS.slots), PARAMS.depth)
    kernels.rotate(keyring, fresh, 1)
    kernels.rotate(keyring, fresh, 1)
    lower = kernels.mod_switch_to_level(keyring, fresh, PARAMS.depth - 1)
    kernels.rotate(keyring, lower, 1)
    assert sorted(kernels._KEY_SWITCH_OFFSETS[keyring]) == [(1, PARAMS.depth - 1, PARAMS.scale), (1, PARAMS.depth, PARAMS.scale)]


def test_a_right_rotation_composes_from_the_keys_it_needs() -> None:
    """-3 = 4093 mod 4096 has the non-adjacent form 1 - 4 + 4096; the last digit is a full turn, no rotation at all. It
    was kept as a step of 4096 without a key, so keys {1, 4092} (enough: 1 + 4092 = 4093) were refused (review, 2026-11-27)."""
    keyring = SecretKeyring.generate(PARAMS, [1, PARAMS.slots - 4])
    values = np.arange(PARAMS.slots, dtype=float) / PARAMS.slots
    rotated = kernels.rotate(keyring, keyring.encrypt_vector(values, PARAMS.depth), -3)
    np.testing.assert_allclose(keyring.decrypt_vector_complex(rotated).real, np.roll(values, 3), atol=1e-6)
