"""MNIST download: checksums enforced, writes atomic, tested offline through file:// URLs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from datafixtures import write_mnist

from securevfl.data import MNIST_FILES, load_mnist
from securevfl.data.download import MNIST_SHA256, download_mnist, sha256_of
from securevfl.errors import DataError


def _checksums(directory: Path) -> dict[str, str]:
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
            for name in MNIST_FILES.values()}


def test_download_verifies_and_writes_loadable_files(tmp_path: Path) -> None:
    mirror = write_mnist(tmp_path / "mirror")
    target = tmp_path / "downloaded"
    got = download_mnist(target, mirror.directory.as_uri(), checksums=_checksums(mirror.directory))
    assert got == target
    assert sorted(p.name for p in target.iterdir()) == sorted(MNIST_FILES.values())
    assert load_mnist(target, expect_counts=False).n_train == len(mirror.y_train)


def test_tampered_file_is_refused_and_never_written(tmp_path: Path) -> None:
    mirror = write_mnist(tmp_path / "mirror")
    sums = _checksums(mirror.directory)
    tampered = mirror.path("test_images")
    tampered.write_bytes(tampered.read_bytes() + b"\x00")
    target = tmp_path / "downloaded"
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: SHA-256 .* does not match"):
        download_mnist(target, mirror.directory.as_uri(), checksums=sums)
    assert not (target / MNIST_FILES["test_images"]).exists()
    assert not [p for p in target.iterdir() if p.name.endswith(".part")], "temp file cleaned up"


def test_valid_existing_files_are_kept(tmp_path: Path) -> None:
    fx = write_mnist(tmp_path / "mnist")
    # An unreachable mirror proves nothing is fetched when every digest already matches.
    download_mnist(fx.directory, (tmp_path / "no-such-mirror").as_uri(),
                   checksums=_checksums(fx.directory))


def test_unreachable_mirror_is_a_data_error(tmp_path: Path) -> None:
    sums = _checksums(write_mnist(tmp_path / "mnist").directory)
    with pytest.raises(DataError, match="could not download .*train-images-idx3-ubyte.gz"):
        download_mnist(tmp_path / "target", (tmp_path / "no-such-mirror").as_uri(), checksums=sums)


def test_missing_checksum_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no SHA-256 checksum given for"):
        download_mnist(tmp_path, "file:///nowhere", checksums={})


@pytest.mark.shared_data
def test_hard_coded_checksums_match_the_canonical_files(shared_data: Path) -> None:
    for name, digest in MNIST_SHA256.items():
        assert sha256_of(shared_data / "mnist" / name) == digest, name
