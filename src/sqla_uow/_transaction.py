"""`TransactionManager`: transaction scopes, propagation, the ambient session and on_commit.

Every scope a caller opens with `TransactionManager.transaction` (directly, through
`transactional` or through a unit of work) is one of four kinds:

* a *root* scope begins a transaction on a session and connection of its own and commits
  or rolls it back at its exit;
* a *nested* scope opens a SAVEPOINT inside the transaction of the enclosing scope;
* a *joined* scope takes part in the enclosing transaction: it neither commits nor rolls
  back, but an exception leaving it marks the transaction rollback-only;
* a scope *without a transaction* (SUPPORTS with nothing to join, NOT_SUPPORTED, NEVER)
  hides any enclosing transaction from the code inside it.

The ambient scope lives in a `contextvars.ContextVar` and is tagged with the asyncio task
that opened it. A task created inside a scope inherits a copy of the context variables,
but it does not inherit the transaction: it sees no ambient transaction and begins its
own where a scope asks for one, so two tasks never share a session.

A transaction that begins while enclosing ones are still open (REQUIRES_NEW, REQUIRED
under NOT_SUPPORTED, or any root in a task created inside a transaction) cannot rely on
them finishing first: where it would wait for them forever (a single shared connection,
a pool without a connection to spare, SQLite's write lock) it fails fast with
`IllegalTransactionStateError` instead, and with `PoolExhaustedError` where every
connection of the pool is held by tasks that wait for another one.

A database error raised on the connection of a transaction marks its innermost level
(the savepoint of the innermost NESTED scope, else the root) rollback-only, through
SQLAlchemy's ``handle_error`` event: whatever code sent the statement and whoever caught
the error, that level can only roll back.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import inspect
import logging
import sqlite3
import weakref
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, overload

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    AsyncSessionTransaction,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.pool import QueuePool, SingletonThreadPool, StaticPool

from ._errors import database_errors
from ._replicas import Replica, ReplicaRouter, is_connection_failure
from .exceptions import (
    IllegalTransactionStateError,
    PoolExhaustedError,
    RollbackOnlyError,
    TransactionRequiredError,
    UnsupportedDialectError,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine, ExceptionContext
    from sqlalchemy.orm import InstanceState, Session
    from sqlalchemy.pool import ConnectionPoolEntry

__all__ = ["OnCommitCallback", "Propagation", "TransactionManager"]

logger = logging.getLogger("sqla_uow")

_T = TypeVar("_T")
_TmT = TypeVar("_TmT", bound="TransactionManager")

OnCommitCallback = Callable[[], object]
"""A callback for `TransactionManager.on_commit`: a plain or a coroutine function."""

_RESTORE_KEY: Final = "sqla_uow_restore_on_checkin"
"""Key in a pooled connection's ``info``: SQL that restores its settings at check-in."""

_SQLITE_GUARD_BUSY_TIMEOUT_MS: Final = 200
"""SQLite busy timeout of a connection that begins while an enclosing transaction is open."""

_SQLITE_IMMEDIATE_OPTION: Final = "sqla_uow_sqlite_begin_immediate"
"""Execution option: begin the SQLite transaction with ``BEGIN IMMEDIATE``."""

_SQLITE_BUSY_OPTION: Final = "sqla_uow_sqlite_busy_timeout_ms"
"""Execution option: a busy timeout (ms) set on the SQLite connection before BEGIN."""

_OWNER_KEY: Final = "sqla_uow_transaction_owner"
"""Key in a pooled connection's ``info``: the `Connection` whose transaction is open on it."""

_SQLITE_BUSY_CODES: Final = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED (primary codes)


class Propagation(enum.Enum):
    """How a transaction scope relates to the transaction already active in the task.

    The names and meanings follow Spring's ``Propagation``; NESTED uses SQLAlchemy's
    ``begin_nested`` (a SAVEPOINT).

    Example:
        ```python
        async with tm.transaction():  # REQUIRED: begins a transaction
            async with tm.transaction(propagation=Propagation.NESTED):  # SAVEPOINT
                ...
            async with tm.transaction(propagation=Propagation.REQUIRES_NEW):
                ...  # a second transaction on its own connection
        ```
    """

    REQUIRED = "required"
    """Join the active transaction, or begin one (the default)."""
    REQUIRES_NEW = "requires_new"
    """Suspend the active transaction and begin a new one on its own connection.

    The suspended transaction keeps its connection meanwhile, so the task holds two:
    a pool whose connections are all held by tasks waiting for another one raises
    `PoolExhaustedError`. On SQLite a read-write one cannot begin inside a read-write
    transaction (which holds the write lock): `IllegalTransactionStateError` after a
    short busy timeout.
    """
    NESTED = "nested"
    """Open a SAVEPOINT inside the active transaction, or begin one."""
    MANDATORY = "mandatory"
    """Join the active transaction; `TransactionRequiredError` when there is none."""
    SUPPORTS = "supports"
    """Join the active transaction, or run without one."""
    NOT_SUPPORTED = "not_supported"
    """Suspend the active transaction and run without one."""
    NEVER = "never"
    """Run without a transaction; `IllegalTransactionStateError` when one is active."""


WITH_TRANSACTION: Final = frozenset(
    {Propagation.REQUIRED, Propagation.REQUIRES_NEW, Propagation.NESTED, Propagation.MANDATORY}
)
_PropagationWithTransaction = Literal[
    Propagation.REQUIRED, Propagation.REQUIRES_NEW, Propagation.NESTED, Propagation.MANDATORY
]


# --------------------------------------------------------------------------- state


def _no_callbacks() -> list[OnCommitCallback]:
    return []


@dataclass(eq=False)
class _Level:
    """One level of commit: the root transaction or one savepoint inside it."""

    parent: _Level | None
    callbacks: list[OnCommitCallback] = field(default_factory=_no_callbacks)
    rollback_only: bool = False
    rollback_cause: BaseException | None = None


@dataclass(eq=False)
class _Tx:
    """A physical transaction: the session a root scope began."""

    session: AsyncSession
    connection: AsyncConnection
    isolation_level: str | None
    read_only: bool
    guarded: bool
    """Began on SQLite while an enclosing transaction was open (short busy timeout)."""
    holds_lock: bool
    """Holds the manager's lock of a single shared connection (StaticPool)."""
    task: asyncio.Task[Any] | None = None
    """The task that began it."""
    database_isolation_level: str | None = None
    open: bool = True
    level: _Level | None = None
    """The innermost open level (the root or a savepoint): a database error marks it."""
    replica: Replica | None = None
    """The replica the transaction runs on (None: the primary)."""
    router: ReplicaRouter | None = None
    """Told of the commit of a read-write transaction (read-your-writes)."""


@dataclass(eq=False)
class _Frame:
    """The ambient scope of one task: what ``tm.session`` and joining scopes see."""

    tx: _Tx | None
    level: _Level | None
    task: asyncio.Task[Any] | None
    propagation: Propagation
    previous: _Frame | None


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop
        return None


# --------------------------------------------------------------------- cancellation


