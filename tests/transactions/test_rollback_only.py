"""A database error makes its transaction rollback-only; every repository call is atomic.

Any error the database raises inside a transaction (a repository call, a flush, a
``session.execute``) marks the innermost level, the NESTED savepoint it was raised in or
else the root, rollback-only: a caller that swallows the error cannot commit the rest.
Run on SQLite, PostgreSQL and MariaDB, whose transactions react differently to a failed
statement (PostgreSQL aborts the transaction, the others keep it going).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from sqlalchemy import MetaData, String, inspect, literal_column, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import (
    AsyncRepository,
    ConflictError,
    Propagation,
    RollbackOnlyError,
    SQLAlchemyUnitOfWork,
    TransactionManager,
    transactional,
)

pytestmark = [pytest.mark.reliability, pytest.mark.backends("sqlite", "postgresql", "mariadb")]


class Base(DeclarativeBase):
    pass


class Entry(Base):
    __tablename__ = "rollback_only_entries"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    ref: Mapped[str] = mapped_column(String(20), unique=True)


class EntryRepository(AsyncRepository[Entry]):
    pass


class EntryUnitOfWork(SQLAlchemyUnitOfWork):
    entries: EntryRepository


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


async def committed(engine: AsyncEngine) -> dict[int, str]:
    """The committed entries (id -> ref), read on a fresh connection."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(Entry.id, Entry.ref).order_by(Entry.id))
        return {row.id: row.ref for row in rows}


async def seed(tm: TransactionManager, **refs: int) -> None:
    """Commit one entry per keyword: ``ref=id``."""
    async with tm.transaction() as session:
        session.add_all(Entry(id=id_, ref=ref) for ref, id_ in refs.items())


def rows(*pairs: tuple[int, str]) -> list[dict[str, Any]]:
    return [{"id": id_, "ref": ref} for id_, ref in pairs]


async def failing_create_many(tm: TransactionManager) -> None:
    """Two good rows, then one whose ``ref`` is taken: one statement per row."""
    await EntryRepository(tm.session).create_many(
        rows((10, "ok-1"), (11, "ok-2"), (12, "taken"), (13, "ok-4")), chunk_size=1
    )


async def failing_insert_many(tm: TransactionManager) -> None:
    await EntryRepository(tm.session).insert_many(
        rows((10, "ok-1"), (11, "ok-2"), (12, "taken"), (13, "ok-4")), chunk_size=1
    )


async def failing_update_many(tm: TransactionManager) -> None:
    """Two rows renamed by one statement each, then a third renamed to a taken ref."""
    await EntryRepository(tm.session).update_many(
        [{"id": 2, "ref": "new-2"}, {"id": 3, "ref": "new-3"}, {"id": 4, "ref": "taken"}],
        chunk_size=1,
    )


async def failing_execute(tm: TransactionManager) -> None:
    await tm.session.execute(text("SELECT no_such_column FROM rollback_only_entries"))


FAILING_CALLS = {
    "create_many": failing_create_many,
    "insert_many": failing_insert_many,
    "update_many": failing_update_many,
}

SEEDED = {1: "taken", 2: "two", 3: "three", 4: "four"}


