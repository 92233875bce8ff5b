"""tm.transaction(timeout=) and @transactional(timeout=): statements bounded on the server."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models.accounts import Account
from sqla_uow import (
    InvalidFieldError,
    LockNotAvailableError,
    Propagation,
    TransactionError,
    TransactionManager,
    TransactionTimeoutError,
    transactional,
)

ALL = ("sqlite", "postgresql", "mariadb")
SERVERS = ("postgresql", "mariadb")

SLEEP = {"postgresql": "SELECT pg_sleep(2)", "mariadb": "SELECT SLEEP(2)"}


async def timeout_ms(session: AsyncSession, backend: str) -> int:
    """The statement timeout in force on *session*'s connection, in milliseconds (0: none)."""
    if backend == "postgresql":
        found = await session.scalar(
            text("SELECT setting FROM pg_settings WHERE name = 'statement_timeout'")
        )
        lock = await session.scalar(
            text("SELECT setting FROM pg_settings WHERE name = 'lock_timeout'")
        )
        assert lock == found  # both bound the statements alike
        return int(found)
    if backend == "mariadb":
        return round(float(await session.scalar(text("SELECT @@max_statement_time"))) * 1000)
    return int(await session.scalar(text("PRAGMA busy_timeout")))


async def connection_id(session: AsyncSession, backend: str) -> Any:
    query = {"postgresql": "SELECT pg_backend_pid()", "mariadb": "SELECT CONNECTION_ID()"}
    if backend == "sqlite":
        return id((await session.connection()).sync_connection.connection.dbapi_connection)  # type: ignore[union-attr]
    return await session.scalar(text(query[backend]))


async def default_ms(tm: TransactionManager, backend: str) -> int:
    async with tm.transaction() as session:
        return await timeout_ms(session, backend)


@asynccontextmanager
async def sqlite_write_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Another connection holds SQLite's write lock while the block runs."""
    path = engine.url.database
    assert path
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


class TestTheTimeoutIsCheckedBeforeSql:
    @pytest.mark.parametrize("bad", [0, -1.5, math.nan, math.inf, True, "2", [1]])
    def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(
        self, tm: TransactionManager, bad: Any
    ) -> None:
        with pytest.raises(InvalidFieldError, match="timeout must be a number of seconds") as info:
            tm.transaction(timeout=bad)
        assert info.value.field == "timeout"
        assert isinstance(info.value, ValueError)
        with pytest.raises(InvalidFieldError, match="timeout must be"):

            @transactional(timeout=bad)
            async def service() -> None: ...

    def test_an_int_is_taken_as_seconds(self, tm: TransactionManager) -> None:
        assert tm.transaction(timeout=2)  # no error


