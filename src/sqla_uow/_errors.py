"""Translation of driver errors into sqla_uow's exceptions.

Detection reads SQLSTATEs (PostgreSQL drivers) and numeric error codes (sqlite3,
MySQL / MariaDB drivers), not message text. Messages are read only for context (the
columns or constraint named) once the code has classified the error, and on Python
3.10, whose sqlite3 exceptions have no error code, for SQLite's fixed message prefix.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Generator, Iterator
from typing import Any, TypeGuard

from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper
from sqlalchemy.schema import Constraint, Index, PrimaryKeyConstraint, Table, UniqueConstraint

from .exceptions import ConflictError, ConflictKind

__all__ = [
    "conflict_error",
    "database_errors",
    "error_chain",
    "is_conflict_error",
    "is_retryable_error",
    "is_unmatched_conflict_target",
    "sqlstate_of",
]

_PG_CONFLICTS: dict[str, ConflictKind] = {
    "23505": "unique",
    "23503": "foreign_key",
    "23502": "not_null",
    "23514": "check",
    "23P01": "exclusion",
}
# sqlite3 extended result codes (https://www.sqlite.org/rescode.html).
_SQLITE_CONFLICTS: dict[int, ConflictKind] = {
    275: "check",  # SQLITE_CONSTRAINT_CHECK
    787: "foreign_key",  # SQLITE_CONSTRAINT_FOREIGNKEY
    1299: "not_null",  # SQLITE_CONSTRAINT_NOTNULL
    1555: "unique",  # SQLITE_CONSTRAINT_PRIMARYKEY
    2067: "unique",  # SQLITE_CONSTRAINT_UNIQUE
    2579: "unique",  # SQLITE_CONSTRAINT_ROWID
}
# MySQL / MariaDB server error codes.
_MYSQL_CONFLICTS: dict[int, ConflictKind] = {
    1062: "unique",  # ER_DUP_ENTRY
    1586: "unique",  # ER_DUP_ENTRY_WITH_KEY_NAME
    1451: "foreign_key",  # ER_ROW_IS_REFERENCED_2
    1452: "foreign_key",  # ER_NO_REFERENCED_ROW_2
    1048: "not_null",  # ER_BAD_NULL_ERROR
    1364: "not_null",  # ER_NO_DEFAULT_FOR_FIELD: a NOT NULL column without a value
    3819: "check",  # ER_CHECK_CONSTRAINT_VIOLATED (MySQL)
    4025: "check",  # ER_CONSTRAINT_FAILED (MariaDB)
}
_PG_RETRYABLE = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
_MYSQL_RETRYABLE = frozenset({1213})  # ER_LOCK_DEADLOCK


def error_chain(exc: BaseException) -> Iterator[BaseException]:
    """Yield *exc*, the DBAPI error it wraps, and every cause or context behind them."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException):
            pending.append(orig)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)


def sqlstate_of(exc: BaseException) -> str | None:
    """The first SQLSTATE found along the error chain of *exc*, if any."""
    for err in error_chain(exc):
        for attr in ("sqlstate", "pgcode"):
            value = getattr(err, attr, None)
            if isinstance(value, str) and len(value) == 5:
                return value
    return None


def _mysql_code(err: BaseException) -> int | None:
    module = type(err).__module__
    if not module.startswith(("pymysql", "aiomysql")):
        return None
    if err.args and isinstance(err.args[0], int):
        return err.args[0]
    return None


# Python 3.10's sqlite3 exceptions carry no error code; SQLite's fixed message prefix
# ("UNIQUE constraint failed: ...") stands in for it there.
_SQLITE_PREFIX_CODES = {
    "CHECK": 275,
    "FOREIGN KEY": 787,
    "NOT NULL": 1299,
    "UNIQUE": 2067,
}


def _sqlite_code(err: BaseException) -> int | None:
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code
    if sys.version_info < (3, 11) and type(err).__module__ == "sqlite3" and err.args:
        prefix = str(err.args[0]).partition(" constraint failed")[0]
        return _SQLITE_PREFIX_CODES.get(prefix)
    return None


def is_retryable_error(exc: BaseException) -> bool:
    """Whether *exc* (or anything it chains) is a serialization failure or a deadlock.

    PostgreSQL SQLSTATE 40001 / 40P01 and MySQL / MariaDB error 1213.
    """
    if sqlstate_of(exc) in _PG_RETRYABLE:
        return True
    return any(_mysql_code(err) in _MYSQL_RETRYABLE for err in error_chain(exc))


def is_unmatched_conflict_target(exc: BaseException) -> bool:
    """Whether *exc* is the database refusing an ``ON CONFLICT`` target no unique key matches.

    PostgreSQL SQLSTATE 42P10; SQLite's generic error code 1 with its fixed message
    (SQLite has no code of its own for it).
    """
    if sqlstate_of(exc) == "42P10":
        return True
    return any(
        type(err).__module__ == "sqlite3"
        and bool(err.args)
        and "ON CONFLICT clause does not match" in str(err.args[0])
        for err in error_chain(exc)
    )


