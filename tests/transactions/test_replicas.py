"""Read replicas: routing, read-your-writes, lag and failures, on a real streaming replica.

The PostgreSQL tests need ``SQLA_UOW_TEST_REPLICA_URL``: a hot standby streaming from the
server of ``SQLA_UOW_TEST_POSTGRES_URL`` (``scripts/pg-cluster up`` starts one on port 5433
and prints the URL; its database name is replaced by the test session's). SQLite has no
replicas; there a second engine on the same file stands in for one, to test the
time-based read-your-writes window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from _accounts import add
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from models.accounts import Account
from sqla_uow import AsyncRepository, SQLAlchemyUnitOfWork, TransactionManager, transactional

REPLICA_VARIABLE = "SQLA_UOW_TEST_REPLICA_URL"


class AccountRepository(AsyncRepository[Account]):
    pass


class Bank(SQLAlchemyUnitOfWork):
    accounts: AccountRepository


async def in_recovery(tm: TransactionManager) -> bool:
    """Whether the current transaction of *tm* runs on a standby."""
    return bool(await tm.session.scalar(select(func.pg_is_in_recovery())))


async def names(tm: TransactionManager) -> list[str]:
    rows = await tm.session.scalars(select(Account.name).order_by(Account.id))
    return list(rows)


def replica_server_url() -> str:
    url = os.environ.get(REPLICA_VARIABLE)
    if url:
        return url
    reason = f"replica tests need {REPLICA_VARIABLE} (`scripts/pg-cluster up` starts one)"
    required = os.environ.get("SQLA_UOW_TEST_REQUIRE", "").split(",")
    if "replica" in (name.strip() for name in required):
        pytest.fail(f"{reason}, but SQLA_UOW_TEST_REQUIRE names replica")
    pytest.skip(reason)


async def caught_up(primary: AsyncEngine, replica_url: str) -> None:
    """Wait until the replica has replayed everything *primary* has written so far."""
    async with primary.connect() as conn:
        target = await conn.scalar(text("SELECT pg_current_wal_lsn()"))
    replica = create_async_engine(replica_url)
    try:
        for _ in range(200):
            with contextlib.suppress(Exception):
                async with replica.connect() as conn:
                    behind = await conn.scalar(
                        text("SELECT pg_last_wal_replay_lsn() < CAST(:t AS pg_lsn)"), {"t": target}
                    )
                    if behind is False:
                        return
            await asyncio.sleep(0.05)
    finally:
        await replica.dispose()
    raise AssertionError("the replica did not catch up in 10 s")


@pytest.fixture
async def replica_url(engine: AsyncEngine) -> str:
    """The replica's URL for this test session's database, caught up with the primary.

    It names the primary's driver, so the replica tests run on asyncpg and on psycopg.
    """
    url = make_url(replica_server_url()).set(
        drivername=engine.url.drivername, database=engine.url.database
    )
    rendered = url.render_as_string(hide_password=False)
    await caught_up(engine, rendered)
    return rendered


async def wait_for_query_on(replica_url: str, needle: str) -> None:
    """Wait until a query containing *needle* runs on the replica."""
    watcher = create_async_engine(replica_url)
    try:
        async with watcher.connect() as conn:
            for _ in range(200):
                running = await conn.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                        "AND query LIKE :q AND pid <> pg_backend_pid()"
                    ),
                    {"q": f"%{needle}%"},
                )
                if running:
                    return
                await asyncio.sleep(0.05)
    finally:
        await watcher.dispose()
    raise AssertionError(f"no query with {needle!r} started on the replica")


async def received(primary: AsyncEngine, replica_url: str) -> None:
    """Wait until the replica has received (not necessarily replayed) the primary's WAL."""
    async with primary.connect() as conn:
        target = await conn.scalar(text("SELECT pg_current_wal_lsn()"))
    watcher = create_async_engine(replica_url)
    try:
        async with watcher.connect() as conn:
            for _ in range(200):
                got = await conn.scalar(
                    text("SELECT pg_last_wal_receive_lsn() >= CAST(:t AS pg_lsn)"), {"t": target}
                )
                if got:
                    return
                await asyncio.sleep(0.05)
    finally:
        await watcher.dispose()
    raise AssertionError("the replica did not receive the WAL in 10 s")


