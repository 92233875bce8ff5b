"""Propagation kinds, rollback-only marking and per-task ambient scopes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from _accounts import add, committed_names
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.pool import AsyncAdaptedQueuePool

from models.accounts import Account, Base
from sqla_uow import Propagation, TransactionManager, transactional
from sqla_uow.exceptions import (
    IllegalTransactionStateError,
    RollbackOnlyError,
    TransactionRequiredError,
)


async def fail_after_adding(
    tm: TransactionManager, name: str, *, propagation: Propagation = Propagation.REQUIRED
) -> None:
    """Add *name* in a scope of *tm*, then raise ``ValueError("adding <name> fails")``."""
    async with tm.transaction(propagation=propagation):
        await add(tm, name)
        raise ValueError(f"adding {name} fails")


class TestRequired:
    async def test_begins_a_transaction_when_none_is_active(self, tm: TransactionManager) -> None:
        async with tm.transaction(propagation=Propagation.REQUIRED) as session:
            assert isinstance(session, AsyncSession)
            await add(tm, "Ann")
        assert await committed_names(tm.engine) == ["Ann"]

    async def test_joins_the_active_transaction(self, tm: TransactionManager) -> None:
        async with tm.transaction() as outer:
            async with tm.transaction() as inner:
                assert inner is outer
                await add(tm, "Ann")
            assert await committed_names(tm.engine) == []
        assert await committed_names(tm.engine) == ["Ann"]

    async def test_the_joined_scope_leaves_the_commit_to_the_outer_one(
        self, tm: TransactionManager
    ) -> None:
        async def fail_after_inner() -> None:
            async with tm.transaction():
                async with tm.transaction():
                    await add(tm, "Ann")
                raise RuntimeError("outer fails")

        with pytest.raises(RuntimeError, match="outer fails"):
            await fail_after_inner()
        assert await committed_names(tm.engine) == []


class TestRollbackOnly:
    async def test_a_swallowed_failure_of_a_joined_scope_rolls_back_the_transaction(
        self, tm: TransactionManager
    ) -> None:
        async def swallow() -> None:
            async with tm.transaction():
                await add(tm, "outer")
                with contextlib.suppress(ValueError):
                    await fail_after_adding(tm, "inner")

        with pytest.raises(RollbackOnlyError, match="rollback-only") as caught:
            await swallow()
        assert isinstance(caught.value.__cause__, ValueError)
        assert await committed_names(tm.engine) == []

    async def test_a_nested_scope_recovers_from_a_failed_joined_scope(
        self, tm: TransactionManager
    ) -> None:
        async def savepoint_around_the_service() -> None:
            async with tm.transaction(propagation=Propagation.NESTED):
                with contextlib.suppress(ValueError):
                    await fail_after_adding(tm, "inner")

        async with tm.transaction():
            await add(tm, "before")
            with pytest.raises(RollbackOnlyError):
                await savepoint_around_the_service()
            await add(tm, "after")
        assert await committed_names(tm.engine) == ["before", "after"]

    async def test_an_exception_that_reaches_the_owner_propagates_unchanged(
        self, tm: TransactionManager
    ) -> None:
        async def fail() -> None:
            async with tm.transaction(), tm.transaction():
                raise KeyError("original")

        with pytest.raises(KeyError, match="original"):
            await fail()


class TestRequiresNew:
    async def test_commits_independently_of_the_suspended_transaction(
        self, tm: TransactionManager
    ) -> None:
        async def fail() -> None:
            # Read-only outside: on SQLite a read-write transaction holds the write lock.
            async with tm.transaction(read_only=True) as outer:
                async with tm.transaction(propagation=Propagation.REQUIRES_NEW) as inner:
                    assert inner is not outer
                    await add(tm, "audit entry")
                assert tm.session is outer
                raise RuntimeError("outer fails")

        with pytest.raises(RuntimeError, match="outer fails"):
            await fail()
        assert await committed_names(tm.engine) == ["audit entry"]

    @pytest.mark.backends("postgresql", "mariadb")  # SQLite: one writer at a time
    async def test_its_rollback_leaves_the_outer_transaction_alone(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction():
            with pytest.raises(ValueError, match="adding inner fails"):
                await fail_after_adding(tm, "inner", propagation=Propagation.REQUIRES_NEW)
            await add(tm, "outer")
        assert await committed_names(tm.engine) == ["outer"]

    @pytest.mark.backends("postgresql")
    async def test_runs_on_a_connection_of_its_own(self, tm: TransactionManager) -> None:
        async with tm.transaction():
            await add(tm, "outer, not yet committed")
            async with tm.transaction(propagation=Propagation.REQUIRES_NEW) as inner:
                seen = (await inner.scalars(select(Account.name))).all()
        assert seen == []

    @pytest.mark.backends("sqlite")
    async def test_fails_fast_on_sqlite_while_the_outer_transaction_holds_the_write_lock(
        self, tm: TransactionManager
    ) -> None:
        async def write_in_new_transaction() -> None:
            async with tm.transaction(propagation=Propagation.REQUIRES_NEW):
                await add(tm, "inner")

        async with tm.transaction():
            await add(tm, "outer")  # takes SQLite's write lock
            started = time.monotonic()
            with pytest.raises(IllegalTransactionStateError, match="database is locked"):
                await write_in_new_transaction()
            assert time.monotonic() - started < 2
        assert await committed_names(tm.engine) == ["outer"]
        async with tm.transaction() as session:  # busy timeout restored on that connection
            assert await session.scalar(select(1).where(Account.name == "outer")) == 1

    async def test_refuses_a_pool_with_a_single_shared_connection(self) -> None:
        tm = TransactionManager("sqlite+aiosqlite://")  # in memory: StaticPool
        async with tm, tm.transaction() as outer:
            with pytest.raises(IllegalTransactionStateError, match="StaticPool"):
                async with tm.transaction(propagation=Propagation.REQUIRES_NEW):
                    pass
            assert tm.session is outer  # the outer transaction is still in scope


class TestNested:
    async def test_begins_a_transaction_when_none_is_active(self, tm: TransactionManager) -> None:
        async with tm.transaction(propagation=Propagation.NESTED):
            await add(tm, "Ann")
        assert await committed_names(tm.engine) == ["Ann"]

    async def test_opens_a_savepoint_in_the_active_transaction(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction() as outer:
            await add(tm, "kept")
            async with tm.transaction(propagation=Propagation.NESTED) as inner:
                assert inner is outer
                assert inner.in_nested_transaction()
            await add(tm, "also kept")
        assert await committed_names(tm.engine) == ["kept", "also kept"]

    async def test_a_joined_scope_inside_marks_only_the_savepoint(
        self, tm: TransactionManager
    ) -> None:
        async def savepoint() -> None:
            async with tm.transaction(propagation=Propagation.NESTED):
                with pytest.raises(ValueError, match="adding lost fails"):
                    await fail_after_adding(tm, "lost")

        async with tm.transaction():
            await add(tm, "kept")
            with pytest.raises(RollbackOnlyError):
                await savepoint()
        assert await committed_names(tm.engine) == ["kept"]


class TestMandatory:
    async def test_raises_without_a_transaction(self, tm: TransactionManager) -> None:
        with pytest.raises(TransactionRequiredError, match="MANDATORY"):
            async with tm.transaction(propagation=Propagation.MANDATORY):
                pass

    async def test_joins_the_active_transaction(self, tm: TransactionManager) -> None:
        async with (
            tm.transaction() as outer,
            tm.transaction(propagation=Propagation.MANDATORY) as inner,
        ):
            assert inner is outer


class TestSupports:
    async def test_runs_without_a_transaction_when_none_is_active(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction(propagation=Propagation.SUPPORTS) as session:
            assert session is None
            with pytest.raises(TransactionRequiredError, match="SUPPORTS"):
                tm.session  # noqa: B018

    async def test_joins_the_active_transaction(self, tm: TransactionManager) -> None:
        async with (
            tm.transaction() as outer,
            tm.transaction(propagation=Propagation.SUPPORTS) as inner,
        ):
            assert inner is outer


class TestNotSupported:
    async def test_suspends_the_active_transaction(self, tm: TransactionManager) -> None:
        async with tm.transaction(read_only=True) as outer:
            async with tm.transaction(propagation=Propagation.NOT_SUPPORTED) as none:
                assert none is None
                assert not tm.in_transaction
                with pytest.raises(TransactionRequiredError, match="NOT_SUPPORTED"):
                    tm.session  # noqa: B018
                async with tm.transaction() as fresh:  # REQUIRED begins a new one here
                    assert fresh is not outer
            assert tm.session is outer


class TestNever:
    async def test_raises_inside_a_transaction(self, tm: TransactionManager) -> None:
        async with tm.transaction():
            with pytest.raises(IllegalTransactionStateError, match="NEVER"):
                async with tm.transaction(propagation=Propagation.NEVER):
                    pass

    async def test_runs_without_a_transaction(self, tm: TransactionManager) -> None:
        async with tm.transaction(propagation=Propagation.NEVER) as session:
            assert session is None


class TestTaskIsolation:
    async def test_a_child_task_does_not_see_the_parent_transaction(
        self, tm: TransactionManager
    ) -> None:
        async def child() -> str:
            with pytest.raises(TransactionRequiredError, match="another asyncio task"):
                tm.session  # noqa: B018
            return "checked"

        async with tm.transaction():
            assert await asyncio.create_task(child()) == "checked"

    async def test_a_child_task_begins_its_own_transaction(self, tm: TransactionManager) -> None:
        async def child() -> AsyncSession:
            async with tm.transaction() as session:
                await add(tm, "child")
                return session

        async with tm.transaction(read_only=True) as parent:
            child_session = await asyncio.create_task(child())
            assert child_session is not parent
            assert tm.session is parent
        assert await committed_names(tm.engine) == ["child"]

    async def test_concurrent_tasks_get_separate_sessions(self, tm: TransactionManager) -> None:
        @transactional(tm)
        async def work() -> AsyncSession:
            session = tm.session
            await asyncio.sleep(0)
            await session.scalar(select(Account.id).limit(1))
            await asyncio.sleep(0)
            assert tm.session is session
            return session

        sessions = await asyncio.gather(work(), work(), work())
        assert len({id(session) for session in sessions}) == 3

    async def test_mandatory_in_a_child_task_raises(self, tm: TransactionManager) -> None:
        async def child() -> None:
            async with tm.transaction(propagation=Propagation.MANDATORY):
                pass

        async with tm.transaction():
            with pytest.raises(TransactionRequiredError, match="another asyncio task"):
                await asyncio.create_task(child())


class TestOneSharedConnection:
    """In-memory SQLite: the engine's StaticPool hands every session the same connection."""

    @pytest.fixture
    async def shared_tm(self) -> AsyncIterator[TransactionManager]:
        async with TransactionManager("sqlite+aiosqlite://") as tm:
            async with tm.engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            yield tm

    async def test_concurrent_transactions_take_turns(self, shared_tm: TransactionManager) -> None:
        tm = shared_tm

        async def succeeds() -> None:
            async with tm.transaction():
                await add(tm, "kept")
                await asyncio.sleep(0.02)

        async def fails() -> None:
            async with tm.transaction():
                await add(tm, "rolled back")
                await asyncio.sleep(0.04)
                raise RuntimeError("fails")

        results = await asyncio.gather(succeeds(), fails(), return_exceptions=True)
        assert results[0] is None
        assert isinstance(results[1], RuntimeError)
        assert await committed_names(tm.engine) == ["kept"]

    async def test_a_cancelled_transaction_lets_the_next_one_begin(
        self, shared_tm: TransactionManager
    ) -> None:
        tm = shared_tm
        started = asyncio.Event()

        async def hangs() -> None:
            async with tm.transaction():
                await add(tm, "cancelled")
                started.set()
                await asyncio.sleep(10)

        task = asyncio.create_task(hangs())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        async def next_transaction() -> None:
            async with tm.transaction():
                await add(tm, "next")

        await asyncio.wait_for(next_transaction(), timeout=2)
        assert await committed_names(tm.engine) == ["next"]

    async def test_a_transaction_inside_a_suspended_one_raises(
        self, shared_tm: TransactionManager
    ) -> None:
        tm = shared_tm

        async def begin_inside() -> None:
            async with tm.transaction():
                pass

        async def fail() -> None:
            async with tm.transaction():
                await add(tm, "outer")
                async with tm.transaction(propagation=Propagation.NOT_SUPPORTED):
                    with pytest.raises(IllegalTransactionStateError, match="StaticPool"):
                        await begin_inside()
                raise RuntimeError("outer fails")

        with pytest.raises(RuntimeError, match="outer fails"):
            await fail()
        assert await committed_names(tm.engine) == []

    async def test_a_transaction_in_a_child_task_raises(
        self, shared_tm: TransactionManager
    ) -> None:
        tm = shared_tm

        async def child() -> None:
            async with tm.transaction():
                await add(tm, "child")

        async with tm.transaction():
            await add(tm, "parent")
            with pytest.raises(IllegalTransactionStateError, match="StaticPool"):
                await asyncio.gather(child())
        assert await committed_names(tm.engine) == ["parent"]


