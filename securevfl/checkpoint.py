"""Epoch-end checkpoints, written atomically so an interrupted run never leaves a torn file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from securevfl.errors import ConfigError

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1

#: Keys that may change between an interrupted run and its resumption.
RESUMABLE_DIFFERENCES = {("train", "epochs"), ("train", "progress"), ("train", "checkpoint")}


def checkpoint_path(out_dir: Path) -> Path:
    return out_dir / CHECKPOINT_NAME


def save_checkpoint(out_dir: Path, state: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = checkpoint_path(out_dir)
    temporary = target.with_suffix(".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **state}, temporary)
    os.replace(temporary, target)


def load_checkpoint(
    out_dir: Path, resolved_config: dict[str, Any], normalize: Callable[[dict[str, Any]], dict[str, Any]] = lambda c: c
) -> dict[str, Any]:
    """Load the checkpoint in ``out_dir`` and check it belongs to the same experiment.

    ``normalize`` maps the stored config to the form this version resolves configs in
    (:func:`securevfl.config.comparable_config`), so an earlier version's checkpoint of the same
    experiment still resumes.
    """
    path = checkpoint_path(out_dir)
    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint to resume from at {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"--resume: {path} is not a securevfl checkpoint of format {CHECKPOINT_FORMAT}")
    differences = _config_differences(normalize(state["config"]), resolved_config)
    blocking = [key for key in differences if key not in RESUMABLE_DIFFERENCES]
    if blocking:
        names = ", ".join(".".join(key) for key in blocking)
        raise ConfigError(f"--resume: the checkpoint in {out_dir} was made with a different config ({names})")
    return state


def _config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, ...]]:
    keys = sorted(set(old) | set(new))
    differences: list[tuple[str, ...]] = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += [(key, *sub) for sub in _config_differences(a, b)]
        elif a != b:
            differences.append((key,))
    return differences
