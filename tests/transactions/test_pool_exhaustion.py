"""A pool that cannot hand out a connection is a `PoolExhaustedError`, raised without waiting
where the wait could never end.

REQUIRES_NEW holds a second connection while the suspended transaction keeps its first:
with more concurrent tasks than the pool has connections, every connection can end up
held by a task that waits for another one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from _accounts import committed_names
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from models.accounts import Account
from sqla_uow import PoolExhaustedError, Propagation, TransactionManager

pytestmark = [pytest.mark.reliability, pytest.mark.backends("postgresql", "mariadb")]


@pytest.fixture
async def small_pool_tm(
    engine: AsyncEngine, database_url: str
) -> AsyncIterator[TransactionManager]:
    """A manager on a pool of 5 connections without overflow (the tables exist)."""
    small = create_async_engine(database_url, pool_size=5, max_overflow=0, pool_timeout=20)
    try:
        yield TransactionManager(small)
        assert small.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await small.dispose()


async def open_account(tm: TransactionManager, name: str, propagation: Propagation) -> None:
    """Write in an outer transaction, then in an inner one of the given propagation."""
    async with tm.transaction() as outer:
        outer.add(Account(name=f"{name}-outer"))
        await outer.flush()
        await asyncio.sleep(0.01)  # let the other tasks take their first connection
        async with tm.transaction(propagation=propagation) as inner:
            inner.add(Account(name=f"{name}-inner"))
            await asyncio.sleep(0.01)


PROPAGATIONS = [Propagation.REQUIRED, Propagation.NESTED, Propagation.REQUIRES_NEW]


class TestPoolExhaustion:
    async def test_tasks_that_would_wait_forever_fail_fast(
        self, small_pool_tm: TransactionManager
    ) -> None:
        tm = small_pool_tm
        started = time.monotonic()
        results = await asyncio.gather(
            *(open_account(tm, f"t{i}", PROPAGATIONS[i % 3]) for i in range(20)),
            return_exceptions=True,
        )
        elapsed = time.monotonic() - started
        assert elapsed < 10, f"took {elapsed:.1f} s: tasks waited out pool_timeout"
        failures = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(f, PoolExhaustedError) for f in failures), failures
        assert len(failures) < 20
        succeeded = sorted(
            f"t{i}" for i, result in enumerate(results) if not isinstance(result, BaseException)
        )
        names = await committed_names(tm.engine)
        assert sorted({name.partition("-")[0] for name in names}) == succeeded
        assert len(names) == 2 * len(succeeded)  # nothing half-written by a failed task

    async def test_the_error_names_the_pool_and_what_holds_it(
        self, small_pool_tm: TransactionManager
    ) -> None:
        tm = small_pool_tm
        results = await asyncio.gather(
            *(open_account(tm, f"t{i}", Propagation.REQUIRES_NEW) for i in range(10)),
            return_exceptions=True,
        )
        failure = next(r for r in results if isinstance(r, PoolExhaustedError))
        assert failure.capacity == 5
        assert failure.held_by_task == 1
        assert "REQUIRES_NEW could not get a connection from a pool of 5" in str(failure)
        assert "by suspended transactions of this task" in str(failure)

    async def test_retrying_the_failed_tasks_completes_every_one(
        self, small_pool_tm: TransactionManager
    ) -> None:
        tm = small_pool_tm

        async def with_retries(name: str) -> None:
            while True:
                try:
                    await open_account(tm, name, Propagation.REQUIRES_NEW)
                except PoolExhaustedError:
                    await asyncio.sleep(0.01)
                else:
                    return

        await asyncio.gather(*(with_retries(f"t{i}") for i in range(20)))
        assert len(await committed_names(tm.engine)) == 40

    async def test_a_timed_out_wait_is_a_pool_exhausted_error(
        self, engine: AsyncEngine, database_url: str
    ) -> None:
        tiny = create_async_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
        tm = TransactionManager(tiny)
        holding = asyncio.Event()
        release = asyncio.Event()

        async def hold_the_only_connection() -> None:
            async with tm.transaction() as session:
                await session.execute(select(Account.id))
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold_the_only_connection())
        try:
            await holding.wait()
            with pytest.raises(
                PoolExhaustedError, match=r"waited pool_timeout \(0.2 s\)"
            ) as caught:
                async with tm.transaction():
                    pass
            assert caught.value.held_by_task == 0
            assert caught.value.checked_out == 1
        finally:
            release.set()
            await holder
            await tiny.dispose()
