"""Engine hooks: rollback-only on database errors, and each backend's own hooks."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from sqlalchemy import event

from sqla_uow._dialects import backend_for
from sqla_uow._errors import lock_or_timeout_error

from ._propagation import Tx, mark_rollback_only

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine, ExceptionContext
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["install_engine_hooks", "watch"]

_TRANSACTIONS: weakref.WeakKeyDictionary[Connection, weakref.ref[Tx]] = weakref.WeakKeyDictionary()
"""The open transaction of each connection a root scope began on."""


def watch(tx: Tx) -> None:
    """Let a database error on *tx*'s connection mark its innermost level rollback-only."""
    if tx.connection.sync_connection is not None:
        _TRANSACTIONS[tx.connection.sync_connection] = weakref.ref(tx)


def _on_database_error(context: ExceptionContext) -> BaseException | None:
    """Mark the innermost level of the connection's transaction rollback-only.

    SQLAlchemy calls this ``handle_error`` hook for every error raised while a statement,
    a flush, a BEGIN, a SAVEPOINT or a COMMIT runs on a connection, whatever code sent
    it, so no caller can swallow a database error and then commit the rest of the
    transaction: the savepoint the error was raised in (or else the root) can only roll
    back. The hook replaces only a lock not available (`LockNotAvailableError`) and a
    statement stopped by the transaction's timeout (`TransactionTimeoutError`), which
    SQLAlchemy raises ``from`` the driver's error; every other error passes unchanged.
    """
    connection = context.connection
    if connection is None:
        return None
    statement = context.execution_context
    if statement is not None and statement.execution_options.get("skip_user_error_events"):
        # SQLAlchemy's own probe that expects the error and handles it (MySQL's
        # has_table() runs DESCRIBE and reads "no such table" as False).
        return None
    ref = _TRANSACTIONS.get(connection)
    tx = ref() if ref is not None else None
    if tx is not None and tx.open:
        error = context.sqlalchemy_exception or context.original_exception
        mark_rollback_only(tx.level, error)
    timeout = tx.timeout if tx is not None and tx.open else None
    return lock_or_timeout_error(context.original_exception, timeout=timeout)


_HOOKED: weakref.WeakSet[Engine] = weakref.WeakSet()
"""The engines whose hooks are installed. SQLAlchemy's ``event.contains`` cannot tell:
it keys its registry by ``id()``, so a new engine whose dialect or pool reuses the
address of a collected one can look as if it had the listeners already."""


def install_engine_hooks(engine: AsyncEngine) -> None:
    """Install the rollback-only hook and the backend's transaction hooks, once per engine."""
    sync_engine: Engine = engine.sync_engine
    if sync_engine in _HOOKED:
        return
    _HOOKED.add(sync_engine)
    event.listen(sync_engine, "handle_error", _on_database_error)
    backend_for(sync_engine.dialect).install_transaction_hooks(sync_engine)
