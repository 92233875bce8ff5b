"""Read throughput with and without a read replica, under a mixed read/write load.

Concurrent workers run units of work for a fixed time: most are read-only (a filtered,
ordered page of 50 rows), the rest write a row. With replicas, read-only transactions
run on them and read-your-writes holds for each worker (its reads after its own write
wait for the replica or go to the primary). The same load runs against the primary
alone and with the replica, alternating, and the median of the rounds is reported:

    scripts/pg-cluster up
    python benchmarks/replicas.py                       # URLs from SQLA_UOW_TEST_*_URL
    python benchmarks/replicas.py --seconds 2 --rounds 1  # a smoke run

Primary and replica run on the same machine here, so the replica adds no CPU: the
numbers show the cost of routing and of read-your-writes, not a scaling gain.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid

from sqlalchemy import String, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import AsyncRepository, SQLAlchemyUnitOfWork, TransactionManager


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "bench_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    author: Mapped[str] = mapped_column(String(20), index=True)
    body: Mapped[str] = mapped_column(String(100))


class Notes(SQLAlchemyUnitOfWork):
    notes: AsyncRepository[Note]


async def load(
    tm: TransactionManager, seconds: float, workers: int, writes: float
) -> tuple[int, int, int]:
    """Run the mixed load; return (reads, writes, reads served by a replica)."""
    reads = written = on_replica = 0
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        nonlocal reads, written, on_replica
        rng = random.Random(index)
        while time.perf_counter() < deadline:
            if rng.random() < writes:
                async with Notes(tm) as uow:
                    await uow.notes.create(author=f"w{index}", body="note")
                written += 1
            else:
                async with Notes(tm, read_only=True) as uow:
                    await uow.notes.list(
                        author=f"w{rng.randrange(workers)}", order_by="-id", limit=50
                    )
                    on_replica += tm.current_replica is not None
                reads += 1

    await asyncio.gather(*(worker(i) for i in range(workers)))
    return reads, written, on_replica


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--postgres-url", default=os.environ.get("SQLA_UOW_TEST_POSTGRES_URL"))
    parser.add_argument("--replica-url", default=os.environ.get("SQLA_UOW_TEST_REPLICA_URL"))
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--writes", type=float, default=0.1, help="share of write transactions")
    args = parser.parse_args(argv)
    if not args.postgres_url or not args.replica_url:
        parser.error("needs --postgres-url and --replica-url (scripts/pg-cluster up prints them)")

    name = f"sqla_uow_bench_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    primary = make_url(args.postgres_url).set(database=name).render_as_string(hide_password=False)
    replica = make_url(args.replica_url).set(database=name).render_as_string(hide_password=False)
    setups = {"primary only": [], "1 replica": [replica]}
    results: dict[str, list[tuple[int, int, int]]] = {label: [] for label in setups}
    try:
        seed = create_async_engine(primary)
        async with seed.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            rows = [{"author": f"w{i % args.workers}", "body": "seed"} for i in range(20_000)]
            await conn.execute(insert(Note), rows)
        await seed.dispose()
        await asyncio.sleep(1.0)  # the replica replays the seed
        for index in range(args.rounds):
            order = list(setups.items())
            if index % 2:
                order.reverse()
            for label, replicas in order:
                async with TransactionManager(
                    primary, replicas=replicas, pool_size=args.workers
                ) as tm:
                    results[label].append(await load(tm, args.seconds, args.workers, args.writes))
                print(f"  round {index + 1}: {label} done", file=sys.stderr)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()

    print(
        f"{args.workers} workers, {args.writes:.0%} writes, {args.seconds:g} s runs, "
        f"median of {args.rounds} rounds"
    )
    print(f"{'setup':<14}{'reads/s':>10}{'writes/s':>10}{'reads on replica':>18}")
    base = None
    for label, runs in results.items():
        read_rate = statistics.median(r[0] for r in runs) / args.seconds
        write_rate = statistics.median(r[1] for r in runs) / args.seconds
        share = statistics.median(r[2] / max(1, r[0]) for r in runs)
        base = base or read_rate
        print(
            f"{label:<14}{read_rate:>10,.0f}{write_rate:>10,.0f}{share:>18.0%}"
            f"   ({read_rate / base:.2f}x reads)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
