"""`EngineTransactions`: physical transactions on a manager's engine (or a replica's).

What a root scope needs to begin and end a transaction: a session and a connection
with the transaction's settings, applied the way the backend wants them; fail-fast
checks where a transaction inside open ones would wait forever (a single shared
connection, a pool without a connection to spare, a one-writer database's lock); the
shared connection's lock; and the on_commit callbacks once a transaction committed.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import QueuePool, SingletonThreadPool, StaticPool

from sqla_uow._compat import pool_max_overflow
from sqla_uow._dialects import backend_for
from sqla_uow._errors import lock_or_timeout_error
from sqla_uow._replicas import Replica, ReplicaRouter, is_connection_failure
from sqla_uow.exceptions import (
    IllegalTransactionStateError,
    PoolExhaustedError,
    UnsupportedDialectError,
)

from ._hooks import watch
from ._propagation import (
    OnCommitCallback,
    Propagation,
    Tx,
    check_timeout,
    current_task,
    normalize_isolation,
    run_callbacks,
)
from ._session import discard, rollback, shielded

if TYPE_CHECKING:
    from sqla_uow._dialects import Backend

__all__ = ["EngineTransactions"]


class _ReplicaBehind(Exception):
    """The chosen replica has not replayed this context's last commit (or lags)."""