async def _shielded(awaitable: Awaitable[_T]) -> _T:
    """Run *awaitable* to completion even if the calling task is cancelled meanwhile.

    A cancellation that arrives while it runs is held back and re-raised once it is
    done, so clean-up (rollback, close) always finishes and connections go back to the
    pool before the `asyncio.CancelledError` travels on.
    """
    task = asyncio.ensure_future(awaitable)
    interrupted: asyncio.CancelledError | None = None
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if not task.done():
                interrupted = exc
                continue
            if interrupted is None:
                raise
            break
        except BaseException:
            if interrupted is None:
                raise
            break
        else:
            if interrupted is None:
                return result
            break
    if not task.cancelled():
        task.exception()  # mark it retrieved; the cancellation wins
    raise interrupted


def _is_outcome_unknown(exc: BaseException) -> bool:
    """Whether a failed COMMIT may nevertheless have been applied by the database."""
    if not isinstance(exc, Exception) or isinstance(exc, asyncio.TimeoutError):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated


async def flush_session(session: AsyncSession) -> None:
    """Flush *session*; an integrity violation surfaces as `ConflictError`."""
    with database_errors():
        await session.flush()


_Snapshot = list[tuple["InstanceState[Any]", dict[str, Any]]]


def _unchanged_objects(sync_session: Session) -> _Snapshot:
    """The loaded values of the session's objects that the transaction left unchanged.

    An object is unchanged when it has no pending change and no change of it was
    flushed in the transaction (or in a savepoint inside it). A rollback expires
    every object; `_restore_unchanged` puts these values back, so objects that were
    only read stay readable, while new objects of the rolled-back work become
    transient and changed ones stay expired.
    """
    flushed: set[InstanceState[Any]] = set()
    transaction: Any = getattr(sync_session, "_transaction", None)
    while transaction is not None:
        flushed.update(getattr(transaction, "_dirty", None) or ())
        transaction = getattr(transaction, "_parent", None)
    snapshot: _Snapshot = []
    for state in sync_session.identity_map.all_states():
        if state.modified or state in flushed or state.deleted:
            continue
        keys = state.mapper.attrs.keys()
        snapshot.append((state, {key: state.dict[key] for key in keys if key in state.dict}))
    return snapshot


def _restore_unchanged(snapshot: _Snapshot) -> None:
    for state, values in snapshot:
        obj = state.obj()
        if obj is None:
            continue
        for key, value in values.items():
            set_committed_value(obj, key, value)


async def _rollback(session: AsyncSession) -> None:
    """Roll back *session*; objects the transaction left unchanged keep their values."""
    snapshot = _unchanged_objects(session.sync_session)
    await session.rollback()
    _restore_unchanged(snapshot)


async def _discard(session: AsyncSession, *, invalidate: bool) -> None:
    """Roll back and close *session*; invalidate its connection if that fails or is asked.

    Objects the transaction left unchanged stay readable (detached, with their values);
    new objects of the discarded work become transient, changed ones stay expired.
    """
    interrupted: BaseException | None = None
    if not invalidate:
        try:
            await _rollback(session)
        except Exception:
            logger.debug("rollback failed; invalidating the connection", exc_info=True)
            invalidate = True
        except BaseException as exc:  # cancelled itself: do not return a busy connection
            interrupted = exc
            invalidate = True
    try:
        if invalidate:
            try:
                await session.invalidate()
            except Exception:
                logger.debug("invalidating the connection failed", exc_info=True)
        else:
            await session.close()
    finally:
        if interrupted is not None:
            raise interrupted


# -------------------------------------------------------------------------- sqlite


def _sqlite3_connection(dbapi_connection: Any) -> sqlite3.Connection | None:
    """The `sqlite3.Connection` behind an aiosqlite (or pysqlite) DBAPI connection."""
    candidate = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    for _ in range(3):
        if isinstance(candidate, sqlite3.Connection):
            return candidate
        candidate = getattr(candidate, "_conn", None) or getattr(candidate, "_connection", None)
        if candidate is None:
            return None
    return None


def _sqlite_on_connect(dbapi_connection: Any, connection_record: ConnectionPoolEntry) -> None:
    # Stop the driver from emitting BEGIN itself (its legacy transaction control);
    # `_sqlite_on_begin` emits it instead, for every transaction.
    raw = _sqlite3_connection(dbapi_connection)
    if raw is not None and getattr(raw, "autocommit", -1) not in (-1, _legacy_control()):
        return  # Python 3.12+ autocommit=False/True: transaction control is already right
    dbapi_connection.isolation_level = None


def _legacy_control() -> object:
    return getattr(sqlite3, "LEGACY_TRANSACTION_CONTROL", -1)


def _sqlite_on_begin(conn: Connection) -> None:
    options = conn.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return
    if getattr(conn.dialect, "_on_connect_isolation_level", None) == "AUTOCOMMIT":
        return
    dbapi_connection = conn.connection.dbapi_connection
    raw = _sqlite3_connection(dbapi_connection)
    if raw is not None:
        if getattr(raw, "autocommit", -1) not in (-1, _legacy_control()):
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
    busy_timeout = options.get(_SQLITE_BUSY_OPTION)
    if busy_timeout is not None:
        previous = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(busy_timeout)}")
        pending: list[str] = conn.info.setdefault(_RESTORE_KEY, [])
        restore = f"PRAGMA busy_timeout = {int(previous)}"
        if restore not in pending and not any(s.startswith("PRAGMA busy") for s in pending):
            pending.append(restore)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_SQLITE_IMMEDIATE_OPTION) else "BEGIN")


def _restore_on_checkin(dbapi_connection: Any, connection_record: ConnectionPoolEntry) -> None:
    statements: list[str] | None = connection_record.info.pop(_RESTORE_KEY, None)
    if not statements or dbapi_connection is None:
        return
    cursor = dbapi_connection.cursor()
    try:
        for statement in statements:
            cursor.execute(statement)
    finally:
        cursor.close()


_TRANSACTIONS: weakref.WeakKeyDictionary[Connection, weakref.ref[_Tx]] = weakref.WeakKeyDictionary()
"""The open transaction of each connection a root scope began on."""


def _on_database_error(context: ExceptionContext) -> None:
    """Mark the innermost level of the connection's transaction rollback-only.

    SQLAlchemy calls this ``handle_error`` hook for every error raised while a statement,
    a flush, a BEGIN, a SAVEPOINT or a COMMIT runs on a connection, whatever code sent
    it, so no caller can swallow a database error and then commit the rest of the
    transaction: the savepoint the error was raised in (or else the root) can only roll
    back. The hook never replaces the exception.
    """
    connection = context.connection
    if connection is None:
        return
    statement = context.execution_context
    if statement is not None and statement.execution_options.get("skip_user_error_events"):
        # SQLAlchemy's own probe that expects the error and handles it (MySQL's
        # has_table() runs DESCRIBE and reads "no such table" as False).
        return
    ref = _TRANSACTIONS.get(connection)
    tx = ref() if ref is not None else None
    if tx is None or not tx.open:
        return
    error = context.sqlalchemy_exception or context.original_exception
    _mark_rollback_only(tx.level, error)


_HOOKED: weakref.WeakSet[Engine] = weakref.WeakSet()
"""The engines whose hooks are installed. SQLAlchemy's ``event.contains`` cannot tell:
it keys its registry by ``id()``, so a new engine whose dialect or pool reuses the
address of a collected one can look as if it had the listeners already."""


