"""What produced a result: package versions, the code's commit, the machine and the command.

Recorded in every ``result.json`` so a number can be traced back and regenerated. Plaintext runs
are bit-identical for the same seed, versions and machine; CKKS runs agree within CKKS noise,
not bit for bit (encryption draws fresh randomness).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from securevfl.version import __version__

__all__ = ["provenance"]

_PACKAGES = ("torch", "tenseal", "numpy", "pydantic")


def provenance() -> dict[str, Any]:
    """Versions, git commit (when run from a checkout), CPU count, Python and the command line."""
    versions: dict[str, str | None] = {"securevfl": __version__}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "git_commit": _COMMIT_AT_IMPORT,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "command": list(sys.argv),
    }


def _git_commit() -> str | None:
    """The commit of the checkout securevfl runs from, or None (installed package, no git)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) == 40 else None


#: The commit of the code this process loaded, read once when it imported securevfl: asking git at each result would
#: name whatever the checkout holds by then (a long study in an editable checkout that moved on would credit its
#: runs to commits whose code they never ran).
_COMMIT_AT_IMPORT = _git_commit()