def _pg_constraint(exc: BaseException) -> str | None:
    for err in error_chain(exc):
        name = getattr(err, "constraint_name", None)  # asyncpg
        if isinstance(name, str):
            return name
        diag = getattr(err, "diag", None)  # psycopg
        name = getattr(diag, "constraint_name", None)
        if isinstance(name, str):
            return name
    return None


def _pg_column(exc: BaseException) -> str | None:
    for err in error_chain(exc):
        name = getattr(err, "column_name", None)
        if isinstance(name, str):
            return name
        diag = getattr(err, "diag", None)
        name = getattr(diag, "column_name", None)
        if isinstance(name, str):
            return name
    return None


def _mapper(model: type[Any] | None) -> Mapper[Any] | None:
    found: object = sa_inspect(model, raiseerr=False) if model is not None else None
    return found if _is_mapper(found) else None


def _is_mapper(value: object) -> TypeGuard[Mapper[Any]]:
    return isinstance(value, Mapper)


def _schema_items(model: type[Any] | None) -> Iterator[tuple[str | None, tuple[str, ...], bool]]:
    """(name, column names, unique) of each constraint and index of *model*'s tables."""
    mapper = _mapper(model)
    if mapper is None:
        return
    for table in mapper.tables:
        if not isinstance(table, Table):
            continue
        items: list[Constraint | Index] = [*table.constraints, *table.indexes]
        for item in items:
            name = item.name
            columns = tuple(col.name for col in getattr(item, "columns", ()))
            if isinstance(item, Index):
                unique = bool(item.unique)
            else:
                unique = isinstance(item, (UniqueConstraint, PrimaryKeyConstraint))
            yield (name if isinstance(name, str) else None), columns, unique


# PostgreSQL truncates identifiers to 63 bytes (NAMEDATALEN - 1).
_PG_MAX_IDENTIFIER = 63


def _pg_default_name(table: str, columns: tuple[str, ...], label: str) -> str:
    """The name PostgreSQL gives an unnamed constraint: ``<table>_<col>_<col>_<label>``.

    Follows PostgreSQL's ``makeObjectName``: when the name would be too long, the
    longer of the table part and the column part is shortened first.
    """
    name1, name2 = table, "_".join(columns)
    available = _PG_MAX_IDENTIFIER - len(label) - 2
    len1, len2 = len(name1), len(name2)
    while len1 + len2 > available:
        if len1 > len2:
            len1 -= 1
        else:
            len2 -= 1
    return f"{name1[:len1]}_{name2[:len2]}_{label}"


def _constraint_columns(model: type[Any] | None, constraint: str | None) -> tuple[str, ...]:
    """Columns of the constraint or index named *constraint* on *model*'s tables.

    Named constraints and indexes are found in the metadata. An unnamed one is found by
    the name the database gave it: PostgreSQL's ``<table>_pkey`` and
    ``<table>_<columns>_key``, MySQL / MariaDB's ``PRIMARY`` and the first column's name.
    """
    if constraint is None:
        return ()
    unnamed: list[tuple[str, ...]] = []
    for name, columns, unique in _schema_items(model):
        if name == constraint:
            return columns
        if name is None and unique and columns:
            unnamed.append(columns)
    mapper = _mapper(model)
    if mapper is None:
        return ()
    for table in mapper.tables:
        table_name = str(getattr(table, "name", ""))
        pk_columns = tuple(col.name for col in getattr(table, "primary_key", ()))
        if constraint in ("PRIMARY", f"{table_name}_pkey") and pk_columns:
            return pk_columns
        for columns in unnamed:
            if constraint == _pg_default_name(table_name, columns, "key"):
                return columns
            # MySQL / MariaDB name an unnamed unique key after its first column.
            if constraint == columns[0]:
                return columns
    return ()


def _sqlite_columns(err: BaseException) -> tuple[str, ...]:
    # "UNIQUE constraint failed: users.email, users.name" -> ("email", "name").
    # Read only after the error code classified the error; it is context, not detection.
    message = str(err.args[0]) if err.args else ""
    _, sep, tail = message.partition(" failed: ")
    if not sep:
        return ()
    return tuple(part.strip().rpartition(".")[2] for part in tail.split(",") if part.strip())


def is_conflict_error(exc: BaseException) -> bool:
    """Whether *exc* is an integrity violation that `conflict_error` translates.

    Every ``IntegrityError`` is one; so is a database error whose SQLSTATE or driver
    code names an integrity rule, whatever class the driver gave it (MariaDB raises a
    failed CHECK constraint, error 4025, as ``OperationalError``).
    """
    if isinstance(exc, sa_exc.IntegrityError):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    # Driver codes first: PyMySQL also reports the generic SQLSTATE "23000".
    for err in error_chain(exc):
        sqlite_code = _sqlite_code(err)
        if sqlite_code is not None:
            return sqlite_code in _SQLITE_CONFLICTS
        mysql_code = _mysql_code(err)
        if mysql_code is not None:
            return mysql_code in _MYSQL_CONFLICTS
    return sqlstate_of(exc) in _PG_CONFLICTS


