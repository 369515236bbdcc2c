"""The layout explains itself: every Python package folder of the repository is installed
under the import name the README's table gives it, so nothing is importable only from a
checkout and no folder is left out of the distribution."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_SHIPPED = {"tests", "bench", "node_modules", ".venv", "contracts", "docs", "scripts"}


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_folders() -> set[Path]:
    """Folders holding an __init__.py, outside tests, benchmarks and tooling."""
    found = set()
    for init in ROOT.rglob("__init__.py"):
        folder = init.parent.relative_to(ROOT)
        if (
            folder.parts
            and folder.parts[0] not in NOT_SHIPPED
            and not folder.parts[0].startswith(".")
        ):
            found.add(folder)
    return found


def _import_name(folder: Path, package_dir: dict[str, str]) -> str:
    """The import name setuptools gives a folder through `package-dir`."""
    top = {directory: name for name, directory in package_dir.items()}
    return ".".join([top[folder.parts[0]], *folder.parts[1:]])


def test_every_package_folder_is_installed_and_importable() -> None:
    config = _setuptools()
    package_dir, packages = config["package-dir"], set(config["packages"])
    for folder in _package_folders():
        assert folder.parts[0] in package_dir.values(), f"{folder} is mapped to no import name"
        name = _import_name(folder, package_dir)
        assert name in packages, f"{folder} ({name}) is not in pyproject's packages"
        module = importlib.import_module(name)
        assert Path(module.__file__).parent.resolve() == (ROOT / folder).resolve()


def test_every_listed_package_has_its_folder() -> None:
    config = _setuptools()
    names = {_import_name(f, config["package-dir"]) for f in _package_folders()}
    assert set(config["packages"]) == names
