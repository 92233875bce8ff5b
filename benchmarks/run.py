"""Benchmark what users run: whole transaction cycles and bulk writes, against hand-written code.

Every measurement includes the transaction scope: a *cycle* opens a transaction, makes
one call and commits, through each public entry point (a unit of work,
``tm.transaction()`` with a repository, a ``@transactional`` function). Each is paired,
in the same process and on the same database, with the fastest hand-written SQLAlchemy
code for the same result (``async with sessionmaker() as s: ...; await s.commit()``)
and, on PostgreSQL, the raw asyncpg driver as the floor. Bulk writes run in a
transaction that commits, at two sizes. Variants alternate in rotating order over
several rounds; the tables report medians and the spread (min-max) of the rounds:

    python benchmarks/run.py --backend sqlite
    python benchmarks/run.py --backend all --postgres-url postgresql+asyncpg://postgres@127.0.0.1/test
    python benchmarks/run.py --quick          # a smoke run (small sizes, two rounds)
    python benchmarks/run.py --plot performance.png

``ratio`` is the variant's throughput divided by the hand-written code's (1.00 = as
fast; target: cycles at least 0.95). The PostgreSQL URL defaults to
``SQLA_UOW_TEST_POSTGRES_URL``; the run creates a private database on that server and
drops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Integer, any_, bindparam, delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

import _test_models  # noqa: F401  (puts tests/ on sys.path for models.items)
import sqla_uow
from models.items import Base, Item
from sqla_uow import AsyncRepository, SQLAlchemyUnitOfWork, TransactionManager, transactional


class ItemRepository(AsyncRepository[Item]):
    pass


class ItemsUnitOfWork(SQLAlchemyUnitOfWork):
    items: ItemRepository


@dataclass(frozen=True)
class Sizes:
    rounds: int
    cycles: int  # transaction cycles per timed run
    bulk: tuple[int, ...]  # rows per bulk call
    seed: int  # rows in the table before the cycles


FULL = Sizes(rounds=5, cycles=300, bulk=(20_000, 100_000), seed=100_000)
QUICK = Sizes(rounds=2, cycles=30, bulk=(2_000,), seed=2_000)

Run = Callable[[], Awaitable[None]]
"""One timed run of a variant: a number of cycles, or one bulk call in its transaction."""


@dataclass
class Variant:
    name: str
    run: Run
    reset: Run | None = None  # untimed, after each run: puts the data back


@dataclass
class Measured:
    case: str
    backend: str
    ops: int  # operations (cycles or rows) per run
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def rate(self, variant: str) -> float:
        return self.ops / statistics.median(self.seconds[variant])

    def spread(self, variant: str) -> tuple[float, float]:
        times = self.seconds[variant]
        return self.ops / max(times), self.ops / min(times)


async def measure(
    case: str, backend: str, ops: int, rounds: int, variants: Sequence[Variant]
) -> Measured:
    """Run *variants* in rotating order for *rounds* (after one warm-up run each)."""
    result = Measured(case, backend, ops, {v.name: [] for v in variants})
    for index in range(rounds + 1):
        shift = index % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            start = time.perf_counter()
            await variant.run()
            elapsed = time.perf_counter() - start
            if variant.reset is not None:
                await variant.reset()
            if index:  # the first round warms caches and pools
                result.seconds[variant.name].append(elapsed)
    print(f"  {case:<24} done", file=sys.stderr)
    return result


def item_rows(n: int, prefix: str, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"code": f"{prefix}{i}", "name": f"item {i}", "qty": i} for i in range(start, start + n)
    ]


class Bench:
    """The cases of one backend, over one database."""

    def __init__(self, backend: str, url: str, sizes: Sizes) -> None:
        self.backend = backend
        self.url = url
        self.sizes = sizes
        self.engine: AsyncEngine = create_async_engine(url)
        self.tm = TransactionManager(self.engine)
        self.maker = async_sessionmaker(self.engine, expire_on_commit=False)
        self.raw: Any = None  # an asyncpg pool on PostgreSQL
        self.ids: list[int] = []
        self.unique = count()
        self.results: list[Measured] = []

    async def setup(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.run_sync(Base.metadata.create_all)
            await conn.execute(insert(Item), item_rows(self.sizes.seed, "s"))
            found = await conn.execute(select(Item.id).order_by(Item.id))
            self.ids = list(found.scalars())
        if self.backend == "postgresql":
            import asyncpg

            dsn = (
                make_url(self.url)
                .set(drivername="postgresql")
                .render_as_string(hide_password=False)
            )
            self.raw = await asyncpg.create_pool(dsn, min_size=1, max_size=2)

    async def close(self) -> None:
        if self.raw is not None:
            await self.raw.close()
        await self.engine.dispose()

    async def add(self, case: str, ops: int, variants: Sequence[Variant]) -> None:
        rounds = self.sizes.rounds
        self.results.append(await measure(case, self.backend, ops, rounds, variants))

    async def delete_codes(self, prefix: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(Item).where(Item.code.startswith(prefix)))

    # -- cycles -------------------------------------------------------------------------

    def entry_points(
        self, call: Callable[[ItemRepository, int], Awaitable[Any]]
    ) -> list[tuple[str, Callable[[int], Awaitable[Any]]]]:
        """One cycle of *call* through each public entry point."""
        tm = self.tm

        async def through_uow(i: int) -> Any:
            async with ItemsUnitOfWork(tm) as uow:
                return await call(uow.items, i)

        async def through_scope(i: int) -> Any:
            async with tm.transaction() as session:
                return await call(ItemRepository(session), i)

        @transactional(tm)
        async def through_decorator(i: int) -> Any:
            return await call(ItemRepository(tm.session), i)

        return [
            ("unit of work", through_uow),
            ("tm.transaction()", through_scope),
            ("@transactional", through_decorator),
        ]

    async def cycles(
        self,
        case: str,
        call: Callable[[ItemRepository, int], Awaitable[Any]],
        hand: Callable[[int], Awaitable[Any]],
        raw: Callable[[int], Awaitable[Any]] | None,
        reset: Run | None = None,
    ) -> None:
        n = self.sizes.cycles

        def looped(cycle: Callable[[int], Awaitable[Any]]) -> Run:
            async def run() -> None:
                for i in range(n):
                    await cycle(i)

            return run

        variants = [Variant("hand-written", looped(hand), reset)]
        variants += [Variant(name, looped(c), reset) for name, c in self.entry_points(call)]
        if raw is not None and self.raw is not None:
            variants.append(Variant("raw driver", looped(raw), reset))
        await self.add(case, n, variants)

    async def bench_cycles(self) -> None:
        ids, maker, pool = self.ids, self.maker, self.raw

        async def hand_get(i: int) -> Any:
            async with maker() as s:
                found = await s.get(Item, ids[i])
                await s.commit()
                return found

        async def raw_get(i: int) -> Any:
            async with pool.acquire() as c, c.transaction():
                return await c.fetchrow("SELECT * FROM bench_item WHERE id = $1", ids[i])

        await self.cycles("get cycle", lambda r, i: r.get(ids[i]), hand_get, raw_get)

        async def hand_list(i: int) -> Any:
            async with maker() as s:
                stmt = select(Item).where(Item.code >= f"s{i}").order_by(Item.id).limit(50)
                found = list((await s.scalars(stmt)).all())
                await s.commit()
                return found

        async def raw_list(i: int) -> Any:
            async with pool.acquire() as c, c.transaction():
                return await c.fetch(
                    "SELECT * FROM bench_item WHERE code >= $1 ORDER BY id LIMIT 50", f"s{i}"
                )

        await self.cycles(
            "list cycle",
            lambda r, i: r.list(code__gte=f"s{i}", order_by="id", limit=50),
            hand_list,
            raw_list,
        )

        unique = self.unique

        async def hand_create(i: int) -> Any:
            async with maker() as s:
                item = Item(code=f"c{next(unique)}", name="new")
                s.add(item)
                await s.commit()
                return item

        async def raw_create(i: int) -> Any:
            async with pool.acquire() as c, c.transaction():
                return await c.fetchrow(
                    "INSERT INTO bench_item (code, name, qty) VALUES ($1, $2, 0) RETURNING *",
                    f"c{next(unique)}",
                    "new",
                )

        await self.cycles(
            "create cycle",
            lambda r, i: r.create(code=f"c{next(unique)}", name="new"),
            hand_create,
            raw_create,
            reset=lambda: self.delete_codes("c"),
        )

        async def hand_update(i: int) -> Any:
            async with maker() as s:
                item = await s.get(Item, ids[i])
                assert item is not None
                item.qty = next(unique)
                await s.commit()
                return item

        async def raw_update(i: int) -> Any:
            async with pool.acquire() as c, c.transaction():
                return await c.fetchrow(
                    "UPDATE bench_item SET qty = $2 WHERE id = $1 RETURNING *",
                    ids[i],
                    next(unique),
                )

        await self.cycles(
            "update cycle",
            lambda r, i: r.update(ids[i], qty=next(unique)),
            hand_update,
            raw_update,
        )

        doomed: list[int] = []

        async def refill() -> None:
            async with self.engine.begin() as conn:
                await conn.execute(delete(Item).where(Item.code.startswith("d")))
                found = await conn.execute(
                    insert(Item).returning(Item.id), item_rows(self.sizes.cycles, "d")
                )
                doomed[:] = sorted(found.scalars())

        async def hand_delete(i: int) -> Any:
            async with maker() as s:
                result = await s.execute(delete(Item).where(Item.id == doomed[i]))
                await s.commit()
                return result.rowcount > 0  # type: ignore[attr-defined]

        async def raw_delete(i: int) -> Any:
            async with pool.acquire() as c, c.transaction():
                return await c.execute("DELETE FROM bench_item WHERE id = $1", doomed[i])

        await refill()
        await self.cycles(
            "delete cycle", lambda r, i: r.delete(doomed[i]), hand_delete, raw_delete, refill
        )

    # -- bulk ---------------------------------------------------------------------------

    def dialect_insert(self) -> Any:
        if self.backend == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(Item)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(Item)

    async def bench_bulk(self, rows: int) -> None:
        tm, maker, pool, ids = self.tm, self.maker, self.raw, self.ids
        new = item_rows(rows, "b")
        columns = ("code", "name", "qty")
        records = [tuple(r[c] for c in columns) for r in new]
        arrays = [list(values) for values in zip(*records, strict=True)]
        label = f"({rows // 1000}k rows)"

        def scoped(call: Callable[[ItemRepository], Awaitable[Any]]) -> Run:
            async def run() -> None:
                async with tm.transaction() as session:
                    await call(ItemRepository(session))

            return run

        def by_hand(call: Callable[[Any], Awaitable[Any]]) -> Run:
            async def run() -> None:
                async with maker() as s:
                    await call(s)
                    await s.commit()

            return run

        async def reset() -> None:
            await self.delete_codes("b")

        def raw(
            call: Callable[[Any], Awaitable[Any]],
            after: Run | None = reset,
            name: str = "raw driver",
        ) -> list[Variant]:
            if pool is None:
                return []

            async def run() -> None:
                async with pool.acquire() as c, c.transaction():
                    await call(c)

            return [Variant(name, run, after)]

        async def raw_copy_create(c: Any) -> None:
            # Keys from the sequence in one statement, then COPY with them (what
            # create_many does on asyncpg, without building objects).
            keys = await c.fetch(
                "SELECT nextval(pg_get_serial_sequence('bench_item', 'id')) "
                "FROM generate_series(1, $1)",
                len(records),
            )
            await c.copy_records_to_table(
                "bench_item",
                records=[(key[0], *record) for key, record in zip(keys, records, strict=True)],
                columns=("id", *columns),
            )

        async def hand_create_many(s: Any) -> None:
            list((await s.scalars(insert(Item).returning(Item), new)).all())

        await self.add(
            f"create_many {label}",
            rows,
            [
                Variant("hand-written", by_hand(hand_create_many), reset),
                Variant("repository", scoped(lambda r: r.create_many(new)), reset),
                *raw(
                    lambda c: c.fetch(
                        "INSERT INTO bench_item (code, name, qty) SELECT * FROM "
                        "unnest($1::text[], $2::text[], $3::int[]) RETURNING id",
                        *arrays,
                    )
                ),
                *raw(raw_copy_create, name="raw driver (COPY)"),
            ],
        )

        await self.add(
            f"insert_many {label}",
            rows,
            [
                Variant("hand-written", by_hand(lambda s: s.execute(insert(Item), new)), reset),
                Variant("repository", scoped(lambda r: r.insert_many(new)), reset),
                *raw(
                    lambda c: c.copy_records_to_table(
                        "bench_item", records=records, columns=columns
                    )
                ),
            ],
        )

        target = ids[: min(rows, len(ids))]
        changes = [{"id": ident, "qty": ident * 2} for ident in target]
        qtys = [row["qty"] for row in changes]
        await self.add(
            f"update_many {label}",
            len(changes),
            [
                Variant("hand-written", by_hand(lambda s: s.execute(update(Item), changes))),
                Variant("repository", scoped(lambda r: r.update_many(changes))),
                *raw(
                    lambda c: c.execute(
                        "UPDATE bench_item SET qty = v.qty FROM unnest($1::int[], $2::int[]) "
                        "AS v(id, qty) WHERE bench_item.id = v.id",
                        target,
                        qtys,
                    ),
                    after=None,
                ),
            ],
        )

        # Half of the rows exist (their code), half are new.
        upserts = item_rows(len(target), "s", start=len(target) // 2)
        for row in upserts[len(upserts) // 2 :]:
            row["code"] = "b" + row["code"]
        up_arrays = [[row[c] for row in upserts] for c in columns]

        async def hand_upsert(s: Any) -> None:
            stmt = self.dialect_insert()
            stmt = stmt.on_conflict_do_update(
                index_elements=["code"], set_={"name": stmt.excluded.name, "qty": stmt.excluded.qty}
            )
            await s.execute(stmt, upserts)

        await self.add(
            f"upsert_many {label}",
            len(upserts),
            [
                Variant("hand-written", by_hand(hand_upsert), reset),
                Variant(
                    "repository",
                    scoped(lambda r: r.upsert_many(upserts, on_conflict=("code",))),
                    reset,
                ),
                *raw(
                    lambda c: c.execute(
                        "INSERT INTO bench_item (code, name, qty) SELECT * FROM "
                        "unnest($1::text[], $2::text[], $3::int[]) ON CONFLICT (code) DO UPDATE "
                        "SET name = excluded.name, qty = excluded.qty",
                        *up_arrays,
                    )
                ),
            ],
        )

        doomed: list[int] = []

        async def refill() -> None:
            async with self.engine.begin() as conn:
                await conn.execute(delete(Item).where(Item.code.startswith("b")))
                found = await conn.execute(insert(Item).returning(Item.id), new)
                doomed[:] = sorted(found.scalars())

        async def hand_delete_many(s: Any) -> None:
            if self.backend == "postgresql":
                # One array parameter: an IN list of 100k binds exceeds asyncpg's 32767.
                ids = bindparam("ids", doomed, type_=ARRAY(Integer))
                await s.execute(delete(Item).where(Item.id == any_(ids)))
            else:
                await s.execute(delete(Item).where(Item.id.in_(doomed)))

        await refill()
        await self.add(
            f"delete_many {label}",
            rows,
            [
                Variant("hand-written", by_hand(hand_delete_many), refill),
                Variant("repository", scoped(lambda r: r.delete_many(doomed)), refill),
                *raw(
                    lambda c: c.execute("DELETE FROM bench_item WHERE id = ANY($1)", doomed),
                    after=refill,
                ),
            ],
        )
        await reset()


async def private_postgres(server_url: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    """Create a database of this run's own on the server; return its URL and a dropper."""
    name = f"sqla_uow_bench_{uuid.uuid4().hex[:10]}"

    async def admin(statement: str) -> None:
        engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    await admin(f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return url, lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def server_versions(bench: Bench) -> str:
    async with bench.engine.connect() as conn:
        if bench.backend == "postgresql":
            return str(await conn.scalar(text("SHOW server_version")))
        return str(await conn.scalar(text("SELECT sqlite_version()")))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, {cpu}"


def versions() -> str:
    found = [
        f"Python {platform.python_version()}",
        f"SQLAlchemy {sqlalchemy.__version__}",
        f"sqla_uow {sqla_uow.__version__}",
    ]
    for module in ("aiosqlite", "asyncpg"):
        with contextlib.suppress(ImportError):
            found.append(f"{module} {__import__(module).__version__}")
    return ", ".join(found)


def print_tables(results: list[Measured]) -> None:
    """One table per case: median throughput, spread, ratio against hand-written code."""
    for m in results:
        unit = "rows" if "rows" in m.case else "cycles"
        print(f"\n{m.case} on {m.backend} ({m.ops:,} {unit} a run)")
        header = f"  {'variant':<18}{'ops/s':>12}{'min-max':>22}{'ratio':>8}"
        print(header)
        hand = m.rate("hand-written")
        for name in m.seconds:
            low, high = m.spread(name)
            rate = m.rate(name)
            print(f"  {name:<18}{rate:>12,.0f}{f'{low:,.0f}-{high:,.0f}':>22}{rate / hand:>8.2f}")


def print_summary(results: list[Measured]) -> None:
    """Ratios against hand-written code: the worst entry point for cycles."""
    print("\nsummary (ratio = throughput / hand-written; cycles: the slowest entry point)")
    backends = list(dict.fromkeys(m.backend for m in results))
    print(f"  {'case':<26}" + "".join(f"{b:>12}" for b in backends))
    for case in dict.fromkeys(m.case for m in results):
        cells = []
        for b in backends:
            found = [m for m in results if m.case == case and m.backend == b]
            if not found:
                cells.append(f"{'-':>12}")
                continue
            m = found[0]
            ours = [n for n in m.seconds if n != "hand-written" and not n.startswith("raw driver")]
            worst = min(m.rate(n) for n in ours) / m.rate("hand-written")
            cells.append(f"{worst:>12.2f}")
        print(f"  {case:<26}" + "".join(cells))


def plot(results: list[Measured], path: Path) -> None:
    """A bar chart of every variant's ratio to hand-written code, per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = list(dict.fromkeys(m.backend for m in results))
    fig, axes = plt.subplots(1, len(backends), figsize=(7 * len(backends), 7), squeeze=False)
    for ax, backend in zip(axes[0], backends, strict=True):
        rows = [m for m in results if m.backend == backend]
        labels: list[str] = []
        values: list[float] = []
        for m in rows:
            hand = m.rate("hand-written")
            for name in m.seconds:
                if name != "hand-written":
                    labels.append(f"{m.case}: {name}")
                    values.append(m.rate(name) / hand)
        colors = ["#888888" if "raw driver" in label else "#3b6ea8" for label in labels]
        ax.barh(range(len(values)), values, color=colors)
        ax.set_yticks(range(len(values)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.axvline(0.95, color="#c0392b", linewidth=0.8, linestyle="--")
        ax.set_xscale("log")
        ax.set_xticks([0.25, 0.5, 1, 2, 4, 8], ["0.25", "0.5", "1", "2", "4", "8"])
        ax.minorticks_off()
        ax.set_xlabel("throughput / hand-written SQLAlchemy (log; dashed: 0.95)")
        ax.set_title(backend)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\nplot written to {path}", file=sys.stderr)


async def run_backend(
    backend: str, url: str, sizes: Sizes, skip_bulk: bool
) -> tuple[list[Measured], str]:
    bench = Bench(backend, url, sizes)
    try:
        await bench.setup()
        server = await server_versions(bench)
        await bench.bench_cycles()
        if not skip_bulk:
            for rows in sizes.bulk:
                await bench.bench_bulk(rows)
        return bench.results, server
    finally:
        await bench.close()


def backend_arguments(parser: argparse.ArgumentParser, *, default: str) -> None:
    """Add ``--backend`` (sqlite, postgresql or all) and ``--postgres-url`` to *parser*."""
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default=default)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("SQLA_UOW_TEST_POSTGRES_URL"),
        help="server URL (default: $SQLA_UOW_TEST_POSTGRES_URL)",
    )


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    backend_arguments(parser, default="sqlite")
    parser.add_argument("--quick", action="store_true", help="small sizes, two rounds")
    parser.add_argument("--cycles-only", action="store_true", help="leave out the bulk cases")
    parser.add_argument("--plot", type=Path, help="write a PNG chart of the ratios here")
    parser.add_argument("--rounds", type=int, help="measured rounds (default 5; --quick 2)")
    parser.add_argument("--cycles", type=int, help="cycles per timed run (default 300)")
    parser.add_argument("--bulk", help="comma-separated bulk sizes in rows (default 20000,100000)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.rounds is not None:
        sizes = dataclasses.replace(sizes, rounds=args.rounds)
    if args.cycles is not None:
        sizes = dataclasses.replace(sizes, cycles=args.cycles)
    if args.bulk:
        bulk = tuple(int(n) for n in args.bulk.split(","))
        sizes = dataclasses.replace(sizes, bulk=bulk, seed=max(sizes.seed, *bulk))
    backends = ["sqlite", "postgresql"] if args.backend == "all" else [args.backend]

    results: list[Measured] = []
    servers: list[str] = []
    for backend in backends:
        print(f"{backend}:", file=sys.stderr)
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
                found, server = await run_backend(backend, url, sizes, args.cycles_only)
            servers.append(f"SQLite {server}")
        else:
            if not args.postgres_url:
                parser.error("postgresql needs --postgres-url or SQLA_UOW_TEST_POSTGRES_URL")
            url, drop = await private_postgres(args.postgres_url)
            try:
                found, server = await run_backend(backend, url, sizes, args.cycles_only)
            finally:
                await drop()
            servers.append(f"PostgreSQL {server}")
        results.extend(found)

    print(f"machine:  {machine()}")
    print(f"versions: {versions()}; {', '.join(servers)}")
    print(f"rounds:   {sizes.rounds} (after a warm-up), medians; variants in rotating order")
    print_tables(results)
    print_summary(results)
    if args.plot is not None:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
