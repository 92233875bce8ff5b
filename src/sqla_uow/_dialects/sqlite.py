"""The SQLite backend."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, ClassVar

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
