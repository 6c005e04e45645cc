"""The documentation says what the code does: tables copied from generated results, the lists of registered kinds
and modules, and the repository paths the docs name (a docs-truth review found each of these drifting, 2026-11-27).

These tests read files only; they check the docs against the code and the committed results, not numbers by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from securevfl.attacks.registry import BUILT_IN

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _table_rows(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.startswith("| ")]


def _doc_table(path: Path, heading_line: str) -> list[str]:
    """The table that follows the paragraph starting with ``heading_line`` in ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading_line))
    rows: list[str] = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            rows.append(line.rstrip())
        elif rows:
            break
    return [row for row in rows if row.startswith("| ")]


def test_the_threat_models_measured_table_is_the_committed_results_table() -> None:
    results = ROOT / "docs/results/threat_model/results.md"
    first_line = results.read_text(encoding="utf-8").splitlines()[0]
    assert _doc_table(ROOT / "docs/threat-model.md", first_line[:60]) == _table_rows(results.read_text(encoding="utf-8"))


def test_the_configuration_reference_lists_every_built_in_attack_with_its_fields() -> None:
    rows = _doc_table(ROOT / "docs/configuration.md", "One attack, run by a party of the role it declares")
    documented: dict[str, set[str]] = {}
    for row in rows[1:]:  # after the header
        kind_cell, fields_cell = (cell.strip() for cell in row.strip("|").split("|")[:2])
        kind = re.match(r"`(\w+)`", kind_cell)
        assert kind is not None, row
        documented[kind.group(1)] = set(re.findall(r"`(\w+)`", fields_cell))
    assert set(documented) == {attack.name for attack in BUILT_IN}
    for attack in BUILT_IN:
        fields = set(attack.config_type.model_fields) - {"kind", "party"}
        assert documented[attack.name] == fields, attack.name


def test_the_crypto_module_table_lists_every_module_of_the_crypto_package() -> None:
    rows = _doc_table(ROOT / "docs/crypto.md", "| module | job |")
    listed = {re.match(r"\| `([\w.]+)`", row).group(1) for row in rows}  # type: ignore[union-attr]
    assert listed == {path.name for path in (ROOT / "crypto").glob("*.py") if path.name != "__init__.py"}


PATH_IN_BACKTICKS = re.compile(r"`((?:[\w.-]+/)+[\w.-]+\.(?:py|toml|md|sh|json|txt|cfg))(?:::[\w\[\]*-]+)?`")


def _current_text(doc: Path) -> str:
    """The document without its history sections (``## Before and after ...`` names files that no longer exist, on purpose)."""
    kept, skipping = [], False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            skipping = line.startswith("## Before and after")
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def _output_path(path: str) -> bool:
    """A run's output or a placeholder (``runs/...``, ``OUT/result.json``, ``run/party_result.json``), not a repository file."""
    first = path.split("/", 1)[0]
    return path.startswith(("runs/", "run/", "../", "/")) or first.isupper() or "*" in path or "<" in path


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_repository_path_a_doc_names_exists(doc: Path) -> None:
    missing = []
    for path in PATH_IN_BACKTICKS.findall(_current_text(doc)):
        if _output_path(path):
            continue
        if not any((base / path).exists() for base in (ROOT, doc.parent, ROOT / "docs", ROOT / "securevfl")):
            missing.append(path)
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"
