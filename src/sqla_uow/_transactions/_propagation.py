"""Propagation and the ambient state: levels, physical transactions, frames, managers.

The ambient scope of a manager lives in a `contextvars.ContextVar` as a `Frame` tagged
with the asyncio task that opened it. A task created inside a scope inherits a copy of
the context variables, but it does not inherit the transaction: it sees no ambient
transaction and begins its own where a scope asks for one, so two tasks never share a
session.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from sqla_uow.exceptions import InvalidFieldError, RollbackOnlyError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    from sqla_uow._replicas import Replica, ReplicaRouter

__all__ = [
    "WITH_TRANSACTION",
    "Frame",
    "Level",
    "OnCommitCallback",
    "Propagation",
    "PropagationWithTransaction",
    "Tx",
    "check_timeout",
    "current_task",
    "mark_rollback_only",
    "normalize_isolation",
    "open_transactions",
    "release_into_parent",
    "rollback_only_error",
    "run_callbacks",
    "run_rollback_callbacks",
    "set_level",
    "why_none",
]

logger = logging.getLogger("sqla_uow")

OnCommitCallback = Callable[[], object]
"""A callback for `TransactionManager.on_commit`: a plain or a coroutine function."""


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
PropagationWithTransaction = Literal[
    Propagation.REQUIRED, Propagation.REQUIRES_NEW, Propagation.NESTED, Propagation.MANDATORY
]


def _no_callbacks() -> list[OnCommitCallback]:
    return []


@dataclass(eq=False)
class Level:
    """One level of commit: the root transaction or one savepoint inside it."""

    parent: Level | None
    callbacks: list[OnCommitCallback] = field(default_factory=_no_callbacks)
    rollback_callbacks: list[OnCommitCallback] = field(default_factory=_no_callbacks)
    """`TransactionManager.on_rollback` callbacks of this level and of the savepoints
    released into it."""
    rollback_only: bool = False
    rollback_cause: BaseException | None = None


@dataclass(eq=False)
class Tx:
    """A physical transaction: the session a root scope began."""

    session: AsyncSession
    connection: AsyncConnection
    isolation_level: str | None
    read_only: bool
    guarded: bool
    """Began on a one-writer database while an enclosing transaction was open."""
    holds_lock: bool
    """Holds the manager's lock of a single shared connection (StaticPool)."""
    task: asyncio.Task[Any] | None = None
    """The task that began it."""
    database_isolation_level: str | None = None
    open: bool = True
    level: Level | None = None
    """The innermost open level (the root or a savepoint): a database error marks it."""
    replica: Replica | None = None
    """The replica the transaction runs on (None: the primary)."""
    router: ReplicaRouter | None = None
    """Told of the commit of a read-write transaction (read-your-writes)."""
    timeout: float | None = None
    """The timeout (seconds) bounding its statements now; an inner scope may shorten it."""


@dataclass(eq=False)
class Frame:
    """The ambient scope of one task: what ``tm.session`` and joining scopes see."""

    tx: Tx | None
    level: Level | None
    task: asyncio.Task[Any] | None
    propagation: Propagation
    previous: Frame | None


def check_timeout(timeout: object) -> float:
    """*timeout* (seconds, a number greater than 0) as a float; `InvalidFieldError` else."""
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise InvalidFieldError(
            f"timeout must be a number of seconds greater than 0 (such as 2.5), or None "
            f"for no timeout; not {timeout!r}",
            field="timeout",
        )
    return float(timeout)


def current_task() -> asyncio.Task[Any] | None:
    """The running asyncio task, or None outside an event loop."""
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop
        return None


def normalize_isolation(level: str) -> str:
    """An isolation level as SQLAlchemy spells it (``read_committed`` -> ``READ COMMITTED``)."""
    return level.strip().upper().replace("_", " ")


def set_level(frame: Frame, level: Level) -> None:
    """Make *level* the frame's level and the innermost one of its transaction."""
    frame.level = level
    if frame.tx is not None:
        frame.tx.level = level


def open_transactions(frame: Frame | None) -> list[Tx]:
    """The open transactions of the scopes enclosing *frame*, innermost first.

    The chain crosses tasks: a task created inside a scope starts with a copy of the
    creating task's context, so the creating task's transactions are in it too.
    """
    found: list[Tx] = []
    while frame is not None:
        tx = frame.tx
        if tx is not None and tx.open and all(tx is not seen for seen in found):
            found.append(tx)
        frame = frame.previous
    return found


def mark_rollback_only(level: Level | None, cause: BaseException | None) -> None:
    """Make *level* roll back at its end, remembering the first *cause*."""
    if level is None:
        return
    if not level.rollback_only:
        level.rollback_only = True
        level.rollback_cause = cause


def rollback_only_error(
    level: Level, what: Literal["transaction", "savepoint"]
) -> RollbackOnlyError:
    """The error of a rollback-only *level* whose owner tried to commit it."""
    instead = "released" if what == "savepoint" else "committed"
    error = RollbackOnlyError(
        f"the {what} was rolled back instead of {instead}: an earlier error inside it (a "
        "database error, or an exception that left a joined scope) made it rollback-only, "
        "even though the error was caught; to go on after an error, run the work that may "
        f"fail in a Propagation.NESTED scope (cause: {level.rollback_cause!r})"
    )
    error.__cause__ = level.rollback_cause
    return error


def why_none(frame: Frame | None, task: asyncio.Task[Any] | None) -> str:
    """Why no transaction is active in *task*, for messages."""
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


async def run_callbacks(callbacks: list[OnCommitCallback], *, rolled_back: bool = False) -> None:
    """Run on_commit (or, *rolled_back*, on_rollback) callbacks in order; log (not raise)
    the exceptions they raise."""
    for callback in callbacks:
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except Exception:
            if rolled_back:
                logger.exception(
                    "on_rollback callback %r failed; the work was rolled back", callback
                )
            else:
                logger.exception(
                    "on_commit callback %r failed; the transaction was committed", callback
                )


async def run_rollback_callbacks(level: Level) -> None:
    """Run the on_rollback callbacks of *level*, which was just rolled back."""
    callbacks, level.rollback_callbacks = level.rollback_callbacks, []
    await run_callbacks(callbacks, rolled_back=True)


def release_into_parent(level: Level) -> None:
    """Hand the callbacks of a released savepoint's *level* over to its parent level."""
    if level.parent is not None:
        level.parent.callbacks.extend(level.callbacks)
        level.parent.rollback_callbacks.extend(level.rollback_callbacks)
