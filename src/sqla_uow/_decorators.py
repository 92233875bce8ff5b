"""`transactional`: run a coroutine function inside a transaction scope, with retries."""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from ._errors import is_retryable_error
from ._transaction import Propagation, TransactionManager, TransactionScope

__all__ = ["transactional"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def transactional(
    tm: TransactionManager,
    *,
    propagation: Propagation = Propagation.REQUIRED,
    isolation_level: str | None = None,
    read_only: bool = False,
    retries: int = 0,
    retry_base_delay: float = 0.05,
    retry_max_delay: float = 2.0,
) -> Callable[[Callable[_P, Coroutine[Any, Any, _R]]], Callable[_P, Coroutine[Any, Any, _R]]]:
    """Run the decorated coroutine function inside ``tm.transaction(...)``.

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
        tm: The transaction manager.
        propagation: The scope's `Propagation`.
        isolation_level: Isolation level where the scope begins a transaction.
        read_only: Begin a read-only transaction.
        retries: How many times to re-run the function after a retryable failure.
        retry_base_delay: Backoff base in seconds.
        retry_max_delay: Upper bound of one backoff delay in seconds.

    Returns:
        A decorator; the decorated function keeps its signature.

    Raises:
        TypeError: the decorated object is not a coroutine function, or *read_only*
            is not a bool.
        ValueError: *retries* is negative or a delay is negative.

    Example:
        ```python
        @transactional(tm, isolation_level="SERIALIZABLE", retries=3)
        async def transfer(source: int, target: int, amount: int) -> None:
            session = tm.session
            (await session.get_one(Account, source)).balance -= amount
            (await session.get_one(Account, target)).balance += amount
        ```
    """
    if not isinstance(tm, TransactionManager):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"transactional() needs a TransactionManager as first argument, not {tm!r}")
    if type(retries) is not int or retries < 0:
        raise ValueError(f"retries must be an int >= 0, not {retries!r}")
    if retry_base_delay < 0 or retry_max_delay < 0:
        raise ValueError(
            "retry_base_delay and retry_max_delay must be >= 0, not "
            f"{retry_base_delay!r} and {retry_max_delay!r}"
        )
    # Validate the scope options now, at decoration time, rather than at the first call.
    tm.transaction(propagation=propagation, isolation_level=isolation_level, read_only=read_only)

    def decorate(
        fn: Callable[_P, Coroutine[Any, Any, _R]],
    ) -> Callable[_P, Coroutine[Any, Any, _R]]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(
                f"@transactional decorates coroutine functions (async def); "
                f"{getattr(fn, '__qualname__', fn)!r} is not one"
            )

        @functools.wraps(fn)
        async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            attempt = 0
            while True:
                scope = tm.transaction(
                    propagation=propagation,
                    isolation_level=isolation_level,
                    read_only=read_only,
                )
                try:
                    async with scope:
                        return await fn(*args, **kwargs)
                except Exception as exc:
                    began = isinstance(scope, TransactionScope) and scope.kind == "root"
                    if attempt >= retries or not began or not is_retryable_error(exc):
                        raise
                delay = min(retry_max_delay, retry_base_delay * (2**attempt))
                attempt += 1
                await asyncio.sleep(random.uniform(0, delay))

        return wrapper

    return decorate
