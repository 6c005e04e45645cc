"""A refreshed hidden-layer gradient stays within the public bound the key holder re-encrypts it under.

``G_l @ W_l`` is bounded only by ``max|G_l|`` times the largest column l1 norm of ``W_l``; with
large weights it exceeds any fixed multiple of ``gradient_bound``. The key holder re-encrypts
the masked value under ``bound + half_width`` and refuses what exceeds it, so an honest run
whose mask happened to land near its edge stopped on a content refusal (a CI failure,
2026-11-26). The passive now divides the product by a power of two that brings its worst case
within the bound; checked here against numpy's backpropagation, with weights that need it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from securevfl.crypto import EncryptedTensor, Layout, SecretKeyring, get_preset
from securevfl.crypto.flooding import NoiseFlooding
from securevfl.parties import KeyHolderParty
from securevfl.protocols import InProcessChannel, PhaseTimer
from securevfl.protocols.audit import VisibilityLog
from securevfl.protocols.keyholder import KeyHolder, MaskedKeyHolderClient
from securevfl.protocols.masking import MaskSampler
from securevfl.schemes.label_private.backprop import cached_forward, encrypted_parameter_gradients
from securevfl.schemes.label_private.plan import BottomPlan
from securevfl.schemes.label_private.precision import AMPLIFICATION, BACKPROP_HEADROOM, backprop_shrink

GRADIENT_BOUND = 4.0
HALF_WIDTH = 16384.0


def test_backprop_shrink_is_the_least_power_of_two_that_fits() -> None:
    assert backprop_shrink(3.0, 4.0) == 1.0
    assert backprop_shrink(4.0, 4.0) == 1.0
    assert backprop_shrink(4.0001, 4.0) == 2.0
    assert backprop_shrink(33.0, 4.0) == 16.0  # 33 / 8 > 4, 33 / 16 <= 4
    with pytest.raises(ValueError, match="finite reach"):
        backprop_shrink(float("nan"), 4.0)


class _CheckingClient(MaskedKeyHolderClient):
    """The honest client, also recording each refreshed value's true magnitude against the bound it declares."""

    secret: SecretKeyring
    seen: list[tuple[float, float]]

    def refresh(self, encrypted, step, what, layouts, bound, amplification=1.0):  # type: ignore[no-untyped-def,override]
        self.seen.append((float(np.max(np.abs(encrypted.decrypt(self.secret)))), bound))
        return super().refresh(encrypted, step, what, layouts, bound, amplification)


def test_large_weights_are_backpropagated_exactly_within_every_declared_bound() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    plan = BottomPlan(batch=8, widths=(5, 6, 6, 3), relu_after=(True, True, False))
    stack = [(nn.Linear(5, 6), True), (nn.Linear(6, 6), True), (nn.Linear(6, 3), False)]
    with torch.no_grad():
        for linear, _ in stack[1:]:
            linear.weight.mul_(40.0)  # column l1 norms far past BACKPROP_HEADROOM
    x = torch.randn(8, 5, dtype=torch.float32)
    gradient = rng.choice([-1.0, 1.0], size=(8, 3)) * rng.uniform(0.5, 1.0, size=(8, 3)) * GRADIENT_BOUND

    # numpy's backpropagation: what the passive must end up with, and proof the case needs the shrink
    activations, pre = [x.double().numpy()], []
    for linear, relu in stack:
        z = activations[-1] @ linear.weight.detach().double().numpy().T + linear.bias.detach().double().numpy()
        pre.append(z)
        activations.append(np.maximum(z, 0) if relu else z)
    expected, delta, largest_below = [None] * 3, gradient, 0.0
    for layer in reversed(range(3)):
        if stack[layer][1]:
            delta = delta * (pre[layer] > 0)
        expected[layer] = delta.T @ np.hstack([activations[layer], np.ones((8, 1))])
        if layer:
            delta = delta @ stack[layer][0].weight.detach().double().numpy()
            largest_below = max(largest_below, float(np.max(np.abs(delta))))
    assert largest_below > BACKPROP_HEADROOM * GRADIENT_BOUND  # unshrunk, the refresh would exceed its bound

    secret = SecretKeyring.generate(get_preset("compute"), plan.rotation_steps())
    public = secret.public_keyring()
    channel, timer = InProcessChannel(), PhaseTimer()
    holder = KeyHolder("coordinator", secret, timer, VisibilityLog("coordinator"), flooding=NoiseFlooding(0), mask_half_width=HALF_WIDTH)
    channel.attach_server(KeyHolderParty(holder, channel, clients=["passive_1"]))
    client = _CheckingClient("passive_1", "coordinator", public, channel, MaskSampler(HALF_WIDTH, seed=3), timer)
    client.secret, client.seen = secret, []

    amplified = gradient * AMPLIFICATION
    bound = GRADIENT_BOUND * AMPLIFICATION
    top = plan.layers - 1
    gradient_t = EncryptedTensor.encrypt(public, amplified.T, Layout.ROWS, stride=plan.feature_major_stride(top), bound=bound)
    gradient_bm = EncryptedTensor.encrypt(public, amplified, Layout.ROWS, stride=plan.batch_major_stride(top), bound=bound)
    _, cache = cached_forward(stack, x, plan.batch)
    results = encrypted_parameter_gradients(stack, plan, cache, gradient_t, gradient_bm, client, 0, GRADIENT_BOUND)

    assert len(client.seen) == 2
    for magnitude, declared in client.seen:
        assert declared == BACKPROP_HEADROOM * GRADIENT_BOUND
        assert magnitude <= declared
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_allclose(got.decrypt(secret), want, rtol=1e-4, atol=1e-3 * float(np.max(np.abs(want))))
