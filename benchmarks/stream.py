"""Peak memory of ``repo.stream()`` from 10k to 1M rows, and compiled-cache hits of bulk writes.

Each (backend, size, variant) runs in a fresh subprocess, because the peak resident set
size only grows: the child connects, reads one row (so that the engine, the dialect and
the mapper are ready), notes its RSS and resets its peak (``/proc/self/clear_refs``),
iterates over every row of the table inside a transaction and reads its peak (``VmHWM``;
``ru_maxrss`` where ``/proc`` is missing). The variants:

- ``repository``: ``async for item in ItemRepository(session).stream(chunk_size=1000)`` in
  ``tm.transaction()``;
- ``hand-written``: ``session.stream_scalars(select(Item).execution_options(yield_per=1000))``
  in ``async with sessionmaker() as s, s.begin()``;
- ``raw asyncpg`` (PostgreSQL, the floor): ``connection.cursor(query, prefetch=1000)`` in a
  transaction.

The table is loaded with ``repo.insert_many`` up to each size in turn. ``flat`` says whether
the peak at the largest size is below 1.5x the peak at the smallest. With ``--trace`` the
repository children also print where the memory grew (``tracemalloc``, top lines).

The second table calls each bulk method of the repository three times (twice with the same
number of rows, then with another) and reports, from ``ExecutionContext.cache_hit``,
whether the statements of the later calls came from SQLAlchemy's compiled cache:

    python benchmarks/stream.py                    # SQLite; PostgreSQL too when its URL is set
    python benchmarks/stream.py --quick            # 10k and 100k rows
    python benchmarks/stream.py --backend postgresql --postgres-url postgresql+asyncpg://...
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

import _test_models  # noqa: F401  (puts tests/ on sys.path for models.items)
from models.items import Base, Item
from run import ItemRepository, backend_arguments, item_rows, machine, private_postgres, versions
from sqla_uow import TransactionManager

FULL = (10_000, 100_000, 1_000_000)
QUICK = (10_000, 100_000)
CHUNK = 1000
FLAT = 1.5
LOAD_CHUNK = 50_000
TRANSACTION_CONTROL = {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"}


def status_mb(field: str) -> float | None:
    """A memory line of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in MB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS; False where impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_mb() -> float:
    """The peak resident set size of this process so far, in MB.

    ``VmHWM`` where Linux has it: ``ru_maxrss`` survives ``fork`` and ``exec``, so a child
    would report its parent's peak.
    """
    return status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- child


async def iterate(variant: str, url: str) -> int:
    """Iterate over every row of the table with *variant*; the number of rows seen."""
    seen = 0
    if variant == "raw asyncpg":
        import asyncpg  # type: ignore[import-not-found,unused-ignore]

        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                async for _record in conn.cursor(
                    "SELECT id, code, name, qty FROM bench_item", prefetch=CHUNK
                ):
                    seen += 1
        finally:
            await conn.close()
        return seen
    engine = create_async_engine(url)
    try:
        if variant == "repository":
            tm = TransactionManager(engine)
            async with tm.transaction() as session:
                async for _item in ItemRepository(session).stream(chunk_size=CHUNK):
                    seen += 1
        else:
            async with async_sessionmaker(engine)() as s, s.begin():
                stmt = select(Item).execution_options(yield_per=CHUNK)
                async for _item in await s.stream_scalars(stmt):
                    seen += 1
    finally:
        await engine.dispose()
    return seen


async def warm_up(url: str) -> None:
    """Load the driver, the dialect and the mapper, so that the baseline includes them."""
    engine = create_async_engine(url)
    try:
        async with async_sessionmaker(engine)() as s:
            await s.scalar(select(Item).limit(1))
    finally:
        await engine.dispose()


def child(variant: str, url: str, trace: bool) -> None:
    """Measure one variant in this (fresh) process; print one JSON line."""
    asyncio.run(warm_up(url))
    before = status_mb("VmRSS") if reset_peak() else None
    before = before or peak_mb()
    if trace:
        tracemalloc.start(10)
    start = time.perf_counter()
    seen = asyncio.run(iterate(variant, url))
    seconds = time.perf_counter() - start
    found: dict[str, Any] = {"rows": seen, "before": before, "peak": peak_mb(), "s": seconds}
    if trace:
        current, traced_peak = tracemalloc.get_traced_memory()
        stats = tracemalloc.take_snapshot().statistics("lineno")[:10]
        found["traced"] = {"current": current, "peak": traced_peak}
        found["top"] = [str(stat) for stat in stats]
    print(json.dumps(found))


