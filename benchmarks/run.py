"""Benchmark sqla_uow's repository against the hand-written SQLAlchemy ORM code it replaces.

Each operation runs both ways in the same process, on the same database, in alternating
order over several rounds; the table reports the median round of each side:

    python benchmarks/run.py --backend sqlite
    python benchmarks/run.py --backend all --postgres-url postgresql+asyncpg://postgres@127.0.0.1/test
    python benchmarks/run.py --quick          # a smoke run (small sizes, two rounds)

The PostgreSQL URL defaults to ``SQLA_UOW_TEST_POSTGRES_URL``; the run creates a private
database on that server and drops it afterwards. ``ratio`` is repository ops/s divided
by hand-written ops/s (target: at least 0.90). The last table compares ``create_many``
with a loop of ``session.add`` + ``flush`` (target: at least 10x).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import String, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import AsyncRepository


class Base(DeclarativeBase):
    pass


class BenchItem(Base):
    __tablename__ = "bench_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    qty: Mapped[int] = mapped_column(default=0)


class ItemRepository(AsyncRepository[BenchItem]):
    pass


@dataclass
class Sizes:
    rounds: int
    reads: int  # get / list calls per round
    creates: int  # create + flush cycles per round
    bulk: int  # rows per bulk call
    add_loop: int  # rows of the add + flush loop


FULL = Sizes(rounds=7, reads=500, creates=500, bulk=20_000, add_loop=2_000)
QUICK = Sizes(rounds=2, reads=50, creates=50, bulk=2_000, add_loop=200)

Work = Callable[[AsyncSession], Awaitable[None]]


@dataclass
class Result:
    operation: str
    backend: str
    repo: float  # ops/s
    hand: float  # ops/s

    @property
    def ratio(self) -> float:
        return self.repo / self.hand


async def timed(engine: AsyncEngine, work: Work) -> float:
    """Seconds *work* takes in a fresh session; its changes are rolled back afterwards."""
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await session.connection()
        start = time.perf_counter()
        await work(session)
        elapsed = time.perf_counter() - start
        await session.rollback()
    return elapsed


async def compare(
    engine: AsyncEngine, rounds: int, ops: int, repo: Work, hand: Work
) -> tuple[float, float]:
    """Median ops/s of *repo* and *hand*, run alternately (one warm-up round each)."""
    await timed(engine, repo)
    await timed(engine, hand)
    repo_times: list[float] = []
    hand_times: list[float] = []
    for index in range(rounds):
        pair = [(repo, repo_times), (hand, hand_times)]
        if index % 2:
            pair.reverse()
        for work, times in pair:
            times.append(await timed(engine, work))
    return ops / statistics.median(repo_times), ops / statistics.median(hand_times)


def item_rows(count: int, prefix: str, start: int = 0) -> list[dict[str, Any]]:
    return [{"code": f"{prefix}{i}", "name": f"item {i}"} for i in range(start, start + count)]


async def seed(engine: AsyncEngine, sizes: Sizes) -> list[int]:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(insert(BenchItem), item_rows(sizes.bulk, "s"))
        result = await conn.execute(select(BenchItem.id).order_by(BenchItem.id))
        return list(result.scalars())


async def bench_backend(backend: str, url: str, sizes: Sizes) -> tuple[list[Result], Result]:
    engine = create_async_engine(url)
    try:
        ids = await seed(engine, sizes)
        read_ids = ids[: sizes.reads]
        results: list[Result] = []

        async def add(operation: str, ops: int, repo: Work, hand: Work) -> None:
            repo_rate, hand_rate = await compare(engine, sizes.rounds, ops, repo, hand)
            results.append(Result(operation, backend, repo_rate, hand_rate))
            print(f"  {operation:<12} done", file=sys.stderr)

        # get: one primary-key lookup per call (each id once, so every call queries).
        async def repo_get(session: AsyncSession) -> None:
            items = ItemRepository(session)
            for ident in read_ids:
                await items.get(ident)

        async def hand_get(session: AsyncSession) -> None:
            for ident in read_ids:
                await session.get(BenchItem, ident)

        await add("get", len(read_ids), repo_get, hand_get)

        # list: a filtered, ordered, limited query per call.
        async def repo_list(session: AsyncSession) -> None:
            items = ItemRepository(session)
            for i in range(sizes.reads):
                await items.list(code__gte=f"s{i}", order_by="id", limit=20)

        async def hand_list(session: AsyncSession) -> None:
            for i in range(sizes.reads):
                stmt = (
                    select(BenchItem)
                    .where(BenchItem.code >= f"s{i}")
                    .order_by(BenchItem.id)
                    .limit(20)
                )
                list((await session.scalars(stmt)).all())

        await add("list", sizes.reads, repo_list, hand_list)

        # create: a cycle of create + flush per call.
        async def repo_create(session: AsyncSession) -> None:
            items = ItemRepository(session)
            for i in range(sizes.creates):
                await items.create(code=f"n{i}", name="new")

        async def hand_create(session: AsyncSession) -> None:
            for i in range(sizes.creates):
                session.add(BenchItem(code=f"n{i}", name="new"))
                await session.flush()

        await add("create", sizes.creates, repo_create, hand_create)

        new_rows = item_rows(sizes.bulk, "n")

        # create_many: objects with keys, in input order.
        async def repo_create_many(session: AsyncSession) -> None:
            await ItemRepository(session).create_many(new_rows)

        async def hand_create_many(session: AsyncSession) -> None:
            stmt = insert(BenchItem).returning(BenchItem, sort_by_parameter_order=True)
            list((await session.scalars(stmt, new_rows)).all())

        await add("create_many", sizes.bulk, repo_create_many, hand_create_many)

        # update_many: a different value per row, by primary key.
        changes = [{"id": ident, "name": f"renamed {ident}"} for ident in ids]

        async def repo_update_many(session: AsyncSession) -> None:
            await ItemRepository(session).update_many(changes)

        async def hand_update_many(session: AsyncSession) -> None:
            await session.execute(update(BenchItem), changes)

        await add("update_many", len(changes), repo_update_many, hand_update_many)

        # upsert_many: half the rows exist (their code), half are new.
        upserts = item_rows(sizes.bulk, "s", start=sizes.bulk // 2)
        if backend == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]

        async def repo_upsert_many(session: AsyncSession) -> None:
            await ItemRepository(session).upsert_many(upserts, on_conflict=("code",))

        async def hand_upsert_many(session: AsyncSession) -> None:
            stmt = dialect_insert(BenchItem.__table__)
            stmt = stmt.on_conflict_do_update(
                index_elements=["code"], set_={"name": stmt.excluded.name}
            )
            await session.execute(stmt, upserts)

        await add("upsert_many", len(upserts), repo_upsert_many, hand_upsert_many)

        # create_many against a loop of add + flush (one INSERT per row).
        loop_rows = item_rows(sizes.add_loop, "l")

        async def repo_loop(session: AsyncSession) -> None:
            await ItemRepository(session).create_many(loop_rows)

        async def add_flush_loop(session: AsyncSession) -> None:
            for row in loop_rows:
                session.add(BenchItem(**row))
                await session.flush()

        repo_rate, loop_rate = await compare(
            engine, max(1, sizes.rounds // 2), len(loop_rows), repo_loop, add_flush_loop
        )
        versus_loop = Result("create_many vs add+flush loop", backend, repo_rate, loop_rate)
        return results, versus_loop
    finally:
        await engine.dispose()


async def private_postgres(server_url: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    """Create a database of this run's own on the server; return its URL and a dropper."""
    name = f"sqla_uow_bench_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()

    async def drop() -> None:
        admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()

    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return url, drop