def _named_constraint(model: type[Any] | None, columns: tuple[str, ...]) -> str | None:
    """The name of *model*'s unique constraint or unique index over exactly *columns*."""
    wanted = set(columns)
    for name, item_columns, unique in _schema_items(model):
        if name and unique and wanted and set(item_columns) == wanted:
            return name
    return None


# Context read from MySQL / MariaDB messages once the error code has classified them.
_MYSQL_KEY = re.compile(r"for key '(?:[^'.]*\.)?([^']+)'")
_MYSQL_CONSTRAINT = re.compile(r"CONSTRAINT [`'\"]?([^`'\" ]+)[`'\"]?")
_MYSQL_FK_COLUMNS = re.compile(r"FOREIGN KEY \(([^)]*)\)")
_MYSQL_CHECK = re.compile(r"[Cc]heck constraint '([^']+)'")
_MYSQL_COLUMN = re.compile(r"(?:Column|Field) '([^']+)'")


def _mysql_context(
    err: BaseException, kind: ConflictKind, model: type[Any] | None
) -> tuple[str | None, tuple[str, ...]]:
    message = str(err.args[1]) if len(err.args) > 1 else ""
    constraint: str | None = None
    columns: tuple[str, ...] = ()
    if kind == "unique" and (match := _MYSQL_KEY.search(message)):
        constraint = match.group(1)
        mapper = _mapper(model)
        if constraint == "PRIMARY" and mapper is not None:
            columns = tuple(col.name for col in mapper.primary_key)
    elif kind == "foreign_key":
        if match := _MYSQL_CONSTRAINT.search(message):
            constraint = match.group(1)
        if match := _MYSQL_FK_COLUMNS.search(message):
            columns = tuple(part.strip(" `") for part in match.group(1).split(","))
    elif kind == "not_null" and (match := _MYSQL_COLUMN.search(message)):
        columns = (match.group(1),)
    elif kind == "check":
        match = _MYSQL_CONSTRAINT.search(message) or _MYSQL_CHECK.search(message)
        if match:
            constraint = match.group(1)
    if constraint and not columns:
        columns = _constraint_columns(model, constraint)
    return constraint, columns


def conflict_error(exc: sa_exc.DBAPIError, *, model: type[Any] | None = None) -> ConflictError:
    """Build the `ConflictError` for an integrity violation; the caller raises it ``from exc``.

    *exc* is an ``IntegrityError``, or another database error for which
    `is_conflict_error` is true.
    """
    kind: ConflictKind = "unknown"
    constraint: str | None = None
    columns: tuple[str, ...] = ()
    code: str | int | None = None

    sqlstate = sqlstate_of(exc)
    # PyMySQL also reports a SQLSTATE (the generic "23000" for every integrity error);
    # its numeric code is the precise one, read below.
    if sqlstate is not None and not any(_mysql_code(err) is not None for err in error_chain(exc)):
        code = sqlstate
        kind = _PG_CONFLICTS.get(sqlstate, "unknown")
        constraint = _pg_constraint(exc)
        columns = _constraint_columns(model, constraint)
        if not columns and (column := _pg_column(exc)) is not None:
            columns = (column,)
    else:
        for err in error_chain(exc):
            sqlite_code = _sqlite_code(err)
            if sqlite_code is not None:
                # Only a code the driver reported; Python 3.10's is derived from the message.
                code = sqlite_code if hasattr(err, "sqlite_errorcode") else None
                kind = _SQLITE_CONFLICTS.get(sqlite_code, "unknown")
                names = _sqlite_columns(err)
                if kind == "check":
                    # "CHECK constraint failed: ck_name" names the constraint.
                    constraint = names[0] if len(names) == 1 else None
                    columns = _constraint_columns(model, constraint)
                else:
                    columns = names
                    if kind == "unique":
                        constraint = _named_constraint(model, columns)
                break
            mysql_code = _mysql_code(err)
            if mysql_code is not None:
                code = mysql_code
                kind = _MYSQL_CONFLICTS.get(mysql_code, "unknown")
                constraint, columns = _mysql_context(err, kind, model)
                break

    target = f" writing {model.__name__}" if model is not None else ""
    detail: list[str] = []
    if constraint:
        detail.append(f"constraint {constraint!r}")
    if columns:
        detail.append("columns " + ", ".join(columns))
    where = f" ({'; '.join(detail)})" if detail else ""
    label = kind.replace("_", "-") if kind != "unknown" else "integrity"
    message = f"{label} violation{target}{where}"
    return ConflictError(
        message, kind=kind, model=model, constraint=constraint, columns=columns, code=code
    )


@contextlib.contextmanager
def database_errors(model: type[Any] | None = None) -> Generator[None, None, None]:
    """The error boundary: an integrity violation raised in the block becomes `ConflictError`.

    Every repository call, flush and commit runs its statements inside this one context
    manager (a plain ``with`` works around ``await``), so a driver error is translated
    in one place; *model* names the model being written, when there is one. Other
    errors pass through unchanged.
    """
    try:
        yield
    except sa_exc.DBAPIError as exc:
        if is_conflict_error(exc):
            raise conflict_error(exc, model=model) from exc
        raise
