"""Epoch-end checkpoints: written atomically, loaded without ever running code from the file.

A checkpoint is read with ``torch.load(weights_only=True)``, which unpickles only tensors,
plain containers and (allowlisted) plain numeric numpy arrays and refuses anything else, so a
crafted ``checkpoint.pt`` cannot execute code on ``--resume``. The numpy arrays some states hold (defense residuals, attack records) travel as
tagged tensors and come back as arrays. A file that does not load, or whose contents do not fit
the run, is refused with one line.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from securevfl.errors import ConfigError
from securevfl.files import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
_ARRAY_TAG = "__ndarray__"

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

#: What ``weights_only`` loading may rebuild besides tensors: plain numeric numpy arrays, as
#: checkpoints of v0.1 pickled them (no object arrays, no subclasses, no other callables).
_NUMPY_ARRAYS = [
    _reconstruct,
    np.ndarray,
    np.dtype,
    *(type(np.dtype(kind)) for kind in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.uint64, np.float32, np.float64)),
]

#: Keys that may change between an interrupted run and its resumption.
RESUMABLE_DIFFERENCES = {("train", "epochs"), ("train", "progress"), ("train", "checkpoint")}


def checkpoint_path(out_dir: Path) -> Path:
    return out_dir / CHECKPOINT_NAME


def encode_state(state: dict[str, Any]) -> bytes:
    """The bytes of a checkpoint holding ``state`` (numpy arrays as tagged tensors, readable with ``weights_only``)."""
    buffer = io.BytesIO()
    torch.save(_encode(state), buffer)
    return buffer.getvalue()


def save_checkpoint(out_dir: Path, state: dict[str, Any]) -> None:
    atomic_write(checkpoint_path(out_dir), encode_state({"format": CHECKPOINT_FORMAT, **state}))


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
    state = read_checkpoint_file(path)
    differences = config_differences(normalize(state["config"]), resolved_config)
    blocking = [key for key in differences if key not in RESUMABLE_DIFFERENCES]
    if blocking:
        names = ", ".join(".".join(key) for key in blocking)
        raise ConfigError(f"--resume: the checkpoint in {out_dir} was made with a different config ({names})")
    return state


def read_checkpoint_file(path: Path) -> dict[str, Any]:
    """The state in the checkpoint file ``path``, loaded without running code from it.

    Every reader of a checkpoint goes through here (resuming a run, a study's progress display),
    so none of them can unpickle more than tensors and plain numeric arrays.
    """
    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAYS):
            state = _decode(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # torch raises many types for a corrupt, truncated or crafted file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--resume: {path} is not a readable securevfl checkpoint ({reason[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or not isinstance(state.get("config"), dict):
        raise ConfigError(f"--resume: {path} is not a securevfl checkpoint of format {CHECKPOINT_FORMAT}")
    return state


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, ...]]:
    keys = sorted(set(old) | set(new))
    differences: list[tuple[str, ...]] = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += [(key, *sub) for sub in config_differences(a, b)]
        elif a != b:
            differences.append((key,))
    return differences


def _encode(value: Any) -> Any:
    """Numpy values as tensors (tagged) and plain Python, which ``weights_only`` loading accepts."""
    if isinstance(value, np.ndarray):
        return {_ARRAY_TAG: torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Enum):
        return _encode(value.value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {_encode(key): _encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_encode(item) for item in value)
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {_ARRAY_TAG} and isinstance(value[_ARRAY_TAG], torch.Tensor):
            return value[_ARRAY_TAG].numpy()
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_decode(item) for item in value)
    return value