class EngineTransactions:
    """Begins and ends the physical transactions of one manager.

    `TransactionScope` asks it for what it cannot do on its own: `begin`, `end`,
    `committed` and `raise_if_locked`. It holds no ambient state (that is the scope's).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        router: ReplicaRouter | None,
        on_commit_capture: contextvars.ContextVar[list[OnCommitCallback] | None],
    ) -> None:
        self._engine = engine
        self._sessionmaker = sessionmaker
        self._router = router
        self._on_commit_capture = on_commit_capture
        self.backend: Backend = backend_for(engine.sync_engine.dialect)
        self.savepoint_connection = _savepoint_connection(sessionmaker)
        """Set when every transaction is a SAVEPOINT of one outer transaction."""
        self._shared_connection = self.savepoint_connection is not None or isinstance(
            engine.pool, (StaticPool, SingletonThreadPool)
        )
        self._shared_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._blocked_holders = 0
        """Connections held by tasks of this manager that wait for another connection."""

    def check_isolation_level(self, isolation_level: str | None) -> str | None:
        """*isolation_level* as SQLAlchemy spells it; ValueError naming the valid ones."""
        if isolation_level is None:
            return None
        if not isinstance(isolation_level, str):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(
                f"isolation_level must be a string or None, not {isolation_level!r}; "
                f"choices on {self.backend.name}: {', '.join(self.backend.isolation_levels)}"
            )
        level = normalize_isolation(isolation_level)
        if level not in self.backend.isolation_levels:
            hint = (
                "; AUTOCOMMIT is not a transaction isolation level (use "
                "Propagation.NOT_SUPPORTED to run without a transaction)"
                if level == "AUTOCOMMIT"
                else ""
            )
            raise ValueError(
                f"unknown isolation level {isolation_level!r} for {self.backend.name}; "
                f"choices: {', '.join(self.backend.isolation_levels)}{hint}"
            )
        return level

    def check_read_only(self, read_only: bool) -> None:
        """Refuse *read_only* where it is not a bool or the database cannot apply it."""
        if not isinstance(read_only, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"read_only must be True or False, not {read_only!r}")
        if read_only and not self.backend.supports_read_only:
            database = self._engine.url.get_backend_name()
            raise UnsupportedDialectError(
                f"read_only=True is not supported on {database}; supported on "
                "PostgreSQL, SQLite, MySQL and MariaDB",
                dialect=database,
            )

    def check_options(
        self,
        propagation: Propagation,
        isolation_level: str | None,
        read_only: bool,
        timeout: float | None,
    ) -> tuple[str | None, float | None]:
        """The options of a scope checked: the isolation level and timeout normalised.

        Raises:
            ValueError: An invalid *propagation* or unknown *isolation_level*.
            TypeError: *read_only* is not a bool.
            InvalidFieldError: *timeout* is not a number of seconds greater than 0.
            UnsupportedDialectError: ``read_only`` or ``timeout`` the database lacks.
        """
        if not isinstance(propagation, Propagation):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(
                f"propagation must be a Propagation, not {propagation!r}; choices: "
                + ", ".join(f"Propagation.{p.name}" for p in Propagation)
            )
        level = self.check_isolation_level(isolation_level)
        self.check_read_only(read_only)
        return level, None if timeout is None else self.check_timeout(timeout)

    def check_timeout(self, timeout: object) -> float:
        """*timeout* as seconds; `InvalidFieldError` / `UnsupportedDialectError` naming why not."""
        seconds = check_timeout(timeout)
        if not self.backend.supports_timeout:
            database = self._engine.url.get_backend_name()
            raise UnsupportedDialectError(
                f"transaction(timeout=...) is not supported on {database}; supported on "
                "PostgreSQL, MariaDB and SQLite",
                dialect=database,
            )
        return seconds

    async def begin(
        self,
        *,
        isolation_level: str | None,
        read_only: bool,
        enclosing: list[Tx],
        held: int,
        propagation: Propagation,
        session: AsyncSession | None = None,
        on_primary: bool = False,
        timeout: float | None = None,
    ) -> Tx:
        """Begin a transaction (on a new session unless one is given) with its settings.

        *enclosing* are the open transactions of the scopes around the new one (in
        this task and the tasks that created it): they cannot finish while the new
        one runs, so what would wait for them forever fails fast instead. *held* of
        them were begun by this task: their connections stay checked out while it
        waits for another one.

        A read-only transaction on a new session begins on a replica when the manager
        has replicas (unless *on_primary*), and on the primary when none is usable.
        *timeout* (seconds) bounds its statements.
        """
        replica: Replica | None = None
        if self._router is not None and read_only and session is None and not on_primary:
            replica = self._router.choose()
        if enclosing and replica is None:
            self._check_second_connection(propagation, len(enclosing))
        # Waiting for a replica's pool does not hold up the primary's.
        waiting = held if replica is None else 0
        capacity = self._pool_capacity() if waiting else None
        if capacity is not None and self._blocked_holders + held >= capacity:
            # Every connection is held by a task that waits for another one: none of
            # them can come back.
            raise self._pool_exhausted_error(propagation, held, capacity, waited=False)
        backend = self.backend
        guarded = bool(enclosing) and backend.one_writer
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
            applies = self.savepoint_connection is None
            if not applies:
                timeout = None
            options = backend.begin_options(
                read_only=read_only,
                apply_read_only=read_only and applies,
                guarded=guarded,
                timeout=timeout,
            )
            if isolation_level is not None and applies:
                options["isolation_level"] = isolation_level
            # connection() begins the session's transaction itself (autobegin): no
            # separate begin() and its trip through a greenlet.
            self._blocked_holders += waiting
            try:
                connection = await session.connection(execution_options=options or None)
            finally:
                self._blocked_holders -= waiting
            if read_only and applies:
                await backend.begin_read_only(connection)
            if timeout is not None:
                await backend.begin_timeout(connection, timeout)
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
                    await shielded(discard(session, invalidate=False))
                else:
                    await shielded(rollback(session))
            finally:
                if holds_lock:
                    self._shared_lock().release()
            if guarded and isinstance(error, Exception) and backend.is_busy(error):
                raise backend.locked_error(
                    f"Propagation.{propagation.name} on {backend.name} could not begin a "
                    "transaction"
                ) from error
            if timeout is not None and isinstance(error, sa_exc.DBAPIError):
                # SQLite's BEGIN IMMEDIATE that waited out the busy timeout.
                translated = lock_or_timeout_error(error, timeout=timeout)
                if translated is not None:
                    raise translated from error
            if replica is not None and self._router is not None and isinstance(error, Exception):
                if is_connection_failure(error):
                    self._router.skip(replica, f"{type(error).__name__}: {error}")
                elif not isinstance(error, _ReplicaBehind):
                    raise
                return await self.begin(
                    isolation_level=isolation_level,
                    read_only=read_only,
                    enclosing=enclosing,
                    held=held,
                    propagation=propagation,
                    on_primary=True,
                    timeout=timeout,
                )
            if isinstance(error, sa_exc.TimeoutError):
                raise self._pool_exhausted_error(
                    propagation, held, self._pool_capacity(), waited=True
                ) from error
            raise
        tx = Tx(
            session=session,
            connection=connection,
            isolation_level=isolation_level,
            read_only=read_only,
            guarded=guarded,
            holds_lock=holds_lock,
            task=current_task(),
            replica=replica,
            router=self._router,
            timeout=timeout,
        )
        watch(tx)
        return tx

    async def narrow_timeout(self, tx: Tx, seconds: float) -> tuple[float | None, Any] | None:
        """Shorten *tx*'s timeout to *seconds* for an inner scope (never lengthen it).

        Returns what `restore_timeout` needs at the scope's end, or ``None`` when
        nothing changed (the timeout in force is as short already, or transactions are
        savepoints of one outer transaction, where timeouts are not applied).
        """
        outer = tx.timeout
        if (outer is not None and outer <= seconds) or self.savepoint_connection is not None:
            return None
        saved = await self.backend.set_timeout(tx.connection, seconds, first=outer is None)
        tx.timeout = seconds
        return outer, saved

    async def restore_timeout(self, tx: Tx, narrowed: tuple[float | None, Any]) -> None:
        """Bring back the timeout an inner scope's `narrow_timeout` shortened."""
        outer, saved = narrowed
        if outer is None:
            await self.backend.reset_timeout(tx.connection, saved)
        else:
            await self.backend.set_timeout(tx.connection, outer, first=False)
        tx.timeout = outer

    def _check_second_connection(self, propagation: Propagation, enclosing: int) -> None:
        """Fail fast where a transaction inside open ones would wait for a connection forever."""
        pool = self._engine.pool
        if self.savepoint_connection is not None:
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
        max_overflow = pool_max_overflow(pool)
        if max_overflow is None:
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

    def end(self, tx: Tx) -> None:
        """Record that *tx* ended; release the shared connection's lock it holds."""
        tx.open = False
        if tx.holds_lock:
            tx.holds_lock = False
            self._shared_lock().release()

    async def committed(self, callbacks: list[OnCommitCallback]) -> None:
        """Run the on_commit callbacks of a committed transaction, or hand them over.

        Inside `sqla_uow.testing.capture_on_commit` they go to its list. Under a
        savepoint manager nothing was committed yet (only a SAVEPOINT released), so
        they do not run.
        """
        captured = self._on_commit_capture.get()
        if captured is not None:
            captured.extend(callbacks)
        elif self.savepoint_connection is None:
            await run_callbacks(callbacks)

    def raise_if_locked(self, tx: Tx, exc: BaseException | None) -> None:
        """Raise a clear error for a guarded transaction that found the database locked."""
        if tx.guarded and exc is not None and self.backend.is_busy(exc):
            raise self.backend.locked_error(self.backend.name) from exc


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
