"""Fixtures for the data-layer tests: generated data directories, and the real shared data."""

from __future__ import annotations

from pathlib import Path

import pytest
from datafixtures import FateFixture, NuswideFixture, write_fate, write_nuswide

#: Real data sets beside the repository (``../shared/data``), used only by ``shared_data`` tests.
SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real data directory; tests using it skip with the reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data directory {SHARED_DATA.resolve()} is absent")
    return SHARED_DATA.resolve()


@pytest.fixture
def nuswide_dir(tmp_path: Path) -> NuswideFixture:
    return write_nuswide(tmp_path / "nuswide")


@pytest.fixture
def fate_dir(tmp_path: Path) -> FateFixture:
    return write_fate(tmp_path / "fate")
