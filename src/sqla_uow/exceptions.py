"""The exceptions sqla_uow raises.

Every exception derives from one root, so ``except SqlaUowError`` catches all of them;
two of them also derive from the built-in exception a caller would reach for first::

    SqlaUowError
    ├── NotFoundError                  (also a LookupError)
    ├── MultipleResultsError
    ├── ConflictError                  unique, foreign-key, not-null or check violation
    ├── InvalidFieldError              (also a ValueError)
    │   └── InvalidCursorError         a pagination cursor that is malformed or foreign
    ├── UnsupportedDialectError        a feature the database's dialect does not offer
    └── TransactionError
        ├── TransactionRequiredError
        ├── IllegalTransactionStateError
        ├── RollbackOnlyError          a caught error left the transaction rollback-only
        ├── PoolExhaustedError         no connection for a transaction to begin on
        ├── LockNotAvailableError      a row lock could not be taken (NOWAIT, lock timeout)
        └── TransactionTimeoutError    a statement outlasted the transaction's timeout

Database errors that are part of the contract (integrity violations, locks not
available, statements cut by a transaction's timeout) are translated
with ``raise ... from exc``: the driver's exception stays available as ``__cause__``.
Everything else SQLAlchemy raises propagates unchanged.

Example:
    ```python
    from sqla_uow.exceptions import ConflictError

    try:
        await users.create(email="taken@example.com", name="Again")
    except ConflictError as exc:
        print(exc.constraint, exc.columns)
    ```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

__all__ = [
    "ConflictError",
    "ConflictKind",
    "IllegalTransactionStateError",
    "InvalidCursorError",
    "InvalidFieldError",
    "LockNotAvailableError",
    "MultipleResultsError",
    "NotFoundError",
    "PoolExhaustedError",
    "RollbackOnlyError",
    "SqlaUowError",
    "TransactionError",
    "TransactionRequiredError",
    "TransactionTimeoutError",
    "UnsupportedDialectError",
]

ConflictKind = Literal[
    "unique", "foreign_key", "not_null", "check", "exclusion", "stale", "unknown"
]
"""What kind of integrity rule a write broke (`ConflictError.kind`)."""


class SqlaUowError(Exception):
    """The root of every exception sqla_uow raises.

    Example:
        ```python
        try:
            await service.run()
        except SqlaUowError as exc:
            log.warning("data access failed: %s", exc)
        ```
    """


class NotFoundError(SqlaUowError, LookupError):
    """No row exists for the primary key (or the filters) a caller asked for.

    Attributes:
        model: The mapped class that was queried.
        ident: The primary key (or a mapping of the filters) that matched nothing.

    Example:
        ```python
        try:
            user = await users.get_one(42)
        except NotFoundError as exc:
            assert exc.model is User and exc.ident == 42
        ```
    """

    def __init__(self, message: str, *, model: type[Any] | None = None, ident: Any = None) -> None:
        super().__init__(message)
        self.model = model
        self.ident = ident


class MultipleResultsError(SqlaUowError):
    """A lookup that must match at most one row matched several.

    Attributes:
        model: The mapped class that was queried.

    Example:
        ```python
        try:
            await users.find_one(name="Ann")
        except MultipleResultsError:
            ...  # two users are called Ann
        ```
    """

    def __init__(self, message: str, *, model: type[Any] | None = None) -> None:
        super().__init__(message)
        self.model = model


class ConflictError(SqlaUowError):
    """A write broke an integrity rule of the database.

    Raised for unique, primary-key, foreign-key, not-null, check and exclusion
    violations. Detection uses the SQLSTATE or the driver's error code, never the
    message text; the driver's exception is chained as ``__cause__``.

    With ``kind="stale"`` it is an optimistic-locking conflict (`sqla_uow.mixins.VersionedMixin`):
    the row's version is not the one the write expected, because another transaction
    changed or deleted the row since it was read.

    Attributes:
        kind: Which kind of rule was broken (``"unique"``, ``"foreign_key"``, ...,
            ``"stale"`` for a version conflict).
        model: The mapped class being written, when known.
        constraint: The constraint's name, when the driver reports it (PostgreSQL does).
        columns: The columns involved, when the driver reports them.
        code: The SQLSTATE or driver error code.

    Example:
        ```python
        try:
            await users.create(email="ann@example.com", name="Ann")
        except ConflictError as exc:
            assert exc.kind == "unique"
        ```
    """

    def __init__(
        self,
        message: str,
        *,
        kind: ConflictKind = "unknown",
        model: type[Any] | None = None,
        constraint: str | None = None,
        columns: Sequence[str] = (),
        code: str | int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ConflictKind = kind
        self.model = model
        self.constraint = constraint
        self.columns: tuple[str, ...] = tuple(columns)
        self.code = code


class InvalidFieldError(SqlaUowError, ValueError):
    """A caller named a field, lookup, ordering or value the model does not accept.

    Raised before any SQL is sent, so the database is untouched. The message names
    the bad value and the valid choices.

    Attributes:
        model: The mapped class the name was checked against.
        field: The offending name (or parameter, such as ``"limit"``).
        choices: The names that would have been accepted.

    Example:
        ```python
        try:
            await users.list(emial="a@example.com")
        except InvalidFieldError as exc:
            print(exc)  # unknown field 'emial' on User; fields: email, id, name
        ```
    """

    def __init__(
        self,
        message: str,
        *,
        model: type[Any] | None = None,
        field: str | None = None,
        choices: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.model = model
        self.field = field
        self.choices: tuple[str, ...] = tuple(choices)


class InvalidCursorError(InvalidFieldError):
    """A keyset-pagination cursor is malformed, tampered with, or from another query.

    Cursors are opaque: they are only valid for the model and ordering that made them.

    Example:
        ```python
        try:
            await orders.paginate_cursor(order_by="-created_at", limit=20, after=token)
        except InvalidCursorError:
            ...  # answer 400 Bad Request
        ```
    """


class UnsupportedDialectError(SqlaUowError):
    """The database's dialect has no native way to do what was asked.

    Attributes:
        dialect: The SQLAlchemy dialect name, such as ``"mssql"``.

    Example:
        ```python
        try:
            await codes.upsert_many(rows, on_conflict=("code",))
        except UnsupportedDialectError as exc:
            print(exc.dialect)
        ```
    """

    def __init__(self, message: str, *, dialect: str) -> None:
        super().__init__(message)
        self.dialect = dialect


class TransactionError(SqlaUowError):
    """The base of the errors about transaction scopes and their misuse.

    Example:
        ```python
        try:
            async with tm.transaction(propagation=Propagation.MANDATORY):
                ...
        except TransactionError:
            ...
        ```
    """


class TransactionRequiredError(TransactionError):
    """An operation needs an active transaction and there is none.

    Raised by `TransactionManager.session` and `TransactionManager.on_commit` outside
    a transaction, and by a ``MANDATORY`` scope with nothing to join.

    Example:
        ```python
        try:
            tm.session
        except TransactionRequiredError:
            ...  # not inside `async with tm.transaction()`
        ```
    """


class IllegalTransactionStateError(TransactionError):
    """A scope's requirements contradict the transaction it would join.

    For example ``Propagation.NEVER`` inside a transaction, a joining scope that asks
    for another isolation level, or a read-write scope inside a read-only one.

    Example:
        ```python
        async with tm.transaction():
            async with tm.transaction(propagation=Propagation.NEVER):  # raises
                ...
        ```
    """


class RollbackOnlyError(TransactionError):
    """The transaction was marked rollback-only and has been rolled back instead of committed.

    A database error raised inside a transaction, and an exception that leaves a joined
    scope, mark the innermost level rollback-only: the savepoint of the innermost
    ``NESTED`` scope, else the transaction. When outer code swallows the exception,
    that level rolls back at its exit (or at ``uow.commit()``), runs no on_commit
    callback and raises this error, with the first error as ``__cause__``, instead of
    committing half the work. Catch errors you want to recover from around a
    ``NESTED`` scope.

    Example:
        ```python
        try:
            async with tm.transaction():
                try:
                    await failing_service()  # joins, fails, marks rollback-only
                except ValueError:
                    pass
        except RollbackOnlyError:
            ...  # nothing was committed
        ```
    """


class PoolExhaustedError(TransactionError):
    """A transaction could not begin: the connection pool had no connection to give.

    Raised when waiting for a connection would never end, because every connection of
    the pool is held by tasks that (like this one) hold one through a suspended
    transaction and wait for another (``REQUIRES_NEW``), and when the wait runs out
    the pool's ``pool_timeout``. Each transaction that begins inside another needs a
    connection of its own: see the documentation on sizing the pool.

    Attributes:
        capacity: The most connections the pool hands out (``pool_size +
            max_overflow``), or ``None`` when it has no fixed bound.
        checked_out: The connections checked out when the error was raised.
        held_by_task: The connections the current task holds through the enclosing
            transactions it suspended.

    Example:
        ```python
        try:
            async with tm.transaction(propagation=Propagation.REQUIRES_NEW):
                ...
        except PoolExhaustedError as exc:
            log.warning("pool of %s exhausted", exc.capacity)
        ```
    """

    def __init__(
        self,
        message: str,
        *,
        capacity: int | None = None,
        checked_out: int | None = None,
        held_by_task: int = 0,
    ) -> None:
        super().__init__(message)
        self.capacity = capacity
        self.checked_out = checked_out
        self.held_by_task = held_by_task


class LockNotAvailableError(TransactionError):
    """A row lock could not be taken: another transaction holds it.

    Raised by a read with ``for_update=ForUpdate(nowait=True)`` when a row it selects
    is locked (PostgreSQL SQLSTATE 55P03; MariaDB error 1205, MySQL 3572), and when a
    wait for a lock outlasts a lock timeout the application set itself (PostgreSQL's
    ``lock_timeout``, also 55P03; MariaDB's ``innodb_lock_wait_timeout``, 1205). Inside
    ``transaction(timeout=...)`` a lock wait cut off by that timeout raises
    `TransactionTimeoutError` instead, like any statement that takes too long. The
    driver's exception is chained as ``__cause__``. Like any database
    error it leaves the transaction rollback-only: retry the work in a new transaction,
    run the locking read in a ``Propagation.NESTED`` scope to go on without it, or use
    ``skip_locked=True`` to pass over locked rows.

    Attributes:
        code: The SQLSTATE or driver error code.

    Example:
        ```python
        try:
            job = await jobs.get_one(7, for_update=ForUpdate(nowait=True))
        except LockNotAvailableError:
            ...  # someone else works on job 7: try again later
        ```
    """

    def __init__(self, message: str, *, code: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransactionTimeoutError(TransactionError):
    """A statement was cut off by the timeout of its transaction.

    Raised inside ``tm.transaction(timeout=...)`` or ``@transactional(timeout=...)``
    when the database stops a statement that ran (or waited) longer than the timeout:
    PostgreSQL's ``statement_timeout`` (SQLSTATE 57014), MariaDB's
    ``max_statement_time`` (error 1969), SQLite's busy timeout (the database stayed
    locked by another connection). The driver's exception is chained as ``__cause__``;
    the transaction is rollback-only, and its connection stays usable for the next one.

    Attributes:
        timeout: The timeout in force, in seconds.
        code: The SQLSTATE or driver error code.

    Example:
        ```python
        try:
            async with tm.transaction(timeout=2.0):
                await reports.rebuild()
        except TransactionTimeoutError as exc:
            log.warning("report rebuild took over %s s", exc.timeout)
        ```
    """

    def __init__(
        self, message: str, *, timeout: float | None = None, code: str | int | None = None
    ) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.code = code