@contextlib.asynccontextmanager
async def replay_paused(replica_url: str) -> AsyncIterator[None]:
    admin = create_async_engine(replica_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text("SELECT pg_wal_replay_pause()"))
        yield
    finally:
        async with admin.connect() as conn:
            await conn.execute(text("SELECT pg_wal_replay_resume()"))
        await admin.dispose()


async def in_fresh_context(work: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """Start a task now (it copies the current context) that runs *work* when awaited."""
    go = asyncio.Event()

    async def waiting() -> None:
        await go.wait()
        await work()

    task = asyncio.ensure_future(waiting())
    await asyncio.sleep(0)

    async def run() -> None:
        go.set()
        await task

    return run


pytestmark = pytest.mark.backends("postgresql")


class TestRouting:
    async def test_read_only_transactions_run_on_the_replica(
        self, engine: AsyncEngine, replica_url: str
    ) -> None:
        async with TransactionManager(engine, replicas=[replica_url]) as tm:
            async with tm.transaction(read_only=True):
                assert await in_recovery(tm)
                assert tm.current_replica == f"127.0.0.1:{make_url(replica_url).port}"
            async with tm.transaction():
                assert not await in_recovery(tm)
                assert tm.current_replica is None
                async with tm.transaction(read_only=True):  # joins the read-write one
                    assert not await in_recovery(tm)
            async with Bank(tm, read_only=True) as bank:
                assert await bank.accounts.count() == 0
                assert await in_recovery(tm)

            @transactional(tm, read_only=True)
            async def report() -> bool:
                return await in_recovery(tm)

            assert await report()
            assert tm.current_replica is None

    async def test_replicas_take_turns(self, engine: AsyncEngine, replica_url: str) -> None:
        other = make_url(replica_url).set(host="localhost").render_as_string(hide_password=False)
        async with TransactionManager(engine, replicas=[replica_url, other]) as tm:
            seen = []
            for _ in range(4):
                async with tm.transaction(read_only=True):
                    seen.append(tm.current_replica)
        port = make_url(replica_url).port
        assert seen == [f"127.0.0.1:{port}", f"localhost:{port}"] * 2


class TestReadYourWrites:
    async def test_a_context_reads_its_own_commit_while_the_replica_is_behind(
        self, engine: AsyncEngine, replica_url: str
    ) -> None:
        async with TransactionManager(engine, replicas=[replica_url]) as tm:
            seen_elsewhere: list[tuple[bool, list[str]]] = []

            async def read_elsewhere() -> None:
                async with tm.transaction(read_only=True):
                    seen_elsewhere.append((await in_recovery(tm), await names(tm)))

            async with replay_paused(replica_url):
                other_context = await in_fresh_context(read_elsewhere)
                async with tm.transaction():
                    await add(tm, "mine")
                async with tm.transaction(read_only=True):
                    assert await names(tm) == ["mine"]
                    assert not await in_recovery(tm), "a replica behind the commit served it"
                await other_context()
                assert seen_elsewhere == [(True, [])]
            await caught_up(engine, replica_url)
            async with tm.transaction(read_only=True):
                assert await in_recovery(tm), "the caught-up replica was not used again"
                assert await names(tm) == ["mine"]

    async def test_a_write_through_a_unit_of_work_counts_too(
        self, engine: AsyncEngine, replica_url: str
    ) -> None:
        async with (
            TransactionManager(engine, replicas=[replica_url]) as tm,
            replay_paused(replica_url),
        ):
            async with Bank(tm) as bank:
                await bank.accounts.create(name="a")
                await bank.commit()
                await bank.accounts.create(name="b")
            async with Bank(tm, read_only=True) as bank:
                assert [a.name for a in await bank.accounts.list(order_by="id")] == ["a", "b"]
                assert not await in_recovery(tm)


class TestFailures:
    async def test_a_lagging_replica_is_skipped(
        self, engine: AsyncEngine, replica_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with TransactionManager(engine, replicas=[replica_url], max_lag=0.2) as tm:
            served: list[bool] = []

            async def read() -> None:
                async with tm.transaction(read_only=True):
                    served.append(await in_recovery(tm))

            async with replay_paused(replica_url):
                reader = await in_fresh_context(read)
                async with tm.transaction():
                    await add(tm, "new")
                await received(engine, replica_url)
                await asyncio.sleep(0.5)
                with caplog.at_level(logging.WARNING, logger="sqla_uow"):
                    await reader()
            assert served == [False]
            assert "behind (max_lag=0.2)" in caplog.text

    async def test_a_read_cancelled_by_a_conflict_with_recovery_is_retried(
        self, engine: AsyncEngine, replica_url: str
    ) -> None:
        """SQLSTATE 40001 on a hot standby (``max_standby_streaming_delay`` of 1 s here)."""
        async with engine.begin() as conn:
            await conn.execute(insert(Account).values(name="read"))
        await caught_up(engine, replica_url)
        async with TransactionManager(engine, replicas=[replica_url]) as tm:
            attempts: list[str | None] = []

            async def lock_on_the_primary() -> None:
                await wait_for_query_on(replica_url, "pg_sleep")
                async with engine.begin() as conn:  # replaying this waits for the standby's lock
                    await conn.execute(text("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE"))

            @transactional(tm, read_only=True, retries=2)
            async def report() -> list[str]:
                attempts.append(tm.current_replica)
                if len(attempts) == 1:
                    locker = asyncio.ensure_future(lock_on_the_primary())
                    try:  # cancelled by the standby after max_standby_streaming_delay
                        await tm.session.execute(
                            text("SELECT pg_sleep(10) FROM accounts, (VALUES (1)) v")
                        )
                    finally:
                        await locker
                return await names(tm)

            assert await report() == ["read"]
            assert len(attempts) == 2
            assert all(attempts), "an attempt ran on the primary"

    async def test_a_replica_that_refuses_connections_is_skipped(
        self, engine: AsyncEngine, replica_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        dead = make_url(replica_url).set(port=1).render_as_string(hide_password=False)
        with caplog.at_level(logging.WARNING, logger="sqla_uow"):
            async with TransactionManager(engine, replicas=[dead]) as tm:
                for _ in range(3):
                    async with tm.transaction(read_only=True):
                        assert not await in_recovery(tm)
                        assert tm.current_replica is None
        warnings = [r for r in caplog.records if "is skipped" in r.getMessage()]
        assert len(warnings) == 1

    async def test_a_replica_lost_mid_run_costs_callers_nothing(
        self, engine: AsyncEngine, replica_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        target = make_url(replica_url)
        proxy = await TcpProxy.start(target.host or "127.0.0.1", target.port or 5432)
        through_proxy = target.set(port=proxy.port).render_as_string(hide_password=False)
        try:
            async with TransactionManager(
                engine, replicas=[through_proxy], replica_cooldown=1.0
            ) as tm:

                async def served_by_replica() -> bool:
                    async with tm.transaction(read_only=True):
                        await names(tm)
                        return await in_recovery(tm)

                assert await served_by_replica()
                with caplog.at_level(logging.WARNING, logger="sqla_uow"):
                    await proxy.stop()
                    assert [await served_by_replica() for _ in range(5)] == [False] * 5
                    await proxy.restart()
                    await asyncio.sleep(1.1)
                    assert await served_by_replica()
                messages = [r.getMessage() for r in caplog.records]
                assert sum("is skipped" in m for m in messages) == 1
                assert sum("is used again" in m for m in messages) == 1
        finally:
            await proxy.stop()


class TcpProxy:
    """A TCP forwarder on a free local port, which can be cut and restored."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.target_port = host, port
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    @classmethod
    async def start(cls, host: str, port: int) -> TcpProxy:
        proxy = cls(host, port)
        await proxy.restart()
        return proxy

    async def restart(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            self.host, self.target_port
        )
        self.writers.update((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


@pytest.mark.backends("sqlite")
async def test_without_wal_positions_a_context_reads_from_the_primary_for_a_while(
    engine: AsyncEngine,
) -> None:
    stand_in = create_async_engine(engine.url)
    async with TransactionManager(engine, replicas=[stand_in], read_your_writes_window=0.3) as tm:
        async with tm.transaction(read_only=True):
            assert tm.current_replica == make_url(engine.url).database
        async with tm.transaction():
            await add(tm, "written")
        async with tm.transaction(read_only=True):
            assert tm.current_replica is None
            assert await names(tm) == ["written"]
        await asyncio.sleep(0.35)
        async with tm.transaction(read_only=True):
            assert tm.current_replica is not None
            assert await names(tm) == ["written"]
