"""`TransactionScope`: what ``async with tm.transaction()`` enters.

Every scope is one of four kinds:

* a *root* scope begins a transaction on a session and connection of its own and commits
  or rolls it back at its exit;
* a *nested* scope opens a SAVEPOINT inside the transaction of the enclosing scope;
* a *joined* scope takes part in the enclosing transaction: it neither commits nor rolls
  back, but an exception leaving it marks the transaction rollback-only;
* a scope *without a transaction* (SUPPORTS with nothing to join, NOT_SUPPORTED, NEVER)
  hides any enclosing transaction from the code inside it.

A scope keeps the ambient state (its frame in the manager's context variable); what a
root scope needs to begin and end a physical transaction it asks of the
`PhysicalTransactions` it was given.
"""

from __future__ import annotations

import contextvars
import logging
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

from sqla_uow._compat import failed_flush_error
from sqla_uow.exceptions import IllegalTransactionStateError, TransactionRequiredError

from ._propagation import (
    Frame,
    Level,
    OnCommitCallback,
    Propagation,
    Tx,
    current_task,
    mark_rollback_only,
    normalize_isolation,
    open_transactions,
    release_into_parent,
    rollback_only_error,
    run_callbacks,
    run_rollback_callbacks,
    set_level,
    why_none,
)
from ._session import commit, discard, flush_session, is_outcome_unknown, rollback, shielded

__all__ = ["PhysicalTransactions", "TransactionScope"]

logger = logging.getLogger("sqla_uow")

_SessionT = TypeVar("_SessionT", bound="AsyncSession | None", covariant=True)

_Kind = Literal["root", "nested", "join", "none"]


class PhysicalTransactions(Protocol):
    """What a scope needs to begin and end physical transactions (`EngineTransactions`)."""

    async def begin(
        self,
        *,
        isolation_level: str | None,
        read_only: bool,
        enclosing: list[Tx],
        held: int,
        propagation: Propagation,
        session: AsyncSession | None = None,
        timeout: float | None = None,
    ) -> Tx:
        """Begin a transaction (on *session*, else on a new one) with these settings."""
        ...

    async def narrow_timeout(self, tx: Tx, seconds: float) -> tuple[float | None, Any] | None:
        """Shorten *tx*'s timeout for an inner scope; what `restore_timeout` needs."""
        ...

    async def restore_timeout(self, tx: Tx, narrowed: tuple[float | None, Any]) -> None:
        """Bring back the timeout `narrow_timeout` shortened."""
        ...

    def end(self, tx: Tx) -> None:
        """Record that *tx* ended (committed, rolled back or discarded)."""
        ...

    async def committed(self, callbacks: list[OnCommitCallback]) -> None:
        """Run (or hand over) the on_commit callbacks of a committed transaction."""
        ...

    def raise_if_locked(self, tx: Tx, exc: BaseException | None) -> None:
        """Raise a clear error where *exc* means a guarded *tx* found the database locked."""
        ...


