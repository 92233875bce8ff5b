"""`transactional`: run a coroutine function inside a transaction scope, with retries."""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

from ._current import current_manager
from ._errors import is_retryable_error
from ._transactions import Propagation, TransactionManager, check_timeout

__all__ = ["transactional"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


@overload
def transactional(
    tm: Callable[_P, Coroutine[Any, Any, _R]], /
) -> Callable[_P, Coroutine[Any, Any, _R]]: ...
@overload
def transactional(
    tm: TransactionManager | None = None,
    *,
    propagation: Propagation = ...,
    isolation_level: str | None = ...,
    read_only: bool = ...,
    retries: int = ...,
    retry_base_delay: float = ...,
    retry_max_delay: float = ...,
    no_rollback_for: tuple[type[BaseException], ...] = ...,
    timeout: float | None = ...,
) -> Callable[[Callable[_P, Coroutine[Any, Any, _R]]], Callable[_P, Coroutine[Any, Any, _R]]]: ...


def transactional(
    tm: TransactionManager | Callable[..., Coroutine[Any, Any, Any]] | None = None,
    *,
    propagation: Propagation = Propagation.REQUIRED,
    isolation_level: str | None = None,
    read_only: bool = False,
    retries: int = 0,
    retry_base_delay: float = 0.05,
    retry_max_delay: float = 2.0,
    no_rollback_for: tuple[type[BaseException], ...] = (),
    timeout: float | None = None,
) -> Any:
    """Run the decorated coroutine function inside a transaction scope.

    Three spellings, all keeping the function's signature:

    ```python
    @transactional                        # the manager is found at each call
    async def register(email: str) -> User: ...

    class OrderService:
        @transactional(retries=3)         # options; in a class body too
        async def place_order(self, user_id: int) -> Order: ...

    @transactional(tm, read_only=True)    # this manager (or tm=tm)
    async def report() -> Report: ...
    ```

    Without a manager, each call uses `current_manager`: the manager whose scope is
    open around the call (a unit of work, another decorated function), else the
    default set with `set_default_manager` (at startup) or `use_default_manager` (in
    tests); a call that finds none raises `TransactionRequiredError`. A method gets
    ``self`` (or ``cls``) as its first argument, untouched.

    Inside the function, `TransactionManager.session` is the session. The scope
    follows *propagation*, so a decorated service called inside another transaction
    (a unit of work, another decorated function) joins it by default.

    With ``retries=N`` a call that failed on a serialization failure or a deadlock
    (PostgreSQL SQLSTATE 40001 / 40P01, MySQL / MariaDB 1213, found anywhere along the
    chain of causes) is run again, up to *N* more times, after a jittered exponential
    backoff (a random delay between 0 and ``min(retry_max_delay, retry_base_delay *
    2**attempt)`` seconds). Only a call whose scope began the transaction retries:
    a joined scope cannot retry on its own, so the error propagates to the owner of
    the transaction. Failures at COMMIT count; a cancellation never retries, nor does
    a COMMIT whose outcome is unknown. The on_commit callbacks registered by a failed
    attempt are dropped with its transaction.

    Args:
        tm: The transaction manager; ``None`` (or the bare ``@transactional``): the
            one `current_manager` finds at each call.
        propagation: The scope's `Propagation`.
        isolation_level: Isolation level where the scope begins a transaction.
        read_only: Begin a read-only transaction.
        retries: How many times to re-run the function after a retryable failure.
        retry_base_delay: Backoff base in seconds.
        retry_max_delay: Upper bound of one backoff delay in seconds.
        no_rollback_for: Exception classes that leave the function without rolling
            back (Spring's ``noRollbackFor``): the scope exits as if the function had
            returned, so a transaction it began commits (a joined one is left to commit
            with its owner), and then the exception is raised, never retried. Work that
            a database error made rollback-only still cannot commit: that raises
            `RollbackOnlyError`.
        timeout: Seconds each statement of the transaction may run (see
            `TransactionManager.transaction`); a statement stopped by it raises
            `TransactionTimeoutError`, which is not retried. A joining scope may
            shorten the timeout in force, never lengthen it.

    Returns:
        The decorated function (bare ``@transactional``), or a decorator; the decorated
        function keeps its signature.

    Raises:
        TypeError: the decorated object is not a coroutine function, *tm* is neither a
            manager nor a coroutine function, or *read_only* is not a bool.
        ValueError: *propagation* is not a `Propagation`, *isolation_level* is not a
            str, *retries* is negative, a delay is negative, or (with a manager given)
            the isolation level is unknown to its database (without one: at the call).
        InvalidFieldError: *timeout* is not a number of seconds greater than 0.
        TransactionRequiredError: (at a call, without a manager) no scope is open and
            no default manager is set.

    Example:
        ```python
        @transactional(isolation_level="SERIALIZABLE", retries=3)
        async def transfer(source: int, target: int, amount: int) -> None:
            session = current_manager().session
            (await session.get_one(Account, source)).balance -= amount
            (await session.get_one(Account, target)).balance += amount
        ```
    """
    if tm is not None and not isinstance(tm, TransactionManager):
        if callable(tm):  # bare @transactional: the function itself
            return _decorate(tm, None, Propagation.REQUIRED, None, False, 0, 0.05, 2.0)
        raise TypeError(
            f"transactional() takes a TransactionManager (or nothing) as first argument, not {tm!r}"
        )
    if type(retries) is not int or retries < 0:
        raise ValueError(f"retries must be an int >= 0, not {retries!r}")
    if not _exception_classes(no_rollback_for):
        raise TypeError(
            f"no_rollback_for must be a tuple of exception classes, not {no_rollback_for!r}"
        )
    if retry_base_delay < 0 or retry_max_delay < 0:
        raise ValueError(
            "retry_base_delay and retry_max_delay must be >= 0, not "
            f"{retry_base_delay!r} and {retry_max_delay!r}"
        )
    # The same errors as TransactionManager.transaction() raises for these options.
    if not isinstance(propagation, Propagation):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(
            f"propagation must be a Propagation, not {propagation!r}; choices: "
            + ", ".join(f"Propagation.{p.name}" for p in Propagation)
        )
    if not isinstance(read_only, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"read_only must be True or False, not {read_only!r}")
    if isolation_level is not None and not isinstance(isolation_level, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"isolation_level must be a str or None, not {isolation_level!r}")
    if timeout is not None:
        timeout = check_timeout(timeout)
    if tm is not None:
        # With the manager known, check the options against its database now, at
        # decoration time, rather than at the first call.
        tm.transaction(
            propagation=propagation,
            isolation_level=isolation_level,
            read_only=read_only,
            timeout=timeout,
        )

    def decorate(
        fn: Callable[_P, Coroutine[Any, Any, _R]],
    ) -> Callable[_P, Coroutine[Any, Any, _R]]:
        return _decorate(
            fn,
            tm,
            propagation,
            isolation_level,
            read_only,
            retries,
            retry_base_delay,
            retry_max_delay,
            no_rollback_for,
            timeout,
        )

    return decorate


def _exception_classes(value: object) -> bool:
    """Whether *value* is a tuple of exception classes (checked whatever its annotation)."""
    if not isinstance(value, tuple):
        return False
    items: tuple[object, ...] = value  # pyright: ignore[reportUnknownVariableType]
    return all(isinstance(item, type) and issubclass(item, BaseException) for item in items)


def _decorate(
    fn: Callable[_P, Coroutine[Any, Any, _R]],
    tm: TransactionManager | None,
    propagation: Propagation,
    isolation_level: str | None,
    read_only: bool,
    retries: int,
    retry_base_delay: float,
    retry_max_delay: float,
    no_rollback_for: tuple[type[BaseException], ...] = (),
    timeout: float | None = None,
) -> Callable[_P, Coroutine[Any, Any, _R]]:
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"@transactional decorates coroutine functions (async def); "
            f"{getattr(fn, '__qualname__', fn)!r} is not one"
        )

    @functools.wraps(fn)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        manager = tm if tm is not None else current_manager()
        attempt = 0
        while True:
            scope = manager.transaction(
                propagation=propagation,
                isolation_level=isolation_level,
                read_only=read_only,
                timeout=timeout,
            )
            escaped: BaseException | None = None
            try:
                async with scope:
                    try:
                        return await fn(*args, **kwargs)
                    except no_rollback_for as exc:
                        escaped = exc  # the scope exits cleanly: it commits
            except Exception as exc:
                if attempt >= retries or not scope.began_transaction or not is_retryable_error(exc):
                    raise
            else:
                assert escaped is not None
                raise escaped
            delay = min(retry_max_delay, retry_base_delay * (2**attempt))
            attempt += 1
            await asyncio.sleep(random.uniform(0, delay))

    return wrapper
