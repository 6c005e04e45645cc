"""The files of one run's output directory: its result's name and the check before anything is written there.

Its own module so that both the in-process trainer (:mod:`securevfl.training`) and the
one-process-per-party launcher (:mod:`securevfl.launcher`) use it without importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path

from securevfl.checkpoint import CHECKPOINT_NAME
from securevfl.errors import ConfigError

__all__ = ["RESULT_NAME", "check_output_directory"]

RESULT_NAME = "result.json"
#: A party process's record of a stop that is an outcome of the run (diverged, out of range, a refused request),
#: which the gRPC launcher turns into the in-process run's error (securevfl.launcher)
STOP_NAME = "stopped.json"


def check_output_directory(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse, before any training, an output directory that would lose a run or cannot be written.

    A directory holding a run (``result.json`` or a checkpoint) is continued with ``resume`` or
    replaced with ``overwrite``, never silently; a path that is a file, or a directory this
    process cannot write, is refused at once rather than after the first epoch.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file, not a directory")
    holds = [name for name in (RESULT_NAME, CHECKPOINT_NAME) if (out_dir / name).exists()]
    if holds and not (resume or overwrite):
        raise ConfigError(
            f"--out {out_dir} already holds a run ({', '.join(holds)}); use --resume to continue it or --overwrite to replace it"
        )
    existing = out_dir if out_dir.exists() else next((p for p in out_dir.parents if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out_dir}: {existing} is not writable")