class TestACaughtDatabaseError:
    @pytest.mark.parametrize("call", sorted(FAILING_CALLS))
    async def test_makes_the_scope_exit_raise_and_commits_nothing_of_the_call(
        self, tm: TransactionManager, call: str
    ) -> None:
        await seed(tm, taken=1, two=2, three=3, four=4)
        ran: list[str] = []
        conflicts: list[ConflictError] = []

        async def swallow_a_failed_call() -> None:
            async with tm.transaction():
                await EntryRepository(tm.session).create(id=5, ref="before")
                tm.on_commit(lambda: ran.append("committed"))
                try:
                    await FAILING_CALLS[call](tm)
                except ConflictError as exc:
                    conflicts.append(exc)

        with pytest.raises(RollbackOnlyError) as caught:
            await swallow_a_failed_call()
        assert isinstance(caught.value.__cause__, IntegrityError)
        assert conflicts[0].__cause__ is caught.value.__cause__  # the first error
        assert ran == []
        assert await committed(tm.engine) == SEEDED
        assert tm.engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    async def test_of_a_single_row_create_rolls_back_the_earlier_work(
        self, tm: TransactionManager
    ) -> None:
        await seed(tm, taken=1)

        async def swallow_a_conflict() -> None:
            async with tm.transaction():
                repo = EntryRepository(tm.session)
                await repo.create(id=5, ref="before")
                with contextlib.suppress(ConflictError):
                    await repo.create(id=6, ref="taken")

        with pytest.raises(RollbackOnlyError):
            await swallow_a_conflict()
        assert await committed(tm.engine) == {1: "taken"}

    async def test_of_a_statement_run_on_the_session_marks_it_too(
        self, tm: TransactionManager
    ) -> None:
        async def swallow_an_error() -> None:
            async with tm.transaction():
                await EntryRepository(tm.session).create(id=5, ref="before")
                with contextlib.suppress(DBAPIError):
                    await failing_execute(tm)

        with pytest.raises(RollbackOnlyError) as caught:
            await swallow_an_error()
        assert isinstance(caught.value.__cause__, DBAPIError)
        assert await committed(tm.engine) == {}

    async def test_of_a_repository_read_marks_it_too(self, tm: TransactionManager) -> None:
        async def swallow_a_read_error() -> None:
            async with tm.transaction():
                repo = EntryRepository(tm.session)
                await repo.create(id=5, ref="before")
                with contextlib.suppress(DBAPIError):
                    await repo.list(literal_column("no_such_column") == 1)

        with pytest.raises(RollbackOnlyError):
            await swallow_a_read_error()
        assert await committed(tm.engine) == {}

    async def test_makes_an_explicit_commit_raise(self, tm: TransactionManager) -> None:
        ran: list[str] = []
        async with EntryUnitOfWork(tm, autocommit=False) as uow:
            await uow.entries.create(id=5, ref="before")
            tm.on_commit(lambda: ran.append("committed"))
            with pytest.raises(DBAPIError):
                await failing_execute(tm)
            with pytest.raises(RollbackOnlyError):
                await uow.commit()
            # The unit of work goes on in a fresh transaction.
            await uow.entries.create(id=6, ref="after")
            await uow.commit()
        assert ran == []
        assert await committed(tm.engine) == {6: "after"}

    async def test_is_forgotten_after_an_explicit_rollback(self, tm: TransactionManager) -> None:
        async with EntryUnitOfWork(tm, autocommit=False) as uow:
            with pytest.raises(DBAPIError):
                await failing_execute(tm)
            await uow.rollback()
            await uow.entries.create(id=6, ref="after")
            await uow.commit()
        assert await committed(tm.engine) == {6: "after"}

    async def test_does_not_raise_when_an_explicit_unit_of_work_discards_anyway(
        self, tm: TransactionManager
    ) -> None:
        async with EntryUnitOfWork(tm, autocommit=False):
            with pytest.raises(DBAPIError):
                await failing_execute(tm)
        assert await committed(tm.engine) == {}

    async def test_marks_a_joined_units_owner(self, tm: TransactionManager) -> None:
        async def swallow_inside_a_joined_unit() -> None:
            async with tm.transaction():
                await EntryRepository(tm.session).create(id=5, ref="before")
                async with EntryUnitOfWork(tm):
                    with contextlib.suppress(DBAPIError):
                        await failing_execute(tm)

        with pytest.raises(RollbackOnlyError):
            await swallow_inside_a_joined_unit()
        assert await committed(tm.engine) == {}

    async def test_outside_a_transaction_scope_changes_nothing_for_the_next_one(
        self, tm: TransactionManager
    ) -> None:
        async with tm.engine.connect() as conn:
            with pytest.raises(DBAPIError):
                await conn.execute(text("SELECT no_such_column FROM rollback_only_entries"))
        async with tm.transaction():
            await EntryRepository(tm.session).create(id=5, ref="after")
        assert await committed(tm.engine) == {5: "after"}


