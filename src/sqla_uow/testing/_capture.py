"""`capture_on_commit`: see and run the on_commit callbacks a block of code registers."""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

from sqla_uow._transactions import OnCommitCallback, TransactionManager

__all__ = ["capture_on_commit"]


@asynccontextmanager
async def capture_on_commit(
    tm: TransactionManager, *, execute: bool = False
) -> AsyncGenerator[list[OnCommitCallback], None]:
    """Capture the ``on_commit`` callbacks of the transactions committed inside the block.

    Every transaction of *tm* whose outermost scope commits inside the block (a
    ``tm.transaction()``, a unit of work, a `transactional` function, ``uow.commit()``)
    hands its callbacks to the yielded list instead of running them; callbacks dropped
    by a rollback (of the transaction or of their savepoint) are not in it. That is
    Django's ``captureOnCommitCallbacks``, and the way to see callbacks under the
    ``sqla_uow_tm`` fixture, where they never run by themselves since nothing really
    commits. Blocks may nest: callbacks the inner block does not execute are handed to
    the outer one.

    Args:
        tm: The transaction manager whose callbacks to capture.
        execute: Run the captured callbacks, in order, when the block exits without an
            exception, as if the transaction had really committed; callbacks they
            register in turn are captured and run too. Unlike after a real commit, an
            exception raised by a callback propagates (the ones after it do not run).

    Yields:
        The list of captured callbacks, filled as transactions commit.

    Raises:
        TypeError: *tm* is not a `TransactionManager`.

    Example:
        ```python
        async with capture_on_commit(tm) as callbacks:
            async with tm.transaction():
                tm.on_commit(lambda: print("sent"))
        assert len(callbacks) == 1  # captured, not run

        async with capture_on_commit(tm, execute=True):
            async with tm.transaction():
                tm.on_commit(lambda: print("sent"))
        #> sent
        ```
    """
    if not isinstance(tm, TransactionManager):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"capture_on_commit() needs a TransactionManager, not {type(tm).__name__}")
    var = tm._on_commit_capture
    captured: list[OnCommitCallback] = []
    token = var.set(captured)
    try:
        yield captured
        if execute:
            index = 0
            while index < len(captured):  # a callback may register (and commit) more
                result = captured[index]()
                index += 1
                if inspect.isawaitable(result):
                    await result
    finally:
        var.reset(token)
    enclosing = var.get()
    if enclosing is not None and not execute:
        enclosing.extend(captured)
