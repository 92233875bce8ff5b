"""`TransactionManager`: the one door to transactions, a thin facade.

The manager holds what is per database: the engine, the session factory, the replicas,
and the context variable of the ambient scope. Scopes (`TransactionScope`) do the
propagation; `EngineTransactions` begins and ends physical transactions. Rule for this
class: it validates arguments and reads the ambient frame, nothing more; behaviour of a
scope goes into `_scope.py`, behaviour of a physical transaction into `_begin.py`, and
what differs between databases into the backend (`sqla_uow._dialects`).
"""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import Any, TypeVar, overload

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from sqla_uow._replicas import ReplicaRouter
from sqla_uow.exceptions import TransactionRequiredError

from ._begin import EngineTransactions
from ._hooks import install_engine_hooks
from ._propagation import (
    Frame,
    Level,
    OnCommitCallback,
    Propagation,
    PropagationWithTransaction,
    current_task,
    why_none,
)
from ._scope import TransactionScope

__all__ = ["TransactionManager", "managers_in_scope"]

_TmT = TypeVar("_TmT", bound="TransactionManager")


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
        engine, sessionmaker = _engine_and_sessionmaker(bind, engine_options)
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
        self._on_commit_capture: contextvars.ContextVar[list[OnCommitCallback] | None] = (
            contextvars.ContextVar(f"sqla_uow_capture_{id(self):x}", default=None)
        )
        self._transactions = EngineTransactions(
            engine, sessionmaker, router=self._router, on_commit_capture=self._on_commit_capture
        )
        self._var: contextvars.ContextVar[Frame | None] = contextvars.ContextVar(
            f"sqla_uow_scope_{id(self):x}", default=None
        )
        install_engine_hooks(engine)
        _MANAGERS.add(self)
        if self._router is not None:
            for replica_engine in self._router.engines:
                install_engine_hooks(replica_engine)

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
        propagation: PropagationWithTransaction = ...,
        isolation_level: str | None = ...,
        read_only: bool = ...,
        timeout: float | None = ...,
    ) -> TransactionScope[AsyncSession]: ...
    @overload
    def transaction(
        self,
        *,
        propagation: Propagation,
        isolation_level: str | None = ...,
        read_only: bool = ...,
        timeout: float | None = ...,
    ) -> TransactionScope[AsyncSession | None]: ...

    def transaction(
        self,
        *,
        propagation: Propagation = Propagation.REQUIRED,
        isolation_level: str | None = None,
        read_only: bool = False,
        timeout: float | None = None,
    ) -> TransactionScope[AsyncSession | None]:
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
            timeout: Seconds each statement may run or wait for a lock on the server,
                else `TransactionTimeoutError`; a joining scope may shorten it, not extend it.

        Returns:
            The `TransactionScope`: an async context manager yielding the
            `AsyncSession`, or ``None`` for a scope without a transaction.

        Raises:
            ValueError: an unknown isolation level (names the valid ones), or an
                invalid *propagation*.
            TypeError: *read_only* is not a bool.
            InvalidFieldError: *timeout* is not a number of seconds greater than 0.
            UnsupportedDialectError: ``read_only`` or ``timeout`` on a database without them.
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
        txs = self._transactions
        level, timeout = txs.check_options(propagation, isolation_level, read_only, timeout)
        return TransactionScope(txs, self._var, propagation, level, read_only, timeout)

    # -- ambient scope

    def _has_open_scope(self) -> bool:
        """Whether a scope of this manager is open in this context (any kind, any task)."""
        return self._var.get() is not None

    def _active_frame(self) -> Frame | None:
        frame = self._var.get()
        if frame is None or frame.task is not current_task() or frame.tx is None:
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
                + why_none(self._var.get(), current_task())
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
        self._level_for("on_commit", callback).callbacks.append(callback)

    def on_rollback(self, callback: OnCommitCallback) -> None:
        """Run *callback* after the work of the current scope is rolled back.

        For compensating actions, such as deleting a file uploaded in the transaction.
        It belongs to the innermost level (a NESTED scope's savepoint, else the
        transaction) and runs when that level rolls back: an exception leaving the scope,
        rollback-only, ``uow.rollback()``, a failed COMMIT. A released savepoint hands
        its callbacks to the enclosing level. They are dropped at COMMIT and when the
        COMMIT's outcome is unknown. They run in order (coroutine functions awaited)
        after the ROLLBACK, once the scope has exited if its exit rolled back; a
        callback's exception is logged.

        Raises:
            TransactionRequiredError: no transaction is active in this task.
            TypeError: *callback* is not callable.

        Example:
            ```python
            async with tm.transaction() as session:
                path = await storage.save(upload)
                tm.on_rollback(lambda: storage.delete(path))
                session.add(Document(path=path))
            ```
        """
        self._level_for("on_rollback", callback).rollback_callbacks.append(callback)

    def _level_for(self, method: str, callback: object) -> Level:
        """The innermost level of the active transaction, for *method* to register *callback*."""
        if not callable(callback):
            raise TypeError(f"{method}() needs a callable, not {callback!r}")
        frame = self._active_frame()
        if frame is None or frame.level is None:
            raise TransactionRequiredError(
                f"{method}() needs an active transaction: "
                + why_none(self._var.get(), current_task())
            )
        return frame.level


def _engine_and_sessionmaker(
    bind: str | URL | AsyncEngine | async_sessionmaker[AsyncSession],
    engine_options: dict[str, Any],
) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    """The engine and session factory of a manager's *bind* (see `TransactionManager`)."""
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
    return engine, sessionmaker


_MANAGERS: weakref.WeakSet[TransactionManager] = weakref.WeakSet()
"""Every live manager, for `managers_in_scope`."""


def managers_in_scope() -> list[TransactionManager]:
    """The managers with a scope open in this context, in this task or the task that made it.

    A scope of any kind counts, also one that runs without a transaction
    (NOT_SUPPORTED, SUPPORTS with nothing to join): code inside it belongs to that
    manager's database.
    """
    return [tm for tm in list(_MANAGERS) if tm._has_open_scope()]  # pyright: ignore[reportPrivateUsage]
