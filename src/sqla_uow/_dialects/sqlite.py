"""The SQLite backend."""

from __future__ import annotations

import sqlite3
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, Final

from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from sqla_uow._compat import (
    on_connect_isolation_level,
    run_in_sqlite3_thread,
    sqlite3_connection,
    sqlite_autocommit,
    sqlite_error_code,
    sqlite_legacy_transaction_control,
)
from sqla_uow.exceptions import IllegalTransactionStateError

from ._base import Backend

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncConnection
    from sqlalchemy.pool import ConnectionPoolEntry

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
        self, *, read_only: bool, apply_read_only: bool, guarded: bool
    ) -> dict[str, Any]:
        # Writers take the write lock at BEGIN and queue on the busy timeout; with a
        # deferred BEGIN, two transactions that read and then write cannot both
        # upgrade their locks and one fails at once (SQLITE_BUSY).
        options: dict[str, Any] = {_IMMEDIATE_OPTION: not read_only}
        if guarded:
            options[_BUSY_OPTION] = _GUARD_BUSY_TIMEOUT_MS
        return options

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
            pending = Backend.pending_restores(conn.info)
            if not any(s.startswith("PRAGMA busy") for s in pending):
                Backend.restore_at_checkin(conn.info, f"PRAGMA busy_timeout = {int(previous)}")
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
    # (statement builders go here)

    # -- errors -----------------------------------------------------------------------
    # (error classification goes here)
