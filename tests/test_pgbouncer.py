"""PostgreSQL behind PgBouncer in transaction pooling mode, with `pgbouncer_options`.

Runs when ``SQLA_UOW_TEST_PGBOUNCER_URL`` points at a PgBouncer in ``pool_mode =
transaction`` in front of the server of ``SQLA_UOW_TEST_POSTGRES_URL`` (``scripts/pg-cluster
up`` starts one and prints both). ``SQLA_UOW_TEST_REQUIRE`` naming ``pgbouncer`` turns the
skip into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import ForeignKey, String, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool

from sqla_uow import (
    AsyncRepository,
    Propagation,
    SQLAlchemyUnitOfWork,
    TransactionManager,
    UnsupportedDialectError,
    pgbouncer_options,
)

BOUNCER_VARIABLE = "SQLA_UOW_TEST_PGBOUNCER_URL"
SERVER_VARIABLE = "SQLA_UOW_TEST_POSTGRES_URL"


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
    title: Mapped[str] = mapped_column(String(50))


class BookRepository(AsyncRepository[Book]):
    pass


class Shelf(SQLAlchemyUnitOfWork):
    authors: AsyncRepository[Author]
    books: BookRepository


class TestOptions:
    def test_asyncpg_statements_live_no_longer_than_a_transaction(self) -> None:
        options = pgbouncer_options("postgresql+asyncpg://app@pooler:6432/shop", pool_size=3)
        args = options["connect_args"]
        assert options["pool_size"] == 3
        assert args["statement_cache_size"] == 0
        assert args["prepared_statement_cache_size"] == 0
        names = {args["prepared_statement_name_func"]() for _ in range(100)}
        assert len(names) == 100

    def test_psycopg_never_prepares(self) -> None:
        options = pgbouncer_options(make_url("postgresql+psycopg://app@pooler:6432/shop"))
        assert options == {"connect_args": {"prepare_threshold": None}}

    def test_connect_args_of_the_caller_win(self) -> None:
        options = pgbouncer_options(
            "postgresql+asyncpg://app@pooler/shop",
            connect_args={"statement_cache_size": 10, "server_settings": {"jit": "off"}},
        )
        assert options["connect_args"]["statement_cache_size"] == 10
        assert options["connect_args"]["server_settings"] == {"jit": "off"}
        assert options["connect_args"]["prepared_statement_cache_size"] == 0

    @pytest.mark.parametrize(
        "url",
        [
            "sqlite+aiosqlite:///shop.db",
            "mysql+aiomysql://root@db/shop",
            "postgresql+psycopg2://x/y",
        ],
    )
    def test_other_urls_are_refused(self, url: str) -> None:
        with pytest.raises(UnsupportedDialectError, match=r"pgbouncer_options\(\)"):
            pgbouncer_options(url)


def _urls() -> tuple[str, str]:
    bouncer, server = os.environ.get(BOUNCER_VARIABLE), os.environ.get(SERVER_VARIABLE)
    if bouncer and server:
        return bouncer, server
    reason = (
        f"PgBouncer tests need {BOUNCER_VARIABLE} and {SERVER_VARIABLE} "
        "(`scripts/pg-cluster up` starts PgBouncer and prints them)"
    )
    required = os.environ.get("SQLA_UOW_TEST_REQUIRE", "").split(",")
    if "pgbouncer" in (name.strip() for name in required):
        pytest.fail(f"{reason}, but SQLA_UOW_TEST_REQUIRE names pgbouncer")
    pytest.skip(reason)


async def _admin(url: str, statement: str) -> None:
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await admin.dispose()


@pytest.fixture(scope="module", params=["asyncpg", "psycopg"])
def bouncer_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL through PgBouncer to a database of this module's own, with the driver of the
    parameter (each test runs with asyncpg and with psycopg 3)."""
    bouncer, server = _urls()
    name = f"sqla_uow_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(bouncer).set(drivername=f"postgresql+{request.param}", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def tm(bouncer_url: str) -> AsyncIterator[TransactionManager]:
    async with TransactionManager(bouncer_url, **pgbouncer_options(bouncer_url)) as manager:
        async with manager.engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.run_sync(Base.metadata.create_all)
        yield manager


