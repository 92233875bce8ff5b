"""Transactions: propagation, scopes, the session lifecycle, and the manager's facade.

Layers, each depending only on those before it:

* `_propagation`: `Propagation`, the levels of commit, physical transactions and the
  ambient frames of a task;
* `_session`: flushing, committing, rolling back and discarding a session, shielded
  from cancellation;
* `_hooks`: engine hooks (rollback-only on database errors, the backend's own);
* `_begin`: `EngineTransactions`, which begins and ends physical transactions;
* `_scope`: `TransactionScope`, what ``async with tm.transaction()`` enters;
* `_manager`: `TransactionManager`, the facade.

A transaction that begins while enclosing ones are still open (REQUIRES_NEW, REQUIRED
under NOT_SUPPORTED, or any root in a task created inside a transaction) cannot rely on
them finishing first: where it would wait for them forever (a single shared connection,
a pool without a connection to spare, a one-writer database's lock) it fails fast with
`IllegalTransactionStateError` instead, and with `PoolExhaustedError` where every
connection of the pool is held by tasks that wait for another one.

A database error raised on the connection of a transaction marks its innermost level
(the savepoint of the innermost NESTED scope, else the root) rollback-only, through
SQLAlchemy's ``handle_error`` event: whatever code sent the statement and whoever caught
the error, that level can only roll back. The same hook raises `LockNotAvailableError`
for a lock not available and `TransactionTimeoutError` for a statement stopped by the
transaction's ``timeout=``, each ``from`` the driver's error.
"""

from ._manager import TransactionManager, managers_in_scope
from ._propagation import WITH_TRANSACTION, OnCommitCallback, Propagation, check_timeout
from ._scope import TransactionScope
from ._session import flush_session

__all__ = [
    "WITH_TRANSACTION",
    "OnCommitCallback",
    "Propagation",
    "TransactionManager",
    "TransactionScope",
    "check_timeout",
    "flush_session",
    "managers_in_scope",
]
