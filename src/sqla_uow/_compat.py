"""Reads of private SQLAlchemy and driver attributes, each behind one named function.

Everything here depends on internals that a release of SQLAlchemy, of a driver or of
Python may change; `tests/test_compat.py` checks each function against the installed
versions (CI runs it on the oldest and the newest supported SQLAlchemy). Code outside
this module calls these functions instead of reading underscore attributes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, cast

from sqlalchemy.orm import attributes
from sqlalchemy.util import await_only

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Dialect
    from sqlalchemy.orm import InstanceState, Mapper, Session
    from sqlalchemy.pool import Pool

__all__ = [
    "add_loaded",
    "asyncpg_in_transaction",
    "column_annotations",
    "deletes_observed",
    "failed_flush_error",
    "flushed_states",
    "on_connect_isolation_level",
    "pool_max_overflow",
    "raise_driver_error",
    "run_in_sqlite3_thread",
    "session_is_clean",
    "sqlite3_connection",
    "sqlite_autocommit",
    "sqlite_error_code",
    "sqlite_legacy_transaction_control",
]

# -- transactions -----------------------------------------------------------------------


def sqlite3_connection(dbapi_connection: Any) -> sqlite3.Connection | None:
    """The `sqlite3.Connection` behind an aiosqlite (or pysqlite) DBAPI connection.

    Walks SQLAlchemy's adapted connection (``driver_connection``), then aiosqlite's
    ``_conn`` / ``_connection``; None where the chain ends elsewhere.
    """
    candidate = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    for _ in range(3):
        if isinstance(candidate, sqlite3.Connection):
            return candidate
        candidate = getattr(candidate, "_conn", None) or getattr(candidate, "_connection", None)
        if candidate is None:
            return None
    return None


def run_in_sqlite3_thread(
    dbapi_connection: Any, function: Callable[[sqlite3.Connection], object]
) -> bool:
    """Call *function* with the sqlite3 connection, in aiosqlite's thread, in one hop.

    For SQL that needs no cursor (BEGIN): one trip through aiosqlite's queue instead of
    the three (make a cursor, execute, close it) of the DBAPI adapter. Must run where
    SQLAlchemy's sync-over-async bridge runs (an engine event of an async engine).
    False, without calling it, when the connection is not an aiosqlite one.
    """
    connection = getattr(dbapi_connection, "driver_connection", None)
    queue_call = getattr(connection, "_execute", None)
    raw = sqlite3_connection(dbapi_connection)
    if queue_call is None or raw is None:
        return False
    await_only(queue_call(function, raw))
    return True


def sqlite_legacy_transaction_control() -> object:
    """`sqlite3.LEGACY_TRANSACTION_CONTROL` (Python 3.12+), else -1."""
    return getattr(sqlite3, "LEGACY_TRANSACTION_CONTROL", -1)


def sqlite_autocommit(raw: sqlite3.Connection) -> object:
    """The ``autocommit`` attribute of a sqlite3 connection (Python 3.12+), else -1."""
    return getattr(raw, "autocommit", -1)


def sqlite_error_code(error: BaseException) -> int | None:
    """The extended SQLite result code of a sqlite3 error (Python 3.11+), else None."""
    code = getattr(error, "sqlite_errorcode", None)
    return code if isinstance(code, int) else None


def on_connect_isolation_level(dialect: Dialect) -> str | None:
    """The isolation level the engine sets on every new connection, if one was given."""
    level = getattr(dialect, "_on_connect_isolation_level", None)
    return level if isinstance(level, str) else None


def pool_max_overflow(pool: Pool) -> int | None:
    """A `QueuePool`'s ``max_overflow``; None when unbounded (-1) or not a QueuePool."""
    max_overflow = getattr(pool, "_max_overflow", -1)
    if not isinstance(max_overflow, int) or max_overflow < 0:
        return None
    return max_overflow


def add_loaded(
    session: Session, mapper: Mapper[Any], rows: list[dict[str, Any]], pk: tuple[str, ...]
) -> list[Any]:
    """New objects of *mapper*, persistent in *session*, each holding a row as loaded state.

    *rows* map attribute keys to values (the primary key's attributes *pk* among them);
    attributes a row leaves out are unloaded, as deferred ones. The objects enter the
    identity map the way SQLAlchemy's loader adds the rows of a query (a fraction of
    the cost of ``make_transient_to_detached`` plus ``Session.add``); no load event fires.
    """
    identity_map: Any = session.identity_map
    session_id = session.hash_key
    new_instance = mapper.class_manager.new_instance
    objects: list[Any] = []
    if not rows:
        return objects
    # (class, primary key values, token): the form `identity_key_from_primary_key` builds.
    identity_class, _, token = mapper.identity_key_from_primary_key(
        tuple([rows[0][name] for name in pk])
    )
    for row in rows:
        obj = new_instance()
        state: Any = attributes.instance_state(obj)
        state.dict.update(row)
        key = (identity_class, tuple([row[name] for name in pk]), token)
        state.key = key
        state.identity_token = token
        state.session_id = session_id
        if key in identity_map:
            identity_map.replace(state)
        else:
            identity_map._add_unpresent(state, key)
        objects.append(obj)
    return objects


