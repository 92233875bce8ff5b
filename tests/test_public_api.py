"""The public API: exported, sorted, documented, typed."""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import sqla_uow
import sqla_uow.exceptions
import sqla_uow.ext.fastapi
import sqla_uow.filters
import sqla_uow.mixins
import sqla_uow.testing

PUBLIC_MODULES = [
    sqla_uow,
    sqla_uow.exceptions,
    sqla_uow.filters,
    sqla_uow.mixins,
    sqla_uow.ext.fastapi,
    sqla_uow.testing,
]
UNDOCUMENTED_NAMES = {"__version__"}


def private_modules(package: ModuleType) -> Iterator[ModuleType]:
    """Every ``_name`` module below *package* (not descending into public subpackages)."""
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name.rpartition(".")[2].startswith("_"):
            yield importlib.import_module(info.name)


def attribute_docstrings(module: ModuleType) -> dict[str, str]:
    """Docstrings of module-level assignments (a string literal right after the assignment)."""
    source = inspect.getsource(module)
    body = ast.parse(source).body
    found: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            for target in targets:
                if isinstance(target, ast.Name):
                    found[target.id] = following.value.value
    return found


def own_docstring(obj: Any) -> str | None:
    """The docstring *obj* itself carries (not one inherited from a base class)."""
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        obj = obj.fget
    return obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)


def public_members(cls: type[Any]) -> Iterator[tuple[str, Any]]:
    """Public methods and properties of a class and of its bases inside the package."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("sqla_uow"):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            is_method = isinstance(member, (staticmethod, classmethod, property))
            if is_method or inspect.isfunction(member):
                yield f"{klass.__name__}.{name}", member


def exported(module: ModuleType) -> list[tuple[str, Any]]:
    """The exported names of *module* with their objects."""
    return [(name, getattr(module, name, None)) for name in module.__all__]


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
class TestExports:
    def test_all_is_sorted_and_unique(self, module: ModuleType) -> None:
        assert list(module.__all__) == sorted(set(module.__all__))

    def test_every_exported_name_exists(self, module: ModuleType) -> None:
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert missing == []

    def test_every_exported_name_is_documented(self, module: ModuleType) -> None:
        attribute_docs = attribute_docstrings(module)
        for name, obj in exported(module):
            if name in UNDOCUMENTED_NAMES:
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                doc = own_docstring(obj)
            else:
                origin = sys.modules.get(getattr(obj, "__module__", ""), module)
                doc = attribute_docs.get(name) or attribute_docstrings(origin).get(name)
            assert (doc or "").strip(), f"{module.__name__}.{name} has no docstring"

    def test_public_methods_of_exported_classes_are_documented(self, module: ModuleType) -> None:
        undocumented = [
            member_name
            for _, obj in exported(module)
            if inspect.isclass(obj)
            for member_name, member in public_members(obj)
            if not (own_docstring(member) or "").strip()
        ]
        assert undocumented == []


def test_exported_callables_have_an_example_in_their_docstring() -> None:
    missing = [
        f"{module.__name__}.{name}"
        for module in PUBLIC_MODULES
        for name, obj in exported(module)
        if (inspect.isclass(obj) or inspect.isfunction(obj))
        and "Example" not in (own_docstring(obj) or "")
    ]
    assert missing == []


@pytest.mark.parametrize("package", [sqla_uow, sqla_uow.testing], ids=lambda m: m.__name__)
def test_every_reexported_name_of_a_private_module_is_in_all(package: ModuleType) -> None:
    leaks = []
    for module in private_modules(package):
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if getattr(package, name, None) is obj and name not in package.__all__:
                leaks.append(f"{module.__name__}.{name}")
    assert leaks == []


def test_every_exception_derives_from_the_root() -> None:
    for _, obj in exported(sqla_uow.exceptions):
        if inspect.isclass(obj):
            assert issubclass(obj, sqla_uow.exceptions.SqlaUowError)


def test_exceptions_are_reexported_from_the_package() -> None:
    for name, obj in exported(sqla_uow.exceptions):
        if inspect.isclass(obj):
            assert getattr(sqla_uow, name) is obj
            assert name in sqla_uow.__all__


def test_the_package_ships_py_typed() -> None:
    package_dir = Path(sqla_uow.__file__).parent
    assert (package_dir / "py.typed").is_file()
    pyproject = package_dir.parents[1] / "pyproject.toml"
    if pyproject.is_file():  # a source checkout: the wheel takes the whole package directory
        assert 'packages = ["src/sqla_uow"]' in pyproject.read_text()


def test_version_is_a_string() -> None:
    assert isinstance(sqla_uow.__version__, str)
    assert sqla_uow.__version__
