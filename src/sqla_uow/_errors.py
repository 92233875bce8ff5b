"""Translation of driver errors into sqla_uow's exceptions.

The generic surface over the backends' error sections (`sqla_uow._dialects`): each
backend recognises its own drivers' exceptions, reads their codes (SQLSTATEs, SQLite
and MySQL / MariaDB error codes, not message text) and classifies them; messages are
read only for context (the columns or constraint named) once a code has classified
the error. An error may arrive without a dialect at hand (``@transactional``'s retry
loop), so every backend class is asked along the error chain.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import exc as orm_exc

from ._dialects import Backend, backend_classes, sqlstate
from .exceptions import (
    ConflictError,
    ConflictKind,
    LockNotAvailableError,
    TransactionError,
    TransactionTimeoutError,
)

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "ErrorBoundary",
    "conflict_error",
    "database_errors",
    "error_chain",
    "is_conflict_error",
    "is_retryable_error",
    "is_unmatched_conflict_target",
    "lock_or_timeout_error",
    "sqlstate_of",
    "stale_error",
]


def error_chain(exc: BaseException) -> Iterator[BaseException]:
    """Yield *exc*, the DBAPI error it wraps, and every cause or context behind them."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException):
            pending.append(orig)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)


def sqlstate_of(exc: BaseException) -> str | None:
    """The first SQLSTATE found along the error chain of *exc*, if any."""
    for err in error_chain(exc):
        found = sqlstate(err)
        if found is not None:
            return found
    return None


def _driver_errors(exc: BaseException) -> Iterator[tuple[type[Backend], BaseException]]:
    """(backend, error) for each error along the chain of *exc* that a backend's driver raised."""
    for err in error_chain(exc):
        for backend in backend_classes():
            if backend.owns(err):
                yield backend, err


def _classified(exc: BaseException) -> tuple[type[Backend], BaseException, str | int] | None:
    """The first driver error along the chain of *exc* that carries a code, with the code."""
    for backend, err in _driver_errors(exc):
        code = backend.error_code(err)
        if code is not None:
            return backend, err, code
    return None


def is_retryable_error(exc: BaseException) -> bool:
    """Whether *exc* (or anything it chains) is a serialization failure or a deadlock.

    PostgreSQL SQLSTATE 40001 / 40P01 and MySQL / MariaDB error 1213.
    """
    found = _classified(exc)
    return found is not None and found[2] in found[0].retryable


def is_unmatched_conflict_target(exc: BaseException) -> bool:
    """Whether *exc* is the database refusing an ``ON CONFLICT`` target no unique key matches.

    PostgreSQL SQLSTATE 42P10; SQLite's generic error code 1 with its fixed message
    (SQLite has no code of its own for it).
    """
    return any(backend.is_unmatched_conflict_target(err) for backend, err in _driver_errors(exc))


def is_conflict_error(exc: BaseException) -> bool:
    """Whether *exc* is an integrity violation that `conflict_error` translates.

    Every ``IntegrityError`` is one; so is a database error whose SQLSTATE or driver
    code names an integrity rule, whatever class the driver gave it (MariaDB raises a
    failed CHECK constraint, error 4025, as ``OperationalError``).
    """
    if isinstance(exc, sa_exc.IntegrityError):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    found = _classified(exc)
    return found is not None and found[2] in found[0].conflicts


def conflict_error(exc: sa_exc.DBAPIError, *, model: type[Any] | None = None) -> ConflictError:
    """Build the `ConflictError` for an integrity violation; the caller raises it ``from exc``.

    *exc* is an ``IntegrityError``, or another database error for which
    `is_conflict_error` is true.
    """
    kind: ConflictKind = "unknown"
    constraint: str | None = None
    columns: tuple[str, ...] = ()
    code: str | int | None = None
    found = _classified(exc)
    if found is not None:
        backend, err, raw_code = found
        code = backend.reported_code(err, raw_code)
        kind = backend.conflicts.get(raw_code, "unknown")
        constraint, columns = backend.conflict_context(list(error_chain(exc)), err, kind, model)

    target = f" writing {model.__name__}" if model is not None else ""
    detail: list[str] = []
    if constraint:
        detail.append(f"constraint {constraint!r}")
    if columns:
        detail.append("columns " + ", ".join(columns))
    where = f" ({'; '.join(detail)})" if detail else ""
    label = kind.replace("_", "-") if kind != "unknown" else "integrity"
    message = f"{label} violation{target}{where}"
    return ConflictError(
        message, kind=kind, model=model, constraint=constraint, columns=columns, code=code
    )