class TestErrorsSQLAlchemyHandles:
    async def test_a_probe_that_expects_its_error_leaves_the_transaction_alone(
        self, tm: TransactionManager
    ) -> None:
        """MySQL's has_table() runs DESCRIBE and reads the error as False (so do migrations)."""
        async with tm.transaction() as session:
            await EntryRepository(session).create(id=1, ref="kept")
            conn = await session.connection()
            assert not await conn.run_sync(lambda c: inspect(c).has_table("no_such_table"))
            await EntryRepository(session).create(id=2, ref="also kept")
        assert await committed(tm.engine) == {1: "kept", 2: "also kept"}


class TestNested:
    @pytest.mark.parametrize("call", sorted(FAILING_CALLS))
    async def test_keeps_the_outer_work_and_none_of_the_failed_call(
        self, tm: TransactionManager, call: str
    ) -> None:
        await seed(tm, taken=1, two=2, three=3, four=4)
        ran: list[str] = []
        async with tm.transaction() as session:
            await EntryRepository(session).create(id=5, ref="before")
            tm.on_commit(lambda: ran.append("outer"))

            async def fail_in_a_savepoint() -> None:
                async with tm.transaction(propagation=Propagation.NESTED):
                    tm.on_commit(lambda: ran.append("savepoint"))
                    await FAILING_CALLS[call](tm)

            with pytest.raises(ConflictError):
                await fail_in_a_savepoint()
            # The rows the call sent before failing left the identity map too.
            assert await session.get(Entry, 10) is None
            assert await session.get(Entry, 2) is not None
            await EntryRepository(session).create(id=6, ref="after")
        assert ran == ["outer"]
        assert await committed(tm.engine) == {**SEEDED, 5: "before", 6: "after"}

    async def test_a_swallowed_error_rolls_back_the_savepoint_and_raises_at_its_exit(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction():
            await EntryRepository(tm.session).create(id=5, ref="before")

            async def swallow_in_a_savepoint() -> None:
                async with tm.transaction(propagation=Propagation.NESTED):
                    await EntryRepository(tm.session).create(id=6, ref="inside")
                    with contextlib.suppress(DBAPIError):
                        await failing_execute(tm)

            with pytest.raises(RollbackOnlyError) as caught:
                await swallow_in_a_savepoint()
            assert isinstance(caught.value.__cause__, DBAPIError)
        assert await committed(tm.engine) == {5: "before"}

    async def test_an_error_after_a_released_savepoint_marks_the_root(
        self, tm: TransactionManager
    ) -> None:
        async def fail_after_a_savepoint() -> None:
            async with tm.transaction():
                async with tm.transaction(propagation=Propagation.NESTED):
                    await EntryRepository(tm.session).create(id=5, ref="inside")
                with contextlib.suppress(DBAPIError):
                    await failing_execute(tm)

        with pytest.raises(RollbackOnlyError):
            await fail_after_a_savepoint()
        assert await committed(tm.engine) == {}

    async def test_try_and_continue_on_conflict(self, tm: TransactionManager) -> None:
        await seed(tm, taken=1)

        async def create_if_free(id_: int, ref: str) -> bool:
            try:
                async with tm.transaction(propagation=Propagation.NESTED):
                    await EntryRepository(tm.session).create(id=id_, ref=ref)
            except ConflictError:
                return False
            return True

        async with tm.transaction():
            created = [
                await create_if_free(5, "five"),
                await create_if_free(6, "taken"),
                await create_if_free(7, "seven"),
            ]
        assert created == [True, False, True]
        assert await committed(tm.engine) == {1: "taken", 5: "five", 7: "seven"}


class TestRetries:
    @pytest.mark.backends("postgresql")
    async def test_a_swallowed_serialization_failure_is_still_retried(
        self, tm: TransactionManager
    ) -> None:
        attempts: list[int] = []

        @transactional(tm, retries=2, retry_base_delay=0)
        async def write() -> None:
            attempts.append(len(attempts) + 1)
            await EntryRepository(tm.session).create(id=len(attempts), ref=f"try-{len(attempts)}")
            if len(attempts) == 1:
                with contextlib.suppress(DBAPIError):
                    await tm.session.execute(
                        text(
                            "DO $$ BEGIN RAISE EXCEPTION 'conflict' "
                            "USING ERRCODE = 'serialization_failure'; END $$"
                        )
                    )

        await write()
        assert attempts == [1, 2]
        assert await committed(tm.engine) == {2: "try-2"}
