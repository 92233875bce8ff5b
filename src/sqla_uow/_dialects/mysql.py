"""The MySQL / MariaDB backend."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import ColumnElement, Enum, Insert, String, case, cast
from sqlalchemy.dialects import mysql as mysql_types
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import Column
from sqlalchemy.sql import Select
from sqlalchemy.sql.visitors import iterate
from sqlalchemy.types import TypeEngine

from sqla_uow.exceptions import ConflictKind, UnsupportedDialectError

from ._base import Backend
from ._diagnostics import constraint_columns, mapper_or_none
from ._elements import UtcNow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from sqla_uow._model import ModelMeta

__all__ = ["MySQLBackend"]


class MySQLBackend(Backend):
    """MySQL / MariaDB."""

    name: ClassVar[str] = "MySQL / MariaDB"

    # -- transactions -----------------------------------------------------------------
    supports_read_only: ClassVar[bool] = True

    async def begin_read_only(self, connection: AsyncConnection) -> None:
        await connection.exec_driver_sql("SET TRANSACTION READ ONLY")

    # A transaction's timeout is MariaDB's session variable max_statement_time (MySQL's
    # max_execution_time bounds only SELECTs). The session's own value is kept in a
    # user variable and brought back when the connection goes back to the pool.
    supports_timeout: ClassVar[bool] = True

    async def set_timeout(self, connection: AsyncConnection, seconds: float, *, first: bool) -> Any:
        if not getattr(self.dialect, "is_mariadb", False):
            raise UnsupportedDialectError(
                "transaction(timeout=...) is supported on MariaDB (max_statement_time), not "
                "on MySQL, whose max_execution_time bounds only SELECT statements; leave "
                "timeout out, or set max_execution_time yourself",
                dialect=self.dialect.name,
            )
        if first:
            await connection.exec_driver_sql(
                f"SET {_SAVED_TIMEOUT} = @@max_statement_time, max_statement_time = %s",
                (seconds,),
            )
            self.restore_at_checkin(connection.info, _RESET_TIMEOUT)
        else:
            await connection.exec_driver_sql("SET max_statement_time = %s", (seconds,))

    async def reset_timeout(self, connection: AsyncConnection, saved: Any) -> None:
        await connection.exec_driver_sql(_RESET_TIMEOUT)

    # -- statements -------------------------------------------------------------------
    # upsert_many: INSERT ... ON DUPLICATE KEY UPDATE, which fires on any unique key (no
    # conflict target to check), in insertmanyvalues pages with RETURNING (MariaDB) to
    # count the rows.

    upsert_form: ClassVar[str | None] = "returning"

    def upsert_statement(
        self,
        meta: ModelMeta,
        conflict: Sequence[str],
        targets: Sequence[str],
        source: tuple[Sequence[Column[Any]], Select[Any]] | None = None,
        where: ColumnElement[bool] | None = None,
    ) -> Insert:
        """``INSERT ... ON DUPLICATE KEY UPDATE`` (a no-op update for no *targets*).

        The clause has no WHERE: with *where*, each column is set to
        ``IF(where, VALUES(col), col)``, the columns *where* reads assigned last (MySQL
        assigns left to right, and a later assignment sees the earlier ones).
        """
        assert meta.table is not None
        columns = meta.columns
        statement = mysql_insert(meta.table)
        if source is not None:
            statement = statement.from_select(list(source[0]), source[1])
        if targets:
            # Column keys, not Column objects: older SQLAlchemy 2.0 releases match only
            # strings here.
            set_: dict[str, Any] = {
                columns[name].key: statement.inserted[columns[name].key] for name in targets
            }
            by_key = {columns[name].key: columns[name] for name in targets}
            for name, value in meta.upsert_refresh.items():
                if name not in targets:
                    set_[columns[name].key] = value
                    by_key[columns[name].key] = columns[name]
            if where is None:
                return statement.on_duplicate_key_update(set_)
            read = {node.key for node in iterate(where) if isinstance(node, Column)}
            ordered = sorted(set_, key=lambda key: key in read)
            return statement.on_duplicate_key_update(
                {key: case((where, set_[key]), else_=by_key[key]) for key in ordered}
            )
        first = columns[conflict[0]]
        return statement.on_duplicate_key_update({first.key: first})

    # -- errors -----------------------------------------------------------------------
    # Server error codes, which PyMySQL and aiomysql report as the first argument.
    # (PyMySQL also reports the generic SQLSTATE "23000" for every integrity error;
    # the numeric code is the precise one.)

    driver_modules: ClassVar[tuple[str, ...]] = ("pymysql", "aiomysql")
    conflicts: ClassVar[dict[str | int, ConflictKind]] = {
        1062: "unique",  # ER_DUP_ENTRY
        1586: "unique",  # ER_DUP_ENTRY_WITH_KEY_NAME
        1451: "foreign_key",  # ER_ROW_IS_REFERENCED_2
        1452: "foreign_key",  # ER_NO_REFERENCED_ROW_2
        1048: "not_null",  # ER_BAD_NULL_ERROR
        1364: "not_null",  # ER_NO_DEFAULT_FOR_FIELD: a NOT NULL column without a value
        3819: "check",  # ER_CHECK_CONSTRAINT_VIOLATED (MySQL)
        4025: "check",  # ER_CONSTRAINT_FAILED (MariaDB)
    }
    retryable: ClassVar[frozenset[str | int]] = frozenset({1213})  # ER_LOCK_DEADLOCK
    lock_not_available: ClassVar[frozenset[str | int]] = frozenset(
        {1205, 3572}  # ER_LOCK_WAIT_TIMEOUT (also MariaDB's NOWAIT), ER_LOCK_NOWAIT (MySQL)
    )
    statement_timeouts: ClassVar[frozenset[str | int]] = frozenset({1969})  # ER_STATEMENT_TIMEOUT

    @classmethod
    def error_code(cls, err: BaseException) -> str | int | None:
        """The server's numeric error code."""
        if err.args and isinstance(err.args[0], int):
            return err.args[0]
        return None

    @classmethod
    def conflict_context(
        cls,
        chain: Sequence[BaseException],
        err: BaseException,
        kind: ConflictKind,
        model: type[Any] | None,
    ) -> tuple[str | None, tuple[str, ...]]:
        """The key, constraint or column the message names, once the code classified it."""
        message = str(err.args[1]) if len(err.args) > 1 else ""
        constraint: str | None = None
        columns: tuple[str, ...] = ()
        if kind == "unique" and (match := _KEY.search(message)):
            constraint = match.group(1)
            mapper = mapper_or_none(model)
            if constraint == "PRIMARY" and mapper is not None:
                columns = tuple(col.name for col in mapper.primary_key)
        elif kind == "foreign_key":
            if match := _CONSTRAINT.search(message):
                constraint = match.group(1)
            if match := _FK_COLUMNS.search(message):
                columns = tuple(part.strip(" `") for part in match.group(1).split(","))
        elif kind == "not_null" and (match := _COLUMN.search(message)):
            columns = (match.group(1),)
        elif kind == "check":
            match = _CONSTRAINT.search(message) or _CHECK.search(message)
            if match:
                constraint = match.group(1)
        if constraint and not columns:
            columns = constraint_columns(model, constraint, cls.default_constraint_names)
        return constraint, columns

    @classmethod
    def default_constraint_names(
        cls, table: str, columns: tuple[str, ...], primary: bool
    ) -> tuple[str, ...]:
        """``PRIMARY``; a unique key is named after its first column."""
        return ("PRIMARY",) if primary else (columns[0],)

    # -- timestamps: DATETIME(6) holding UTC, written with UTC_TIMESTAMP(6) -------------
    # (TIMESTAMP would convert to the session's time zone and ends in 2038.)

    naive_utc_datetimes: ClassVar[bool] = True

    def utc_datetime_type(self) -> TypeEngine[Any]:
        """``DATETIME(6)``: microseconds, no time zone (the values are UTC)."""
        return mysql_types.DATETIME(fsp=6)

    # -- reads: IN lists, NULL ordering, keyset, value rules ----------------------------

    lock_options: ClassVar[frozenset[str]] = frozenset({"nowait", "skip_locked"})
    integer_bits: ClassVar[int] = 32

    def keyset_text(
        self, expression: ColumnElement[Any], column_type: TypeEngine[Any]
    ) -> ColumnElement[Any] | None:
        """Native ``ENUM`` columns, which sort by declaration order but compare with a
        string as text: the page is ordered by the text instead."""
        if isinstance(column_type, Enum):
            return cast(expression, String())
        return None


_SAVED_TIMEOUT = "@sqla_uow_max_statement_time"
"""The user variable holding the session's max_statement_time while a timeout is set."""
_RESET_TIMEOUT = f"SET max_statement_time = {_SAVED_TIMEOUT}"

# Context read from messages once the error code has classified them.
_KEY = re.compile(r"for key '(?:[^'.]*\.)?([^']+)'")
_CONSTRAINT = re.compile(r"CONSTRAINT [`'\"]?([^`'\" ]+)[`'\"]?")
_FK_COLUMNS = re.compile(r"FOREIGN KEY \(([^)]*)\)")
_CHECK = re.compile(r"[Cc]heck constraint '([^']+)'")
_COLUMN = re.compile(r"(?:Column|Field) '([^']+)'")


@compiles(UtcNow, "mysql")
@compiles(UtcNow, "mariadb")
def _utc_now(element: UtcNow, compiler: Any, **kw: Any) -> str:
    """The statement's UTC time with microseconds."""
    return "UTC_TIMESTAMP(6)"
