"""Only ``securevfl`` is installed at the top level; crypto/ and protocols/ are its subpackages.

The generic names ``crypto`` and ``protocols`` collide with PyPI's ``crypto`` package and with a
user's own ``protocols.py``; the library must import them only as ``securevfl.crypto`` and
``securevfl.protocols``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Folder of the tree -> the package it installs as (pyproject's package-dir).
MAPPED = {"securevfl": "securevfl", "crypto": "securevfl.crypto", "protocols": "securevfl.protocols"}


def _tree_packages() -> set[str]:
    packages = set()
    for folder, package in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            packages.add(".".join((package, *relative)))
    return packages


def test_pyproject_lists_every_package_of_the_tree() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert set(setuptools["packages"]) == _tree_packages()
    assert setuptools["package-dir"] == {package: folder for folder, package in MAPPED.items()}


def test_no_module_imports_crypto_or_protocols_at_the_top_level() -> None:
    offenders = []
    for folder in (*MAPPED, "tests", "examples", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {name}" for name in names if name.split(".")[0] in ("crypto", "protocols")]
    assert offenders == []


def test_a_users_own_crypto_and_protocols_modules_do_not_shadow_the_library(tmp_path: Path) -> None:
    for name in ("crypto", "protocols"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py was imported')\n", encoding="utf-8")
    code = "import securevfl.training, securevfl.crypto, securevfl.protocols; print(securevfl.crypto.__name__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "securevfl.crypto"


def test_the_wheel_ships_only_securevfl_with_its_license_and_type_marker(tmp_path: Path) -> None:
    import zipfile

    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("securevfl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"securevfl"}
    assert "securevfl/py.typed" in names and "securevfl/crypto/keys.py" in names and "securevfl/protocols/wire.py" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") or name.endswith(".dist-info/LICENSE") for name in names)
