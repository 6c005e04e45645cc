"""The API reference renders from the docstrings (pdoc), and every public name has its own."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import securevfl

pdoc = pytest.importorskip("pdoc")
import pdoc.doc  # noqa: E402

#: The modules of the documented command (docs/api.md, "API reference").
MODULES = ("securevfl", "securevfl.api", "securevfl.data", "securevfl.config", "securevfl.errors")


@pytest.fixture(autouse=True)
def _public_names_resolved() -> None:
    """Resolve the lazily imported public names, as ``securevfl`` does itself when pdoc is imported first.

    pdoc reads the module's namespace, not its ``__getattr__``. A documentation build imports pdoc
    before securevfl; in a test session securevfl may have been imported earlier (another test module),
    and then the result of these tests would depend on which tests ran before them.
    """
    for name in securevfl._PUBLIC:
        getattr(securevfl, name)



def test_the_reference_builds_and_shows_every_public_name(tmp_path: Path) -> None:
    pdoc.pdoc(*MODULES, output_directory=tmp_path)
    page = (tmp_path / "securevfl.html").read_text(encoding="utf-8")
    for name in securevfl.__all__:
        assert f'id="{name}"' in page, name
    # Docstrings render, not only signatures.
    assert "Train a vertical federated model on" in page
    assert "Build a data set from feature matrices and label vectors" in page
    for module in MODULES[1:]:
        assert (tmp_path / Path(*module.split("."))).with_suffix(".html").is_file(), module


def test_every_public_name_has_its_own_docstring() -> None:
    module = pdoc.doc.Module(securevfl)
    missing = set()
    for name in securevfl.__all__:
        member = module.get(name)
        assert member is not None, name
        own = member.docstring.strip() and "A base class for creating Pydantic models" not in member.docstring
        if not own:
            missing.add(name)
    assert missing == set()
    for name in ("TrainingResult", "EpochSummary", "Timing", "PartitionedDataset"):
        cls = module.get(name)
        fields = [m for m in cls.own_members if not m.name.startswith("_") and not m.docstring.strip()]  # type: ignore[union-attr]
        assert fields == [], f"{name}: undocumented {[m.name for m in fields]}"
    for name in ("api", "data.arrays"):
        assert importlib.import_module(f"securevfl.{name}").__doc__


def test_every_public_name_resolves_from_the_lazy_table() -> None:
    """``securevfl`` imports its public names on first use; the table and ``__all__`` must agree."""
    assert set(securevfl.__all__) == set(securevfl._PUBLIC) | {"__version__"}
    for name in securevfl.__all__:
        assert getattr(securevfl, name) is not None
