"""A user's own bottom models (any torch.nn.Module) under the open schemes; refused with the layer by the blind ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import config, random_dataset
from securevfl.errors import ConfigError
from securevfl.training import run_training

DATA = random_dataset(n_train=96, n_test=32, n_features=8, num_classes=3, seed=0)
PLAIN = {"parties": {"passive": 2, "split": "even"}, "train": {"epochs": 2, "batch_size": 32, "progress": False}}


def _tanh_model(width: int) -> nn.Module:
    torch.manual_seed(width)
    return nn.Sequential(nn.Linear(width, 6), nn.Tanh(), nn.Linear(6, 3))


def test_a_custom_module_trains_and_its_parameters_move() -> None:
    models = [_tanh_model(4), _tanh_model(4)]
    before = [p.detach().clone() for p in models[0].parameters()]
    result = run_training(config(**PLAIN), dataset=DATA, bottom_models=models)
    assert result["epochs_completed"] == 2 and 0.0 <= result["main_accuracy"] <= 1.0
    assert any(not torch.equal(b, p) for b, p in zip(before, models[0].parameters(), strict=True))


def test_wrong_output_width_and_count_are_refused_in_one_line() -> None:
    wide = nn.Sequential(nn.Linear(4, 5))
    with pytest.raises(ConfigError, match=r"outputs shape \(1, 5\).*\(1, 3\)"):
        run_training(config(**PLAIN), dataset=DATA, bottom_models=[wide, wide])
    with pytest.raises(ConfigError, match="1 model\\(s\\) given for 2 feature block"):
        run_training(config(**PLAIN), dataset=DATA, bottom_models=[_tanh_model(4)])


def test_label_private_scheme_names_the_layer_it_cannot_backpropagate() -> None:
    blind = {**PLAIN, "protection": {"scheme": "ckks", "key_holder": "active"}}
    with pytest.raises(ConfigError, match="Tanh cannot be backpropagated under encryption"):
        run_training(config(**blind), dataset=DATA, bottom_models=[_tanh_model(4), _tanh_model(4)])
