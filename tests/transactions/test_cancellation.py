"""Cancellation and timeouts at every stage of a scope: no leaked connection, no guess.

The cancellation is injected with SQLAlchemy events at the moment a statement, a
COMMIT or a ROLLBACK is about to go to the database; each scenario runs in a task of
its own so that the cancellation stays there. The ``engine`` fixture fails a test that
leaves a connection checked out; ``gc.collect()`` surfaces any "non-checked-in
connection" warning, which this suite turns into an error.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from _accounts import committed_names
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from models.accounts import Account
from sqla_uow import Propagation, TransactionManager, transactional


@pytest.fixture
def tm(tm: TransactionManager) -> Iterator[TransactionManager]:
    yield tm
    gc.collect()


@contextmanager
def listening(target: Any, name: str, fn: Callable[..., Any]) -> Iterator[None]:
    event.listen(target, name, fn)
    try:
        yield
    finally:
        event.remove(target, name, fn)


@contextmanager
def counting_invalidations(engine: AsyncEngine) -> Iterator[list[object]]:
    invalidated: list[object] = []

    def record(dbapi_connection: object, record: object, exception: object) -> None:
        invalidated.append(exception)

    with listening(engine.sync_engine, "invalidate", record):
        yield invalidated


def cancel_current_task(*args: Any) -> None:
    task = asyncio.current_task()
    assert task is not None
    task.cancel()


def cancel_on_insert(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    if statement.lstrip().upper().startswith("INSERT"):
        cancel_current_task()


async def run_in_task(scenario: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    task = asyncio.ensure_future(scenario())
    await asyncio.wait({task})
    return task


class TestCancelledInsideTheScope:
    async def test_a_cancel_while_the_body_awaits_rolls_back(self, tm: TransactionManager) -> None:
        entered = asyncio.Event()

        async def scenario() -> None:
            async with tm.transaction() as session:
                session.add(Account(name="Ann"))
                await session.flush()
                entered.set()
                await asyncio.sleep(30)

        task = asyncio.ensure_future(scenario())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert tm.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert await committed_names(tm.engine) == []

    async def test_a_timeout_rolls_back_and_returns_the_connection(
        self, tm: TransactionManager
    ) -> None:
        async def scenario() -> None:
            async with tm.transaction() as session:
                session.add(Account(name="Ann"))
                await session.flush()
                await asyncio.sleep(30)

        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(scenario(), timeout=0.2)
        assert tm.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert await committed_names(tm.engine) == []

    async def test_a_cancel_during_a_statement_rolls_back(self, tm: TransactionManager) -> None:
        async def scenario() -> None:
            async with tm.transaction() as session:
                session.add(Account(name="Ann"))
                await session.flush()

        with listening(tm.engine.sync_engine, "before_cursor_execute", cancel_on_insert):
            task = await run_in_task(scenario)
        assert task.cancelled()
        assert tm.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert await committed_names(tm.engine) == []

    async def test_a_cancel_in_a_savepoint_rolls_back_the_whole_transaction(
        self, tm: TransactionManager
    ) -> None:
        async def scenario() -> None:
            async with tm.transaction() as session:
                session.add(Account(name="outer"))
                await session.flush()
                async with tm.transaction(propagation=Propagation.NESTED):
                    with listening(
                        tm.engine.sync_engine, "before_cursor_execute", cancel_on_insert
                    ):
                        session.add(Account(name="inner"))
                        await session.flush()

        task = await run_in_task(scenario)
        assert task.cancelled()
        assert tm.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert await committed_names(tm.engine) == []


class TestCancelledAtTheEnd:
    async def test_a_cancel_during_the_final_flush_rolls_back_without_on_commit(
        self, tm: TransactionManager
    ) -> None:
        seen: list[str] = []

        async def scenario() -> None:
            async with tm.transaction() as session:
                session.add(Account(name="Ann"))  # flushed at the scope's exit
                tm.on_commit(lambda: seen.append("on_commit"))

        with listening(tm.engine.sync_engine, "before_cursor_execute", cancel_on_insert):
            task = await run_in_task(scenario)
        assert task.cancelled()
        assert seen == []
        assert tm.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert await committed_names(tm.engine) == []

    async def test_a_cancel_during_commit_invalidates_and_skips_on_commit(
        self, tm: TransactionManager
    ) -> None:
        seen: list[str] = []

        async def scenario() -> None:
            async with tm.transaction() as session:
                session.add(Account(name="Ann"))
                tm.on_commit(lambda: seen.append("on_commit"))

        with (
            counting_invalidations(tm.engine) as invalidated,
            listening(tm.engine.sync_engine, "commit", cancel_current_task),
        ):
            task = await run_in_task(scenario)
        assert task.cancelled()
        assert seen == []
        assert len(invalidated) >= 1
        assert tm.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        # The outcome is unknown to the caller; the pool still works afterwards.
        assert await committed_names(tm.engine) in ([], ["Ann"])

    async def test_a_cancel_during_commit_is_not_retried(self, tm: TransactionManager) -> None:
        calls: list[int] = []

        @transactional(tm, retries=3, retry_base_delay=0)
        async def work() -> None:
            calls.append(1)
            tm.session.add(Account(name="Ann"))

        async def scenario() -> None:
            await work()

        with listening(tm.engine.sync_engine, "commit", cancel_current_task):
            task = await run_in_task(scenario)
        assert task.cancelled()
        assert calls == [1]
        assert tm.engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    async def test_a_cancel_during_rollback_lets_the_rollback_finish(
        self, tm: TransactionManager
    ) -> None:
        rollbacks: list[str] = []
        target: list[asyncio.Task[None]] = []

        def cancel_the_scenario(conn: Any) -> None:
            rollbacks.append("rollback")
            target[0].cancel()

        async def scenario() -> None:
            async with tm.transaction() as session:
                session.add(Account(name="Ann"))
                await session.flush()
                raise ValueError("work failed")

        with (
            counting_invalidations(tm.engine) as invalidated,
            listening(tm.engine.sync_engine, "rollback", cancel_the_scenario),
        ):
            task = asyncio.ensure_future(scenario())
            target.append(task)
            await asyncio.wait({task})
        assert task.cancelled()
        assert rollbacks == ["rollback"]
        assert invalidated == []  # the ROLLBACK completed: the connection stays pooled
        assert tm.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert await committed_names(tm.engine) == []

    async def test_the_connection_is_reusable_after_a_cancelled_scope(
        self, tm: TransactionManager
    ) -> None:
        async def scenario() -> None:
            async with tm.transaction() as session:
                session.add(Account(name="lost"))
                await session.flush()

        with listening(tm.engine.sync_engine, "before_cursor_execute", cancel_on_insert):
            await run_in_task(scenario)
        async with tm.transaction() as session:
            session.add(Account(name="kept"))
        assert await committed_names(tm.engine) == ["kept"]