@pytest.mark.backends("sqlite")
class TestSqliteInsideAnOpenTransaction:
    """A file database: a second writer cannot commit while an enclosing one is open."""

    async def assert_fails_fast(self, work: Callable[[], Awaitable[object]]) -> None:
        started = time.monotonic()
        with pytest.raises(IllegalTransactionStateError, match="database is locked"):
            await work()
        assert time.monotonic() - started < 2

    async def test_required_inside_not_supported_fails_fast(self, tm: TransactionManager) -> None:
        async def write_in_new_transaction() -> None:
            async with (
                tm.transaction(propagation=Propagation.NOT_SUPPORTED),
                tm.transaction(),
            ):
                await add(tm, "inner")

        async with tm.transaction():
            await add(tm, "outer")
            await self.assert_fails_fast(write_in_new_transaction)
        assert await committed_names(tm.engine) == ["outer"]

    @pytest.mark.parametrize("propagation", [Propagation.REQUIRED, Propagation.REQUIRES_NEW])
    async def test_a_writer_in_a_child_task_fails_fast(
        self, tm: TransactionManager, propagation: Propagation
    ) -> None:
        async def child() -> None:
            async with tm.transaction(propagation=propagation):
                await add(tm, "child")

        async with tm.transaction():
            await add(tm, "parent")
            await self.assert_fails_fast(lambda: asyncio.create_task(child()))
        assert await committed_names(tm.engine) == ["parent"]

    async def test_a_writer_inside_a_read_only_transaction_commits(
        self, tm: TransactionManager
    ) -> None:
        async with (
            tm.transaction(read_only=True),
            tm.transaction(propagation=Propagation.REQUIRES_NEW),
        ):
            await add(tm, "inner")
        assert await committed_names(tm.engine) == ["inner"]


class TestPoolTooSmall:
    async def test_requires_new_fails_fast_when_the_pool_has_no_second_connection(
        self, database_url: str, engine: AsyncEngine
    ) -> None:
        async with TransactionManager(
            database_url,
            poolclass=AsyncAdaptedQueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=10,
        ) as tm:
            started = time.monotonic()
            async with tm.transaction():
                with pytest.raises(IllegalTransactionStateError, match="at most 1"):
                    async with tm.transaction(propagation=Propagation.REQUIRES_NEW):
                        pass
            assert time.monotonic() - started < 2
            assert tm.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
