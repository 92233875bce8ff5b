"""A PostgreSQL backend killed (``pg_terminate_backend``) mid-flush, before and during COMMIT.

The scope fails with the driver's error, marked as a lost connection; nothing of the
transaction is written, no on_commit callback runs, the dead connection is not handed
out again and the next transaction works.
"""

from __future__ import annotations

import asyncio

import pytest
from _accounts import committed_names
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from models.accounts import Account
from sqla_uow import TransactionManager

pytestmark = [pytest.mark.reliability, pytest.mark.backends("postgresql")]


WAITING_ON_A_LOCK = "wait_event_type = 'Lock'"
COMMITTING = "query LIKE 'COMMIT%' AND state = 'active'"


async def terminate(engine: AsyncEngine, pid: int, *, once: str | None = None) -> None:
    """Terminate backend *pid* from a connection of its own, once it is in state *once*."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        if once is not None:
            query = text(f"SELECT count(*) FROM pg_stat_activity WHERE pid = :pid AND {once}")
            for _ in range(500):
                if await conn.scalar(query, {"pid": pid}):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError(f"backend {pid} never reached: {once}")
        assert await conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


async def wait_until_gone(engine: AsyncEngine, pid: int) -> None:
    """Wait until backend *pid* has exited and the client has seen its socket close."""
    async with engine.connect() as conn:
        query = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
        for _ in range(500):
            if not await conn.scalar(query, {"pid": pid}):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError(f"backend {pid} did not exit")
    await asyncio.sleep(0.05)


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
                    killer = asyncio.create_task(terminate(tm.engine, pid, once=WAITING_ON_A_LOCK))
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
                await terminate(tm.engine, pid)
                await wait_until_gone(tm.engine, pid)
            # the COMMIT goes to a terminated backend

        with pytest.raises(DBAPIError) as caught:
            await write_then_lose_the_connection()
        assert caught.value.connection_invalidated
        assert ran == []
        await next_transaction_works(tm)

    async def test_during_commit_invalidates_and_writes_nothing(
        self, tm: TransactionManager
    ) -> None:
        # A deferred constraint trigger makes COMMIT itself slow, so the backend can be
        # terminated while it runs.
        async with tm.engine.begin() as conn:
            await conn.execute(
                text(
                    "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN PERFORM pg_sleep(10); RETURN NULL; END $$"
                )
            )
            await conn.execute(
                text(
                    "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON accounts "
                    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()"
                )
            )
        ran: list[str] = []
        killers: list[asyncio.Task[None]] = []

        async def commit_until_killed() -> None:
            async with tm.transaction() as session:
                session.add(Account(name="first"))
                await session.flush()
                tm.on_commit(lambda: ran.append("committed"))
                pid = await session.scalar(text("SELECT pg_backend_pid()"))
                assert isinstance(pid, int)
                killers.append(asyncio.create_task(terminate(tm.engine, pid, once=COMMITTING)))

        try:
            with pytest.raises(DBAPIError) as caught:
                await commit_until_killed()
            await killers[0]
            assert caught.value.connection_invalidated
            assert ran == []
            async with tm.engine.begin() as conn:
                await conn.execute(text("DROP TRIGGER slow_commit ON accounts"))
            await next_transaction_works(tm)
        finally:
            async with tm.engine.begin() as conn:
                await conn.execute(text("DROP FUNCTION slow_commit() CASCADE"))
