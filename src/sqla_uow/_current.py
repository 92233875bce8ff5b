"""Which `TransactionManager` a call uses when none is named: the enclosing scope's, else a default.

`transactional` without a manager, and `current_manager`, look in this order:

1. the manager with a transaction scope open in this context (the current task, or the
   task that created it): a service called inside ``async with tm.transaction():`` or
   inside another decorated function uses that scope's manager. When scopes of several
   managers are open, the call cannot choose and raises
   `IllegalTransactionStateError`;
2. the manager `use_default_manager` set for the current context (a test, a block);
3. the process-wide default that `set_default_manager` set (once, at startup).

Nothing found raises `TransactionRequiredError`, saying how to set a default.
"""

from __future__ import annotations

import contextvars
from collections.abc import Generator
from contextlib import contextmanager
from typing import Final

from ._transactions import TransactionManager, managers_in_scope
from .exceptions import IllegalTransactionStateError, TransactionRequiredError

__all__ = ["current_manager", "set_default_manager", "use_default_manager"]

_process_default: TransactionManager | None = None
_context_default: Final[contextvars.ContextVar[tuple[TransactionManager | None] | None]] = (
    contextvars.ContextVar("sqla_uow_default_manager", default=None)
)
"""``(tm,)`` inside `use_default_manager` (``(None,)``: none); ``None``: not set here."""


def _check_manager(tm: object, function: str) -> None:
    if tm is not None and not isinstance(tm, TransactionManager):
        raise TypeError(f"{function}() takes a TransactionManager or None, not {tm!r}")


def set_default_manager(tm: TransactionManager | None) -> TransactionManager | None:
    """Make *tm* the manager that calls naming none use, in the whole process.

    Call it once at startup, where the application makes its manager; ``None`` clears
    it. A `transactional` function without a manager uses the default when no
    transaction scope is open around the call (see `current_manager` for the order).
    The default is one global of the process: in tests, prefer `use_default_manager`,
    which ends with its block, or put the previous default back (the return value).

    Args:
        tm: The manager, or ``None`` for no default.

    Returns:
        The default it replaces (``None`` if there was none).

    Raises:
        TypeError: *tm* is neither a `TransactionManager` nor ``None``.

    Example:
        ```python
        tm = TransactionManager("postgresql+asyncpg://app@db/shop")
        set_default_manager(tm)
        try:
            await serve()
        finally:
            set_default_manager(None)
            await tm.dispose()
        ```
    """
    global _process_default
    _check_manager(tm, "set_default_manager")
    previous, _process_default = _process_default, tm
    return previous


@contextmanager
def use_default_manager(
    tm: TransactionManager | None,
) -> Generator[TransactionManager | None, None, None]:
    """Make *tm* the default manager inside the block, for this context only.

    The setting is a context variable: it holds for the current task and the tasks it
    creates, comes before the process-wide default of `set_default_manager`, and ends
    with the block, so it cannot leak from one test into the next. ``None`` hides the
    process-wide default inside the block.

    Args:
        tm: The manager, or ``None`` for no default inside the block.

    Yields:
        *tm*.

    Raises:
        TypeError: *tm* is neither a `TransactionManager` nor ``None``.

    Example:
        ```python
        @pytest.fixture(autouse=True)
        def default_manager(tm: TransactionManager) -> Iterator[None]:
            with use_default_manager(tm):
                yield
        ```
    """
    _check_manager(tm, "use_default_manager")
    previous = _context_default.get()
    _context_default.set((tm,))
    try:
        yield tm
    finally:
        # Set back rather than reset with a token: a fixture's teardown may run in
        # another context than its setup.
        _context_default.set(previous)


def current_manager() -> TransactionManager:
    """The manager a `transactional` function without one uses, here and now.

    In order: the manager with a transaction scope open in this context (this task, or
    the task that created it), the default of `use_default_manager`, the default of
    `set_default_manager`. Inside a `transactional` function, ``current_manager().session``
    is the function's session.

    Returns:
        The manager.

    Raises:
        TransactionRequiredError: no scope is open and no default is set.
        IllegalTransactionStateError: scopes of several managers are open in this
            context, so the call cannot choose one; name it (``@transactional(tm)``).

    Example:
        ```python
        @transactional
        async def rename(user_id: int, name: str) -> None:
            user = await current_manager().session.get_one(User, user_id)
            user.name = name
        ```
    """
    open_scopes = managers_in_scope()
    if len(open_scopes) == 1:
        return open_scopes[0]
    if open_scopes:
        raise IllegalTransactionStateError(
            f"transaction scopes of {len(open_scopes)} managers are open here ("
            + ", ".join(sorted(repr(tm) for tm in open_scopes))
            + "), so the manager to use is ambiguous; name it: @transactional(tm)"
        )
    override = _context_default.get()
    default = override[0] if override is not None else _process_default
    if default is not None:
        return default
    raise TransactionRequiredError(
        "no TransactionManager to use: no transaction scope is open here and no default "
        "manager is set; call sqla_uow.set_default_manager(tm) at startup (in tests: "
        "`with sqla_uow.use_default_manager(tm):`), or name the manager: @transactional(tm)"
    )
