"""Soak: hundreds of concurrent units of work over a small pool, every outcome checked.

600 units of work run at once over a PostgreSQL pool of 10 connections: plain commits,
transfers between accounts (SERIALIZABLE, with retries), conflicts caught with and
without a savepoint, conflicts left uncaught, REQUIRES_NEW audit rows, cancellations and
timeouts. Each unit writes rows with tags of its own and says which of them must be
committed. Afterwards the database must hold exactly those rows, each on_commit callback
must have run for exactly those rows, the transfers must have kept the total balance,
no connection may be checked out and no warning may have been emitted.

Deselected by default (``slow``); ``pytest -m reliability`` runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import ForeignKey, MetaData, String, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import (
    AsyncRepository,
    ConflictError,
    PoolExhaustedError,
    Propagation,
    RollbackOnlyError,
    TransactionManager,
    transactional,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.backends("postgresql")]

UNITS = 600
POOL_SIZE = 10
ACCOUNTS = 20
OPENING_BALANCE = 1_000
TAKEN = "taken"


class Base(DeclarativeBase):
    pass


class SoakAccount(Base):
    __tablename__ = "soak_accounts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    balance: Mapped[int]


class SoakEntry(Base):
    __tablename__ = "soak_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    tag: Mapped[str] = mapped_column(String(40), unique=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("soak_accounts.id"))


class EntryRepository(AsyncRepository[SoakEntry]):
    pass


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
async def soak_tm(engine: AsyncEngine, database_url: str) -> AsyncIterator[TransactionManager]:
    """A manager on a pool of 10 connections, with the accounts and a taken tag seeded."""
    pooled = create_async_engine(database_url, pool_size=POOL_SIZE, max_overflow=0, pool_timeout=60)
    tm = TransactionManager(pooled)
    async with tm.transaction() as session:
        session.add_all(SoakAccount(id=i, balance=OPENING_BALANCE) for i in range(ACCOUNTS))
        await session.flush()
        session.add(SoakEntry(tag=TAKEN))
    try:
        yield tm
    finally:
        await pooled.dispose()


class Soak:
    """The units of work; each records the tags that must be committed and its outcome."""

    def __init__(self, tm: TransactionManager, seed: int) -> None:
        self.tm = tm
        self.random = random.Random(seed)
        self.expected: set[str] = set()
        self.on_commit_ran: set[str] = set()
        self.outcomes: Counter[str] = Counter()
        self.attempts = 0

    # -- building blocks

    async def write(self, tag: str, account_id: int | None = None) -> None:
        await EntryRepository(self.tm.session).create(tag=tag, account_id=account_id)
        self.tm.on_commit(lambda: self.on_commit_ran.add(tag))

    async def move(self, session: AsyncSession, source: int, target: int, amount: int) -> None:
        for account, delta in sorted([(source, -amount), (target, amount)]):
            await session.execute(
                update(SoakAccount)
                .where(SoakAccount.id == account)
                .values(balance=SoakAccount.balance + delta)
            )

    def accounts(self) -> tuple[int, int, int]:
        source, target = self.random.sample(range(ACCOUNTS), 2)
        return source, target, self.random.randint(1, 50)

    # -- the units

    async def commit(self, i: int) -> None:
        async with self.tm.transaction():
            await self.write(f"commit-{i}")
        self.expected.add(f"commit-{i}")

    async def transfer(self, i: int) -> None:
        source, target, amount = self.accounts()

        @transactional(self.tm, isolation_level="SERIALIZABLE", retries=20, retry_base_delay=0.002)
        async def run() -> None:
            self.attempts += 1
            await self.move(self.tm.session, source, target, amount)
            await self.write(f"transfer-{i}", source)

        await run()
        self.expected.add(f"transfer-{i}")

    async def caught_conflict(self, i: int) -> None:
        """A conflict caught in the transaction: the exit raises, nothing is committed."""
        source, target, amount = self.accounts()
        with contextlib.suppress(RollbackOnlyError):
            async with self.tm.transaction() as session:
                await self.move(session, source, target, amount)
                await self.write(f"caught-{i}")
                with contextlib.suppress(ConflictError):
                    await self.write(TAKEN)
            raise AssertionError("a transaction with a caught conflict committed")

    async def nested_conflict(self, i: int) -> None:
        """A conflict caught around a savepoint: the rest of the transaction commits."""
        async with self.tm.transaction():
            await self.write(f"nested-{i}")
            with contextlib.suppress(ConflictError):
                async with self.tm.transaction(propagation=Propagation.NESTED):
                    await self.write(f"nested-lost-{i}")
                    await self.write(TAKEN)
            await self.write(f"nested-after-{i}")
        self.expected.update({f"nested-{i}", f"nested-after-{i}"})

    async def uncaught_conflict(self, i: int) -> None:
        source, target, amount = self.accounts()
        with contextlib.suppress(ConflictError):
            async with self.tm.transaction() as session:
                await self.move(session, source, target, amount)
                await self.write(f"uncaught-{i}")
                await self.write(TAKEN)

    async def requires_new(self, i: int) -> None:
        """An audit row committed on its own connection; the outer work fails.

        A pool whose connections are all held by tasks waiting for a second one answers
        with `PoolExhaustedError` at once: the unit tries again, as an application would.
        """
        for _ in range(100):
            try:
                await self.audited(i)
            except PoolExhaustedError:
                self.outcomes["pool_exhausted_retries"] += 1
                await asyncio.sleep(self.random.uniform(0, 0.05))
            else:
                return
        raise AssertionError("REQUIRES_NEW never got a second connection")

    async def audited(self, i: int) -> None:
        with contextlib.suppress(LookupError):
            async with self.tm.transaction():
                await self.write(f"outer-{i}")
                async with self.tm.transaction(propagation=Propagation.REQUIRES_NEW):
                    await self.write(f"audit-{i}")
                self.expected.add(f"audit-{i}")
                raise LookupError("the outer work fails after the audit row committed")

    async def cancelled(self, i: int) -> None:
        reached = asyncio.Event()

        async def body() -> None:
            async with self.tm.transaction() as session:
                await self.move(session, *self.accounts())
                await self.write(f"cancelled-{i}")
                reached.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(body())
        waiter = asyncio.create_task(reached.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(asyncio.CancelledError):
            await waiter

    async def timed_out(self, i: int) -> None:
        async def body() -> None:
            async with self.tm.transaction() as session:
                await self.move(session, *self.accounts())
                await self.write(f"timeout-{i}")
                await asyncio.sleep(60)

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(body(), timeout=self.random.uniform(0.001, 0.05))

    # -- running

    def units(self) -> list[tuple[str, Callable[[int], Awaitable[None]]]]:
        return [
            ("commit", self.commit),
            ("transfer", self.transfer),
            ("caught_conflict", self.caught_conflict),
            ("nested_conflict", self.nested_conflict),
            ("uncaught_conflict", self.uncaught_conflict),
            ("requires_new", self.requires_new),
            ("cancelled", self.cancelled),
            ("timed_out", self.timed_out),
        ]

    async def run_one(self, i: int) -> None:
        kinds = self.units()
        name, unit = kinds[i % len(kinds)]
        await unit(i)
        self.outcomes[name] += 1


async def committed_tags(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(SoakEntry.tag))).scalars()) - {TAKEN}


async def total_balance(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        total = await conn.scalar(select(func.sum(SoakAccount.balance)))
        return int(total or 0)


async def test_concurrent_units_of_work_keep_every_promise(soak_tm: TransactionManager) -> None:
    tm = soak_tm
    soak = Soak(tm, seed=7)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.monotonic()
        results = await asyncio.gather(
            *(soak.run_one(i) for i in range(UNITS)), return_exceptions=True
        )
        duration = time.monotonic() - started
        gc.collect()
    errors = [result for result in results if isinstance(result, BaseException)]
    assert errors == []
    assert [str(w.message) for w in caught] == []
    assert tm.engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    tags = await committed_tags(tm.engine)
    assert tags == soak.expected, (
        f"missing: {sorted(soak.expected - tags)[:5]}, extra: {sorted(tags - soak.expected)[:5]}"
    )
    assert soak.on_commit_ran == soak.expected
    assert await total_balance(tm.engine) == ACCOUNTS * OPENING_BALANCE
    kinds = soak.units()
    assert all(soak.outcomes[name] == UNITS // len(kinds) for name, _ in kinds), soak.outcomes

    print(
        f"\nsoak: {UNITS} units over a pool of {POOL_SIZE} in {duration:.1f} s; "
        f"{len(tags)} rows committed; {soak.attempts} transfer attempts for "
        f"{soak.outcomes['transfer']} transfers; outcomes: {dict(sorted(soak.outcomes.items()))}"
    )
