"""A PostgreSQL backend killed (``pg_terminate_backend``) mid-flush and before COMMIT.

The scope fails with the driver's error, marked as a lost connection; nothing of the
transaction is written, no on_commit callback runs, the dead connection is not handed
out again and the next transaction works.
"""

from __future__ import annotations

import asyncio

import pytest
from _accounts import Account, committed_names
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from sqla_uow import TransactionManager

pytestmark = [pytest.mark.reliability, pytest.mark.backends("postgresql")]


async def terminate(engine: AsyncEngine, pid: int, *, once_waiting_on_a_lock: bool) -> None:
    """Terminate backend *pid* from a connection of its own."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        if once_waiting_on_a_lock:
            for _ in range(500):
                waiting = await conn.scalar(
                    text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": pid},
                )
                if waiting == "Lock":
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError(f"backend {pid} never waited on the lock")
        assert await conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


async def next_transaction_works(tm: TransactionManager) -> None:
    async with tm.transaction() as session:
        session.add(Account(name="next"))
    assert await committed_names(tm.engine) == ["next"]
    assert tm.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


class TestKilledBackend:
    async def test_mid_flush_fails_the_scope_and_writes_nothing(
        self, tm: TransactionManager
    ) -> None:
        ran: list[str] = []
        async with tm.engine.connect() as locker:
            await locker.execute(text("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE"))

            async def write_until_killed() -> None:
                async with tm.transaction() as session:
                    tm.on_commit(lambda: ran.append("committed"))
                    pid = await session.scalar(text("SELECT pg_backend_pid()"))
                    assert isinstance(pid, int)
                    killer = asyncio.create_task(
                        terminate(tm.engine, pid, once_waiting_on_a_lock=True)
                    )
                    session.add_all([Account(name="first"), Account(name="second")])
                    try:
                        await session.flush()  # blocks on the lock until killed
                    finally:
                        await killer

            with pytest.raises(DBAPIError) as caught:
                await write_until_killed()
            await locker.rollback()
        assert caught.value.connection_invalidated
        assert "terminat" in str(caught.value)
        assert ran == []
        await next_transaction_works(tm)

    async def test_before_commit_fails_the_scope_and_writes_nothing(
        self, tm: TransactionManager
    ) -> None:
        ran: list[str] = []

        async def write_then_lose_the_connection() -> None:
            async with tm.transaction() as session:
                session.add_all([Account(name="first"), Account(name="second")])
                await session.flush()
                tm.on_commit(lambda: ran.append("committed"))
                pid = await session.scalar(text("SELECT pg_backend_pid()"))
                assert isinstance(pid, int)
                await terminate(tm.engine, pid, once_waiting_on_a_lock=False)
            # the COMMIT goes to a terminated backend

        with pytest.raises(DBAPIError) as caught:
            await write_then_lose_the_connection()
        assert caught.value.connection_invalidated
        assert ran == []
        await next_transaction_works(tm)
