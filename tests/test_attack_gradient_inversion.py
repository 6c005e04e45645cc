"""Gradient inversion at a passive: its batch-summed parameter gradients give back every gradient row, and the labels.

Checked against torch's autograd (the rows it inverts are the rows that produced the gradients),
and end to end under the label-private schemes, where the passive never receives a gradient row.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers import random_dataset
from securevfl.attacks.gradient_inversion import invert_gradient_rows
from securevfl.config import validate_config
from securevfl.training import run_training


@pytest.mark.parametrize("hidden", [[], [12], [20, 6]])
def test_inversion_recovers_the_rows_autograd_backpropagated(hidden: list[int]) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    widths = [9, *hidden, 3]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1]).double()  # no ReLU on the output (the sum top's logits)
    x = rng.normal(size=(6, 9))  # batch 6 <= rank of [X|1] (10 columns): the inversion is exact
    rows = rng.normal(size=(6, 3))
    model.zero_grad()
    model(torch.from_numpy(x)).backward(torch.from_numpy(rows))
    gradients = [torch.cat([m.weight.grad, m.bias.grad[:, None]], 1).numpy() for m in model if isinstance(m, nn.Linear)]
    inverted = invert_gradient_rows(x, gradients, model)
    assert inverted.exact and inverted.determined.sum() >= 2  # a row is determined when enough ReLUs are active
    np.testing.assert_allclose(inverted.gradient[inverted.determined], rows[inverted.determined], atol=1e-6)
    # a batch larger than the rank leaves a least-norm answer that is no longer the rows
    x_big = rng.normal(size=(40, 9))
    rows_big = rng.normal(size=(40, 3))
    model.zero_grad()
    model(torch.from_numpy(x_big)).backward(torch.from_numpy(rows_big))
    gradients = [torch.cat([m.weight.grad, m.bias.grad[:, None]], 1).numpy() for m in model if isinstance(m, nn.Linear)]
    assert not invert_gradient_rows(x_big, gradients, model).exact


DATA = random_dataset(n_train=48, n_test=16, n_features=16, num_classes=4, seed=3)


def _run(protection: dict, batch: int) -> dict:
    raw = {
        "parties": {"passive": 2, "split": "even"},
        "model": {"top": "sum", "bottom_hidden": [6]},
        "train": {"epochs": 1, "batch_size": batch, "lr": 0.05, "progress": False},
        "protection": protection,
        "attack": {"kind": "gradient_inversion"},
    }
    return run_training(validate_config(raw), dataset=DATA)


@pytest.mark.parametrize(
    "protection",
    [
        {"scheme": "plain"},
        {"scheme": "ckks", "key_holder": "active", "flooding_bits": 0},
        {"scheme": "ckks", "key_holder": "coordinator", "flooding_bits": 0},
    ],
)
def test_a_curious_passive_reads_every_label_when_its_batch_fits_its_features(protection: dict) -> None:
    """8 features per passive, batch 8 <= 9 = rank of [X|1]: every row, so every label, comes back.

    Without the key holder's noise flooding, which perturbs the revealed gradients as a side effect
    (its effect on this attack is measured in docs/threat-model.md, not assumed).
    """
    result = _run(protection, batch=8)
    assert result["attack_feasible"] is True
    history = result["history"][-1]
    assert history["inversion_full_rank"] == 1.0
    assert history["inversion_label_accuracy"] == 1.0  # chance is 1/4
    if protection["scheme"] == "ckks":  # it never held a plaintext gradient row: only batch sums
        assert "gradient" not in {row["kind"] for row in result["visibility"]["passive_2"]}


def test_a_batch_larger_than_the_features_is_not_inverted_exactly() -> None:
    history = _run({"scheme": "plain"}, batch=24)["history"][-1]
    assert history["inversion_full_rank"] == 0.0
    assert history["inversion_label_accuracy"] < 1.0


def test_a_trainable_top_is_recorded_infeasible_with_the_reason() -> None:
    """Even when the bottom output happens to have one unit per class (4 here)."""
    raw = {
        "parties": {"passive": 2, "split": "even"},
        "model": {"top": "trainable", "bottom_hidden": [], "bottom_output": 4, "top_hidden": [5]},
        "train": {"epochs": 1, "batch_size": 8, "progress": False},
        "attack": {"kind": "gradient_inversion"},
    }
    result = run_training(validate_config(raw), dataset=DATA)
    assert result["attack_feasible"] is False and "norm or direction scoring" in result["attack_infeasible_reason"]