def _install_engine_hooks(engine: AsyncEngine) -> None:
    """Install the rollback-only and check-in hooks and the SQLite fix, once per engine."""
    sync_engine: Engine = engine.sync_engine
    if sync_engine in _HOOKED:
        return
    _HOOKED.add(sync_engine)
    event.listen(sync_engine, "checkin", _restore_on_checkin)
    event.listen(sync_engine, "handle_error", _on_database_error)
    if sync_engine.dialect.name == "sqlite":
        event.listen(sync_engine, "connect", _sqlite_on_connect)
        event.listen(sync_engine, "begin", _sqlite_on_begin)


def _is_sqlite_busy(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    for err in (exc, orig, exc.__cause__):
        if not isinstance(err, sqlite3.OperationalError) and not (
            err is not None and type(err).__name__ == "OperationalError"
        ):
            continue
        code = getattr(err, "sqlite_errorcode", None)
        if isinstance(code, int):
            return code & 0xFF in _SQLITE_BUSY_CODES
        # Python 3.10 has no error codes on sqlite3 exceptions; SQLite's own fixed
        # message for SQLITE_BUSY is the only signal there.
        if err.args and err.args[0] in ("database is locked", "database table is locked"):
            return True
    return False


# ------------------------------------------------------------------------ settings


def _normalize_isolation(level: str) -> str:
    return level.strip().upper().replace("_", " ")


def _valid_isolation_levels(engine: AsyncEngine) -> tuple[str, ...]:
    dialect = engine.sync_engine.dialect
    try:
        values = tuple(dialect.get_isolation_level_values(None))  # type: ignore[arg-type]
    except (NotImplementedError, AttributeError, TypeError):
        values = ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED", "READ UNCOMMITTED")
    return tuple(v for v in values if v != "AUTOCOMMIT")


_READ_ONLY_DIALECTS: Final = ("postgresql", "sqlite", "mysql", "mariadb")


# -------------------------------------------------------------------------- scope


class TransactionScope(AbstractAsyncContextManager["AsyncSession | None"]):
    """The context manager `TransactionManager.transaction` returns."""

    def __init__(
        self,
        tm: TransactionManager,
        propagation: Propagation,
        isolation_level: str | None,
        read_only: bool,
    ) -> None:
        self._tm = tm
        self._var = tm._var  # pyright: ignore[reportPrivateUsage]
        self.propagation = propagation
        self._isolation_level = isolation_level
        self._read_only = read_only
        self.kind: Literal["root", "nested", "join", "none"] | None = None
        self._entered = False
        self._frame: _Frame | None = None
        self._previous: _Frame | None = None
        self._nested: AsyncSessionTransaction | None = None
        self._joined_savepoint = False
        self.discard_on_exit = False
        """Roll back instead of committing at a clean exit (explicit-style unit of work).

        Set before entry, it also makes a scope that would join the active transaction
        open a SAVEPOINT instead, so that the work it does not commit can be undone.
        """

    # -- entry

    async def __aenter__(self) -> AsyncSession | None:
        if self._entered:
            raise IllegalTransactionStateError(
                "a transaction scope can be entered only once; call tm.transaction() again"
            )
        self._entered = True
        task = _current_task()
        previous = self._var.get()
        self._previous = previous
        current = previous if previous is not None and previous.task is task else None
        active = current.tx if current is not None else None
        p = self.propagation

        if p is Propagation.NEVER and active is not None:
            raise IllegalTransactionStateError(
                "Propagation.NEVER: a transaction is active in this task; "
                "use Propagation.NOT_SUPPORTED to suspend it instead"
            )
        if p is Propagation.MANDATORY and active is None:
            raise TransactionRequiredError(
                "Propagation.MANDATORY: no transaction is active in this task to join; "
                f"{_why_none(previous, task)}"
            )

        if p in (Propagation.NEVER, Propagation.NOT_SUPPORTED) or (
            p is Propagation.SUPPORTS and active is None
        ):
            self.kind = "none"
            self._push(_Frame(None, None, task, p, previous))
            return None

        if active is not None and current is not None and current.level is not None:
            joins = p in (Propagation.REQUIRED, Propagation.MANDATORY, Propagation.SUPPORTS)
            if joins and not self.discard_on_exit:
                await self._check_compatible(active)
                self.kind = "join"
                self._push(_Frame(active, current.level, task, p, previous))
                return active.session
            if joins or p is Propagation.NESTED:
                # An explicit-style unit of work that would join runs in a savepoint,
                # so that what it does not commit can be rolled back at its exit.
                await self._check_compatible(active)
                self._nested = await active.session.begin_nested()
                self.kind = "nested"
                self._joined_savepoint = joins
                level = active.level = _Level(parent=current.level)
                self._push(_Frame(active, level, task, p, previous))
                return active.session

        # Begin a transaction of our own: REQUIRED / NESTED with nothing to join,
        # REQUIRES_NEW always.
        tx = await self._begin_root()
        self.kind = "root"
        level = tx.level = _Level(parent=None)
        self._push(_Frame(tx, level, task, p, previous))
        return tx.session

    async def _begin_root(self, session: AsyncSession | None = None) -> _Tx:
        enclosing = _open_transactions(self._previous)
        task = _current_task()
        return await self._tm._begin(  # pyright: ignore[reportPrivateUsage]
            isolation_level=self._isolation_level,
            read_only=self._read_only,
            enclosing=enclosing,
            held=sum(1 for tx in enclosing if tx.task is task),
            propagation=self.propagation,
            session=session,
        )

    def _push(self, frame: _Frame) -> None:
        self._frame = frame
        self._var.set(frame)

    def _pop(self) -> None:
        self._var.set(self._previous)

    async def _check_compatible(self, tx: _Tx) -> None:
        requested = self._isolation_level
        if requested is not None:
            current = tx.isolation_level
            if current is None:
                if tx.database_isolation_level is None:
                    level = await tx.connection.get_isolation_level()
                    tx.database_isolation_level = _normalize_isolation(str(level))
                current = tx.database_isolation_level
            if current != requested:
                raise IllegalTransactionStateError(
                    f"Propagation.{self.propagation.name} scope asks for isolation level "
                    f"{requested!r} but would join a transaction running at {current!r}; "
                    "use Propagation.REQUIRES_NEW for a transaction with its own isolation "
                    "level, or leave isolation_level unset to join"
                )
        if tx.read_only and not self._read_only:
            raise IllegalTransactionStateError(
                f"Propagation.{self.propagation.name} scope is read-write but would join a "
                "read-only transaction; pass read_only=True, or use Propagation.REQUIRES_NEW "
                "to write in a transaction of its own"
            )

    # -- exit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._frame is None:
            return
        kind = self.kind
        if kind == "none":
            self._pop()
            return
        if kind == "join":
            self._pop()
            if exc is not None:
                _mark_rollback_only(self._frame.level, exc)
            return
        if kind == "nested":
            if exc is not None and self._joined_savepoint:
                level = self._frame.level
                _mark_rollback_only(level.parent if level is not None else None, exc)
            await self._exit_nested(exc)
            return
        await self._exit_root(exc)

    async def _exit_nested(self, exc: BaseException | None) -> None:
        frame = self._frame
        nested = self._nested
        assert frame is not None
        assert frame.level is not None
        assert nested is not None
        level = frame.level
        try:
            if exc is None and not level.rollback_only and not self.discard_on_exit:
                try:
                    await flush_session(nested.session)
                    await nested.commit()
                except BaseException as error:
                    await self._rollback_savepoint(nested, level, error)
                    if self._joined_savepoint:
                        _mark_rollback_only(level.parent, error)
                    raise
                if level.parent is not None:
                    level.parent.callbacks.extend(level.callbacks)
                return
            await self._rollback_savepoint(nested, level, exc)
            if exc is None and level.rollback_only and not self.discard_on_exit:
                raise _rollback_only_error(level, "savepoint")
        finally:
            assert frame.tx is not None
            frame.tx.level = level.parent
            self._pop()

    @staticmethod
    async def _rollback_savepoint(
        nested: AsyncSessionTransaction, level: _Level, cause: BaseException | None
    ) -> bool:
        """Roll back to the savepoint; whether that worked."""
        level.callbacks.clear()
        try:
            await _shielded(nested.rollback())
        except Exception:
            # The savepoint could not be rolled back (the connection is gone):
            # the enclosing transaction cannot commit either.
            logger.debug("rolling back a savepoint failed", exc_info=True)
            _mark_rollback_only(level.parent, cause)
            return False
        return True

    async def _exit_root(self, exc: BaseException | None) -> None:
        frame = self._frame
        assert frame is not None
        assert frame.tx is not None
        assert frame.level is not None
        tx, level = frame.tx, frame.level
        session = tx.session
        callbacks: list[OnCommitCallback] = []
        try:
            if exc is not None or level.rollback_only or self.discard_on_exit:
                level.callbacks.clear()
                await _shielded(_discard(session, invalidate=False))
                if exc is None and level.rollback_only and not self.discard_on_exit:
                    raise _rollback_only_error(level, "transaction")
                _translate(tx, exc)
                return
            try:
                await _commit(tx)
            except BaseException as error:
                level.callbacks.clear()
                _translate(tx, error)
                raise
            callbacks = level.callbacks
            await _shielded(session.close())
        finally:
            self._tm._end(tx)  # pyright: ignore[reportPrivateUsage]
            self._pop()
        await self._tm._committed(callbacks)  # pyright: ignore[reportPrivateUsage]

    # -- used by the unit of work

    def _require_innermost(self, action: str) -> _Frame:
        frame = self._frame
        if frame is None or self._var.get() is not frame:
            raise IllegalTransactionStateError(
                f"{action}: an inner transaction scope is still open; close it first"
            )
        return frame

    async def commit_and_continue(self) -> None:
        """Commit the work so far and go on in a new transaction (or savepoint).

        A failed commit rolls back the work since the previous commit (a joined scope:
        marks the transaction rollback-only) and, unless the task is being cancelled
        or the connection is lost, goes on in a fresh transaction (or savepoint).
        """
        frame = self._require_innermost("commit()")
        assert frame.tx is not None
        assert frame.level is not None
        level = frame.level
        if self.kind == "join":
            try:
                await flush_session(frame.tx.session)
            except BaseException as error:
                _mark_rollback_only(level, error)
                raise
            return
        if level.rollback_only:
            await self.rollback_and_continue()
            raise _rollback_only_error(
                level, "savepoint" if self.kind == "nested" else "transaction"
            )
        session = frame.tx.session
        if self.kind == "nested":
            assert self._nested is not None
            try:
                await flush_session(session)
                await self._nested.commit()
            except BaseException as error:
                rolled_back = await self._rollback_savepoint(self._nested, level, error)
                if isinstance(error, Exception) and rolled_back:
                    self._nested = await session.begin_nested()
                    _set_level(frame, _Level(parent=level.parent))
                raise
            if level.parent is not None:
                level.parent.callbacks.extend(level.callbacks)
            self._nested = await session.begin_nested()
            _set_level(frame, _Level(parent=level.parent))
            return
        tx = frame.tx
        try:
            await _commit(tx)
        except BaseException as error:
            level.callbacks.clear()
            self._tm._end(tx)  # pyright: ignore[reportPrivateUsage]
            if isinstance(error, Exception) and not _is_outcome_unknown(error):
                fresh = frame.level = _Level(parent=None)
                frame.tx = await self._begin_root(session)
                _set_level(frame, fresh)
            _translate(tx, error)
            raise
        self._tm._end(tx)  # pyright: ignore[reportPrivateUsage]
        fresh = frame.level = _Level(parent=None)
        # The callbacks run outside the unit of work, as after the exit of a root scope:
        # a callback's own scope does not join the next transaction.
        self._var.set(self._previous)
        try:
            await self._tm._committed(level.callbacks)  # pyright: ignore[reportPrivateUsage]
        finally:
            self._var.set(frame)
        frame.tx = await self._begin_root(session)
        _set_level(frame, fresh)

    async def rollback_and_continue(self) -> None:
        frame = self._require_innermost("rollback()")
        assert frame.tx is not None
        assert frame.level is not None
        level = frame.level
        if self.kind == "join":
            _mark_rollback_only(level, None)
            return
        session = frame.tx.session
        level.callbacks.clear()
        if self.kind == "nested":
            assert self._nested is not None
            await _shielded(self._nested.rollback())
            self._nested = await session.begin_nested()
            _set_level(frame, _Level(parent=level.parent))
            return
        tx = frame.tx
        try:
            await _shielded(_rollback(session))
        finally:
            self._tm._end(tx)  # pyright: ignore[reportPrivateUsage]
        fresh = frame.level = _Level(parent=None)
        frame.tx = await self._begin_root(session)
        _set_level(frame, fresh)


def _set_level(frame: _Frame, level: _Level) -> None:
    """Make *level* the frame's level and the innermost one of its transaction."""
    frame.level = level
    if frame.tx is not None:
        frame.tx.level = level


def _open_transactions(frame: _Frame | None) -> list[_Tx]:
    """The open transactions of the scopes enclosing *frame*, innermost first.

    The chain crosses tasks: a task created inside a scope starts with a copy of the
    creating task's context, so the creating task's transactions are in it too.
    """
    found: list[_Tx] = []
    while frame is not None:
        tx = frame.tx
        if tx is not None and tx.open and all(tx is not seen for seen in found):
            found.append(tx)
        frame = frame.previous
    return found


def _rollback_only_error(
    level: _Level, what: Literal["transaction", "savepoint"]
) -> RollbackOnlyError:
    instead = "released" if what == "savepoint" else "committed"
    error = RollbackOnlyError(
        f"the {what} was rolled back instead of {instead}: an earlier error inside it (a "
        "database error, or an exception that left a joined scope) made it rollback-only, "
        "even though the error was caught; to go on after an error, run the work that may "
        f"fail in a Propagation.NESTED scope (cause: {level.rollback_cause!r})"
    )
    error.__cause__ = level.rollback_cause
    return error


async def _commit(tx: _Tx) -> None:
    """Flush and COMMIT; on failure, roll back (or invalidate) and close the session."""
    session = tx.session
    try:
        await flush_session(session)
    except BaseException:
        await _shielded(_discard(session, invalidate=False))
        raise
    router = tx.router
    wrote = router is not None and tx.replica is None and router.wrote(tx.connection)
    try:
        await session.commit()
    except BaseException as error:
        await _shielded(_discard(session, invalidate=_is_outcome_unknown(error)))
        with database_errors():  # a deferred constraint fails at COMMIT
            raise
    if wrote and router is not None:
        await router.note_commit()


class _ReplicaBehind(Exception):
    """The chosen replica has not replayed this context's last commit (or lags)."""


def _translate(tx: _Tx, exc: BaseException | None) -> None:
    """Raise a clear error for SQLITE_BUSY in a transaction begun inside another."""
    if tx.guarded and exc is not None and _is_sqlite_busy(exc):
        raise _sqlite_locked_error("SQLite") from exc


def _sqlite_locked_error(what: str) -> IllegalTransactionStateError:
    return IllegalTransactionStateError(
        f"{what}: the database is locked, most likely by an enclosing transaction that is "
        "still open (the suspended outer transaction of this task, or the transaction of "
        "the task that created this one). SQLite allows one writer at a time, and the "
        "enclosing transaction cannot finish while it waits for this one; write in the "
        "enclosing transaction, use Propagation.NESTED, or run this work after it ends"
    )


_MANAGERS: weakref.WeakSet[TransactionManager] = weakref.WeakSet()
"""Every live manager, for `managers_in_scope`."""


def managers_in_scope() -> list[TransactionManager]:
    """The managers with a scope open in this context, in this task or the task that made it.

    A scope of any kind counts, also one that runs without a transaction
    (NOT_SUPPORTED, SUPPORTS with nothing to join): code inside it belongs to that
    manager's database.
    """
    return [tm for tm in list(_MANAGERS) if tm._has_open_scope()]  # pyright: ignore[reportPrivateUsage]


def _why_none(frame: _Frame | None, task: asyncio.Task[Any] | None) -> str:
    if frame is not None and frame.task is not task:
        return (
            "the enclosing transaction belongs to another asyncio task (sessions are never "
            "shared between tasks); open a transaction in this task with tm.transaction() "
            "or @transactional"
        )
    if frame is not None and frame.tx is None:
        return (
            f"the current scope runs without a transaction (Propagation.{frame.propagation.name})"
        )
    return "use `async with tm.transaction():` or @transactional(tm) to begin one"


def _mark_rollback_only(level: _Level | None, cause: BaseException | None) -> None:
    if level is None:
        return
    if not level.rollback_only:
        level.rollback_only = True
        level.rollback_cause = cause


async def _run_callbacks(callbacks: list[OnCommitCallback]) -> None:
    """Run on_commit callbacks in order; log (not raise) the exceptions they raise."""
    for callback in callbacks:
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception(
                "on_commit callback %r failed; the transaction was committed", callback
            )


def _savepoint_connection(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncConnection | None:
    """The connection whose transaction holds every transaction of *sessionmaker*'s sessions.

    A session factory bound to a connection with ``join_transaction_mode=
    "create_savepoint"`` (SQLAlchemy's recipe for test suites, which the ``sqla_uow_tm``
    pytest fixture uses) makes each session's transaction a SAVEPOINT of the
    connection's transaction: a commit releases it, and nothing is committed until the
    owner of the connection commits its transaction.
    """
    bind = sessionmaker.kw.get("bind")
    if isinstance(bind, AsyncConnection) and (
        sessionmaker.kw.get("join_transaction_mode") == "create_savepoint"
    ):
        return bind
    return None


# ------------------------------------------------------------------------ manager


class TransactionManager:
    """The one door to transactions: scopes, propagation, the ambient session, on_commit.

    Give it a database URL (it creates the engine, passing ``engine_options`` to
    `create_async_engine`), an `AsyncEngine`, or a bound `async_sessionmaker`. Sessions
    are always made with ``expire_on_commit=False``, so objects stay readable after
    their transaction ends.

    ``async with TransactionManager(...) as tm:`` disposes the engine on exit (also
    an engine you passed in: disposing only closes its pooled connections, and the
    engine stays usable).

    On SQLite the manager installs SQLAlchemy's documented fix for the sqlite3 driver's
    legacy transaction control (the driver stops emitting BEGIN, SQLAlchemy emits it for
    every transaction) on the engine, whether it created it or was given it, so
    SAVEPOINTs really nest inside their transaction. A read-write transaction begins
    with ``BEGIN IMMEDIATE``, so it takes the write lock as it begins and concurrent
    writers queue on the busy timeout (with a deferred ``BEGIN``, two transactions that
    read and then write cannot both upgrade their locks, and one fails at once with
    "database is locked"); a read-only one begins with a plain ``BEGIN``. A transaction
    that begins while an enclosing one is open (REQUIRES_NEW, REQUIRED under
    NOT_SUPPORTED, a transaction in a task created inside one) uses a busy timeout of
    200 ms and raises `IllegalTransactionStateError` when the database stays locked.

    With a pool of one shared connection (``StaticPool``, the default of an in-memory
    SQLite database; ``SingletonThreadPool``) the transactions of different tasks take
    turns: each holds the connection from its BEGIN to its end. One that would begin
    while an enclosing transaction holds it raises `IllegalTransactionStateError`. A
    QueuePool that cannot hand out another connection while the enclosing transactions
    hold theirs (``pool_size + max_overflow`` too small) raises it too, instead of
    waiting out ``pool_timeout``. Under load, a task that holds connections through
    suspended transactions and would wait for another one while every connection of the
    pool is held by such waiting tasks raises `PoolExhaustedError` at once (none of them
    could ever get one), and a wait for a connection that runs out ``pool_timeout``
    raises it too, instead of SQLAlchemy's bare ``TimeoutError``.

    The ambient transaction belongs to the asyncio task that began it. A task created
    inside a transaction (``asyncio.create_task``, ``asyncio.gather``, a task group)
    does not share it: there `session` raises `TransactionRequiredError`, MANDATORY
    raises, and REQUIRED begins a transaction of the task's own on its own connection,
    which commits or rolls back independently of the parent's (on SQLite, while the
    parent's read-write transaction is open, it fails fast as described above).

    Every transaction ends with its session closed and its connection back in the pool,
    also when the task is cancelled or times out inside the scope: rollback and close
    run shielded from the cancellation, which propagates once they are done. A
    cancellation (or a lost connection) during COMMIT leaves the outcome unknown: the
    connection is invalidated, no on_commit callback runs, and the error propagates.

    Example:
        ```python
        async with TransactionManager("sqlite+aiosqlite:///shop.db") as tm:
            async with tm.transaction() as session:
                session.add(User(email="ann@example.com", name="Ann"))
            # committed here
        ```
    """

    @overload
    def __init__(
        self,
        bind: str | URL,
        /,
        *,
        replicas: Sequence[str | URL | AsyncEngine] = (),
        max_lag: float | None = None,
        replica_cooldown: float = 5.0,
        read_your_writes_window: float = 2.0,
        **engine_options: Any,
    ) -> None: ...
    @overload
    def __init__(
        self,
        bind: AsyncEngine | async_sessionmaker[AsyncSession],
        /,
        *,
        replicas: Sequence[str | URL | AsyncEngine] = (),
        max_lag: float | None = None,
        replica_cooldown: float = 5.0,
        read_your_writes_window: float = 2.0,
    ) -> None: ...

    def __init__(
        self,
        bind: str | URL | AsyncEngine | async_sessionmaker[AsyncSession],
        /,
        *,
        replicas: Sequence[str | URL | AsyncEngine] = (),
        max_lag: float | None = None,
        replica_cooldown: float = 5.0,
        read_your_writes_window: float = 2.0,
        **engine_options: Any,
    ) -> None:
        """Make a manager for a URL, an engine or a bound session factory.

        Args:
            bind: A database URL, an `AsyncEngine`, or an `async_sessionmaker` bound
                to an engine (or to a connection): the primary database. Bound to a
                connection with ``join_transaction_mode="create_savepoint"``, every
                transaction is a SAVEPOINT of the connection's transaction, as under the
                ``sqla_uow_tm`` pytest fixture (see the integration-tests how-to).
            replicas: Read replicas (URLs or engines). A transaction that begins
                read-only runs on one of them, in turn; everything else runs on the
                primary. See "Scaling out" in the docs for the guarantees.
            max_lag: Skip a replica whose replay is more than this many seconds
                behind (PostgreSQL; checked at most once a second per replica).
            replica_cooldown: Seconds a replica is left out after it failed to
                connect or lagged.
            read_your_writes_window: Seconds after a commit during which the same
                context reads from the primary, on backends without WAL positions
                (PostgreSQL compares WAL positions instead).
            **engine_options: Passed to `create_async_engine` (only with a URL; also
                for replicas given as URLs).

        Raises:
            TypeError: *bind* is of another type, or engine options come with an
                engine or a session factory.
            ValueError: the session factory has no ``bind``.

        Example:
            ```python
            tm = TransactionManager("postgresql+asyncpg://app@db/shop", pool_size=10)
            tm = TransactionManager(engine)
            tm = TransactionManager(async_sessionmaker(engine, class_=MySession))
            tm = TransactionManager(primary_url, replicas=[replica_url], max_lag=5.0)
            ```
        """
        if isinstance(bind, (str, URL)):
            engine = create_async_engine(bind, **engine_options)
            sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(
                engine, expire_on_commit=False
            )
        elif engine_options:
            raise TypeError(
                "engine options are accepted only with a URL; configure the AsyncEngine "
                "yourself when you pass one (got options: "
                f"{', '.join(sorted(engine_options))})"
            )
        elif isinstance(bind, AsyncEngine):
            engine = bind
            sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        elif isinstance(bind, async_sessionmaker):  # pyright: ignore[reportUnnecessaryIsInstance]
            target = bind.kw.get("bind")
            if isinstance(target, AsyncEngine):
                engine = target
            elif isinstance(target, AsyncConnection):
                engine = target.engine
            else:
                raise ValueError(
                    "the async_sessionmaker given to TransactionManager must be bound: "
                    "async_sessionmaker(engine) or async_sessionmaker(bind=connection)"
                )
            sessionmaker = bind
        else:
            raise TypeError(
                "TransactionManager() takes a URL (str or sqlalchemy.URL), an AsyncEngine "
                f"or an async_sessionmaker, not {type(bind).__name__}"
            )
        self._engine = engine
        self._sessionmaker = sessionmaker
        self._router = (
            ReplicaRouter(
                engine,
                replicas,
                engine_options=engine_options,
                max_lag=max_lag,
                cooldown=replica_cooldown,
                read_your_writes_window=read_your_writes_window,
                check_interval=1.0,
            )
            if replicas
            else None
        )
        self._dialect: str = engine.sync_engine.dialect.name
        self._savepoint_connection = _savepoint_connection(sessionmaker)
        self._shared_connection = self._savepoint_connection is not None or isinstance(
            engine.pool, (StaticPool, SingletonThreadPool)
        )
        self._on_commit_capture: contextvars.ContextVar[list[OnCommitCallback] | None] = (
            contextvars.ContextVar(f"sqla_uow_capture_{id(self):x}", default=None)
        )
        self._shared_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._isolation_levels = _valid_isolation_levels(engine)
        self._blocked_holders = 0
        """Connections held by tasks of this manager that wait for another connection."""
        self._var: contextvars.ContextVar[_Frame | None] = contextvars.ContextVar(
            f"sqla_uow_scope_{id(self):x}", default=None
        )
        _install_engine_hooks(engine)
        _MANAGERS.add(self)
        if self._router is not None:
            for replica_engine in self._router.engines:
                _install_engine_hooks(replica_engine)

    def __repr__(self) -> str:
        return f"TransactionManager({self._engine.url.render_as_string()!r})"

    @property
    def engine(self) -> AsyncEngine:
        """The `AsyncEngine` the manager's sessions use.

        Example:
            ```python
            async with tm.engine.connect() as conn:
                ...
            ```
        """
        return self._engine

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        """The session factory (called with ``expire_on_commit=False``).

        Example:
            ```python
            assert tm.sessionmaker.kw["bind"] is tm.engine
            ```
        """
        return self._sessionmaker

    async def dispose(self) -> None:
        """Close the engine's pooled connections (what ``async with`` does on exit).

        Example:
            ```python
            tm = TransactionManager(url)
            try:
                ...
            finally:
                await tm.dispose()
            ```
        """
        await self._engine.dispose()
        if self._router is not None:
            await self._router.dispose()

    async def __aenter__(self: _TmT) -> _TmT:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.dispose()

    # -- scopes

    @overload
    def transaction(
        self,
        *,
        propagation: _PropagationWithTransaction = ...,
        isolation_level: str | None = ...,
        read_only: bool = ...,
    ) -> AbstractAsyncContextManager[AsyncSession]: ...
    @overload
    def transaction(
        self,
        *,
        propagation: Propagation,
        isolation_level: str | None = ...,
        read_only: bool = ...,
    ) -> AbstractAsyncContextManager[AsyncSession | None]: ...

    def transaction(
        self,
        *,
        propagation: Propagation = Propagation.REQUIRED,
        isolation_level: str | None = None,
        read_only: bool = False,
    ) -> AbstractAsyncContextManager[AsyncSession | None]:
        """Open a transaction scope; ``async with`` it to get the session.

        Args:
            propagation: How the scope relates to the transaction already active in
                this task (see `Propagation`).
            isolation_level: The isolation level where the scope begins a transaction,
                spelled as SQLAlchemy does (``"SERIALIZABLE"``, ``"REPEATABLE READ"``,
                ...). A joining scope that asks for another level than the transaction
                runs at raises `IllegalTransactionStateError`.
            read_only: Begin a read-only transaction (PostgreSQL: ``READ ONLY``;
                SQLite: a plain ``BEGIN`` (read-write: ``BEGIN IMMEDIATE``) and ``PRAGMA
                query_only``; MySQL / MariaDB: ``SET TRANSACTION READ ONLY``). A
                read-write scope cannot join a read-only transaction.

        Returns:
            An async context manager yielding the `AsyncSession`, or ``None`` for a
            scope without a transaction.

        Raises:
            ValueError: an unknown isolation level (names the valid ones), or an
                invalid *propagation*.
            TypeError: *read_only* is not a bool.
            UnsupportedDialectError: ``read_only`` on a database without support.
            IllegalTransactionStateError: (at ``async with``) the scope cannot begin,
                join or suspend as asked; see the class documentation for SQLite and
                for pools that cannot hand out another connection.

        A root scope commits on a clean exit (then runs the on_commit callbacks) and
        rolls back when an exception leaves it. A joined scope left by an exception,
        and any database error raised inside the transaction, mark the transaction
        (or the savepoint of the innermost NESTED scope) rollback-only: its owner then
        rolls back and raises `RollbackOnlyError` even if the exception was swallowed
        in between.

        Example:
            ```python
            async with tm.transaction(isolation_level="SERIALIZABLE") as session:
                account = await session.get(Account, 1)
                account.balance -= 10
            ```
        """
        if not isinstance(propagation, Propagation):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(
                f"propagation must be a Propagation, not {propagation!r}; choices: "
                + ", ".join(f"Propagation.{p.name}" for p in Propagation)
            )
        level = self._check_isolation_level(isolation_level)
        if not isinstance(read_only, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"read_only must be True or False, not {read_only!r}")
        if read_only and self._dialect not in _READ_ONLY_DIALECTS:
            raise UnsupportedDialectError(
                f"read_only=True is not supported on {self._dialect}; supported on: "
                + ", ".join(_READ_ONLY_DIALECTS),
                dialect=self._dialect,
            )
        return TransactionScope(self, propagation, level, read_only)

    def _check_isolation_level(self, isolation_level: str | None) -> str | None:
        if isolation_level is None:
            return None
        if not isinstance(isolation_level, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(
                f"isolation_level must be a string or None, not {isolation_level!r}; "
                f"choices on {self._dialect}: {', '.join(self._isolation_levels)}"
            )
        level = _normalize_isolation(isolation_level)
        if level not in self._isolation_levels:
            hint = (
                "; AUTOCOMMIT is not a transaction isolation level (use "
                "Propagation.NOT_SUPPORTED to run without a transaction)"
                if level == "AUTOCOMMIT"
                else ""
            )
            raise ValueError(
                f"unknown isolation level {isolation_level!r} for {self._dialect}; "
                f"choices: {', '.join(self._isolation_levels)}{hint}"
            )
        return level

    async def _begin(
        self,
        *,
        isolation_level: str | None,
        read_only: bool,
        enclosing: list[_Tx],
        held: int,
        propagation: Propagation,
        session: AsyncSession | None = None,
        on_primary: bool = False,
    ) -> _Tx:
        """Begin a transaction (on a new session unless one is given) with its settings.

        *enclosing* are the open transactions of the scopes around the new one (in
        this task and the tasks that created it): they cannot finish while the new
        one runs, so what would wait for them forever fails fast instead. *held* of
        them were begun by this task: their connections stay checked out while it
        waits for another one.

        A read-only transaction on a new session begins on a replica when the manager
        has replicas (unless *on_primary*), and on the primary when none is usable.
        """
        replica: Replica | None = None
        if self._router is not None and read_only and session is None and not on_primary:
            replica = self._router.choose()
        if enclosing and replica is None:
            self._check_second_connection(propagation, len(enclosing))
        capacity = self._pool_capacity()
        # Waiting for a replica's pool does not hold up the primary's.
        waiting = held if replica is None else 0
        if waiting and capacity is not None and self._blocked_holders + held >= capacity:
            # Every connection is held by a task that waits for another one: none of
            # them can come back.
            raise self._pool_exhausted_error(propagation, held, capacity, waited=False)
        guarded = bool(enclosing) and self._dialect == "sqlite"
        holds_lock = False
        if self._shared_connection and replica is None:
            await self._shared_lock().acquire()
            holds_lock = True
        own_session = session is None
        if session is None:
            maker = replica.sessionmaker if replica is not None else self._sessionmaker
            session = maker(expire_on_commit=False)
        try:
            # Under a savepoint manager a transaction is a SAVEPOINT of the connection's
            # transaction, which keeps the settings it began with: isolation_level and
            # read_only are recorded (joining scopes are checked against them as usual)
            # but not applied.
            applies = self._savepoint_connection is None
            options: dict[str, Any] = {}
            if isolation_level is not None and applies:
                options["isolation_level"] = isolation_level
            if read_only and applies and self._dialect == "postgresql":
                options["postgresql_readonly"] = True
            if self._dialect == "sqlite":
                # Writers take the write lock at BEGIN and queue on the busy timeout;
                # with a deferred BEGIN, two transactions that read and then write
                # cannot both upgrade their locks and one fails at once (SQLITE_BUSY).
                options[_SQLITE_IMMEDIATE_OPTION] = not read_only
                if guarded:
                    options[_SQLITE_BUSY_OPTION] = _SQLITE_GUARD_BUSY_TIMEOUT_MS
            if not session.in_transaction():
                await session.begin()
            self._blocked_holders += waiting
            try:
                connection = await session.connection(execution_options=options or None)
            finally:
                self._blocked_holders -= waiting
            if read_only and applies and self._dialect in ("mysql", "mariadb"):
                await connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            if read_only and applies and self._dialect == "sqlite":
                await connection.exec_driver_sql("PRAGMA query_only = 1")
                pending: list[str] = connection.info.setdefault(_RESTORE_KEY, [])
                if "PRAGMA query_only = 0" not in pending:
                    pending.append("PRAGMA query_only = 0")
            router = self._router
            if router is not None and replica is None:
                router.begin_watch(connection)
            elif replica is not None and router is not None:
                fresh = await router.fresh_enough(replica, connection)
                if not fresh:
                    raise _ReplicaBehind(replica.name)
        except BaseException as error:
            try:
                if own_session:
                    await _shielded(_discard(session, invalidate=False))
                else:
                    await _shielded(_rollback(session))
            finally:
                if holds_lock:
                    self._shared_lock().release()
            if guarded and isinstance(error, Exception) and _is_sqlite_busy(error):
                raise _sqlite_locked_error(
                    f"Propagation.{propagation.name} on SQLite could not begin a transaction"
                ) from error
            if replica is not None and self._router is not None and isinstance(error, Exception):
                if is_connection_failure(error):
                    self._router.skip(replica, f"{type(error).__name__}: {error}")
                elif not isinstance(error, _ReplicaBehind):
                    raise
                return await self._begin(
                    isolation_level=isolation_level,
                    read_only=read_only,
                    enclosing=enclosing,
                    held=held,
                    propagation=propagation,
                    on_primary=True,
                )
            if isinstance(error, sa_exc.TimeoutError):
                raise self._pool_exhausted_error(
                    propagation, held, capacity, waited=True
                ) from error
            raise
        tx = _Tx(
            session=session,
            connection=connection,
            isolation_level=isolation_level,
            read_only=read_only,
            guarded=guarded,
            holds_lock=holds_lock,
            task=_current_task(),
            replica=replica,
            router=self._router,
        )
        if connection.sync_connection is not None:
            _TRANSACTIONS[connection.sync_connection] = weakref.ref(tx)
        return tx

    def _check_second_connection(self, propagation: Propagation, enclosing: int) -> None:
        """Fail fast where a transaction inside open ones would wait for a connection forever."""
        pool = self._engine.pool
        if self._savepoint_connection is not None:
            raise IllegalTransactionStateError(
                f"Propagation.{propagation.name} has to begin a transaction of its own while "
                "an enclosing one is open, but every transaction of this manager is a "
                "SAVEPOINT of one outer transaction on one connection (the sqla_uow_tm test "
                "fixture, or a session factory bound to a connection with "
                "join_transaction_mode='create_savepoint'): a transaction that commits "
                "independently of the enclosing one cannot be emulated there. Test this "
                "code against a database it really commits to, or use Propagation.NESTED"
            )
        if self._shared_connection:
            raise IllegalTransactionStateError(
                f"Propagation.{propagation.name} has to begin a transaction while an enclosing "
                "one is open (suspended in this task, or in the task that created this one), "
                f"but the engine's {type(pool).__name__} shares a single connection (an "
                "in-memory SQLite database uses it by default); use a file database, "
                "Propagation.NESTED, or begin it after the enclosing transaction ends"
            )
        capacity = self._pool_capacity()
        if capacity is not None and capacity <= enclosing:
            raise IllegalTransactionStateError(
                f"Propagation.{propagation.name} needs another connection, but the "
                f"pool holds at most {capacity} (pool_size + max_overflow) and the "
                f"{enclosing} enclosing transaction(s) of this task hold them until "
                "it ends; raise pool_size or max_overflow, or use Propagation.NESTED"
            )

    def _pool_capacity(self) -> int | None:
        """The most connections the engine's pool hands out, if it has a fixed bound."""
        pool = self._engine.pool
        if not isinstance(pool, QueuePool):
            return None
        max_overflow = getattr(pool, "_max_overflow", -1)
        if not isinstance(max_overflow, int) or max_overflow < 0:
            return None
        return pool.size() + max_overflow

    def _pool_exhausted_error(
        self, propagation: Propagation, held: int, capacity: int | None, *, waited: bool
    ) -> PoolExhaustedError:
        pool = self._engine.pool
        checked_out: int | None = None
        why = (
            "waited pool_timeout in vain"
            if waited
            else "every connection is held by a task that waits for another one, so "
            "none can come back"
        )
        if isinstance(pool, QueuePool):
            checked_out = pool.checkedout()
            if waited:
                why = f"waited pool_timeout ({pool.timeout()} s) in vain"
        size = "an unbounded pool" if capacity is None else f"a pool of {capacity}"
        held_by = [f"{checked_out} checked out"] if checked_out is not None else []
        if held:
            held_by.append(f"{held} of them by suspended transactions of this task")
        if self._blocked_holders:
            held_by.append(
                f"{self._blocked_holders} by other tasks that hold them through suspended "
                "transactions and wait for another connection"
            )
        return PoolExhaustedError(
            f"Propagation.{propagation.name} could not get a connection from {size} "
            f"(pool_size + max_overflow): {why}; {', '.join(held_by)}. A "
            "transaction that begins inside another one (REQUIRES_NEW) needs a connection "
            "of its own while the outer one keeps its: size the pool for the concurrent "
            "tasks times the transactions each holds at once, or use Propagation.NESTED",
            capacity=capacity,
            checked_out=checked_out,
            held_by_task=held,
        )

    def _shared_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._shared_locks.get(loop)
        if lock is None:
            lock = self._shared_locks[loop] = asyncio.Lock()
        return lock

    def _end(self, tx: _Tx) -> None:
        """Record that *tx* ended; release the shared connection's lock it holds."""
        tx.open = False
        if tx.holds_lock:
            tx.holds_lock = False
            self._shared_lock().release()

    async def _committed(self, callbacks: list[OnCommitCallback]) -> None:
        """Run the on_commit callbacks of a committed transaction, or hand them over.

        Inside `sqla_uow.testing.capture_on_commit` they go to its list. Under a
        savepoint manager nothing was committed yet (only a SAVEPOINT released), so
        they do not run.
        """
        captured = self._on_commit_capture.get()
        if captured is not None:
            captured.extend(callbacks)
        elif self._savepoint_connection is None:
            await _run_callbacks(callbacks)

    # -- ambient scope

    def _has_open_scope(self) -> bool:
        """Whether a scope of this manager is open in this context (any kind, any task)."""
        return self._var.get() is not None

    def _active_frame(self) -> _Frame | None:
        frame = self._var.get()
        if frame is None or frame.task is not _current_task() or frame.tx is None:
            return None
        return frame

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is active in the current task.

        Example:
            ```python
            async with tm.transaction():
                assert tm.in_transaction
            assert not tm.in_transaction
            ```
        """
        return self._active_frame() is not None

    @property
    def current_replica(self) -> str | None:
        """The name (``host:port``) of the replica the current task's transaction runs on.

        None on the primary, and outside a transaction: for logging which server served
        a read.

        Example:
            ```python
            async with tm.transaction(read_only=True):
                log.info("served by %s", tm.current_replica or "the primary")
            ```
        """
        frame = self._active_frame()
        if frame is None or frame.tx is None or frame.tx.replica is None:
            return None
        return frame.tx.replica.name

    @property
    def session(self) -> AsyncSession:
        """The session of the transaction active in the current task.

        Raises:
            TransactionRequiredError: no transaction is active in this task (none was
                begun, the scope runs without one, or it belongs to another task).

        Example:
            ```python
            @transactional(tm)
            async def rename(user_id: int, name: str) -> None:
                user = await tm.session.get_one(User, user_id)
                user.name = name
            ```
        """
        frame = self._active_frame()
        if frame is None or frame.tx is None:
            raise TransactionRequiredError(
                "tm.session needs an active transaction: "
                + _why_none(self._var.get(), _current_task())
            )
        return frame.tx.session

    def on_commit(self, callback: OnCommitCallback) -> None:
        """Run *callback* after the outermost transaction of this task commits.

        Callbacks run first in first out, after the COMMIT succeeded and the session
        was closed, outside the transaction scope (a callback may open a transaction
        of its own). A plain function is called; a coroutine function is awaited.
        They are dropped when the transaction rolls back, when the savepoint they
        were registered in rolls back, and when the outcome of the COMMIT is unknown
        (cancelled or connection lost during COMMIT). A callback that raises does not
        stop the others: its exception is logged on the ``sqla_uow`` logger with its
        traceback and the scope exits normally, since the commit has happened.

        Raises:
            TransactionRequiredError: no transaction is active in this task.
            TypeError: *callback* is not callable.

        Example:
            ```python
            async with tm.transaction() as session:
                session.add(order)
                tm.on_commit(lambda: mailer.send_confirmation(order.id))
            ```
        """
        if not callable(callback):
            raise TypeError(f"on_commit() needs a callable, not {callback!r}")
        frame = self._active_frame()
        if frame is None or frame.level is None:
            raise TransactionRequiredError(
                "on_commit() needs an active transaction: "
                + _why_none(self._var.get(), _current_task())
            )
        frame.level.callbacks.append(callback)