def flushed_states(sync_session: Session) -> set[InstanceState[Any]]:
    """The objects whose changes the session flushed in its transaction (savepoints included)."""
    flushed: set[InstanceState[Any]] = set()
    transaction: Any = getattr(sync_session, "_transaction", None)
    while transaction is not None:
        flushed.update(getattr(transaction, "_dirty", None) or ())
        transaction = getattr(transaction, "_parent", None)
    return flushed


def session_is_clean(sync_session: Session) -> bool:
    """Whether the session has nothing to flush (``Session._is_clean()``).

    ``False`` when SQLAlchemy no longer has the method: the caller flushes, which is
    always correct.
    """
    is_clean: Any = getattr(sync_session, "_is_clean", None)
    return bool(is_clean()) if callable(is_clean) else False


def failed_flush_error(sync_session: Session) -> BaseException | None:
    """The exception of a failed flush that left the session's transaction unusable.

    None while the session can go on (SQLAlchemy's ``Session.is_active``); after a
    failed flush it refuses every statement until rolled back, and keeps the flush's
    exception on the transaction.
    """
    if sync_session.is_active:
        return None
    transaction: Any = getattr(sync_session, "_transaction", None)
    found: Any = getattr(transaction, "_rollback_exception", None)
    return found if isinstance(found, BaseException) else None


def deletes_observed(mapper: Mapper[Any], sync_session: Session) -> bool:
    """Whether event listeners would see the ORM delete an object of *mapper*.

    The mapper's ``before_delete`` / ``after_delete`` and the session's flush and
    ``persistent_to_deleted`` events. ``True`` when SQLAlchemy no longer exposes them
    as ``dispatch`` collections: the caller then takes the ORM's path, always correct.
    """
    try:
        mapper_events = mapper.dispatch
        session_events = sync_session.dispatch
        return bool(
            mapper_events.before_delete
            or mapper_events.after_delete
            or session_events.before_flush
            or session_events.after_flush
            or session_events.after_flush_postexec
            or session_events.persistent_to_deleted
        )
    except AttributeError:
        return True


# -- driver calls outside SQLAlchemy's statements -----------------------------------------


@contextlib.asynccontextmanager
async def asyncpg_in_transaction(dbapi_connection: Any) -> AsyncGenerator[Any, None]:
    """The asyncpg connection behind SQLAlchemy's adapted one, inside its transaction.

    SQLAlchemy's asyncpg adapter begins its transaction lazily, at the first statement:
    this begins it now when it has not begun (so work sent straight to asyncpg, such as
    a COPY, belongs to it and rolls back with it) and holds the adapter's lock, which
    serialises the adapter's own statements, while the block runs.
    """
    async with dbapi_connection._execute_mutex:
        started = getattr(dbapi_connection, "_started", None)  # SQLAlchemy 2.0
        if started is None:
            started = dbapi_connection._transaction is not None
        if not started:
            await dbapi_connection._start_transaction()
        yield dbapi_connection.driver_connection


def raise_driver_error(
    connection: Connection, dbapi_connection: Any, error: Exception, statement: str
) -> NoReturn:
    """Raise *error*, which the driver raised outside SQLAlchemy, as SQLAlchemy would.

    The adapter translates it into its DBAPI's exception (psycopg's errors are already
    the DBAPI's), and the `Connection` wraps that in SQLAlchemy's (``IntegrityError``,
    ...) through its ``handle_error`` hooks, exactly as for a statement that failed in
    ``execute``. Call it where the sync-over-async bridge runs (``AsyncConnection.run_sync``).
    """
    try:
        # SQLAlchemy 2.0's psycopg adapter has no _handle_exception.
        translate = getattr(dbapi_connection, "_handle_exception", None)
        if translate is None or isinstance(error, connection.dialect.loaded_dbapi.Error):
            raise error
        translate(error)
    except Exception as dbapi_error:
        connection._handle_dbapi_exception(dbapi_error, statement, None, None, None)
    raise error  # pragma: no cover - _handle_exception always raises


# -- reads ----------------------------------------------------------------------------


def column_annotations(expression: object) -> Mapping[str, Any]:
    """The ORM annotations of a column expression (``proxy_key``, ``parententity``).

    ``User.name.expression`` carries the attribute's key and mapper there; empty for
    anything else.
    """
    found: Any = getattr(expression, "_annotations", None)
    return cast("Mapping[str, Any]", found) if isinstance(found, Mapping) else {}
