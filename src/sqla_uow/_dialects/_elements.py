"""SQL elements whose rendering differs between backends."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, DateTime
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.sqltypes import NULLTYPE
from sqlalchemy.sql.visitors import InternalTraversal

__all__ = ["NullFlag", "UtcNow", "native_null_flag"]


class NullFlag(ColumnElement[Any]):
    """The leading sort key that makes NULL sort as the greatest value.

    ``expression IS NULL`` (false before true) on SQLite, MySQL, MariaDB and other
    databases that sort NULL as the smallest value. Where the database sorts NULL as
    the greatest value already (PostgreSQL, whose backend module registers
    `native_null_flag`, and Oracle) it is the expression itself, a sort key the planner
    drops as redundant, so an index on the column still serves the ordering.

    It is ordered with ``asc()`` / ``desc()`` like any column, so SQLAlchemy can move
    it into a subquery's columns (as it does for joined eager loading with a limit).
    """

    __visit_name__ = "sqla_uow_null_flag"
    inherit_cache = True
    _traverse_internals = [  # noqa: RUF012 - SQLAlchemy's declared traversal
        ("element", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, element: ColumnElement[Any]) -> None:
        self.element = element
        self.type = NULLTYPE  # never read back: no result processing


def _compile_null_flag(element: NullFlag, compiler: Any, **kw: Any) -> str:
    rendered: str = compiler.process(element.element.is_(None), **kw)
    return rendered


def native_null_flag(element: NullFlag, compiler: Any, **kw: Any) -> str:
    """`NullFlag` on a database that sorts NULL as the greatest value: the expression."""
    rendered: str = compiler.process(element.element, **kw)
    return rendered


compiles(NullFlag)(_compile_null_flag)
# Oracle, which has no backend module, also sorts NULL as the greatest value.
compiles(NullFlag, "oracle")(native_null_flag)


class UtcNow(ColumnElement[Any]):
    """The current UTC time, as the database's clock gives it, in the form its
    backend's `Backend.utc_datetime_type` stores.

    ``CURRENT_TIMESTAMP`` here; each backend module registers its own rendering (the
    time of the statement, with microseconds where the database has them), usable as a
    column's ``server_default`` and in ``SET`` clauses.
    """

    __visit_name__ = "sqla_uow_utc_now"
    inherit_cache = True
    _traverse_internals = []  # noqa: RUF012 - SQLAlchemy's declared traversal

    def __init__(self) -> None:
        self.type = DateTime(timezone=True)


def _compile_utc_now(element: UtcNow, compiler: Any, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


compiles(UtcNow)(_compile_utc_now)
