"""Shared keyrings: key generation is the slow part, so every module reuses these."""

from __future__ import annotations

import numpy as np
import pytest

from securevfl.crypto import PublicKeyring, SecretKeyring, get_preset, rotations

# Steps the kernel tests need: 32x32 and 64->16 matmuls, plus power-of-two keys for sums and row moves.
COMPUTE_STEPS = sorted(
    set(rotations.matmul_steps(32, 32))
    | set(rotations.matmul_steps(64, 16))
    | set(rotations.matmul_steps(16, 8))
    | set(rotations.power_of_two_steps(4096))
)


@pytest.fixture(scope="session")
def transport_secret() -> SecretKeyring:
    return SecretKeyring.generate(get_preset("transport"))


@pytest.fixture(scope="session")
def transport_public(transport_secret: SecretKeyring) -> PublicKeyring:
    return PublicKeyring.from_bytes(transport_secret.public_keyring().to_bytes())


@pytest.fixture(scope="session")
def compute_secret() -> SecretKeyring:
    return SecretKeyring.generate(get_preset("compute"), COMPUTE_STEPS)


@pytest.fixture(scope="session")
def compute_public(compute_secret: SecretKeyring) -> PublicKeyring:
    return PublicKeyring.from_bytes(compute_secret.public_keyring().to_bytes())


@pytest.fixture(scope="session")
def other_compute_secret() -> SecretKeyring:
    """Same parameters, different key pair: its ciphertexts must never mix with compute_secret's."""
    return SecretKeyring.generate(get_preset("compute"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
