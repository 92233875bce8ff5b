"""The same behaviour on PostgreSQL through asyncpg and through psycopg 3.

Every test here runs once per driver against the session's PostgreSQL database, whatever
the driver of ``SQLA_UOW_TEST_POSTGRES_URL`` (CI also runs the whole PostgreSQL tier
with each). They pin what differs between the drivers underneath: error attributes
(SQLSTATE, constraint and column names), row counts of ``INSERT``, and how a list
travels as an array parameter.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import CheckConstraint, ForeignKey, Numeric, String, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import AsyncRepository, ConflictError, TransactionManager
from sqla_uow._errors import is_retryable_error, sqlstate_of

pytestmark = pytest.mark.backends("postgresql")

DRIVERS = ["asyncpg", "psycopg"]


class Base(DeclarativeBase):
    pass


class Shelf(Base):
    __tablename__ = "driver_shelf"

    id: Mapped[int] = mapped_column(primary_key=True)


class Volume(Base):
    __tablename__ = "driver_volume"
    __table_args__ = (CheckConstraint("pages > 0", name="ck_volume_pages"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    isbn: Mapped[str] = mapped_column(String(20), unique=True)
    title: Mapped[str] = mapped_column(String(80))
    pages: Mapped[int] = mapped_column(default=1)
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2), default=Decimal("1.00"))
    shelf_id: Mapped[int | None] = mapped_column(
        ForeignKey("driver_shelf.id", name="fk_volume_shelf")
    )


class VolumeRepository(AsyncRepository[Volume]):
    pass


@pytest.fixture(params=DRIVERS)
async def driver_engine(
    request: pytest.FixtureRequest, backend: str, database_url: str
) -> AsyncIterator[AsyncEngine]:
    """An engine on the session's PostgreSQL database with the parameter's driver."""
    url = make_url(database_url).set(drivername=f"postgresql+{request.param}")
    engine = create_async_engine(url)
    assert engine.dialect.driver == request.param
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(
            text(
                "INSERT INTO driver_volume (isbn, title, pages, price) "
                "VALUES ('1', 'One', 10, 9.99)"
            )
        )
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
        await engine.dispose()


async def conflict_of(engine: AsyncEngine, **row: Any) -> ConflictError:
    async with AsyncSession(engine) as session:
        with pytest.raises(ConflictError) as info:
            await VolumeRepository(session).insert_many([{"isbn": "2", "title": "Two", **row}])
    return info.value


class TestErrors:
    @pytest.mark.parametrize(
        ("row", "kind", "code", "constraint", "columns"),
        [
            ({"isbn": "1"}, "unique", "23505", "driver_volume_isbn_key", ("isbn",)),
            ({"shelf_id": 9}, "foreign_key", "23503", "fk_volume_shelf", ("shelf_id",)),
            ({"title": None}, "not_null", "23502", None, ("title",)),
            ({"pages": 0}, "check", "23514", "ck_volume_pages", ()),
        ],
    )
    async def test_conflicts_carry_kind_code_constraint_and_columns(
        self,
        driver_engine: AsyncEngine,
        row: dict[str, Any],
        kind: str,
        code: str,
        constraint: str | None,
        columns: tuple[str, ...],
    ) -> None:
        error = await conflict_of(driver_engine, **row)
        assert (error.kind, error.code, error.constraint) == (kind, code, constraint)
        assert error.columns == columns
        async with AsyncSession(driver_engine) as session:  # and nothing was written
            assert await VolumeRepository(session).count() == 1

    async def test_a_serialization_failure_is_retryable(self, driver_engine: AsyncEngine) -> None:
        """Two SERIALIZABLE transactions that each read what the other writes: one fails."""
        sessions = [AsyncSession(driver_engine) for _ in range(2)]
        failures: list[BaseException] = []
        try:
            for session in sessions:
                conn = await session.connection(
                    execution_options={"isolation_level": "SERIALIZABLE"}
                )
                await conn.execute(text("SELECT sum(pages) FROM driver_volume"))
            for n, session in enumerate(sessions):
                await session.execute(
                    text(
                        "INSERT INTO driver_volume (isbn, title, pages, price) "
                        "VALUES (:isbn, 't', 1, 1)"
                    ),
                    {"isbn": f"s{n}"},
                )
            for session in sessions:
                try:
                    await session.commit()
                except sa_exc.DBAPIError as exc:
                    failures.append(exc)
        finally:
            for session in sessions:
                await session.close()
        assert len(failures) == 1
        assert sqlstate_of(failures[0]) == "40001"
        assert is_retryable_error(failures[0])

    async def test_other_database_errors_are_not_retryable(
        self, driver_engine: AsyncEngine
    ) -> None:
        async with driver_engine.connect() as conn:
            with pytest.raises(sa_exc.DBAPIError) as info:
                await conn.execute(text("SELECT 1 / 0"))
        assert sqlstate_of(info.value) == "22012"
        assert not is_retryable_error(info.value)


class TestRowCounts:
    async def test_insert_and_upsert_count_the_rows_written(
        self, driver_engine: AsyncEngine
    ) -> None:
        async with AsyncSession(driver_engine) as session:
            volumes = VolumeRepository(session)
            rows = [{"isbn": f"n{n}", "title": f"New {n}"} for n in range(5)]
            assert await volumes.insert_many(rows) == 5
            upsert = [{"isbn": "1", "title": "One again"}, {"isbn": "u", "title": "Upserted"}]
            assert await volumes.upsert_many(upsert, on_conflict=("isbn",)) == 2
            assert await volumes.upsert_many(upsert, on_conflict=("isbn",), update=()) == 0
            await session.commit()
            titles = {v.isbn: v.title for v in await volumes.list()}
        assert len(titles) == 7
        assert titles["1"] == "One again"


class TestArrays:
    async def test_an_in_list_of_mixed_numbers_matches(self, driver_engine: AsyncEngine) -> None:
        async with AsyncSession(driver_engine) as session:
            volumes = VolumeRepository(session)
            for prices in ([Decimal("9.99"), 1], ["9.99", 1, 2.5], [9.99, Decimal("3")]):
                found = await volumes.list(price__in=prices)
                assert [v.isbn for v in found] == ["1"], prices
            assert await volumes.list(price__in=[1, 2.5]) == []


class TestCancellation:
    async def test_a_cancelled_statement_leaves_the_manager_usable(
        self, driver_engine: AsyncEngine
    ) -> None:
        tm = TransactionManager(driver_engine)

        async def slow() -> None:
            async with tm.transaction() as session:
                await session.execute(text("SELECT pg_sleep(5)"))

        task = asyncio.ensure_future(slow())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
        async with tm.transaction() as session:
            assert await VolumeRepository(session).count() == 1
        assert driver_engine.pool.checkedout() == 0  # type: ignore[attr-defined,unused-ignore]
