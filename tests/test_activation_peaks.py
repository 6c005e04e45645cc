"""examples/activation_peaks.py: the largest |activation| it prints is the bottoms' largest output, checked by hand."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from securevfl.config import load_config
from securevfl.data import load_dataset, partition_columns
from securevfl.party_models import bottom_model

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["data.train_limit=120", "data.test_limit=40", "train.epochs=1", "train.batch_size=40", "train.lr=1e-12"]


def test_the_printed_peak_is_the_largest_bottom_output_of_the_untrained_models(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With lr 1e-12 the bottoms stay (to float precision) at their seeded start, so the peak over the epoch's training and evaluation batches
    is max |bottom_k(x)| over every training and test row of every passive's block: computed here without the script."""
    config_path = ROOT / "examples" / "digits_plain.toml"
    argv = ["activation_peaks.py", "--config", str(config_path), *[arg for setting in SETTINGS for arg in ("--set", setting)]]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "examples" / "activation_peaks.py"), run_name="__main__")
    printed = re.search(r"epoch\s+1 .* max \|H\|\s+([0-9.]+)", capsys.readouterr().out)
    assert printed is not None

    config = load_config(config_path, SETTINGS)
    dataset = load_dataset(config.data)
    blocks = partition_columns(dataset, config.parties)
    bottom_out = config.model.resolved_bottom_output(dataset.num_classes)
    expected = 0.0
    for index in range(config.parties.passive):
        model, _ = bottom_model(config, index, len(blocks[index]), bottom_out)
        rows = np.concatenate([dataset.x_train[:, blocks[index]], dataset.x_test[:, blocks[index]]])
        with torch.no_grad():
            expected = max(expected, float(model(torch.as_tensor(rows, dtype=torch.float32)).abs().max()))
    assert float(printed.group(1)) == pytest.approx(expected, abs=0.05)  # printed with one decimal
