"""Test fixtures: one suite, run against every configured database backend.

SQLite (aiosqlite) always runs. PostgreSQL and MariaDB run when their URL is set; a test
runs on SQLite and PostgreSQL unless a ``@pytest.mark.backends(...)`` marker names others
(MariaDB is opt-in, for the dialect-specific features such as ON DUPLICATE KEY UPDATE):

    SQLA_UOW_TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test
    SQLA_UOW_TEST_MARIADB_URL=mysql+aiomysql://root@127.0.0.1:3306/test

Each test session creates a database of its own on a server (and drops it at the end),
so concurrent runs never see each other's tables. ``SQLA_UOW_TEST_REQUIRE`` (a comma-
separated list of backend names, set by ``.ci/run``) turns a skipped backend into a
failure: CI cannot pass without having exercised it.

A test module declares its tables by overriding the ``metadata`` fixture; the ``engine``
fixture creates them before each test and drops them after it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

BACKEND_URL_VARIABLES: dict[str, str] = {
    "postgresql": "SQLA_UOW_TEST_POSTGRES_URL",
    "mariadb": "SQLA_UOW_TEST_MARIADB_URL",
}
BACKENDS = ["sqlite", *BACKEND_URL_VARIABLES]
pytest_plugins = ["pytester"]

EXAMPLE_URLS = {
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+aiomysql://root@127.0.0.1:3306/test",
}


def _through_pgbouncer() -> None:
    """Give every asyncpg connection `pgbouncer_options`' arguments (``..._OPTIONS=pgbouncer``).

    With ``SQLA_UOW_TEST_POSTGRES_URL`` pointing at PgBouncer in transaction mode, this runs
    the whole PostgreSQL tier through the pooler, as `pgbouncer_options()` documents.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from sqla_uow import pgbouncer_options

    connect_args = pgbouncer_options("postgresql+asyncpg://")["connect_args"]

    @event.listens_for(Engine, "do_connect")
    def _pgbouncer_safe(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        if dialect.name == "postgresql" and dialect.driver == "asyncpg":
            for key, value in connect_args.items():
                cparams.setdefault(key, value)


if os.environ.get("SQLA_UOW_TEST_POSTGRES_OPTIONS") == "pgbouncer":
    _through_pgbouncer()


def required_backends() -> set[str]:
    """Backends that must run (``SQLA_UOW_TEST_REQUIRE``); a skip of one fails the run."""
    raw = os.environ.get("SQLA_UOW_TEST_REQUIRE", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "backends(*names): run the test only on these backends (sqlite, postgresql, mariadb)",
    )


DEFAULT_BACKENDS = ("sqlite", "postgresql")
"""Backends a test runs on unless its ``backends`` marker says otherwise (MariaDB is opt-in)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect backend-parametrised tests on backends their ``backends`` marker excludes.

    Tests marked ``slow`` (the soak tests) are deselected too, unless a ``-m`` expression
    selects tests by marker: ``pytest -m reliability`` runs them (``.ci/run`` does).
    """
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    run_slow = bool(config.getoption("markexpr", ""))
    for item in items:
        if not run_slow and item.get_closest_marker("slow") is not None:
            dropped.append(item)
            continue
        marker = item.get_closest_marker("backends")
        allowed = marker.args if marker is not None else DEFAULT_BACKENDS
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec is not None else None
        if backend is not None and backend not in allowed:
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


_SKIPPED_ON_REQUIRED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember every skipped test whose id names a required backend."""
    params = report.nodeid.rpartition("[")[2].rstrip("]").split("-")
    if report.skipped and required_backends().intersection(params):
        _SKIPPED_ON_REQUIRED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a required backend had skipped tests."""
    if not _SKIPPED_ON_REQUIRED:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"{len(_SKIPPED_ON_REQUIRED)} test(s) of a backend named in SQLA_UOW_TEST_REQUIRE "
            "were skipped; first: " + ", ".join(_SKIPPED_ON_REQUIRED[:5]),
            red=True,
        )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


async def _admin(url: str, statement: str) -> None:
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend this test runs on: ``sqlite``, ``postgresql`` or ``mariadb``."""
    name: str = request.param
    if name in BACKEND_URL_VARIABLES and not os.environ.get(BACKEND_URL_VARIABLES[name]):
        variable = BACKEND_URL_VARIABLES[name]
        reason = (
            f"{name} tests need {variable} (for example {variable}={EXAMPLE_URLS[name]}); "
            "it is not set"
        )
        if name in required_backends():
            pytest.fail(f"{reason}, but SQLA_UOW_TEST_REQUIRE names {name}")
        pytest.skip(reason)
    return name


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A URL to an empty database that belongs to this test session alone."""
    if backend == "sqlite":
        path: Path = tmp_path_factory.mktemp("sqlite") / "test.db"
        yield f"sqlite+aiosqlite:///{path}"
        return
    server_url = os.environ[BACKEND_URL_VARIABLES[backend]]
    name = f"sqla_uow_{uuid.uuid4().hex[:12]}"
    quote = '"' if backend == "postgresql" else "`"
    asyncio.run(_admin(server_url, f"CREATE DATABASE {quote}{name}{quote}"))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        drop = f"DROP DATABASE IF EXISTS {quote}{name}{quote}"
        if backend == "postgresql":
            drop += " WITH (FORCE)"
        asyncio.run(_admin(server_url, drop))


@pytest.fixture
def metadata() -> MetaData:
    """The tables a test needs; test modules override this fixture with their own."""
    return MetaData()


@pytest.fixture
async def engine(database_url: str, metadata: MetaData) -> AsyncIterator[AsyncEngine]:
    """An engine on the session's database with ``metadata``'s tables created.

    The tables are dropped and the engine disposed after the test; the test fails if it
    left a connection checked out of the pool.
    """
    # A queue pool on every backend (SQLAlchemy 2.0 gives file SQLite a NullPool), so the
    # leak check below means the same everywhere.
    eng = create_async_engine(database_url, poolclass=AsyncAdaptedQueuePool)
    async with eng.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    try:
        yield eng
        leaked = eng.pool.checkedout()  # type: ignore[attr-defined,unused-ignore]
        assert leaked == 0, f"{leaked} connection(s) still checked out of the pool"
    finally:
        async with eng.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await eng.dispose()
