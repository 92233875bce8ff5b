"""The SQLite backend."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final

from sqlalchemy import (
    ColumnElement,
    Date,
    DateTime,
    Insert,
    String,
    Time,
    bindparam,
    column,
    event,
    func,
    insert,
    literal,
    literal_column,
    select,
    table,
    true,
    type_coerce,
)
from sqlalchemy import column as sql_column
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import Column
from sqlalchemy.sql import Select
from sqlalchemy.types import TypeEngine

from sqla_uow._compat import (
    on_connect_isolation_level,
    run_in_sqlite3_thread,
    sqlite3_connection,
    sqlite_autocommit,
    sqlite_error_code,
    sqlite_legacy_transaction_control,
)
from sqla_uow.exceptions import ConflictKind, IllegalTransactionStateError

from ._base import Backend, on_conflict, timeout_ms
from ._diagnostics import constraint_columns, named_constraint
from ._elements import UtcNow
from ._values import shaped_values

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncConnection
    from sqlalchemy.pool import ConnectionPoolEntry

    from sqla_uow._model import ModelMeta

__all__ = ["SQLiteBackend"]

_GUARD_BUSY_TIMEOUT_MS: Final = 200
"""Busy timeout of a connection that begins while an enclosing transaction is open."""

_IMMEDIATE_OPTION: Final = "sqla_uow_sqlite_begin_immediate"
"""Execution option: begin the transaction with ``BEGIN IMMEDIATE``."""

_BUSY_OPTION: Final = "sqla_uow_sqlite_busy_timeout_ms"
"""Execution option: a busy timeout (ms) set on the connection before BEGIN."""

_OWNER_KEY: Final = "sqla_uow_transaction_owner"
"""Key in a pooled connection's ``info``: the `Connection` whose transaction is open on it."""

_BUSY_CODES: Final = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED (primary codes)


