"""Bytes in and out of SEAL objects.

``tenseal.sealapi`` binds SEAL's ``save``/``load`` only to *file paths*, never to byte buffers.
To stay in memory we give SEAL a path to an anonymous in-memory file (``memfd_create``, reached
through ``/proc/self/fd``), so nothing touches the disk and nothing is visible to other users.
Platforms without ``memfd_create`` fall back to a private temporary file.

One scratch file per process (re-created after ``fork`` so parent and child never share it),
guarded by a lock because two threads could otherwise interleave between SEAL's write and our read.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any, Protocol

__all__ = ["save_to_bytes", "load_from_bytes"]


class _Savable(Protocol):
    def save(self, path: str) -> None: ...


class _ScratchFile:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._fd = -1
        self._path = ""

    def _ensure(self) -> None:
        if self._pid == os.getpid():
            return
        if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
            self._fd = os.memfd_create("securevfl-crypto", os.MFD_CLOEXEC)
            self._path = f"/proc/self/fd/{self._fd}"
        else:  # pragma: no cover - non-Linux fallback
            fd, path = tempfile.mkstemp(prefix="securevfl-crypto-")
            self._fd, self._path = fd, path
        self._pid = os.getpid()

    def save(self, obj: _Savable) -> bytes:
        with self._lock:
            self._ensure()
            obj.save(self._path)
            size = os.fstat(self._fd).st_size
            data = os.pread(self._fd, size, 0)
            os.ftruncate(self._fd, 0)  # do not leave key material lying in the scratch file
            return data

    def load(self, obj: Any, context: Any, data: bytes) -> None:
        with self._lock:
            self._ensure()
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
            try:
                obj.load(context, self._path)
            finally:
                os.ftruncate(self._fd, 0)


_SCRATCH = _ScratchFile()


def save_to_bytes(obj: _Savable) -> bytes:
    """Serialize any SEAL object (or ``Serializable``) with SEAL's own format."""
    return _SCRATCH.save(obj)


def load_from_bytes(obj: Any, context: Any, data: bytes) -> Any:
    """Load SEAL bytes into ``obj`` in place; SEAL validates the object against ``context``.

    SEAL raises (surfacing as ``ValueError``/``RuntimeError``) on a bad header, bad compression,
    or data that is not valid for the context; callers translate that into their own error type.
    """
    _SCRATCH.load(obj, context, data)
    return obj
