"""Per-test isolation: the pytest plugin's rolled-back transaction vs recreating the schema.

Each simulated test does the same work (a unit of work creating a row in three of the
tables and committing, then a count) and is isolated in one of two ways:

* ``rollback``: what the ``sqla_uow_tm`` fixture does: one connection, one outer
  transaction, every commit a savepoint release, rolled back at the end; with the
  plugin's own engine (a ``NullPool``: a new connection per test) and with a pooled
  engine (a ``sqla_uow_engine`` fixture of your own, tests in one event loop);
* ``recreate``: ``metadata.drop_all`` + ``metadata.create_all`` before the test, then the
  work with an ordinary `TransactionManager` that really commits.

The schema has 20 tables (each with a unique and an ordinary index, and a foreign key
to the previous table). The run reports the median time per test of each way and the
ratios recreate / rollback. It is a measurement, not a timed test: numbers are only
comparable within one run on one machine.

    python benchmarks/rollback.py                               # SQLite file
    python benchmarks/rollback.py --postgres-url postgresql+asyncpg://postgres@127.0.0.1/test

The PostgreSQL URL defaults to ``SQLA_UOW_TEST_POSTGRES_URL``; the run creates a database
of its own on that server and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import ForeignKey, Integer, MetaData, String, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool

from run import private_postgres  # this folder is the script's, first on sys.path
from sqla_uow import TransactionManager
from sqla_uow.testing.pytest_plugin import _test_transaction

TABLES = 20


class Base(DeclarativeBase):
    metadata = MetaData()


def _table(index: int) -> type[Base]:
    attributes: dict[str, object] = {
        "__tablename__": f"bench_t{index:02d}",
        "id": mapped_column(Integer, primary_key=True),
        "code": mapped_column(String(40), unique=True),
        "name": mapped_column(String(100), index=True),
        "__annotations__": {"id": Mapped[int], "code": Mapped[str], "name": Mapped[str]},
    }
    if index > 0:
        attributes["parent_id"] = mapped_column(
            ForeignKey(f"bench_t{index - 1:02d}.id"), nullable=True
        )
        attributes["__annotations__"]["parent_id"] = Mapped[int | None]  # type: ignore[index]
    return type(f"T{index:02d}", (Base,), attributes)


MODELS = [_table(i) for i in range(TABLES)]


async def work(tm: TransactionManager, n: int) -> None:
    """The body of one simulated test: write three rows, commit, read back."""
    async with tm.transaction() as session:
        for model in MODELS[:3]:
            session.add(model(code=f"c{n}", name=f"row {n}"))
    async with tm.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(MODELS[0])) >= 1


async def by_rollback(engine: AsyncEngine, n: int) -> None:
    async with _test_transaction(engine) as tm:
        await work(tm, n)


async def by_recreate(engine: AsyncEngine, n: int) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    await work(TransactionManager(engine), n)


async def median_ms(
    engine: AsyncEngine, test: Callable[[AsyncEngine, int], Awaitable[None]], runs: int
) -> float:
    times: list[float] = []
    for n in range(runs):
        start = time.perf_counter()
        await test(engine, n)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def bench(name: str, url: str, runs: int) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    pooled = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.run_sync(Base.metadata.create_all)
        rollback = await median_ms(engine, by_rollback, runs)
        rollback_pooled = await median_ms(pooled, by_rollback, runs)
        await pooled.dispose()
        recreate = await median_ms(engine, by_recreate, runs)
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
    finally:
        await pooled.dispose()
        await engine.dispose()
    print(
        f"{name:<12}{TABLES:>7}{runs:>6}{rollback:>15.2f}{rollback_pooled:>15.2f}"
        f"{recreate:>15.2f}{recreate / rollback:>9.1f}x{recreate / rollback_pooled:>9.1f}x"
    )


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres-url", default=os.environ.get("SQLA_UOW_TEST_POSTGRES_URL"))
    parser.add_argument("--runs", type=int, default=30, help="simulated tests per way")
    args = parser.parse_args(argv)
    print(
        f"{'backend':<12}{'tables':>7}{'runs':>6}{'rollback ms':>15}{'pooled ms':>15}"
        f"{'recreate ms':>15}{'ratio':>10}{'pooled':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        await bench("sqlite", f"sqlite+aiosqlite:///{tmp}/bench.db", args.runs)
    if args.postgres_url:
        url, drop = await private_postgres(args.postgres_url)
        try:
            await bench("postgresql", url, args.runs)
        finally:
            await drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
