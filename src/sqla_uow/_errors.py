"""Translation of driver errors into sqla_uow's exceptions.

Detection reads SQLSTATEs (PostgreSQL drivers) and numeric error codes (sqlite3,
MySQL / MariaDB drivers), never message text. The only text read is SQLite's list of
columns in a constraint message, used for context once the code has classified it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.schema import Table

from .exceptions import ConflictError, ConflictKind

__all__ = ["conflict_error", "error_chain", "is_retryable_error", "sqlstate_of"]

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
    if not (module.startswith("pymysql") or module.startswith("aiomysql")):
        return None
    if err.args and isinstance(err.args[0], int):
        return err.args[0]
    return None


def _sqlite_code(err: BaseException) -> int | None:
    code = getattr(err, "sqlite_errorcode", None)
    return code if isinstance(code, int) else None


def is_retryable_error(exc: BaseException) -> bool:
    """Whether *exc* (or anything it chains) is a serialization failure or a deadlock.

    PostgreSQL SQLSTATE 40001 / 40P01 and MySQL / MariaDB error 1213.
    """
    if sqlstate_of(exc) in _PG_RETRYABLE:
        return True
    return any(_mysql_code(err) in _MYSQL_RETRYABLE for err in error_chain(exc))


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


def _constraint_columns(model: type[Any] | None, constraint: str | None) -> tuple[str, ...]:
    """Columns of the named constraint or index of *model*'s table, from the metadata."""
    if model is None or constraint is None:
        return ()
    mapper = sa_inspect(model, raiseerr=False)
    if mapper is None:
        return ()
    for table in mapper.tables:
        if not isinstance(table, Table):
            continue
        for item in (*table.constraints, *table.indexes):
            if item.name == constraint:
                return tuple(col.name for col in item.columns)
    return ()


def _sqlite_columns(err: BaseException) -> tuple[str, ...]:
    # "UNIQUE constraint failed: users.email, users.name" -> ("email", "name").
    # Read only after the error code classified the error; it is context, not detection.
    message = str(err.args[0]) if err.args else ""
    _, sep, tail = message.partition(" failed: ")
    if not sep:
        return ()
    return tuple(part.strip().rpartition(".")[2] for part in tail.split(",") if part.strip())


def conflict_error(
    exc: sa_exc.IntegrityError, *, model: type[Any] | None = None
) -> ConflictError:
    """Build the `ConflictError` for an `IntegrityError`; the caller raises it ``from exc``."""
    kind: ConflictKind = "unknown"
    constraint: str | None = None
    columns: tuple[str, ...] = ()
    code: str | int | None = None

    sqlstate = sqlstate_of(exc)
    if sqlstate is not None:
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
                code = sqlite_code
                kind = _SQLITE_CONFLICTS.get(sqlite_code, "unknown")
                columns = _sqlite_columns(err)
                break
            mysql_code = _mysql_code(err)
            if mysql_code is not None:
                code = mysql_code
                kind = _MYSQL_CONFLICTS.get(mysql_code, "unknown")
                break

    target = f" writing {model.__name__}" if model is not None else ""
    detail = []
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
