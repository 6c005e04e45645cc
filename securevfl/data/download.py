"""Fetch the MNIST files for users with internet access, refusing anything but the canonical bytes.

Mirrors come and go and downloads get cut short, so each file is checked against a SHA-256 digest
of the canonical release before it becomes visible under its final name: it is streamed into a
temporary file in the target directory and renamed only after the digest matches. A crash or a bad
mirror therefore never leaves a half-written or altered file where :func:`load_mnist` would read it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from securevfl.data.mnist import MNIST_FILES
from securevfl.errors import DataError

__all__ = ["DEFAULT_MNIST_URL", "MNIST_SHA256", "download_mnist", "sha256_of"]

#: A long-lived public mirror of the original files (the original site often refuses scripts).
DEFAULT_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

#: SHA-256 of the canonical gzip files, keyed by file name.
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

_CHUNK = 1 << 20


def download_mnist(directory: str | Path, base_url: str = DEFAULT_MNIST_URL, *,
                   checksums: Mapping[str, str] | None = None, timeout: float = 60.0) -> Path:
    """Download the four MNIST files into ``directory`` and return it.

    Files already present with the right digest are kept, so the call is cheap to repeat. A file
    whose digest does not match is never written; the existing copy (if any) is left untouched
    and a :class:`DataError` names the file, the URL and both digests. ``checksums`` replaces
    :data:`MNIST_SHA256` (for tests and private mirrors of other builds); ``base_url`` may be any
    URL scheme urllib understands, including ``file://``.
    """
    expected = dict(MNIST_SHA256 if checksums is None else checksums)
    root = Path(directory).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES.values():
        if name not in expected:
            raise DataError(f"no SHA-256 checksum given for {name}")
        target = root / name
        if target.is_file() and sha256_of(target) == expected[name]:
            continue
        _fetch_verified(base_url.rstrip("/") + "/" + name, target, expected[name], timeout)
    return root


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks so large files need little memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_verified(url: str, target: Path, sha256: str, timeout: float) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise DataError(f"{url}: SHA-256 {digest.hexdigest()} does not match the expected "
                            f"{sha256}; refusing to write {target}")
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"could not download {url} to {target}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
