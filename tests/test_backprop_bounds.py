"""A refreshed hidden-layer gradient stays within the public bound the key holder re-encrypts it under.

``G_l @ W_l`` is bounded only by ``max|G_l|`` times the largest column l1 norm of ``W_l``; with
large weights it exceeds any fixed multiple of ``gradient_bound``. The key holder re-encrypts
the masked value under ``bound + half_width`` and refuses what exceeds it, so an honest run
whose mask happened to land near its edge stopped on a content refusal (a CI failure,
2026-11-26). The passive now divides the product by a power of two that brings its worst case
within the bound, carries that factor in the values and multiplies it back into the decrypted
parameter gradients; checked here against numpy's backpropagation, with weights that need it, under
an unflooded key holder (exactly) and under the hardened one (its policy and flooding: no refusal,
the noise within its rule's public bound, the values within the flooding).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from securevfl.crypto import EncryptedTensor, Layout, SecretKeyring, get_preset
from securevfl.crypto.flooding import NoiseFlooding, noise_unit
from securevfl.parties import KeyHolderParty
from securevfl.protocols import InProcessChannel, PhaseTimer
from securevfl.protocols.audit import VisibilityLog
from securevfl.protocols.keyholder import KeyHolder, MaskedKeyHolderClient
from securevfl.protocols.masking import MaskSampler
from securevfl.schemes.label_private.backprop import cached_forward, carried_shrinks, encrypted_parameter_gradients
from securevfl.schemes.label_private.plan import BottomPlan
from securevfl.schemes.label_private.policy import PASSIVE_NOISE_UNITS, label_private_policy
from securevfl.schemes.label_private.precision import AMPLIFICATION, BACKPROP_HEADROOM, backprop_shrink

GRADIENT_BOUND = 4.0
SIGMA = 2.0**15 * PASSIVE_NOISE_UNITS * noise_unit(get_preset("compute"))
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

    amplified = gradient * AMPLIFICATION
    bound = GRADIENT_BOUND * AMPLIFICATION
    shrinks = carried_shrinks(stack, bound, GRADIENT_BOUND)
    assert shrinks[-1] == 1.0 and shrinks[0] > shrinks[1] > 1.0  # both refreshes needed one
    secret = SecretKeyring.generate(get_preset("compute"), plan.rotation_steps())
    public = secret.public_keyring()
    top = plan.layers - 1
    gradient_t = EncryptedTensor.encrypt(public, amplified.T, Layout.ROWS, stride=plan.feature_major_stride(top), bound=bound)
    gradient_bm = EncryptedTensor.encrypt(public, amplified, Layout.ROWS, stride=plan.batch_major_stride(top), bound=bound)
    _, cache = cached_forward(stack, x, plan.batch)

    for hardened in (False, True):
        channel, timer = InProcessChannel(), PhaseTimer()
        policy = label_private_policy(
            plans={"passive_1": plan}, top_plan=None, active="active", key_holder="coordinator", combined_width=3,
            bounds=(64.0, GRADIENT_BOUND), eval_batch=64, samples=200, params=secret.params,
        ) if hardened else None
        flooding = NoiseFlooding(30 if hardened else 0)
        holder = KeyHolder("coordinator", secret, timer, VisibilityLog("coordinator"), policy=policy, flooding=flooding,
                           mask_half_width=HALF_WIDTH)
        channel.attach_server(KeyHolderParty(holder, channel, clients=["passive_1"]))
        client = _CheckingClient("passive_1", "coordinator", public, channel, MaskSampler(HALF_WIDTH, seed=3), timer)
        client.secret, client.seen = secret, []
        results = encrypted_parameter_gradients(stack, plan, cache, gradient_t, gradient_bm, client, 0, GRADIENT_BOUND)
        assert len(client.seen) == 2
        for magnitude, declared in client.seen:
            assert declared == BACKPROP_HEADROOM * GRADIENT_BOUND
            assert magnitude <= declared
        for layer, (got, want) in enumerate(zip(results, expected, strict=True)):
            # what the passive learns: the key holder's (flooded) decryption, times the layer's carried shrink
            revealed = client.reveal(got, 0, "parameter_gradient", per_sample=False) * shrinks[layer]
            # flooding (2**15 x the passive rules' public noise bound, ~2.2e-2) of the decryption and, below the top, of the
            # refreshed gradient through the batch's inputs, times the carried shrink (measured: 1.7-4.7 sigma x that)
            refreshed = float(np.abs(cache.layer_inputs[layer]).sum(axis=0).max()) if layer < top else 0.0
            atol = 1e-3 * float(np.max(np.abs(want))) if not hardened else 8 * SIGMA * shrinks[layer] * (1.0 + refreshed)
            np.testing.assert_allclose(revealed, want, rtol=1e-4, atol=atol)
