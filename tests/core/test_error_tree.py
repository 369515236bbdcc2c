"""One error tree: every exception class the installed packages define is a
`GridshareError`, so the command line, the API and the logs report each as one line."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import tomllib
from pathlib import Path

from gridshare.core.errors import GridshareError

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def installed_modules() -> list[str]:
    """Every module of every package `pyproject.toml` installs."""
    packages = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"]
    names = set(packages)
    for package in packages:
        path = importlib.import_module(package).__path__
        names.update(m.name for m in pkgutil.iter_modules(path, package + "."))
    return sorted(names)


def test_every_exception_class_is_a_gridshare_error() -> None:
    outside = []
    for name in installed_modules():
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            defined_here = cls.__module__ == name
            if (
                defined_here
                and issubclass(cls, BaseException)
                and not issubclass(cls, GridshareError)
            ):
                outside.append(f"{name}.{cls_name}")
    assert outside == []


def test_the_walk_sees_every_component() -> None:
    modules = installed_modules()
    for expected in ("gridshare.api.errors", "gridshare.sim.mqtt", "gridshare.core.payloads"):
        assert expected in modules
