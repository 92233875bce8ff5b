"""Bulk statements are compiled once: a repeated call is served by SQLAlchemy's compiled cache.

Compilations are counted by wrapping the dialect's statement compiler: every compiled
statement, whether through SQLAlchemy's cache on a miss or by ``statement.compile()``,
constructs one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import MetaData, String, bindparam, cast, column, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import AsyncRepository
from sqla_uow._dialects import chunk_sizes


class Base(DeclarativeBase):
    pass


class Part(Base):
    __tablename__ = "cache_part"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(40))
    token: Mapped[str] = mapped_column(String(36), default=lambda: str(uuid.uuid4()))


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def compiled(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The class names of the statements compiled from now on."""
    dialect = engine.sync_engine.dialect
    seen: list[str] = []
    base: Any = dialect.statement_compiler

    class Counting(base):  # type: ignore[misc,valid-type]
        def __init__(self, dialect: Any, statement: Any, *args: Any, **kwargs: Any) -> None:
            seen.append(type(statement).__name__)
            super().__init__(dialect, statement, *args, **kwargs)

    monkeypatch.setattr(dialect, "statement_compiler", Counting)
    return seen


def parts(n: int, prefix: str) -> list[dict[str, Any]]:
    return [{"code": f"{prefix}{i}", "name": f"name {i}"} for i in range(n)]


Call = Callable[[AsyncRepository[Part], str], Awaitable[Any]]

ROWS = 300


async def _update(repo: AsyncRepository[Part], prefix: str) -> Any:
    ids = (await repo.session.scalars(select(Part.id).order_by(Part.id).limit(ROWS))).all()
    return await repo.update_many([{"id": ident, "name": prefix} for ident in ids])


async def _delete(repo: AsyncRepository[Part], prefix: str) -> Any:
    created = await repo.insert_many(parts(ROWS, f"del{prefix}"))
    assert created == ROWS
    rows = await repo.session.scalars(select(Part.id).where(Part.code.startswith(f"del{prefix}")))
    return await repo.delete_many(list(rows))


CALLS: dict[str, Call] = {
    "create_many": lambda repo, prefix: repo.create_many(parts(ROWS, prefix)),
    "insert_many": lambda repo, prefix: repo.insert_many(parts(ROWS, prefix)),
    "update_many": _update,
    "upsert_many": lambda repo, prefix: repo.upsert_many(
        [*parts(ROWS // 2, "a"), *parts(ROWS // 2, prefix)], on_conflict=("code",)
    ),
    "delete_many": _delete,
}


def unnest_inserts_cacheable() -> bool:
    """Whether this SQLAlchemy caches PostgreSQL's ``INSERT ... SELECT`` (2.0.30 does not)."""
    table = Part.__table__
    rows = (
        func.unnest(cast(bindparam("a0"), ARRAY(String(40))))
        .table_valued(column("c0", String(40)))
        .render_derived(name="v0")
    )
    source = select(*rows.c).subquery("v")
    statement = postgresql_insert(table).from_select([table.c.code], select(source.c.c0))
    return statement._generate_cache_key() is not None


class TestCompiledCache:
    @pytest.mark.parametrize("method", list(CALLS))
    async def test_a_repeated_bulk_call_compiles_nothing_new(
        self, session: AsyncSession, compiled: list[str], method: str
    ) -> None:
        backend = session.bind.dialect.name if session.bind is not None else ""
        # SQLAlchemy 2.0.30 cannot cache PostgreSQL's upsert statement: there it compiles
        # that one statement again, and nothing else.
        uncached = (
            ["Insert"]
            if method == "upsert_many"
            and backend == "postgresql"
            and not unnest_inserts_cacheable()
            else []
        )
        repo = AsyncRepository(session, model=Part)
        await repo.insert_many(parts(ROWS, "a"))
        await CALLS[method](repo, "first")
        compiled.clear()
        await CALLS[method](repo, "second")
        assert compiled == uncached

    async def test_calls_of_every_size_share_a_few_statement_shapes(
        self, session: AsyncSession, compiled: list[str]
    ) -> None:
        repo = AsyncRepository(session, model=Part)
        for n in range(200, 264):
            await repo.create_many(parts(n, f"s{n}-"))
        first = len(compiled)
        compiled.clear()
        for n in range(264, 328):
            await repo.create_many(parts(n, f"s{n}-"))
        assert len(compiled) <= first // 4


class TestChunkSizes:
    @pytest.mark.parametrize(
        ("count", "per_statement", "sizes"),
        [
            (0, 100, []),
            (25, 10, [10, 10, 5]),
            (31, 1000, [31]),
            (10_000, 10_900, [8192, 1024, 512, 256, 16]),
            (2500, 1000, [1000, 1000, 256, 128, 64, 32, 20]),
        ],
    )
    def test_the_rest_after_full_statements_is_split_in_powers_of_two(
        self, count: int, per_statement: int, sizes: list[int]
    ) -> None:
        assert chunk_sizes(count, per_statement) == sizes
        assert sum(sizes) == count