async def test_the_pooler_hands_out_server_connections_per_transaction(
    tm: TransactionManager, bouncer_url: str
) -> None:
    """The setting these tests need: one client connection, several server connections.

    Other clients hold transactions open until one of them holds the server connection
    our client's last transaction ran on; our next transaction must then run on another.
    """
    pid = select(func.pg_backend_pid())
    others = create_async_engine(bouncer_url, poolclass=NullPool, **pgbouncer_options(bouncer_url))
    async with tm.engine.connect() as ours, contextlib.AsyncExitStack() as holders:
        holders.push_async_callback(others.dispose)
        async with ours.begin():
            first = (await ours.execute(pid)).scalar_one()
        for _ in range(40):  # PgBouncer's pool has 20 server connections
            holder = await holders.enter_async_context(others.connect())
            await holders.enter_async_context(holder.begin())
            if (await holder.execute(pid)).scalar_one() == first:
                break
        else:
            pytest.fail("no other client was handed our server connection")
        async with ours.begin():
            second = (await ours.execute(pid)).scalar_one()
    assert second != first, "PgBouncer kept the client on one server connection"


async def test_concurrent_units_of_work_commit_everything(tm: TransactionManager) -> None:
    committed: list[str] = []

    async def writer(task: int) -> None:
        for step in range(10):
            name = f"author {task}-{step}"
            async with Shelf(tm) as uow:
                author = await uow.authors.create(name=name)
                await uow.books.create_many(
                    [{"author_id": author.id, "title": f"{name} book {n}"} for n in range(3)]
                )
                assert await uow.books.count(author_id=author.id) == 3
                tm.on_commit(lambda name=name: committed.append(name))
            async with Shelf(tm, read_only=True) as uow:
                assert await uow.authors.exists(name=name)

    await asyncio.gather(*(writer(task) for task in range(20)))
    async with Shelf(tm) as uow:
        assert await uow.authors.count() == 200
        assert await uow.books.count() == 600
    assert len(committed) == 200


async def test_savepoints_and_rollbacks_behind_the_pooler(tm: TransactionManager) -> None:
    async def undone_in_a_savepoint(author: Author) -> None:
        async with tm.transaction(propagation=Propagation.NESTED):
            await BookRepository(tm.session).create(author_id=author.id, title="undone")
            raise ValueError("undone")

    async def rolled_back(task: int) -> None:
        async with Shelf(tm) as uow:
            await uow.authors.create(name=f"lost {task}")
            raise RuntimeError("rolled back")

    async def one(task: int) -> None:
        async with Shelf(tm) as uow:
            kept = await uow.authors.create(name=f"kept {task}")
            with pytest.raises(ValueError, match="undone"):
                await undone_in_a_savepoint(kept)
            await uow.books.create(author_id=kept.id, title="kept")
        with pytest.raises(RuntimeError, match="rolled back"):
            await rolled_back(task)

    await asyncio.gather(*(one(task) for task in range(15)))
    async with Shelf(tm) as uow:
        names = {author.name for author in await uow.authors.list()}
        titles = {book.title for book in await uow.books.list()}
    assert names == {f"kept {task}" for task in range(15)}
    assert titles == {"kept"}


async def test_isolation_and_read_only_stay_inside_their_transaction(
    tm: TransactionManager,
) -> None:
    """Settings of one transaction never leak to the next user of its server connection."""
    leaked: list[tuple[str, str]] = []

    async def special(task: int) -> None:
        for _ in range(10):
            if task % 2:
                async with tm.transaction(isolation_level="SERIALIZABLE") as session:
                    level = await session.scalar(text("SHOW transaction_isolation"))
                    assert level == "serializable"
            else:
                async with tm.transaction(read_only=True) as session:
                    assert await session.scalar(text("SHOW transaction_read_only")) == "on"

    async def plain() -> None:
        for _ in range(20):
            async with tm.transaction() as session:
                level = await session.scalar(text("SHOW transaction_isolation"))
                read_only = await session.scalar(text("SHOW transaction_read_only"))
                if (level, read_only) != ("read committed", "off"):
                    leaked.append((str(level), str(read_only)))

    await asyncio.gather(*(special(task) for task in range(6)), *(plain() for _ in range(6)))
    assert leaked == []
