"""A split (vertically federated) step equals one step of the unsplit model.

The reference is computed independently: plain torch.nn.functional on the full feature
matrix, with the parameters copied out of the parties before the step, autograd for the
gradients and a hand-written SGD update. The federation must agree within 1e-6.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from securevfl.federation import build_federation
from tests.helpers import config, random_dataset


def _apply_stack(params: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor, relu_last: bool) -> torch.Tensor:
    for index, (weight, bias) in enumerate(params):
        x = F.linear(x, weight, bias)
        if index < len(params) - 1 or relu_last:
            x = torch.relu(x)
    return x


def _linear_params(module: torch.nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [
        (layer.weight.detach().clone().requires_grad_(True), layer.bias.detach().clone().requires_grad_(True))
        for layer in module.modules()
        if isinstance(layer, torch.nn.Linear)
    ]


@settings(max_examples=25, deadline=None)
@given(
    n_passive=st.integers(1, 4),
    features_per_party=st.integers(1, 6),
    hidden=st.lists(st.integers(1, 8), max_size=2),
    top=st.sampled_from(["sum", "trainable"]),
    active_block=st.booleans(),
    batch=st.integers(1, 16),
    num_classes=st.integers(2, 5),
    seed=st.integers(0, 1000),
)
def test_one_split_step_matches_the_unsplit_model(
    n_passive: int,
    features_per_party: int,
    hidden: list[int],
    top: str,
    active_block: bool,
    batch: int,
    num_classes: int,
    seed: int,
) -> None:
    n_blocks = n_passive + int(active_block)
    n_features = n_blocks * features_per_party
    dataset = random_dataset(32, 8, n_features, num_classes, seed)
    lr = 0.1
    model = {"top": top, "bottom_hidden": hidden}
    if top == "trainable":
        model |= {"bottom_output": 4, "top_hidden": [5]}
    cfg = config(
        parties={"passive": n_passive, "split": "even", "active_block": active_block},
        model=model,
        train={"lr": lr, "seed": seed},
    )
    blocks = [np.arange(k * features_per_party, (k + 1) * features_per_party) for k in range(n_blocks)]
    federation = build_federation(cfg, dataset, blocks)

    bottoms = [party.model for party in federation.passives]
    if federation.active.local_block is not None:
        bottoms.append(federation.active.local_block.model)
    bottom_params = [_linear_params(model) for model in bottoms]
    top_params = _linear_params(federation.active.top)
    relu_last = top == "trainable"

    ids = np.random.default_rng(seed).choice(32, size=batch, replace=False)
    x = torch.from_numpy(dataset.x_train[ids])
    y = torch.from_numpy(dataset.y_train[ids])
    parts = [_apply_stack(params, x[:, block], relu_last) for params, block in zip(bottom_params, blocks)]
    logits = sum(parts[1:], parts[0]) if top == "sum" else _apply_stack(top_params, torch.cat(parts, 1), False)
    reference_loss = F.cross_entropy(logits, y)
    reference_loss.backward()

    loss = federation.train_batch(0, ids)
    assert abs(loss - float(reference_loss.detach())) < 1e-6

    for model, params in zip(bottoms, bottom_params):
        _assert_updated(model, params, lr)
    _assert_updated(federation.active.top, top_params, lr)


def _assert_updated(module: torch.nn.Module, reference: list[tuple[torch.Tensor, torch.Tensor]], lr: float) -> None:
    layers = [layer for layer in module.modules() if isinstance(layer, torch.nn.Linear)]
    assert len(layers) == len(reference)
    for layer, (weight, bias) in zip(layers, reference):
        for actual, ref in ((layer.weight, weight), (layer.bias, bias)):
            expected = ref.detach() - lr * ref.grad
            torch.testing.assert_close(actual.detach(), expected, rtol=0, atol=1e-6)
