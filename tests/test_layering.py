"""The package's structure: dialect code stays in the dialect layer, the fakes use no
private names, and modules stay small enough to hold one idea each."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sqla_uow"
DIALECTS = PACKAGE / "_dialects"

# A dialect or driver name as a string, a test of the dialect's name or of its driver.
_DIALECT_TEST = re.compile(
    r"""["'](sqlite|postgresql|mysql|mariadb|asyncpg|psycopg|aiosqlite|aiomysql|pymysql)["']"""
    r"""|dialect\.name|\.driver\b"""
)
_MAX_MODULE_LINES = 650
_MAX_CLASS_LINES = 420


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of *path* outside docstrings and comments."""
    tree = ast.parse(path.read_text())
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body:
            first = body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                doc_lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return [
        (number, line.split("#", 1)[0])
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if number not in doc_lines
    ]


def test_no_module_outside_the_dialect_layer_tests_a_dialect_or_driver_name() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in _modules()
        if DIALECTS not in path.parents
        for number, line in _code_lines(path)
        if _DIALECT_TEST.search(line)
    ]
    assert found == []


def test_the_dialect_layer_imports_nothing_above_it_at_run_time() -> None:
    allowed = {"sqla_uow.exceptions", "sqla_uow._compat"}
    found: list[str] = []
    for path in sorted(DIALECTS.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # imports under ``if TYPE_CHECKING:`` are not run
            if isinstance(node, ast.ImportFrom) and node.module:
                absolute = node.level == 0 and node.module.startswith("sqla_uow")
                parent = node.level > 1
                if (absolute and node.module not in allowed) or parent:
                    found.append(f"{path.name}: from {'.' * node.level}{node.module}")
    assert found == []


def test_other_modules_reach_the_dialect_layer_through_its_package_only() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}: from {node.module}"
        for path in _modules()
        if DIALECTS not in path.parents
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and "_dialects._" in node.module
    ]
    assert found == []


def test_the_fakes_import_no_private_name_of_another_module() -> None:
    found: list[str] = []
    for path in sorted((PACKAGE / "testing").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                found += [
                    f"{path.name}: {alias.name} from {node.module}"
                    for alias in node.names
                    if alias.name.startswith("_")
                ]
    assert found == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_classes_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= _MAX_MODULE_LINES, f"{lines} lines: split the module by idea"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            assert size <= _MAX_CLASS_LINES, f"class {node.name}: {size} lines"