@pytest.mark.backends(*SERVERS)
class TestAStatementOverTheTimeout:
    async def test_raises_transaction_timeout_with_the_driver_error_chained(
        self, backend: str, tm: TransactionManager
    ) -> None:
        started = time.monotonic()
        with pytest.raises(TransactionTimeoutError, match=r"timeout of 0\.2 s") as info:
            async with tm.transaction(timeout=0.2) as session:
                await session.execute(text(SLEEP[backend]))
        assert time.monotonic() - started < 1.5
        assert isinstance(info.value, TransactionError)
        assert info.value.timeout == 0.2
        assert info.value.code == ("57014" if backend == "postgresql" else 1969)
        assert info.value.__cause__ is not None

    async def test_the_connection_is_usable_and_back_to_the_server_default(
        self, backend: str, engine: AsyncEngine, tm: TransactionManager
    ) -> None:
        before = await default_ms(tm, backend)
        async with tm.transaction() as session:
            first = await connection_id(session, backend)
        seen: list[Any] = []

        async def too_slow() -> None:
            async with tm.transaction(timeout=0.2) as session:
                seen.extend(
                    [await connection_id(session, backend), await timeout_ms(session, backend)]
                )
                await session.execute(text(SLEEP[backend]))

        with pytest.raises(TransactionTimeoutError):
            await too_slow()
        assert seen == [first, 200]
        async with tm.transaction() as session:
            assert await connection_id(session, backend) == first  # the same connection
            assert await timeout_ms(session, backend) == before
            session.add(Account(name="Ann"))
        async with tm.transaction() as session:
            assert await session.scalar(select(Account.name)) == "Ann"

    async def test_a_committed_transaction_leaves_no_setting_behind(
        self, backend: str, tm: TransactionManager
    ) -> None:
        before = await default_ms(tm, backend)
        async with tm.transaction(timeout=3) as session:
            assert await timeout_ms(session, backend) == 3000
            session.add(Account(name="Ann"))
        assert await default_ms(tm, backend) == before

    async def test_a_statement_within_the_timeout_runs(
        self, backend: str, tm: TransactionManager
    ) -> None:
        quick = {"postgresql": "SELECT pg_sleep(0.05)", "mariadb": "SELECT SLEEP(0.05)"}
        async with tm.transaction(timeout=2) as session:
            await session.execute(text(quick[backend]))
            session.add(Account(name="Ann"))
        async with tm.transaction() as session:
            assert await session.scalar(select(Account.name)) == "Ann"

    async def test_a_wait_for_a_row_lock_is_bounded_too(
        self, backend: str, tm: TransactionManager
    ) -> None:
        async with tm.transaction() as session:
            session.add(Account(id=1, name="Ann"))
        locked, done = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with tm.transaction() as session:
                await session.get(Account, 1, with_for_update=True)
                locked.set()
                await done.wait()

        holder = asyncio.create_task(hold())
        try:
            await locked.wait()
            started = time.monotonic()
            # Reported as the timeout, not as a lock not available: on PostgreSQL
            # statement_timeout starts with the statement, before lock_timeout.
            with pytest.raises(TransactionTimeoutError) as info:
                async with tm.transaction(timeout=0.2) as session:
                    await session.get(Account, 1, with_for_update=True)
            assert time.monotonic() - started < 1.5
            assert not isinstance(info.value, LockNotAvailableError)
        finally:
            done.set()
            await holder

    async def test_transactional_takes_the_timeout_and_does_not_retry_it(
        self, backend: str, tm: TransactionManager
    ) -> None:
        calls = 0

        @transactional(tm, timeout=0.2, retries=3)
        async def slow() -> None:
            nonlocal calls
            calls += 1
            await tm.session.execute(text(SLEEP[backend]))

        with pytest.raises(TransactionTimeoutError):
            await slow()
        assert calls == 1


@pytest.mark.backends("sqlite")
class TestTheSqliteBusyTimeout:
    async def test_a_transaction_waits_for_the_write_lock_at_most_the_timeout(
        self, engine: AsyncEngine, tm: TransactionManager
    ) -> None:
        before = await default_ms(tm, "sqlite")
        async with sqlite_write_lock(engine):
            started = time.monotonic()
            with pytest.raises(TransactionTimeoutError, match=r"timeout of 0\.2 s") as info:
                async with tm.transaction(timeout=0.2) as session:
                    session.add(Account(name="Ann"))
            assert time.monotonic() - started < 1.5
        # SQLITE_BUSY; Python 3.10's sqlite3 reports no codes (the error is still recognised).
        assert info.value.code == (5 if sys.version_info >= (3, 11) else None)
        assert isinstance(info.value.__cause__, Exception)
        async with tm.transaction() as session:
            assert await timeout_ms(session, "sqlite") == before
            session.add(Account(name="Ann"))
        async with tm.transaction(timeout=1) as session:
            assert await timeout_ms(session, "sqlite") == 1000
            assert await session.scalar(select(Account.name)) == "Ann"


