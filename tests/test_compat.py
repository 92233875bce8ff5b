"""`sqla_uow._compat`: each read of a private SQLAlchemy or driver attribute still works.

These run against the installed SQLAlchemy, Python and drivers (CI: the oldest supported
SQLAlchemy on the oldest Python, and the newest), so an internal that moved fails here
with its name instead of somewhere deep in a transaction.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import String, event, inspect, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool

from sqla_uow._compat import (
    add_loaded,
    asyncpg_in_transaction,
    column_annotations,
    deletes_observed,
    failed_flush_error,
    flushed_states,
    on_connect_isolation_level,
    pool_max_overflow,
    raise_driver_error,
    run_in_sqlite3_thread,
    session_is_clean,
    sqlite3_connection,
    sqlite_autocommit,
    sqlite_error_code,
    sqlite_legacy_transaction_control,
)


class _Base(DeclarativeBase):
    pass


class _Note(_Base):
    __tablename__ = "compat_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(50))


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'compat.db'}")
    yield engine
    await engine.dispose()


class TestTransactionReads:
    async def test_finds_the_sqlite3_connection_behind_aiosqlite(
        self, sqlite_engine: AsyncEngine
    ) -> None:
        async with sqlite_engine.connect() as conn:
            raw = await conn.get_raw_connection()
            found = sqlite3_connection(raw.dbapi_connection)
        assert isinstance(found, sqlite3.Connection)

    def test_finds_no_sqlite3_connection_behind_something_else(self) -> None:
        assert sqlite3_connection(object()) is None

    async def test_runs_a_function_on_the_sqlite3_connection_in_the_driver_thread(
        self, sqlite_engine: AsyncEngine
    ) -> None:
        seen: list[tuple[sqlite3.Connection, threading.Thread]] = []

        def call(raw: sqlite3.Connection) -> None:
            seen.append((raw, threading.current_thread()))

        async with sqlite_engine.connect() as conn:
            dbapi_connection = (await conn.get_raw_connection()).dbapi_connection
            done = await conn.run_sync(lambda _: run_in_sqlite3_thread(dbapi_connection, call))
        assert done
        [(raw, thread)] = seen
        assert isinstance(raw, sqlite3.Connection)
        assert thread is not threading.current_thread()

    def test_runs_nothing_on_another_connection(self) -> None:
        assert not run_in_sqlite3_thread(object(), lambda raw: pytest.fail("called"))

    def test_reads_the_legacy_transaction_control_constant(self) -> None:
        if sys.version_info >= (3, 12):
            assert sqlite_legacy_transaction_control() == sqlite3.LEGACY_TRANSACTION_CONTROL
        else:
            assert sqlite_legacy_transaction_control() == -1

    def test_reads_the_autocommit_mode_of_a_sqlite3_connection(self) -> None:
        raw = sqlite3.connect(":memory:")
        try:
            assert sqlite_autocommit(raw) == sqlite_legacy_transaction_control()
        finally:
            raw.close()

    def test_reads_the_result_code_of_a_sqlite3_error(self, tmp_path: Path) -> None:
        path = tmp_path / "locked.db"
        holder = sqlite3.connect(path, isolation_level=None)
        waiter = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            with pytest.raises(sqlite3.OperationalError) as caught:
                waiter.execute("BEGIN EXCLUSIVE")
        finally:
            holder.close()
            waiter.close()
        code = sqlite_error_code(caught.value)
        if sys.version_info >= (3, 11):
            assert code is not None
            assert code & 0xFF == 5  # SQLITE_BUSY
        else:
            assert code is None

    def test_has_no_result_code_on_other_errors(self) -> None:
        assert sqlite_error_code(ValueError("no code")) is None

    async def test_reads_the_isolation_level_set_on_connect(self, tmp_path: Path) -> None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'iso.db'}"
        autocommit = create_async_engine(url, isolation_level="AUTOCOMMIT")
        plain = create_async_engine(url)
        try:
            async with autocommit.connect(), plain.connect():
                pass  # the dialect learns its settings at the first connect
            assert on_connect_isolation_level(autocommit.sync_engine.dialect) == "AUTOCOMMIT"
            assert on_connect_isolation_level(plain.sync_engine.dialect) is None
        finally:
            await autocommit.dispose()
            await plain.dispose()

    async def test_reads_the_max_overflow_of_a_queue_pool(self, tmp_path: Path) -> None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}"
        bounded = create_async_engine(url, poolclass=AsyncAdaptedQueuePool, max_overflow=3)
        unbounded = create_async_engine(url, poolclass=AsyncAdaptedQueuePool, max_overflow=-1)
        unpooled = create_async_engine(url, poolclass=NullPool)
        try:
            assert pool_max_overflow(bounded.pool) == 3
            assert pool_max_overflow(unbounded.pool) is None
            assert pool_max_overflow(unpooled.pool) is None
        finally:
            for engine in (bounded, unbounded, unpooled):
                await engine.dispose()

    async def test_lists_the_objects_whose_changes_were_flushed(
        self, sqlite_engine: AsyncEngine
    ) -> None:
        async with sqlite_engine.begin() as conn:
            await conn.run_sync(_Base.metadata.create_all)
        async with AsyncSession(sqlite_engine) as session, session.begin():
            session.add_all([_Note(id=1, text="one"), _Note(id=2, text="two")])
        async with AsyncSession(sqlite_engine) as session, session.begin():
            one, two = await session.get_one(_Note, 1), await session.get_one(_Note, 2)
            one.text = "changed"
            assert flushed_states(session.sync_session) == set()
            await session.flush()
            async with session.begin_nested():
                two.text = "changed in a savepoint"
                await session.flush()
                states = flushed_states(session.sync_session)
            assert {state.obj() for state in states} == {one, two}

    async def test_tells_whether_a_session_has_anything_to_flush(
        self, sqlite_engine: AsyncEngine
    ) -> None:
        async with sqlite_engine.begin() as conn:
            await conn.run_sync(_Base.metadata.create_all)
        async with AsyncSession(sqlite_engine) as session, session.begin():
            assert session_is_clean(session.sync_session)
            session.add(_Note(id=1, text="one"))
            assert not session_is_clean(session.sync_session)
            await session.flush()
            assert session_is_clean(session.sync_session)
            note = await session.get_one(_Note, 1)
            note.text = "changed"
            assert not session_is_clean(session.sync_session)
            await session.flush()
            await session.delete(note)
            assert not session_is_clean(session.sync_session)

    async def test_finds_the_error_of_a_failed_flush_until_the_rollback(
        self, sqlite_engine: AsyncEngine
    ) -> None:
        async with sqlite_engine.begin() as conn:
            await conn.run_sync(_Base.metadata.create_all)
        async with AsyncSession(sqlite_engine) as session:
            await session.begin()
            session.add(_Note(id=1, text="one"))
            await session.flush()
            assert failed_flush_error(session.sync_session) is None
            session.add(_Note(id=1, text="again"))
            with pytest.raises(IntegrityError) as caught:
                await session.flush()
            assert failed_flush_error(session.sync_session) is caught.value
            await session.rollback()
            assert failed_flush_error(session.sync_session) is None

    def test_tells_whether_listeners_watch_the_orm_delete(self) -> None:
        mapper = _Note.__mapper__
        session = Session()
        assert not deletes_observed(mapper, session)

        def watch(*args: object) -> None:
            pass

        for target, name in ((_Note, "after_delete"), (session, "persistent_to_deleted")):
            event.listen(target, name, watch)
            try:
                assert deletes_observed(mapper, session)
            finally:
                event.remove(target, name, watch)
        assert not deletes_observed(mapper, session)

    async def test_attaches_objects_as_loaded_rows(self, sqlite_engine: AsyncEngine) -> None:
        async with sqlite_engine.begin() as conn:
            await conn.run_sync(_Base.metadata.create_all)
        async with AsyncSession(sqlite_engine) as session:
            rows = [{"id": 1, "text": "one"}, {"id": 2}]
            one, two = add_loaded(session.sync_session, _Note.__mapper__, rows, ("id",))
            assert inspect(one).persistent
            assert not session.dirty
            assert not session.new
            assert await session.get(_Note, 1) is one
            assert one.text == "one"
            assert inspect(two).unloaded == {"text"}
            assert add_loaded(session.sync_session, _Note.__mapper__, [], ("id",)) == []


_POSTGRES_URL = os.environ.get("SQLA_UOW_TEST_POSTGRES_URL", "")
_needs_asyncpg = pytest.mark.skipif(
    "+asyncpg" not in _POSTGRES_URL, reason="needs SQLA_UOW_TEST_POSTGRES_URL with asyncpg"
)


@pytest.fixture
async def asyncpg_engine() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(_POSTGRES_URL, poolclass=NullPool)
    yield engine
    await engine.dispose()


@_needs_asyncpg
class TestDriverCalls:
    async def test_begins_the_adapters_transaction_for_the_asyncpg_connection(
        self, asyncpg_engine: AsyncEngine
    ) -> None:
        async with asyncpg_engine.connect() as conn:
            dbapi_connection = (await conn.get_raw_connection()).dbapi_connection
            async with asyncpg_in_transaction(dbapi_connection) as driver_connection:
                assert driver_connection.is_in_transaction()
                await driver_connection.execute("CREATE TEMP TABLE compat_t (n int)")
            async with asyncpg_in_transaction(dbapi_connection) as again:
                assert again is driver_connection
            assert await conn.scalar(select(1)) == 1  # the same transaction goes on
            await conn.rollback()
            assert not driver_connection.is_in_transaction()
            missing = "SELECT to_regclass('pg_temp.compat_t') IS NULL"
            assert await driver_connection.fetchval(missing)

    async def test_raises_a_driver_error_as_sqlalchemy_would(
        self, asyncpg_engine: AsyncEngine
    ) -> None:
        seen: list[object] = []
        event.listen(asyncpg_engine.sync_engine, "handle_error", seen.append)
        async with asyncpg_engine.connect() as conn:
            dbapi_connection = (await conn.get_raw_connection()).dbapi_connection
            async with asyncpg_in_transaction(dbapi_connection) as driver_connection:
                try:
                    await driver_connection.execute("SELECT 1 / 0")
                except Exception as error:
                    failure = error
            with pytest.raises(DBAPIError) as info:
                await conn.run_sync(raise_driver_error, dbapi_connection, failure, "SELECT 1 / 0")
            assert info.value.orig.__cause__ is failure  # type: ignore[union-attr]
            assert info.value.statement == "SELECT 1 / 0"
            assert len(seen) == 1
            await conn.rollback()


class TestReads:
    def test_reads_the_attribute_key_and_mapper_a_column_expression_carries(self) -> None:
        annotations = column_annotations(_Note.text.expression)
        assert annotations["proxy_key"] == "text"
        assert annotations["parententity"] is _Note.__mapper__

    def test_reads_no_annotations_of_a_plain_table_column_or_other_object(self) -> None:
        assert "proxy_key" not in column_annotations(_Note.__table__.c.text)
        assert column_annotations("text") == {}
