"""The SQLite backend."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import (
    ColumnElement,
    Date,
    DateTime,
    String,
    Time,
    bindparam,
    func,
    select,
    type_coerce,
)
from sqlalchemy import column as sql_column
from sqlalchemy.types import TypeEngine

from sqla_uow.exceptions import ConflictKind

from ._base import Backend
from ._diagnostics import constraint_columns, named_constraint

__all__ = ["SQLiteBackend"]


class SQLiteBackend(Backend):
    """SQLite."""

    name: ClassVar[str] = "SQLite"

    # -- transactions -----------------------------------------------------------------
    # (transaction behaviour goes here)

    # -- statements -------------------------------------------------------------------
    # (statement builders go here)

    # -- errors -----------------------------------------------------------------------
    # sqlite3's extended result codes (https://www.sqlite.org/rescode.html).

    driver_modules: ClassVar[tuple[str, ...]] = ("sqlite3",)  # aiosqlite raises sqlite3's
    conflicts: ClassVar[dict[str | int, ConflictKind]] = {
        275: "check",  # SQLITE_CONSTRAINT_CHECK
        787: "foreign_key",  # SQLITE_CONSTRAINT_FOREIGNKEY
        1299: "not_null",  # SQLITE_CONSTRAINT_NOTNULL
        1555: "unique",  # SQLITE_CONSTRAINT_PRIMARYKEY
        2067: "unique",  # SQLITE_CONSTRAINT_UNIQUE
        2579: "unique",  # SQLITE_CONSTRAINT_ROWID
    }

    @classmethod
    def error_code(cls, err: BaseException) -> str | int | None:
        """sqlite3's extended result code; on Python 3.10 (no code) one read from the message."""
        code = getattr(err, "sqlite_errorcode", None)
        if isinstance(code, int):
            return code
        if sys.version_info < (3, 11) and err.args:
            prefix = str(err.args[0]).partition(" constraint failed")[0]
            return _PREFIX_CODES.get(prefix)
        return None

    @classmethod
    def reported_code(cls, err: BaseException, code: str | int) -> str | int | None:
        """Only a code the driver reported; Python 3.10's is derived from the message."""
        return code if hasattr(err, "sqlite_errorcode") else None

    @classmethod
    def is_unmatched_conflict_target(cls, err: BaseException) -> bool:
        """SQLite's generic error code 1 with its fixed message (it has no code of its own)."""
        return bool(err.args) and "ON CONFLICT clause does not match" in str(err.args[0])

    @classmethod
    def conflict_context(
        cls,
        chain: Sequence[BaseException],
        err: BaseException,
        kind: ConflictKind,
        model: type[Any] | None,
    ) -> tuple[str | None, tuple[str, ...]]:
        """Columns from the message ("UNIQUE constraint failed: users.email"); a CHECK's name."""
        names = _message_names(err)
        if kind == "check":
            # "CHECK constraint failed: ck_name" names the constraint.
            constraint = names[0] if len(names) == 1 else None
            return constraint, constraint_columns(model, constraint, cls.default_constraint_names)
        return (named_constraint(model, names) if kind == "unique" else None), names

    # -- reads: IN lists, NULL ordering, keyset, value rules ----------------------------

    in_list_inline: ClassVar[int] = 500
    """``__in`` lists up to this long are sent as one parameter per value; longer ones as
    one JSON parameter (a statement takes at most 32,766 parameters)."""

    def in_list(self, column: ColumnElement[Any], values: list[Any]) -> ColumnElement[bool]:
        """A long list becomes one JSON parameter read by ``json_each``.

        Values a JSON document cannot carry are sent as ``IN (...)``.
        """
        if len(values) > self.in_list_inline:
            dialect = self.dialect
            processor = column.type.dialect_impl(dialect).bind_processor(dialect)
            processed = [processor(v) for v in values] if processor is not None else values
            with contextlib.suppress(TypeError, ValueError):
                payload = json.dumps(processed)
                value_column: ColumnElement[Any] = sql_column("value")
                source = select(value_column).select_from(
                    func.json_each(bindparam(None, payload, type_=String(), unique=True))
                )
                return column.in_(source.scalar_subquery())
        return column.in_(values)

    def keyset_text(
        self, expression: ColumnElement[Any], column_type: TypeEngine[Any]
    ) -> ColumnElement[Any] | None:
        """Date and time columns, stored as text.

        A value written by the database (such as ``CURRENT_TIMESTAMP``) need not have
        the text SQLAlchemy would bind for the same value: the cursor carries the
        stored text instead.
        """
        if isinstance(column_type, (Date, DateTime, Time)):
            return type_coerce(expression, String())
        return None


# Python 3.10's sqlite3 exceptions carry no error code; SQLite's fixed message prefix
# ("UNIQUE constraint failed: ...") stands in for it there.
_PREFIX_CODES = {
    "CHECK": 275,
    "FOREIGN KEY": 787,
    "NOT NULL": 1299,
    "UNIQUE": 2067,
}


def _message_names(err: BaseException) -> tuple[str, ...]:
    # "UNIQUE constraint failed: users.email, users.name" -> ("email", "name").
    # Read only after the error code classified the error; it is context, not detection.
    message = str(err.args[0]) if err.args else ""
    _, sep, tail = message.partition(" failed: ")
    if not sep:
        return ()
    return tuple(part.strip().rpartition(".")[2] for part in tail.split(",") if part.strip())