@pytest.mark.backends(*ALL)
class TestAnInnerScopeMayShortenButNotExtendTheTimeout:
    async def test_a_joined_scope_shortens_it_until_its_end(
        self, backend: str, tm: TransactionManager
    ) -> None:
        async with tm.transaction(timeout=5) as session:
            async with tm.transaction(timeout=0.3):
                assert await timeout_ms(session, backend) == 300
            assert await timeout_ms(session, backend) == 5000
            async with tm.transaction(timeout=10):
                assert await timeout_ms(session, backend) == 5000  # not extended
            async with tm.transaction(propagation=Propagation.NESTED, timeout=0.4):
                assert await timeout_ms(session, backend) == 400
                async with tm.transaction(propagation=Propagation.MANDATORY, timeout=1):
                    assert await timeout_ms(session, backend) == 400
                assert await timeout_ms(session, backend) == 400
            assert await timeout_ms(session, backend) == 5000

    async def test_a_joined_scope_of_a_transaction_without_timeout_sets_one_for_its_time(
        self, backend: str, tm: TransactionManager
    ) -> None:
        before = await default_ms(tm, backend)
        async with tm.transaction() as session:
            async with tm.transaction(timeout=0.25):
                assert await timeout_ms(session, backend) == 250
            assert await timeout_ms(session, backend) == before
            session.add(Account(name="Ann"))
        assert await default_ms(tm, backend) == before

    async def test_a_joined_scope_left_by_an_exception_leaves_the_reset_to_the_rollback(
        self, backend: str, tm: TransactionManager
    ) -> None:
        before = await default_ms(tm, backend)

        async def fail_inside() -> None:
            async with tm.transaction(timeout=3) as session:
                session.add(Account(name="Ann"))
                async with tm.transaction(timeout=0.3):
                    raise LookupError("no such shelf")

        with pytest.raises(LookupError):
            await fail_inside()
        async with tm.transaction() as session:
            assert await timeout_ms(session, backend) == before
            assert await session.scalar(select(Account.name)) is None

    @pytest.mark.backends(*SERVERS)
    async def test_a_nested_scope_cut_by_its_timeout_rolls_back_and_the_outer_goes_on(
        self, backend: str, tm: TransactionManager
    ) -> None:
        before = await default_ms(tm, backend)
        async with tm.transaction(timeout=5) as session:
            session.add(Account(name="Ann"))

            async def too_slow() -> None:
                async with tm.transaction(propagation=Propagation.NESTED, timeout=0.2):
                    session.add(Account(name="Bob"))
                    await session.execute(text(SLEEP[backend]))

            with pytest.raises(TransactionTimeoutError, match=r"0\.2 s"):
                await too_slow()
            assert await timeout_ms(session, backend) == 5000
        async with tm.transaction() as session:
            assert list(await session.scalars(select(Account.name))) == ["Ann"]
        assert await default_ms(tm, backend) == before


class TestASavepointManager:
    async def test_records_the_timeout_but_does_not_apply_it(
        self, backend: str, engine: AsyncEngine
    ) -> None:
        async with engine.connect() as conn:
            await conn.begin()
            maker = async_sessionmaker(
                bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
            )
            tm = TransactionManager(maker)
            async with tm.transaction() as session:
                before = await timeout_ms(session, backend)
            async with tm.transaction(timeout=0.2) as session:
                assert await timeout_ms(session, backend) == before
                async with tm.transaction(timeout=0.1):
                    assert await timeout_ms(session, backend) == before
            await conn.rollback()


class TestNoTimeoutCostsNothing:
    async def test_a_transaction_without_timeout_sends_no_setting(
        self, engine: AsyncEngine, tm: TransactionManager
    ) -> None:
        sent: list[str] = []

        def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            sent.append(statement)

        event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            async with (
                tm.transaction() as session,
                tm.transaction(propagation=Propagation.NESTED),
            ):
                session.add(Account(name="Ann"))
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", record)
        assert sent
        assert not [s for s in sent if "timeout" in s.lower() or "statement_time" in s]
