"""Writing result files so that a crash, a kill -9 or a power cut never leaves a torn one.

Every file a run or a study produces (``result.json``, checkpoints, tables, reports, failure
records) goes through :func:`atomic_write`: the bytes go to a fresh temporary file in the same
directory (created exclusively, so no existing file or symlink is ever opened for writing),
are flushed to disk, and then the temporary file is renamed over the target. Readers therefore
see either the old file or the new one, never half of either; :func:`readable_json` reads one back and
takes a torn or foreign file for no record at all.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_text", "readable_json"]


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, replace: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically and durably (same directory, fsync, rename).

    ``mode`` is given to ``open`` when the temporary file is created (the umask can only narrow
    it), so a private key never exists, even briefly, with a wider mode. With ``replace=False``
    the file is published with ``link``, which raises :class:`FileExistsError` instead of
    replacing a file that appeared meanwhile (no clobbering, no race between a check and a write).
    """
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    descriptor = os.open(temporary, flags, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
            temporary.unlink()
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(directory)


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write` for UTF-8 text."""
    atomic_write(path, text.encode("utf-8"))


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (where the platform allows opening a directory)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_report(report: object, json_path: Path | None, markdown: str, markdown_path: Path | None) -> None:
    """A benchmark's JSON record and Markdown table, each written atomically where a path is given (and said)."""
    import json

    if json_path is not None:
        atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
        print(f"wrote {json_path}")
    if markdown_path is not None:
        atomic_write_text(markdown_path, markdown)
        print(f"wrote {markdown_path}")


def readable_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if it is absent, torn, truncated or not a JSON object."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None
