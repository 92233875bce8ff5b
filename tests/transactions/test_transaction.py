"""TransactionManager: construction, root scopes, savepoints, isolation and read-only."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from _accounts import committed_names
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models.accounts import Account
from sqla_uow import Propagation, TransactionManager
from sqla_uow.exceptions import (
    ConflictError,
    IllegalTransactionStateError,
    RollbackOnlyError,
    TransactionRequiredError,
)


class TestConstruction:
    async def test_accepts_a_url_and_disposes_its_engine_on_exit(
        self, engine: AsyncEngine, database_url: str
    ) -> None:
        closed: list[object] = []
        async with TransactionManager(database_url) as tm:
            event.listen(tm.engine.sync_engine, "close", lambda *args: closed.append(args))
            async with tm.transaction() as session:
                session.add(Account(name="Ann"))
        # Closed by the dispose at exit (or already at check-in, with a NullPool).
        assert len(closed) == 1
        assert await committed_names(engine) == ["Ann"]

    async def test_accepts_an_engine_and_keeps_it_usable_after_exit(
        self, engine: AsyncEngine
    ) -> None:
        async with TransactionManager(engine) as tm:
            assert tm.engine is engine
            async with tm.transaction() as session:
                session.add(Account(name="Ann"))
        assert await committed_names(engine) == ["Ann"]

    async def test_accepts_a_bound_sessionmaker_and_uses_its_session_class(
        self, engine: AsyncEngine
    ) -> None:
        class MySession(AsyncSession):
            pass

        tm = TransactionManager(async_sessionmaker(engine, class_=MySession))
        async with tm.transaction() as session:
            assert isinstance(session, MySession)
        assert tm.engine is engine

    async def test_installs_the_sqlite_fix_on_an_engine_it_creates(
        self, engine: AsyncEngine, database_url: str
    ) -> None:
        async def fail_after_release() -> None:
            async with TransactionManager(database_url) as tm, tm.transaction():
                async with tm.transaction(propagation=Propagation.NESTED) as session:
                    session.add(Account(name="released"))
                raise RuntimeError("outer fails")

        with pytest.raises(RuntimeError, match="outer fails"):
            await fail_after_release()
        assert await committed_names(engine) == []

    def test_rejects_an_unbound_sessionmaker(self) -> None:
        with pytest.raises(ValueError, match="must be bound"):
            TransactionManager(async_sessionmaker())

    def test_rejects_engine_options_with_an_engine(self, engine: AsyncEngine) -> None:
        with pytest.raises(TypeError, match="only with a URL"):
            TransactionManager(engine, echo=True)  # type: ignore[call-overload]

    def test_rejects_other_types(self) -> None:
        with pytest.raises(TypeError, match="not int"):
            TransactionManager(42)  # type: ignore[call-overload]

    async def test_objects_stay_readable_after_commit(self, tm: TransactionManager) -> None:
        async with tm.transaction() as session:
            account = Account(name="Ann", balance=5)
            session.add(account)
        # expire_on_commit=False: no lazy load (which would fail outside a greenlet).
        assert (account.id, account.name, account.balance) == (1, "Ann", 5)

    async def test_forces_expire_on_commit_off_for_a_given_sessionmaker(
        self, engine: AsyncEngine
    ) -> None:
        tm = TransactionManager(async_sessionmaker(engine, expire_on_commit=True))
        async with tm.transaction() as session:
            account = Account(name="Ann")
            session.add(account)
        assert account.name == "Ann"


class TestRootScope:
    async def test_commits_on_a_clean_exit(self, tm: TransactionManager) -> None:
        async with tm.transaction() as session:
            session.add(Account(name="Ann"))
        assert await committed_names(tm.engine) == ["Ann"]

    async def test_rolls_back_when_an_exception_leaves_it(self, tm: TransactionManager) -> None:
        async def fail() -> None:
            async with tm.transaction() as session:
                session.add(Account(name="Ann"))
                await session.flush()
                raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            await fail()
        assert await committed_names(tm.engine) == []

    async def test_session_is_the_ambient_session_inside_the_scope(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction() as session:
            assert tm.session is session
            assert tm.in_transaction
        assert not tm.in_transaction

    def test_session_outside_a_transaction_raises(self, tm: TransactionManager) -> None:
        with pytest.raises(TransactionRequiredError, match=r"tm\.transaction"):
            tm.session  # noqa: B018

    async def test_a_scope_can_be_entered_only_once(self, tm: TransactionManager) -> None:
        scope = tm.transaction()
        async with scope:
            pass
        with pytest.raises(IllegalTransactionStateError, match="only once"):
            async with scope:
                pass

    async def test_consecutive_scopes_use_fresh_sessions(self, tm: TransactionManager) -> None:
        async with tm.transaction() as first:
            pass
        async with tm.transaction() as second:
            pass
        assert first is not second

    def test_rejects_a_propagation_that_is_not_a_propagation(self, tm: TransactionManager) -> None:
        with pytest.raises(ValueError, match=r"Propagation\.REQUIRES_NEW"):
            tm.transaction(propagation="requires_new")  # type: ignore[call-overload]


class TestIntegrityErrorsAtTheEnd:
    async def test_a_violation_flushed_at_commit_raises_conflict_error(
        self, tm: TransactionManager
    ) -> None:
        async def duplicate() -> None:
            async with tm.transaction() as session:
                session.add(Account(id=1, name="Ann"))
                session.add(Account(id=1, name="Bob"))

        with pytest.raises(ConflictError) as caught:
            await duplicate()
        assert isinstance(caught.value.__cause__, IntegrityError)
        assert await committed_names(tm.engine) == []


class TestSavepoints:
    async def test_a_released_savepoint_rolls_back_with_its_transaction(
        self, tm: TransactionManager
    ) -> None:
        async def fail() -> None:
            async with tm.transaction():
                async with tm.transaction(propagation=Propagation.NESTED) as session:
                    session.add(Account(name="inside the savepoint"))
                raise RuntimeError("outer fails after the savepoint was released")

        with pytest.raises(RuntimeError, match="outer fails"):
            await fail()
        assert await committed_names(tm.engine) == []

    async def test_a_rolled_back_savepoint_keeps_the_outer_work(
        self, tm: TransactionManager
    ) -> None:
        async def fail() -> None:
            async with tm.transaction(propagation=Propagation.NESTED) as inner:
                inner.add(Account(name="inner"))
                await inner.flush()
                raise ValueError("inner fails")

        async with tm.transaction() as session:
            session.add(Account(name="outer"))
            with pytest.raises(ValueError, match="inner fails"):
                await fail()
            session.add(Account(name="after"))
        assert await committed_names(tm.engine) == ["outer", "after"]

    @pytest.mark.backends("sqlite")
    @pytest.mark.parametrize(("read_only", "takes_write_lock"), [(False, True), (True, False)])
    async def test_sqlite_transactions_begin_explicitly_writers_immediately(
        self, tm: TransactionManager, read_only: bool, takes_write_lock: bool
    ) -> None:
        other = sqlite3.connect(str(tm.engine.url.database), timeout=0, isolation_level=None)
        try:
            async with tm.transaction(read_only=read_only) as session:
                # Begun at once (not at the first write): BEGIN IMMEDIATE holds the write
                # lock from the start, a read-only plain BEGIN does not.
                assert session.in_transaction()
                if takes_write_lock:
                    with pytest.raises(sqlite3.OperationalError, match="locked"):
                        other.execute("BEGIN IMMEDIATE")
                else:
                    other.execute("BEGIN IMMEDIATE")
                    other.execute("ROLLBACK")
                await session.execute(select(Account))
        finally:
            other.close()

    @pytest.mark.backends("sqlite")
    async def test_concurrent_sqlite_writers_that_read_first_queue_instead_of_failing(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction() as session:
            session.add(Account(name="counter", balance=0))

        async def increment() -> None:
            async with tm.transaction() as session:
                account = await session.scalar(select(Account).where(Account.name == "counter"))
                assert account is not None
                await asyncio.sleep(0.01)  # both read before either writes
                account.balance += 1

        await asyncio.gather(*(increment() for _ in range(5)))
        async with tm.transaction() as session:
            counter = await session.scalar(select(Account).where(Account.name == "counter"))
            assert counter is not None
            assert counter.balance == 5

    @pytest.mark.backends("sqlite")
    async def test_the_sqlite_fix_is_installed_once_per_engine(self, engine: AsyncEngine) -> None:
        TransactionManager(engine)
        tm = TransactionManager(engine)
        async with tm.transaction() as session:  # a second BEGIN would fail
            session.add(Account(name="Ann"))
        assert await committed_names(engine) == ["Ann"]


class TestIsolationLevel:
    def test_rejects_an_unknown_level_naming_the_valid_ones(self, tm: TransactionManager) -> None:
        with pytest.raises(
            ValueError, match=r"unknown isolation level 'SERIALISABLE'.*SERIALIZABLE"
        ):
            tm.transaction(isolation_level="SERIALISABLE")

    def test_rejects_autocommit_as_a_level(self, tm: TransactionManager) -> None:
        with pytest.raises(ValueError, match="NOT_SUPPORTED"):
            tm.transaction(isolation_level="AUTOCOMMIT")

    @pytest.mark.backends("postgresql")
    async def test_applies_the_level_where_the_scope_begins(self, tm: TransactionManager) -> None:
        async with tm.transaction(isolation_level="serializable") as session:
            level = await session.scalar(text("SHOW transaction_isolation"))
        assert level == "serializable"
        async with tm.transaction() as session:
            level = await session.scalar(text("SHOW transaction_isolation"))
        assert level == "read committed"

    @pytest.mark.backends("sqlite")
    async def test_applies_read_uncommitted_on_sqlite(self, tm: TransactionManager) -> None:
        async with tm.transaction(isolation_level="READ UNCOMMITTED") as session:
            assert await session.scalar(text("PRAGMA read_uncommitted")) == 1
        async with tm.transaction() as session:
            assert await session.scalar(text("PRAGMA read_uncommitted")) == 0

    async def test_a_joining_scope_with_another_level_raises(self, tm: TransactionManager) -> None:
        async with tm.transaction(isolation_level="SERIALIZABLE"):
            other = (
                "READ COMMITTED" if tm.engine.dialect.name == "postgresql" else "READ UNCOMMITTED"
            )
            with pytest.raises(IllegalTransactionStateError, match="isolation level"):
                async with tm.transaction(isolation_level=other):
                    pass
            with pytest.raises(IllegalTransactionStateError, match="isolation level"):
                async with tm.transaction(propagation=Propagation.NESTED, isolation_level=other):
                    pass

    async def test_a_joining_scope_with_the_same_level_joins(self, tm: TransactionManager) -> None:
        async with (
            tm.transaction(isolation_level="SERIALIZABLE") as outer,
            tm.transaction(isolation_level="SERIALIZABLE") as inner,
        ):
            assert inner is outer

    async def test_a_joining_scope_may_name_the_database_default(
        self, tm: TransactionManager
    ) -> None:
        default = {"postgresql": "READ COMMITTED", "sqlite": "SERIALIZABLE"}.get(
            tm.engine.dialect.name, "REPEATABLE READ"
        )
        async with tm.transaction() as outer, tm.transaction(isolation_level=default) as inner:
            assert inner is outer


class TestReadOnly:
    @pytest.mark.backends("postgresql")
    async def test_begins_a_read_only_transaction_on_postgresql(
        self, tm: TransactionManager
    ) -> None:
        async def write_in_read_only() -> None:
            async with tm.transaction(read_only=True) as session:
                assert await session.scalar(text("SHOW transaction_read_only")) == "on"
                with pytest.raises(DBAPIError, match="read-only transaction"):
                    await session.execute(text("DELETE FROM accounts"))

        with pytest.raises(RollbackOnlyError):
            await write_in_read_only()
        async with tm.transaction() as session:
            assert await session.scalar(text("SHOW transaction_read_only")) == "off"

    @pytest.mark.backends("sqlite")
    async def test_sets_query_only_on_sqlite_and_resets_it_before_checkin(
        self, tm: TransactionManager
    ) -> None:
        async def write_in_read_only() -> None:
            async with tm.transaction(read_only=True) as session:
                assert await session.scalar(text("PRAGMA query_only")) == 1
                with pytest.raises(DBAPIError, match="readonly database"):
                    await session.execute(text("DELETE FROM accounts"))

        with pytest.raises(RollbackOnlyError):
            await write_in_read_only()
        async with tm.transaction() as session:
            assert await session.scalar(text("PRAGMA query_only")) == 0
            session.add(Account(name="Ann"))
        assert await committed_names(tm.engine) == ["Ann"]

    async def test_a_read_write_scope_cannot_join_a_read_only_one(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction(read_only=True):
            with pytest.raises(IllegalTransactionStateError, match="read-only"):
                async with tm.transaction():
                    pass

    async def test_a_read_only_scope_can_join_a_read_write_one(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction() as outer, tm.transaction(read_only=True) as inner:
            assert inner is outer

    @pytest.mark.backends("mariadb")
    async def test_begins_a_read_only_transaction_on_mariadb(self, tm: TransactionManager) -> None:
        async def write_in_read_only() -> None:
            async with tm.transaction(read_only=True) as session:
                with pytest.raises(DBAPIError, match="READ ONLY"):
                    await session.execute(text("DELETE FROM accounts"))

        with pytest.raises(RollbackOnlyError):
            await write_in_read_only()


class TestOptions:
    @pytest.mark.parametrize("value", ["false", 0, None])
    async def test_read_only_must_be_a_bool(self, tm: TransactionManager, value: object) -> None:
        with pytest.raises(TypeError, match="read_only must be True or False"):
            tm.transaction(read_only=value)  # type: ignore[call-overload]
        assert tm.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
