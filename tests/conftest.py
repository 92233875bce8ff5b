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

A run ends with a short summary instead of a line per skipped test: the tests each backend
ran and skipped, how to enable a backend that is not configured, the other skip reasons,
and what was deselected (and how to run it).

A test module declares its tables by overriding the ``metadata`` fixture; the ``engine``
fixture creates them before each test and drops them after it.
"""

from __future__ import annotations

import asyncio
import os
import re
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
    """Give every PostgreSQL connection `pgbouncer_options`' arguments for its driver
    (asyncpg or psycopg; ``..._OPTIONS=pgbouncer``).

    With ``SQLA_UOW_TEST_POSTGRES_URL`` pointing at PgBouncer in transaction mode, this runs
    the whole PostgreSQL tier through the pooler, as `pgbouncer_options()` documents.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from sqla_uow import pgbouncer_options

    @event.listens_for(Engine, "do_connect")
    def _pgbouncer_safe(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        if dialect.name == "postgresql" and dialect.driver in ("asyncpg", "psycopg"):
            url = f"postgresql+{dialect.driver}://"
            for key, value in pgbouncer_options(url)["connect_args"].items():
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
        _RUN.not_applicable.extend(dropped)
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


class _RunSummary:
    """What the end-of-run summary reports: backends run and skipped, deselections."""

    def __init__(self) -> None:
        self.not_applicable: list[pytest.Item] = []  # pairs a ``backends`` marker rules out
        self.deselected: list[pytest.Item] = []  # all deselected items, those above included
        self.ran: dict[str, int] = {}  # backend -> tests that ran (passed or failed)
        self.skipped: dict[str, int] = {}  # backend, or "" for the rest -> skipped tests
        self.skip_reasons: dict[str, dict[str, int]] = {}  # backend -> reason -> count


_RUN = _RunSummary()
_SKIPPED_ON_REQUIRED: list[str] = []


def _backend_of(nodeid: str) -> str | None:
    """The backend named in a test id's parameters, if any."""
    name, bracket, params = nodeid.partition("[")  # parameter ids may contain brackets too
    if not bracket or "::" not in name:
        return None
    return next((backend for backend in BACKENDS if backend in params[:-1].split("-")), None)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Count what is deselected, so the summary can say why and how to run it."""
    _RUN.deselected.extend(items)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count tests per backend; remember every skipped test of a required backend."""
    backend = _backend_of(report.nodeid)
    if report.skipped:
        key = backend or ""
        _RUN.skipped[key] = _RUN.skipped.get(key, 0) + 1
        reasons = _RUN.skip_reasons.setdefault(key, {})
        reason = _skip_reason(report)
        reasons[reason] = reasons.get(reason, 0) + 1
        if backend in required_backends():
            _SKIPPED_ON_REQUIRED.append(report.nodeid)
    elif report.when == "call" and backend is not None:
        _RUN.ran[backend] = _RUN.ran.get(backend, 0) + 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A few lines instead of one per skip: the backends that ran, how to enable the others,
    and what was deselected and how to run it."""
    lines: list[str] = []
    write = lines.append
    for name in BACKENDS:
        ran, skipped = _RUN.ran.get(name, 0), _RUN.skipped.get(name, 0)
        if not ran and not skipped:
            continue
        line = f"{name:<11} {ran} ran"
        if skipped:
            line += f", {skipped} skipped"
            variable = BACKEND_URL_VARIABLES.get(name)
            if variable and not os.environ.get(variable):
                line += f": not configured; to run it, export {variable}={EXAMPLE_URLS[name]}"
        write(line)
    other = dict(_RUN.skip_reasons.get("", {}))
    for name in BACKENDS:  # skips of a configured backend, for reasons of their own
        variable = BACKEND_URL_VARIABLES.get(name)
        if not variable or os.environ.get(variable):
            for reason, count in _RUN.skip_reasons.get(name, {}).items():
                other[reason] = other.get(reason, 0) + count
    by_count = sorted(other.items(), key=lambda pair: -pair[1])
    for reason, count in by_count[:5]:
        write(f"skipped     {count}: {reason}")
    if len(by_count) > 5:
        write(f"skipped     ... {len(by_count) - 5} more reasons (pytest -rs lists every skip)")
    if _RUN.not_applicable:
        write(
            f"deselected  {len(_RUN.not_applicable)} test x backend pairs that a test's "
            "@pytest.mark.backends(...) rules out (they never run)"
        )
    ruled_out = {id(item) for item in _RUN.not_applicable}
    chosen = [item for item in _RUN.deselected if id(item) not in ruled_out]
    if chosen:
        options = _selection_options(terminalreporter.config, chosen)
        write(f"deselected  {len(chosen)} by {options}")
    if lines:
        terminalreporter.write_sep("-", "run summary")
        for line in lines:
            terminalreporter.write_line(line)


def _selection_options(config: pytest.Config, deselected: list[pytest.Item]) -> str:
    """How tests were deselected (``-m``/``-k``), and how to run the deselected ones."""
    markexpr: str = config.getoption("markexpr", "") or ""
    keyword: str = config.getoption("keyword", "") or ""
    said = " and ".join(
        f"{flag} {expr!r}" for flag, expr in (("-m", markexpr), ("-k", keyword)) if expr
    )
    words = set(re.findall(r"\w+", markexpr)) - {"and", "or", "not"}
    markers = sorted({mark.name for item in deselected for mark in item.iter_markers()} & words)
    if markers:
        return f"{said or 'a plugin'}; to run them: pytest -m {' or '.join(markers)!r}"
    return f"{said or 'a plugin'}; run without that option to include them"


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