def print_table(results: list[Result], loops: list[Result]) -> None:
    header = f"{'operation':<14}{'backend':<12}{'repo ops/s':>14}{'hand ops/s':>14}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for r in results:
        flag = "" if r.ratio >= 0.90 else "  < 0.90"
        print(
            f"{r.operation:<14}{r.backend:<12}{r.repo:>14,.0f}{r.hand:>14,.0f}{r.ratio:>8.2f}{flag}"
        )
    print()
    title = "create_many vs add+flush loop"
    print(f"{title:<32}{'backend':<12}{'rows/s':>12}{'loop rows/s':>14}{'x':>8}")
    for r in loops:
        flag = "" if r.ratio >= 10 else "  < 10x"
        print(f"{'':<32}{r.backend:<12}{r.repo:>12,.0f}{r.hand:>14,.0f}{r.ratio:>8.1f}{flag}")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("SQLA_UOW_TEST_POSTGRES_URL"),
        help="server URL (default: $SQLA_UOW_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, two rounds")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    backends = ["sqlite", "postgresql"] if args.backend == "all" else [args.backend]

    results: list[Result] = []
    loops: list[Result] = []
    for backend in backends:
        print(f"{backend}:", file=sys.stderr)
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
                found, loop = await bench_backend(backend, url, sizes)
        else:
            if not args.postgres_url:
                parser.error("postgresql needs --postgres-url or SQLA_UOW_TEST_POSTGRES_URL")
            url, drop = await private_postgres(args.postgres_url)
            try:
                found, loop = await bench_backend(backend, url, sizes)
            finally:
                await drop()
        results.extend(found)
        loops.append(loop)
    print_table(results, loops)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
