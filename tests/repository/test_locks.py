"""Row locks: ``for_update=True`` / ``ForUpdate(...)`` on the reads, and LockNotAvailableError."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager
from typing import Any

import pytest
from sqlalchemy import MetaData, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from models.accounts import Account, Base
from models.shop import User
from sqla_uow import (
    AsyncRepository,
    ForUpdate,
    InvalidFieldError,
    LockNotAvailableError,
    Propagation,
    TransactionError,
    TransactionManager,
    UnsupportedDialectError,
)
from sqla_uow.testing import InMemoryRepository

LOCKING = ("postgresql", "mariadb")


class Accounts(AsyncRepository[Account]):
    pass


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
async def tm(engine: AsyncEngine) -> TransactionManager:
    async with engine.begin() as conn:
        await conn.execute(
            Account.__table__.insert(),
            [{"id": 1, "name": "Ann"}, {"id": 2, "name": "Bob"}, {"id": 3, "name": "Cy"}],
        )
    return TransactionManager(engine)


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements sent on *engine* inside the block."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


class TestForUpdateChecksItsOptionsBeforeSql:
    def test_nowait_and_skip_locked_together_are_refused(self) -> None:
        with pytest.raises(InvalidFieldError, match="choose one") as info:
            ForUpdate(nowait=True, skip_locked=True)
        assert info.value.field == "skip_locked"

    def test_an_option_that_is_not_a_bool_is_refused(self) -> None:
        with pytest.raises(InvalidFieldError, match=r"nowait=\.\.\.\) must be True or False"):
            ForUpdate(nowait="yes")  # type: ignore[arg-type]

    def test_options_are_keyword_only_and_the_value_is_frozen(self) -> None:
        with pytest.raises(TypeError):
            ForUpdate(True)  # type: ignore[call-arg]
        lock = ForUpdate(nowait=True)
        with pytest.raises(AttributeError):
            lock.nowait = False  # type: ignore[misc]
        assert lock == ForUpdate(nowait=True)

    @pytest.mark.backends("sqlite", "postgresql", "mariadb")
    async def test_a_for_update_that_is_neither_bool_nor_for_update_is_refused(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction() as session:
            for repo in (Accounts(session), InMemoryRepository(Account)):
                with pytest.raises(InvalidFieldError, match="for_update must be") as info:
                    await repo.get(1, for_update="nowait")  # type: ignore[arg-type]
                assert info.value.field == "for_update"
                with pytest.raises(InvalidFieldError, match="for_update must be"):
                    await repo.list(for_update=1)  # type: ignore[arg-type]
            fake = InMemoryRepository(Account)
            await fake.create_many([{"id": 1, "name": "Ann"}, {"id": 2, "name": "Bob"}])
            lock = ForUpdate(skip_locked=True, of=Account.id)
            assert [a.name async for a in fake.stream(for_update=lock)] == ["Ann", "Bob"]
            assert (await fake.get_one(2, for_update=ForUpdate(nowait=True))).name == "Bob"
            assert await Accounts(session).count() == 3  # the transaction goes on

    @pytest.mark.backends("sqlite", "postgresql", "mariadb")
    async def test_of_must_name_the_queried_model_or_its_columns(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction() as session:
            for repo in (Accounts(session), InMemoryRepository(Account)):
                with pytest.raises(InvalidFieldError, match="is not Account") as info:
                    await repo.find_one(id=1, for_update=ForUpdate(of=User.email))
                assert info.value.field == "of"
                with pytest.raises(InvalidFieldError, match=r"of=\.\.\.\) is empty"):
                    await repo.list(for_update=ForUpdate(of=[]))

    @pytest.mark.backends("mariadb")
    async def test_mariadb_refuses_of_and_key_share_by_name(self, tm: TransactionManager) -> None:
        async with tm.transaction() as session:
            accounts = Accounts(session)
            with pytest.raises(UnsupportedDialectError, match=r"ForUpdate\(of=.*MariaDB"):
                await accounts.get(1, for_update=ForUpdate(of=Account))
            with pytest.raises(UnsupportedDialectError, match=r"ForUpdate\(key_share=") as info:
                await accounts.list(for_update=ForUpdate(key_share=True))
            assert info.value.dialect in ("mysql", "mariadb")


class TestTheLockClause:
    @pytest.mark.backends("postgresql")
    async def test_postgresql_renders_every_option(
        self, engine: AsyncEngine, tm: TransactionManager
    ) -> None:
        async with tm.transaction() as session:
            accounts = Accounts(session)
            with statements(engine) as sent:
                await accounts.get(1, for_update=ForUpdate(key_share=True, nowait=True))
                await accounts.list(for_update=ForUpdate(skip_locked=True, of=Account.id))
                await accounts.find_one(id=2, for_update=True)
        assert sent[0].endswith("FOR NO KEY UPDATE NOWAIT")
        assert sent[1].endswith("FOR UPDATE OF accounts SKIP LOCKED")
        assert sent[2].endswith("FOR UPDATE")

    @pytest.mark.backends("mariadb")
    async def test_mariadb_renders_nowait_and_skip_locked(
        self, engine: AsyncEngine, tm: TransactionManager
    ) -> None:
        async with tm.transaction() as session:
            accounts = Accounts(session)
            with statements(engine) as sent:
                await accounts.get(1, for_update=ForUpdate(nowait=True))
                await accounts.list(for_update=ForUpdate(skip_locked=True))
        assert sent[0].endswith("FOR UPDATE NOWAIT")
        assert sent[1].endswith("FOR UPDATE SKIP LOCKED")

    @pytest.mark.backends("sqlite")
    async def test_sqlite_reads_without_a_lock_clause(
        self, engine: AsyncEngine, tm: TransactionManager
    ) -> None:
        async with tm.transaction() as session:
            accounts = Accounts(session)
            with statements(engine) as sent:
                ann = await accounts.get_one(1, for_update=ForUpdate(nowait=True, of=Account))
                rows = await accounts.list(for_update=ForUpdate(skip_locked=True, key_share=True))
        assert ann.name == "Ann"
        assert [row.id for row in rows] == [1, 2, 3]
        assert not any("FOR UPDATE" in statement for statement in sent)


@asynccontextmanager
async def holding_ann(tm: TransactionManager) -> AsyncIterator[None]:
    """Another task's transaction holds the lock of Ann's row while the block runs."""
    locked, done = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with tm.transaction() as session:
            assert (await Accounts(session).get_one(1, for_update=True)).name == "Ann"
            locked.set()
            await done.wait()

    task = asyncio.create_task(hold())
    try:
        await asyncio.wait_for(locked.wait(), 10)
        yield
    finally:
        done.set()
        await task


async def locking_read(tm: TransactionManager, read: str) -> None:
    """Ann's row read with *read* under NOWAIT, in a transaction of its own."""
    nowait = ForUpdate(nowait=True)
    async with tm.transaction() as session:
        accounts = Accounts(session)
        if read == "get_one":
            await accounts.get_one(1, for_update=nowait)
        elif read == "find_one":
            await accounts.find_one(name="Ann", for_update=nowait)
        elif read == "list":
            await accounts.list(for_update=nowait)
        else:
            async with aclosing(accounts.stream(for_update=nowait)) as rows:
                [row async for row in rows]


