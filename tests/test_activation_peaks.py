"""examples/activation_peaks.py: the peaks it records are each bottom's largest output, checked by hand."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import securevfl.federation as federation

from securevfl.config import RunConfig, load_config
from securevfl.data import load_dataset, partition_columns
from securevfl.party_models import bottom_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "activation_peaks.py"
CONFIG = ROOT / "examples" / "digits_plain.toml"
SETTINGS = ["data.train_limit=120", "data.test_limit=40", "train.epochs=1", "train.batch_size=40", "train.lr=1e-12"]


def run_script(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    """Run the script as ``python examples/activation_peaks.py ARGS``; its hook on the federation's model builder is undone afterwards."""
    monkeypatch.setattr(federation, "bottom_model", federation.bottom_model)
    monkeypatch.setattr(sys, "argv", ["activation_peaks.py", *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def untrained_peaks(config: RunConfig) -> dict[str, float]:
    """max |bottom_k(x)| over every training and test row of each passive's block, without the script."""
    dataset = load_dataset(config.data)
    blocks = partition_columns(dataset, config.parties)
    bottom_out = config.model.resolved_bottom_output(dataset.num_classes)
    peaks = {}
    for index in range(config.parties.passive):
        model, _ = bottom_model(config, index, len(blocks[index]), bottom_out)
        rows = np.concatenate([dataset.x_train[:, blocks[index]], dataset.x_test[:, blocks[index]]])
        with torch.no_grad():
            peaks[f"passive_{index + 1}"] = float(model(torch.as_tensor(rows, dtype=torch.float32)).abs().max())
    return peaks


def test_each_passives_peak_is_its_largest_bottom_output_of_the_untrained_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With lr 1e-12 the bottoms stay (to float precision) at their seeded start, so each passive's peak over the epoch's
    training and evaluation batches is its bottom's largest |output| over every row of its block."""
    out = tmp_path / "peaks.json"
    run_script(monkeypatch, "--config", str(CONFIG), *[arg for setting in SETTINGS for arg in ("--set", setting)], "--json", str(out))
    record = json.loads(out.read_text())
    expected = untrained_peaks(load_config(CONFIG, SETTINGS))
    assert record["epochs"][0]["peaks"] == pytest.approx(expected, abs=1e-3)
    assert record["largest"] == pytest.approx(max(expected.values()), abs=1e-3)
    label_private = record["bounds"]["protection.activation_bound (label-private)"]
    assert label_private["bound"] == 64.0
    assert label_private["first_epoch_above"] == (1 if max(expected.values()) > 64 else None)
    assert record["bounds"]["transport transport_bound (receiver)"]["bound"] == 2.0**18
    assert record["bounds"]["transport max_magnitude (receiver until 2026-11-27)"]["bound"] == 512.0


def test_a_runs_recorded_configuration_trains_the_same_twin_and_an_existing_output_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--from-run reads the config a stopped run recorded (failed.json), forced to plaintext; the output is never overwritten."""
    config = load_config(CONFIG, [*SETTINGS, 'protection.scheme="ckks"'])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "failed.json").write_text(json.dumps({"error": "a stop", "config": config.resolved()}))
    out = tmp_path / "twin.json"
    run_script(monkeypatch, "--from-run", str(run_dir), "--json", str(out))
    expected = untrained_peaks(load_config(CONFIG, SETTINGS))
    assert json.loads(out.read_text())["epochs"][0]["peaks"] == pytest.approx(expected, abs=1e-3)

    before = out.read_bytes()
    with pytest.raises(SystemExit, match="exists; not overwritten"):
        run_script(monkeypatch, "--from-run", str(run_dir), "--json", str(out))
    assert out.read_bytes() == before
    (run_dir / "failed.json").write_text("{not json")
    with pytest.raises(SystemExit, match="not a run record"):
        run_script(monkeypatch, "--from-run", str(run_dir))
