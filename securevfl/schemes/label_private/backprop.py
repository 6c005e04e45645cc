"""Backpropagation of an encrypted gradient through a passive party's Linear/ReLU layers.

With H = f(X) for a stack of Linear layers and ReLUs, everything but the incoming gradient
is the passive party's own plaintext: its inputs, its weights, and the ReLU derivatives (0/1
masks of its own pre-activations). Backpropagation is therefore linear in the encrypted
gradient, a chain of ciphertext-by-plaintext products:

    G_l  <- G_l * M_l                    (ReLU after layer l: plaintext 0/1 mask)
    dW_l, db_l <- G_l^T @ [A_{l-1} | 1]  (one product gives weights and bias gradients)
    G_{l-1} <- G_l @ W_l                 (to the layer below, then refreshed by the key holder)

The parameter gradients stay encrypted until the passive party has them decrypted behind a
fresh random mask: it only ever learns batch-summed values.

The incoming gradient travels amplified (:data:`.precision.AMPLIFICATION`); every product's
plaintext factor carries the inverse, so products leave at their true scale (per-sample
gradients summed over the batch) and refreshed gradients come back amplified again. A refreshed
gradient must stay within its rule's public bound (``BACKPROP_HEADROOM x gradient_bound``):
when the weights could push ``G_l @ W_l`` past it, the product is divided by a power of two
(:func:`carried_shrinks`), carried in the values down the layers and multiplied back into the
decrypted parameter gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from securevfl.crypto import EncryptedTensor
from securevfl.protocols.keyholder import MaskedKeyHolderClient
from securevfl.schemes.label_private.plan import BottomPlan
from securevfl.schemes.label_private.precision import AMPLIFICATION, BACKPROP_HEADROOM, backprop_shrink


@dataclass
class ForwardCache:
    """What backpropagation needs from the forward pass, padded to the plan's batch size."""

    layer_inputs: list[np.ndarray]
    relu_masks: list[np.ndarray | None]
    rows: int
    row_weight: np.ndarray
    """Weight of every (padded) row's contribution to the parameter gradients: 1 for real
    samples, 0 for padding. An attack may reweight rows (see the gradient-replacement backdoor)."""


@torch.no_grad()
def cached_forward(stack: list[tuple[nn.Linear, bool]], x: torch.Tensor, batch: int) -> tuple[torch.Tensor, ForwardCache]:
    rows = x.shape[0]
    inputs: list[np.ndarray] = []
    masks: list[np.ndarray | None] = []
    activations = x
    for linear, relu in stack:
        inputs.append(_pad(activations.double().numpy(), batch))
        pre = linear(activations)
        if relu:
            masks.append(_pad((pre > 0).double().numpy(), batch))
            activations = torch.relu(pre)
        else:
            masks.append(None)
            activations = pre
    row_weight = np.zeros(batch)
    row_weight[:rows] = 1.0
    return activations, ForwardCache(layer_inputs=inputs, relu_masks=masks, rows=rows, row_weight=row_weight)


def carried_shrinks(stack: list[tuple[nn.Linear, bool]], incoming_bound: float, gradient_bound: float) -> list[float]:
    """``S_l`` for every layer: the power of two layer ``l``'s gradient travels divided by (1 at the top layer).

    ``G_l @ W_l`` is bounded only by the bound of what travels times the largest column l1 norm of
    ``W_l``; each refresh divides it by :func:`.precision.backprop_shrink` of that worst case so it
    stays within the refreshed gradient's public bound. The factor stays in the values (the
    plaintext factors keep their size, so the products' noise does not grow with it) and the
    passive multiplies each decrypted ``[dW_l | db_l]`` by ``S_l``. ``incoming_bound`` is the
    tracked bound of the amplified ``Enc(G)`` the passive received.
    """
    shrinks = [1.0] * len(stack)
    refreshed_bound = BACKPROP_HEADROOM * gradient_bound
    bound = incoming_bound
    for layer in range(len(stack) - 1, 0, -1):
        weight = np.abs(stack[layer][0].weight.detach().double().numpy()) / AMPLIFICATION
        reach = bound * float(weight.sum(axis=0).max())  # the product's own worst-case bound
        shrinks[layer - 1] = shrinks[layer] * backprop_shrink(reach, refreshed_bound)
        bound = refreshed_bound * AMPLIFICATION  # what a refreshed gradient carries
    return shrinks


def encrypted_parameter_gradients(
    stack: list[tuple[nn.Linear, bool]],
    plan: BottomPlan,
    cache: ForwardCache,
    gradient_t: EncryptedTensor,
    gradient: EncryptedTensor | None,
    client: MaskedKeyHolderClient,
    step: int,
    gradient_bound: float,
) -> list[EncryptedTensor]:
    """Enc([dW_l | db_l] / S_l) for every layer (:func:`carried_shrinks`), from Enc(G^T) (and Enc(G) with hidden layers)."""
    results: list[EncryptedTensor | None] = [None] * len(stack)
    shrinks = carried_shrinks(stack, gradient.value_bound, gradient_bound) if gradient is not None else [1.0] * len(stack)
    g_t, g = gradient_t, gradient
    for layer in reversed(range(len(stack))):
        mask = cache.relu_masks[layer]
        if mask is not None:
            g_t = g_t.multiply_plain(mask.T)
            if g is not None:
                g = g.multiply_plain(mask)
        augmented = np.hstack([cache.layer_inputs[layer], np.ones((plan.batch, 1))]) * cache.row_weight[:, None]
        results[layer] = g_t @ (augmented / AMPLIFICATION)
        if layer == 0:
            break
        if g is None:
            raise ValueError("a bottom model with hidden layers needs the batch-major gradient too")
        weight = stack[layer][0].weight.detach().double().numpy()
        below = g @ (weight / (AMPLIFICATION * (shrinks[layer - 1] / shrinks[layer])))
        layouts = [("rows_t", plan.feature_major_stride(layer - 1))]
        if layer - 1 > 0:
            layouts.append(("rows", plan.batch_major_stride(layer - 1)))
        bound = BACKPROP_HEADROOM * gradient_bound
        refreshed = client.refresh(below, step, "backprop_gradient", layouts, bound=bound, amplification=AMPLIFICATION)
        g_t = refreshed[0]
        g = refreshed[1] if len(refreshed) > 1 else None
    return [r for r in results if r is not None]


def _pad(values: np.ndarray, batch: int) -> np.ndarray:
    if values.shape[0] == batch:
        return values
    padded = np.zeros((batch, *values.shape[1:]), dtype=values.dtype)
    padded[: values.shape[0]] = values
    return padded