@pytest.mark.backends(*LOCKING)
class TestALockHeldByAnotherTransaction:
    async def test_nowait_raises_lock_not_available_with_the_driver_error_chained(
        self, backend: str, tm: TransactionManager
    ) -> None:
        async with holding_ann(tm):
            with pytest.raises(LockNotAvailableError, match="skip_locked") as info:
                async with tm.transaction() as session:
                    await Accounts(session).get(1, for_update=ForUpdate(nowait=True))
        assert isinstance(info.value, TransactionError)
        assert info.value.code == ("55P03" if backend == "postgresql" else 1205)
        assert info.value.__cause__ is not None
        async with tm.transaction() as session:  # the lock is gone with its transaction
            assert (await Accounts(session).get_one(1, for_update=ForUpdate(nowait=True))).id == 1

    async def test_every_locking_read_raises_it(self, tm: TransactionManager) -> None:
        async with holding_ann(tm):
            for read in ("get_one", "find_one", "list", "stream"):
                with pytest.raises(LockNotAvailableError):
                    await locking_read(tm, read)

    async def test_a_plain_session_outside_any_manager_gets_it_too(
        self, engine: AsyncEngine, tm: TransactionManager
    ) -> None:
        async with holding_ann(tm), AsyncSession(engine) as session:
            with pytest.raises(LockNotAvailableError) as info:
                await Accounts(session).list(for_update=ForUpdate(nowait=True))
            assert info.value.__cause__ is not None
            await session.rollback()
            assert await Accounts(session).count() == 3  # usable after the rollback

    async def test_skip_locked_leaves_the_locked_rows_out(self, tm: TransactionManager) -> None:
        async with holding_ann(tm), tm.transaction() as session:
            accounts = Accounts(session)
            free = await accounts.list(order_by="id", for_update=ForUpdate(skip_locked=True))
            assert [row.name for row in free] == ["Bob", "Cy"]
            assert await accounts.find_one(id=1, for_update=ForUpdate(skip_locked=True)) is None
            # The rows taken are locked in turn: a third transaction skips them too.
            async with tm.transaction(propagation=Propagation.REQUIRES_NEW) as other:
                left = await Accounts(other).list(for_update=ForUpdate(skip_locked=True))
                assert left == []

    @pytest.mark.backends("postgresql")
    async def test_psycopg_reports_it_the_same_way(
        self, database_url: str, tm: TransactionManager
    ) -> None:
        url = make_url(database_url).set(drivername="postgresql+psycopg")
        other = create_async_engine(url)
        try:
            async with holding_ann(tm), TransactionManager(other) as tm2:
                with pytest.raises(LockNotAvailableError) as info:
                    async with tm2.transaction() as session:
                        await Accounts(session).get(1, for_update=ForUpdate(nowait=True))
                assert info.value.code == "55P03"
                assert type(info.value.__cause__).__module__.startswith(("psycopg", "sqlalchemy"))
        finally:
            await other.dispose()

    async def test_the_lock_blocks_a_writer_until_the_holder_commits(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction() as session:
            ann = await Accounts(session).get_one(1, for_update=ForUpdate(nowait=True))
            ann.balance = 10
            async with tm.transaction(propagation=Propagation.REQUIRES_NEW) as other:
                row = (
                    await other.execute(
                        select(Account.balance)
                        .where(Account.id == 1)
                        .with_for_update(skip_locked=True)
                    )
                ).first()
                assert row is None  # still locked by the outer transaction
        async with tm.transaction() as session:
            assert (await Accounts(session).get_one(1)).balance == 10