class TransactionScope(AbstractAsyncContextManager[_SessionT], Generic[_SessionT]):
    """The context manager `TransactionManager.transaction` returns.

    ``async with`` it to get the session (``None`` for a scope without a transaction).
    A scope is entered once; `began_transaction` and `joined` tell what it did. Units
    of work use `commit_and_continue` / `rollback_and_continue` for ``uow.commit()``
    and ``uow.rollback()``.

    Example:
        ```python
        scope = tm.transaction()
        async with scope as session:
            session.add(User(email="ann@example.com"))
        assert scope.began_transaction  # it committed its own transaction
        ```
    """

    def __init__(
        self,
        transactions: PhysicalTransactions,
        var: contextvars.ContextVar[Frame | None],
        propagation: Propagation,
        isolation_level: str | None,
        read_only: bool,
        timeout: float | None = None,
    ) -> None:
        self._transactions = transactions
        self._timeout = timeout
        self._narrowed: tuple[float | None, Any] | None = None
        self._var = var
        self.propagation = propagation
        self._isolation_level = isolation_level
        self._read_only = read_only
        self._kind: _Kind | None = None
        self._entered = False
        self._frame: Frame | None = None
        self._previous: Frame | None = None
        self._nested: AsyncSessionTransaction | None = None
        self._joined_savepoint = False
        self.discard_on_exit = False
        """Roll back instead of committing at a clean exit (explicit-style unit of work).

        Set before entry, it also makes a scope that would join the active transaction
        open a SAVEPOINT instead, so that the work it does not commit can be undone.
        """

    @property
    def began_transaction(self) -> bool:
        """Whether the scope began a transaction of its own (it commits or rolls it back).

        False for a scope that joined, opened a savepoint, runs without a transaction,
        or was not entered yet: only the owner of a transaction can retry it.
        """
        return self._kind == "root"

    @property
    def joined(self) -> bool:
        """Whether the scope joined the enclosing transaction: it neither commits nor rolls back."""
        return self._kind == "join"

    # -- entry

    async def __aenter__(self) -> _SessionT:
        return cast(_SessionT, await self._enter())

    async def _enter(self) -> AsyncSession | None:
        if self._entered:
            raise IllegalTransactionStateError(
                "a transaction scope can be entered only once; call tm.transaction() again"
            )
        self._entered = True
        task = current_task()
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
                f"{why_none(previous, task)}"
            )

        if p in (Propagation.NEVER, Propagation.NOT_SUPPORTED) or (
            p is Propagation.SUPPORTS and active is None
        ):
            self._kind = "none"
            self._push(Frame(None, None, task, p, previous))
            return None

        if active is not None and current is not None and current.level is not None:
            joins = p in (Propagation.REQUIRED, Propagation.MANDATORY, Propagation.SUPPORTS)
            if joins and not self.discard_on_exit:
                await self._check_compatible(active)
                if self._timeout is not None:
                    self._narrowed = await self._transactions.narrow_timeout(active, self._timeout)
                self._kind = "join"
                self._push(Frame(active, current.level, task, p, previous))
                return active.session
            if joins or p is Propagation.NESTED:
                # An explicit-style unit of work that would join runs in a savepoint,
                # so that what it does not commit can be rolled back at its exit.
                await self._check_compatible(active)
                if self._timeout is not None:
                    # Before the SAVEPOINT: rolling it back must not undo the setting.
                    self._narrowed = await self._transactions.narrow_timeout(active, self._timeout)
                self._nested = await active.session.begin_nested()
                self._kind = "nested"
                self._joined_savepoint = joins
                level = active.level = Level(parent=current.level)
                self._push(Frame(active, level, task, p, previous))
                return active.session

        # Begin a transaction of our own: REQUIRED / NESTED with nothing to join,
        # REQUIRES_NEW always.
        tx = await self._begin_root()
        self._kind = "root"
        level = tx.level = Level(parent=None)
        self._push(Frame(tx, level, task, p, previous))
        return tx.session

    async def _begin_root(self, session: AsyncSession | None = None) -> Tx:
        enclosing = open_transactions(self._previous)
        task = current_task()
        return await self._transactions.begin(
            isolation_level=self._isolation_level,
            read_only=self._read_only,
            enclosing=enclosing,
            held=sum(1 for tx in enclosing if tx.task is task) if enclosing else 0,
            propagation=self.propagation,
            session=session,
            timeout=self._timeout,
        )

    async def _restore_timeout(self, tx: Tx | None) -> None:
        """Bring back the timeout this inner scope shortened, while *tx* can go on.

        Not when the transaction (or the savepoint around this scope) can only roll
        back: its end resets the setting (transaction-local, or at check-in).
        """
        narrowed, self._narrowed = self._narrowed, None
        if narrowed is None or tx is None or not tx.open:
            return
        if tx.level is not None and tx.level.rollback_only:
            return
        await self._transactions.restore_timeout(tx, narrowed)

    def _push(self, frame: Frame) -> None:
        self._frame = frame
        self._var.set(frame)

    def _pop(self) -> None:
        self._var.set(self._previous)

    async def _check_compatible(self, tx: Tx) -> None:
        requested = self._isolation_level
        if requested is not None:
            current = tx.isolation_level
            if current is None:
                if tx.database_isolation_level is None:
                    level = await tx.connection.get_isolation_level()
                    tx.database_isolation_level = normalize_isolation(str(level))
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
        kind = self._kind
        if kind == "none":
            self._pop()
            return
        if kind == "join":
            self._pop()
            if exc is not None:
                mark_rollback_only(self._frame.level, exc)
            elif self._narrowed is not None:
                await self._restore_timeout(self._frame.tx)
            return
        if kind == "nested":
            if exc is not None and self._joined_savepoint:
                level = self._frame.level
                mark_rollback_only(level.parent if level is not None else None, exc)
            try:
                await self._exit_nested(exc)
            finally:
                if self._narrowed is not None:
                    await self._restore_timeout(self._frame.tx)
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
            _mark_failed_flush(nested.session, level)
            if exc is None and not level.rollback_only and not self.discard_on_exit:
                try:
                    await flush_session(nested.session)
                    await nested.commit()
                except BaseException as error:
                    await self._rollback_savepoint(nested, level, error)
                    if self._joined_savepoint:
                        mark_rollback_only(level.parent, error)
                    raise
                release_into_parent(level)
                return
            await self._rollback_savepoint(nested, level, exc)
            if exc is None and level.rollback_only and not self.discard_on_exit:
                raise rollback_only_error(level, "savepoint")
        finally:
            assert frame.tx is not None
            frame.tx.level = level.parent
            self._pop()

    @staticmethod
    async def _rollback_savepoint(
        nested: AsyncSessionTransaction, level: Level, cause: BaseException | None
    ) -> bool:
        """Roll back to the savepoint; whether that worked."""
        level.callbacks.clear()
        try:
            await shielded(nested.rollback())
        except Exception:
            # The savepoint could not be rolled back (the connection is gone):
            # the enclosing transaction cannot commit either.
            logger.debug("rolling back a savepoint failed", exc_info=True)
            mark_rollback_only(level.parent, cause)
            if level.parent is not None:  # they run when the enclosing transaction rolls back
                level.parent.rollback_callbacks.extend(level.rollback_callbacks)
                level.rollback_callbacks = []
            return False
        await run_rollback_callbacks(level)
        return True

    async def _exit_root(self, exc: BaseException | None) -> None:
        frame = self._frame
        assert frame is not None
        assert frame.tx is not None
        assert frame.level is not None
        tx, level = frame.tx, frame.level
        session = tx.session
        callbacks: list[OnCommitCallback] = []
        undone: list[OnCommitCallback] = []
        try:
            _mark_failed_flush(session, level)
            if exc is not None or level.rollback_only or self.discard_on_exit:
                level.callbacks.clear()
                await shielded(discard(session, invalidate=False))
                undone = level.rollback_callbacks
                if exc is None and level.rollback_only and not self.discard_on_exit:
                    raise rollback_only_error(level, "transaction")
                self._transactions.raise_if_locked(tx, exc)
                return
            try:
                await commit(tx)
            except BaseException as error:
                level.callbacks.clear()
                if not is_outcome_unknown(error):
                    undone = level.rollback_callbacks
                self._transactions.raise_if_locked(tx, error)
                raise
            callbacks = level.callbacks
            if session.in_transaction():
                await shielded(session.close())
            else:  # committed: closing does no I/O, so there is nothing to shield
                await session.close()
        finally:
            self._transactions.end(tx)
            self._pop()
            # Like on_commit callbacks, outside the scope (after its frame is gone).
            if undone:
                await run_callbacks(undone, rolled_back=True)
        if callbacks:
            await self._transactions.committed(callbacks)

    # -- used by the unit of work

    def _require_innermost(self, action: str) -> Frame:
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
        if self._kind == "join":
            try:
                await flush_session(frame.tx.session)
            except BaseException as error:
                mark_rollback_only(level, error)
                raise
            return
        if level.rollback_only:
            await self.rollback_and_continue()
            raise rollback_only_error(
                level, "savepoint" if self._kind == "nested" else "transaction"
            )
        session = frame.tx.session
        if self._kind == "nested":
            assert self._nested is not None
            try:
                await flush_session(session)
                await self._nested.commit()
            except BaseException as error:
                rolled_back = await self._rollback_savepoint(self._nested, level, error)
                if isinstance(error, Exception) and rolled_back:
                    self._nested = await session.begin_nested()
                    set_level(frame, Level(parent=level.parent))
                raise
            release_into_parent(level)
            self._nested = await session.begin_nested()
            set_level(frame, Level(parent=level.parent))
            return
        tx = frame.tx
        try:
            await commit(tx)
        except BaseException as error:
            level.callbacks.clear()
            self._transactions.end(tx)
            if not is_outcome_unknown(error):
                await run_rollback_callbacks(level)
            if isinstance(error, Exception) and not is_outcome_unknown(error):
                fresh = frame.level = Level(parent=None)
                frame.tx = await self._begin_root(session)
                set_level(frame, fresh)
            self._transactions.raise_if_locked(tx, error)
            raise
        self._transactions.end(tx)
        fresh = frame.level = Level(parent=None)
        # The callbacks run outside the unit of work, as after the exit of a root scope:
        # a callback's own scope does not join the next transaction.
        self._var.set(self._previous)
        try:
            await self._transactions.committed(level.callbacks)
        finally:
            self._var.set(frame)
        frame.tx = await self._begin_root(session)
        set_level(frame, fresh)

    async def rollback_and_continue(self) -> None:
        """Roll back the work so far and go on in a new transaction (or savepoint).

        A joined scope cannot roll back on its own: it marks the transaction
        rollback-only. The on_commit callbacks registered since the last commit are dropped;
        the on_rollback ones run.
        """
        frame = self._require_innermost("rollback()")
        assert frame.tx is not None
        assert frame.level is not None
        level = frame.level
        if self._kind == "join":
            mark_rollback_only(level, None)
            return
        session = frame.tx.session
        level.callbacks.clear()
        if self._kind == "nested":
            assert self._nested is not None
            await shielded(self._nested.rollback())
            await run_rollback_callbacks(level)
            self._nested = await session.begin_nested()
            set_level(frame, Level(parent=level.parent))
            return
        tx = frame.tx
        try:
            await shielded(rollback(session))
        finally:
            self._transactions.end(tx)
        await run_rollback_callbacks(level)
        fresh = frame.level = Level(parent=None)
        frame.tx = await self._begin_root(session)
        set_level(frame, fresh)


def _mark_failed_flush(session: AsyncSession, level: Level) -> None:
    """Make *level* rollback-only when a flush inside it failed and the error was caught.

    A failed flush that sent no failing statement (a stale version: no row matched)
    is not seen by the engine's error hook, and the session refuses to commit.
    """
    error = failed_flush_error(session.sync_session)
    if error is not None:
        mark_rollback_only(level, error)