class SQLiteBackend(Backend):
    """SQLite."""

    name: ClassVar[str] = "SQLite"

    # -- transactions -----------------------------------------------------------------
    supports_read_only: ClassVar[bool] = True
    one_writer: ClassVar[bool] = True

    def install_transaction_hooks(self, engine: Engine) -> None:
        """Install SQLAlchemy's documented fix for the sqlite3 driver's transaction control.

        The driver stops emitting BEGIN itself (its legacy transaction control) and
        `_on_begin` emits it for every transaction, so SAVEPOINTs really nest.
        """
        super().install_transaction_hooks(engine)
        event.listen(engine, "connect", SQLiteBackend._on_connect)
        event.listen(engine, "begin", SQLiteBackend._on_begin)

    def begin_options(
        self, *, read_only: bool, apply_read_only: bool, guarded: bool, timeout: float | None = None
    ) -> dict[str, Any]:
        # Writers take the write lock at BEGIN and queue on the busy timeout; with a
        # deferred BEGIN, two transactions that read and then write cannot both
        # upgrade their locks and one fails at once (SQLITE_BUSY). A transaction's
        # timeout is the busy timeout, set before BEGIN so that it bounds the wait
        # for the lock there too.
        options: dict[str, Any] = {_IMMEDIATE_OPTION: not read_only}
        if timeout is not None:
            options[_BUSY_OPTION] = timeout_ms(timeout)
        if guarded:
            options[_BUSY_OPTION] = min(
                options.get(_BUSY_OPTION, _GUARD_BUSY_TIMEOUT_MS), _GUARD_BUSY_TIMEOUT_MS
            )
        return options

    supports_timeout: ClassVar[bool] = True

    async def begin_timeout(self, connection: AsyncConnection, seconds: float) -> Any:
        return None  # set before BEGIN (begin_options), restored at check-in

    async def set_timeout(self, connection: AsyncConnection, seconds: float, *, first: bool) -> Any:
        previous: int | None = None
        if first:
            previous = int((await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar_one())
            self._restore_busy_timeout_at_checkin(connection.info, previous)
        await connection.exec_driver_sql(f"PRAGMA busy_timeout = {timeout_ms(seconds)}")
        return previous

    async def reset_timeout(self, connection: AsyncConnection, saved: Any) -> None:
        await connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(saved)}")

    @staticmethod
    def _restore_busy_timeout_at_checkin(info: dict[Any, Any], previous: int) -> None:
        """Queue the restore of the connection's busy timeout, unless one is queued."""
        if not any(s.startswith("PRAGMA busy") for s in Backend.pending_restores(info)):
            Backend.restore_at_checkin(info, f"PRAGMA busy_timeout = {int(previous)}")

    async def begin_read_only(self, connection: AsyncConnection) -> None:
        await connection.exec_driver_sql("PRAGMA query_only = 1")
        self.restore_at_checkin(connection.info, "PRAGMA query_only = 0")

    def memory_database(self, url: URL) -> bool:
        return url.database in (None, "", ":memory:")

    def is_busy(self, error: BaseException) -> bool:
        orig = getattr(error, "orig", error)
        for err in (error, orig, error.__cause__):
            if not isinstance(err, sqlite3.OperationalError) and not (
                err is not None and type(err).__name__ == "OperationalError"
            ):
                continue
            code = sqlite_error_code(err)
            if code is not None:
                return code & 0xFF in _BUSY_CODES
            # Python 3.10 has no error codes on sqlite3 exceptions; SQLite's own fixed
            # message for SQLITE_BUSY is the only signal there.
            if err.args and err.args[0] in ("database is locked", "database table is locked"):
                return True
        return False

    @staticmethod
    def _manages_transactions(raw: sqlite3.Connection) -> bool:
        """Python 3.12+ ``autocommit=False/True``: the driver's transaction control is right."""
        return sqlite_autocommit(raw) not in (-1, sqlite_legacy_transaction_control())

    @staticmethod
    def _on_connect(dbapi_connection: Any, connection_record: ConnectionPoolEntry) -> None:
        raw = sqlite3_connection(dbapi_connection)
        if raw is not None and SQLiteBackend._manages_transactions(raw):
            return
        dbapi_connection.isolation_level = None

    @staticmethod
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        if on_connect_isolation_level(conn.dialect) == "AUTOCOMMIT":
            return
        dbapi_connection = conn.connection.dbapi_connection
        raw = sqlite3_connection(dbapi_connection)
        if raw is not None:
            if SQLiteBackend._manages_transactions(raw):
                return
            owner_ref: weakref.ref[Connection] | None = conn.info.get(_OWNER_KEY)
            owner = owner_ref() if owner_ref is not None else None
            if owner is not None and owner is not conn and owner.in_transaction():
                raise IllegalTransactionStateError(
                    "two transactions at once on one shared SQLite connection (the engine's "
                    f"{type(conn.engine.pool).__name__}); they would commit or roll back each "
                    "other's work. Use a file database, or run the transactions one after another"
                )
            if raw.in_transaction:
                return  # another `begin` hook of this same Connection already began it
        conn.info[_OWNER_KEY] = weakref.ref(conn)
        if dbapi_connection is not None and dbapi_connection.isolation_level is not None:
            # A connection checked out before the fix was installed, or one whose
            # isolation level was reset to the driver's legacy mode.
            dbapi_connection.isolation_level = None
        busy_timeout = options.get(_BUSY_OPTION)
        if busy_timeout is not None:
            previous = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(busy_timeout)}")
            SQLiteBackend._restore_busy_timeout_at_checkin(conn.info, int(previous))
        begin = "BEGIN IMMEDIATE" if options.get(_IMMEDIATE_OPTION) else "BEGIN"
        try:
            # One hop to the driver's thread instead of a statement's three.
            done = run_in_sqlite3_thread(dbapi_connection, lambda raw: raw.execute(begin))
        except sqlite3.Error as error:
            raise sa_exc.DBAPIError.instance(
                begin, None, error, sqlite3.Error, dialect=conn.dialect
            ) from error
        if not done:
            conn.exec_driver_sql(begin)

    # -- statements -------------------------------------------------------------------
    # create_many: SQLite has no ordered form of insertmanyvalues, so the statement
    # assigns the keys itself (see create_statement). upsert_many: an executemany of the
    # compiled statement; sqlite3 sums the changes of every execution.

    upsert_form: ClassVar[str | None] = "executemany"
    # insert_many: a multi-row VALUES list costs the driver half of what sqlite3's
    # executemany of the one-row INSERT does (a bind and a step per row from Python).
    insert_values: ClassVar[bool] = True
    checks_conflict_target: ClassVar[bool] = True

    _sequence: ClassVar[Any] = table("sqlite_sequence", column("name"), column("seq"))
    _creates: ClassVar[dict[tuple[Any, ...], tuple[Insert, tuple[str, ...]]]] = {}

    def assigns_keys(self, meta: ModelMeta) -> bool:
        """A plain table with a generated integer key and no SQL-expression default."""
        return (
            meta.table is not None
            and meta.rowid_key is not None
            and meta.python_defaults is not None
            and bool(self.dialect.insert_returning)
        )

    def create_statement(
        self, meta: ModelMeta, names: Sequence[str], count: int, *, generated: bool
    ) -> tuple[Insert, tuple[str, ...]]:
        """``INSERT ... SELECT ... FROM (VALUES ...) RETURNING`` of every column.

        The binds carry driver values and no type of their own (the rows are bound
        processed already).

        With *generated*, the key is computed in the statement: the largest key before
        it (and, for an AUTOINCREMENT table, the largest key ever handed out) plus the
        1-based position of the row in the VALUES list, the value SQLite's own ROWID
        algorithm picks. Cached per shape (see `shaped_values`).
        """
        target, key = meta.table, meta.rowid_key
        assert target is not None
        assert key is not None
        cache_key = (target, tuple(names), count, generated)
        cached = self._creates.get(cache_key)
        if cached is not None:
            return cached
        width = len(names)
        params = tuple(f"p{i}_{j}" for i in range(count) for j in range(width))
        columns = [meta.columns[name] for name in names]
        binds: list[list[Any]] = [
            [bindparam(params[i * width + j]) for j in range(width)] for i in range(count)
        ]
        # SQLite names the columns of a VALUES list column1, column2, ...
        data: list[tuple[Any, ...]] = [
            (literal_column(str(i + 1)), *binds[i]) if generated else tuple(binds[i])
            for i in range(count)
        ]
        picks: list[Any] = [column(f"column{j + 1}") for j in range(len(data[0]))]
        rows = shaped_values(picks, data, shape=(len(picks), count, generated))
        refs: list[Any] = [literal_column(pick.name) for pick in picks]
        if generated:
            largest: Any = func.coalesce(select(func.max(key)).scalar_subquery(), 0)
            if target.dialect_options["sqlite"].get("autoincrement"):
                seq = self._sequence
                handed_out = select(seq.c.seq).where(seq.c.name == literal(target.name))
                largest = func.max(largest, func.coalesce(handed_out.scalar_subquery(), 0))
            base = select(largest.label("b")).subquery("base")
            source = select(base.c.b + refs[0], *refs[1:]).select_from(base.join(rows, true()))
            statement = insert(target).from_select([key, *columns], source)
        else:
            statement = insert(target).from_select(columns, select(*refs).select_from(rows))
        created = (statement.returning(*target.c), params)
        if len(self._creates) >= 64:
            self._creates.clear()
        self._creates[cache_key] = created
        return created

    def upsert_statement(
        self,
        meta: ModelMeta,
        conflict: Sequence[str],
        targets: Sequence[str],
        source: tuple[Sequence[Column[Any]], Select[Any]] | None = None,
        where: ColumnElement[bool] | None = None,
    ) -> Insert:
        """``INSERT ... ON CONFLICT (conflict) DO UPDATE SET`` / ``DO NOTHING``."""
        assert meta.table is not None
        return on_conflict(sqlite_insert(meta.table), meta, conflict, targets, source, where)

    # -- timestamps: text in SQLAlchemy's DATETIME format, meant as UTC -----------------

    naive_utc_datetimes: ClassVar[bool] = True

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
    def lock_or_timeout(cls, code: str | int) -> str | None:
        """``"timeout"`` for SQLITE_BUSY and SQLITE_LOCKED (any extended code): the busy
        timeout ran out while another connection held the database's lock."""
        if isinstance(code, int) and code & 0xFF in _BUSY_CODES:
            return "timeout"
        return None

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

    # No row locks: a read-write transaction holds the database's write lock from its
    # BEGIN IMMEDIATE on, which keeps every row it reads from other writers.
    row_locks: ClassVar[bool] = False

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
    "database is locked": 5,  # SQLITE_BUSY's fixed message
    "database table is locked": 6,  # SQLITE_LOCKED's
}


def _message_names(err: BaseException) -> tuple[str, ...]:
    # "UNIQUE constraint failed: users.email, users.name" -> ("email", "name").
    # Read only after the error code classified the error; it is context, not detection.
    message = str(err.args[0]) if err.args else ""
    _, sep, tail = message.partition(" failed: ")
    if not sep:
        return ()
    return tuple(part.strip().rpartition(".")[2] for part in tail.split(",") if part.strip())


@compiles(UtcNow, "sqlite")
def _utc_now(element: UtcNow, compiler: Any, **kw: Any) -> str:
    """UTC milliseconds (SQLite's clock has no finer ones), padded to the six digits of
    the text SQLAlchemy binds, so stored values compare with bound ones as text."""
    now = func.strftime(literal("%Y-%m-%d %H:%M:%f"), literal("now")).concat(literal("000"))
    rendered: str = compiler.process(now, **kw)
    return rendered