# ---------------------------------------------------------------------------- parent


async def top_up(engine: AsyncEngine, rows: int) -> None:
    """Insert rows with ``repo.insert_many`` until the table holds *rows*."""
    tm = TransactionManager(engine)
    async with tm.transaction() as session:
        have = await session.scalar(select(func.count()).select_from(Item)) or 0
    for start in range(have, rows, LOAD_CHUNK):
        async with tm.transaction() as session:
            stop = min(start + LOAD_CHUNK, rows)
            await ItemRepository(session).insert_many(item_rows(stop - start, "s", start))


def measure(variant: str, url: str, trace: bool) -> dict[str, Any]:
    script = [sys.executable, __file__, "--child", variant, "--url", url]
    out = subprocess.run(
        [*script, *(["--trace"] if trace else [])], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{out.stderr}")
    found: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


async def memory(backend: str, url: str, sizes: tuple[int, ...], trace: bool) -> list[str]:
    """The memory table's lines of one backend (and the tracemalloc reports, if any)."""
    engine = create_async_engine(url)
    variants = ["repository", "hand-written"]
    if make_url(url).drivername == "postgresql+asyncpg":
        variants.append("raw asyncpg")
    lines: list[str] = []
    peaks: dict[str, list[float]] = {v: [] for v in variants}
    traces: list[str] = []
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.run_sync(Base.metadata.create_all)
        for rows in sizes:
            start = time.perf_counter()
            await top_up(engine, rows)
            print(f"  {rows:,} rows loaded in {time.perf_counter() - start:.1f}s", file=sys.stderr)
            for variant in variants:
                found = measure(variant, url, trace and variant == "repository")
                assert found["rows"] == rows, (variant, found["rows"], rows)
                peaks[variant].append(found["peak"])
                lines.append(
                    f"| {backend} | {variant} | {rows:,} | {found['before']:.0f} | "
                    f"{found['peak']:.0f} | {found['peak'] - found['before']:.0f} | "
                    f"{found['s']:.2f} |"
                )
                if "top" in found:
                    traces.append(
                        f"{backend}, {variant}, {rows:,} rows: traced peak "
                        f"{found['traced']['peak'] / 2**20:.1f} MB, still allocated at the end "
                        f"{found['traced']['current'] / 2**20:.1f} MB; top lines:"
                    )
                    traces.extend(f"    {stat}" for stat in found["top"])
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
    finally:
        await engine.dispose()
    for variant, values in peaks.items():
        growth = values[-1] / values[0]
        verdict = "flat" if growth < FLAT else "NOT flat"
        lines.append(
            f"| {backend} | {variant} | growth {sizes[0]:,} -> {sizes[-1]:,} | | "
            f"{growth:.2f}x | {verdict} | |"
        )
    return [*lines, "", *traces] if traces else lines


# ------------------------------------------------------------------------------ cache


@contextmanager
def cache_log(engine: AsyncEngine) -> Iterator[list[str]]:
    """Record the compiled-cache status of every data statement *engine* runs."""
    seen: list[str] = []

    def record(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any
    ) -> None:
        if statement.split(None, 1)[0].upper() in TRANSACTION_CONTROL:
            return
        status = getattr(context, "cache_hit", None)
        seen.append(getattr(status, "name", str(status)))

    event.listen(engine.sync_engine, "after_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "after_cursor_execute", record)


def summary(statuses: list[str]) -> str:
    """``3 cache hit, 1 cache miss``: how many statements had each status."""
    if not statuses:
        return "no statement"
    counts = {status: statuses.count(status) for status in dict.fromkeys(statuses)}
    return ", ".join(f"{n} {status.lower().replace('_', ' ')}" for status, n in counts.items())


async def cache_hits(backend: str, url: str, rows: int) -> list[str]:
    """For each bulk method: the cache status of the statements of its 1st, 2nd, 3rd call."""
    engine = create_async_engine(url)
    tm = TransactionManager(engine)
    batch = itertools.count()

    def fresh(n: int) -> list[dict[str, Any]]:
        return item_rows(n, f"k{next(batch)}-")

    async def logged(call: Callable[[ItemRepository], Awaitable[Any]]) -> list[str]:
        with cache_log(engine) as seen:
            async with tm.transaction() as session:
                await call(ItemRepository(session))
        return seen

    async def ids(n: int) -> list[int]:
        async with tm.transaction() as session:
            return [item.id for item in await ItemRepository(session).create_many(fresh(n))]

    async def update_many(n: int) -> list[str]:
        changes = [{"id": pk, "qty": 7} for pk in await ids(n)]
        return await logged(lambda repo: repo.update_many(changes))

    async def delete_many(n: int) -> list[str]:
        doomed = await ids(n)
        return await logged(lambda repo: repo.delete_many(doomed))

    methods: dict[str, Callable[[int], Awaitable[list[str]]]] = {
        "create_many": lambda n: logged(lambda repo: repo.create_many(fresh(n))),
        "insert_many": lambda n: logged(lambda repo: repo.insert_many(fresh(n))),
        "update_many": update_many,
        "upsert_many": lambda n: logged(
            lambda repo: repo.upsert_many(fresh(n), on_conflict=("code",))
        ),
        "delete_many": delete_many,
    }
    lines: list[str] = []
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.run_sync(Base.metadata.create_all)
        for name, method in methods.items():
            calls = [summary(await method(n)) for n in (rows, rows, rows // 2 + 1)]
            lines.append(f"| {backend} | {name} | {' | '.join(calls)} |")
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
    finally:
        await engine.dispose()
    return lines


# ------------------------------------------------------------------------------- main


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    backend_arguments(parser, default="all")
    parser.add_argument("--quick", action="store_true", help="10k and 100k rows only")
    parser.add_argument("--sizes", help="comma-separated row counts (default 10000,100000,1000000)")
    parser.add_argument("--trace", action="store_true", help="tracemalloc top lines (repository)")
    parser.add_argument("--cache-rows", type=int, default=2000, help="rows per bulk call")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.sizes:
        sizes = tuple(int(n) for n in args.sizes.split(","))
    backends = ["sqlite", "postgresql"] if args.backend == "all" else [args.backend]
    if "postgresql" in backends and not args.postgres_url:
        if args.backend == "postgresql":
            parser.error("postgresql needs --postgres-url or SQLA_UOW_TEST_POSTGRES_URL")
        backends.remove("postgresql")

    table: list[str] = []
    cache: list[str] = []
    for backend in backends:
        print(f"{backend}:", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            drop = None
            if backend == "sqlite":
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'stream.db'}"
            else:
                url, drop = await private_postgres(args.postgres_url)
            try:
                table.extend(await memory(backend, url, sizes, args.trace))
                cache.extend(await cache_hits(backend, url, args.cache_rows))
            finally:
                if drop is not None:
                    await drop()

    print(f"machine:  {machine()}")
    print(f"versions: {versions()}")
    print(f"\npeak RSS of iterating over every row, chunks of {CHUNK} (MB; fresh process each)\n")
    print("| backend | variant | rows | before | peak | grew | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(table))
    print(f"\ncompiled cache of the bulk statements ({args.cache_rows:,} rows per call)\n")
    print(
        f"| backend | method | 1st call | 2nd call, same rows | "
        f"3rd call, {args.cache_rows // 2 + 1:,} rows |"
    )
    print("|---|---|---|---|---|")
    print("\n".join(cache))
    return 0


if __name__ == "__main__":
    if "--child" in sys.argv:
        child_args = argparse.ArgumentParser()
        child_args.add_argument("--child", required=True)
        child_args.add_argument("--url", required=True)
        child_args.add_argument("--trace", action="store_true")
        parsed = child_args.parse_args()
        child(parsed.child, parsed.url, parsed.trace)
        sys.exit(0)
    sys.exit(asyncio.run(main()))