def lock_or_timeout_error(exc: BaseException, *, timeout: float | None) -> TransactionError | None:
    """The `LockNotAvailableError` or `TransactionTimeoutError` *exc* means, if any.

    A lock not available: PostgreSQL SQLSTATE 55P03 (NOWAIT, ``lock_timeout``), MySQL /
    MariaDB errors 1205 and 3572. A statement the server stopped (PostgreSQL 57014,
    MariaDB 1969, SQLite's busy timeout running out) is a `TransactionTimeoutError`
    only inside a transaction with a *timeout*: otherwise something else cancelled it.
    The caller raises the result ``from exc``.
    """
    found = _classified(exc)
    if found is None:
        return None
    backend, err, raw_code = found
    kind = backend.lock_or_timeout(raw_code)
    code = backend.reported_code(err, raw_code)
    if kind == "lock":
        return LockNotAvailableError(
            f"a row lock could not be taken: another transaction holds it ({backend.name} "
            f"error {code}); the transaction can only roll back now: retry it later, run "
            "the locking read in a Propagation.NESTED scope to go on without it, or use "
            "ForUpdate(skip_locked=True) to pass over locked rows",
            code=code,
        )
    if kind == "timeout" and timeout is not None:
        return TransactionTimeoutError(
            f"a statement ran longer than the transaction's timeout of {timeout:g} s and "
            f"was stopped ({backend.name} error {code}); the transaction can only roll "
            "back now: give it a longer timeout=, make the work faster, or retry later",
            timeout=timeout,
            code=code,
        )
    return None


def stale_error(model: type[Any] | None, idents: Sequence[tuple[Any, ...]] = ()) -> ConflictError:
    """The `ConflictError` for rows of *model* at another version than expected."""
    which = ""
    if idents:
        keys = [ident[0] if len(ident) == 1 else ident for ident in idents]
        which = " (primary keys " + ", ".join(repr(key) for key in keys) + ")"
    target = f" writing {model.__name__}" if model is not None else ""
    return ConflictError(
        f"stale version{target}{which}: the row was changed or deleted "
        "by another transaction since it was read; read it again and retry",
        kind="stale",
        model=model,
    )


def database_errors(model: type[Any] | None = None) -> ErrorBoundary:
    """The error boundary: an integrity violation raised in the block becomes `ConflictError`,
    a row lock not available `LockNotAvailableError`.

    So does SQLAlchemy's ``StaleDataError`` (a versioned row changed by another
    transaction), as ``ConflictError(kind="stale")``.

    Every repository call, flush and commit runs its statements inside this one context
    manager (a plain ``with`` works around ``await``), so a driver error is translated
    in one place; *model* names the model being written, when there is one. Other
    errors pass through unchanged.
    """
    return ErrorBoundary(model)


class ErrorBoundary:
    """The context manager `database_errors` returns (a class: it is on every call's path,
    and a generator-based one costs several times more to enter and leave)."""

    __slots__ = ("model",)

    def __init__(self, model: type[Any] | None) -> None:
        self.model = model

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, sa_exc.DBAPIError):
            if is_conflict_error(exc):
                raise conflict_error(exc, model=self.model) from exc
            translated = lock_or_timeout_error(exc, timeout=None)
            if translated is not None:
                raise translated from exc
        elif isinstance(exc, orm_exc.StaleDataError):
            # A versioned UPDATE or DELETE of the flush matched no row: optimistic locking.
            raise stale_error(self.model) from exc
