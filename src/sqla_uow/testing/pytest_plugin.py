"""A pytest plugin: each test runs in a database transaction that is rolled back at its end.

Installed with sqla_uow and registered through the ``pytest11`` entry point ``sqla_uow``,
it adds two fixtures and two settings, and does nothing unless a test asks for a fixture:

* ``sqla_uow_engine`` (session scope): the `AsyncEngine` the tests use. Define a fixture
  of that name in your ``conftest.py`` to build it yourself (any URL, pool or driver);
  otherwise the plugin makes one from ``--sqla-uow-url`` on the command line or, failing
  that, the ``sqla_uow_url`` ini option.
* ``sqla_uow_tm`` (function scope): a `TransactionManager` for one test. It holds one
  connection with one outer transaction; every transaction the code under test begins is
  a SAVEPOINT in it (SQLAlchemy's ``join_transaction_mode="create_savepoint"`` recipe),
  so commits really happen (as savepoint releases) and everything is rolled back when
  the test ends. REQUIRED, NESTED, MANDATORY, SUPPORTS, NEVER, NOT_SUPPORTED, rollback-only
  and `uow.commit()` behave as in production; a transaction that would commit on its own
  while another is open (REQUIRES_NEW, REQUIRED inside NOT_SUPPORTED or in a task created
  inside a transaction) raises `IllegalTransactionStateError`, since it cannot be
  emulated on one connection. ``isolation_level`` and ``read_only`` are checked between
  scopes but not applied. ``on_commit`` callbacks do not run: nothing really commits
  (see `sqla_uow.testing.capture_on_commit`).

Creating the schema is yours: a session-scoped fixture that runs ``metadata.create_all``
or your Alembic migrations (see the testing how-to).

Example:
    ```python
    # conftest.py
    import pytest
    from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
    from sqlalchemy.pool import NullPool


    @pytest.fixture(scope="session")
    def sqla_uow_engine() -> AsyncEngine:
        url = "postgresql+asyncpg://app@localhost/app_test"
        return create_async_engine(url, poolclass=NullPool)


    # test_users.py
    async def test_register_commits_the_user(sqla_uow_tm: TransactionManager) -> None:
        await register(ShopUnitOfWork(sqla_uow_tm), email="ann@example.com", name="Ann")
        async with ShopUnitOfWork(sqla_uow_tm) as uow:
            assert await uow.users.count() == 1
    ```
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

from sqla_uow import TransactionManager
from sqla_uow._dialects import backend_for

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["sqla_uow_engine", "sqla_uow_tm"]

URL_OPTION: Final = "--sqla-uow-url"
"""The command-line option naming the test database."""

URL_INI: Final = "sqla_uow_url"
"""The ini option (``pytest.ini``, ``[tool.pytest.ini_options]``) naming the test database."""

_HOW_TO_CONFIGURE: Final = (
    "define a session-scoped `sqla_uow_engine` fixture returning an AsyncEngine, pass "
    f"{URL_OPTION}=URL, or set `{URL_INI} = URL` in the pytest ini options "
    "(for example sqlite+aiosqlite:///test.db or postgresql+asyncpg://user@host/db_test)"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--sqla-uow-url`` and the ``sqla_uow_url`` ini option."""
    group = parser.getgroup("sqla_uow", "sqla_uow database tests")
    group.addoption(
        URL_OPTION,
        dest="sqla_uow_url",
        default=None,
        metavar="URL",
        help="database URL for the sqla_uow_engine / sqla_uow_tm fixtures "
        f"(overrides the {URL_INI} ini option)",
    )
    parser.addini(
        URL_INI,
        help="database URL for the sqla_uow_engine / sqla_uow_tm fixtures",
        default="",
    )


def configured_url(config: pytest.Config) -> str | None:
    """The database URL from ``--sqla-uow-url``, else the ``sqla_uow_url`` ini option.

    Args:
        config: The pytest configuration.

    Returns:
        The URL, or ``None`` when neither is set.
    """
    option: str | None = config.getoption("sqla_uow_url")
    if option:
        return option
    ini: str = str(config.getini(URL_INI) or "").strip()
    return ini or None


def _make_engine(url: str) -> AsyncEngine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise pytest.UsageError(
            f"{URL_OPTION} / {URL_INI}: {url!r} is not a database URL; "
            "expected e.g. sqlite+aiosqlite:///test.db or postgresql+asyncpg://user@host/db"
        ) from exc
    if backend_for(parsed.get_dialect()()).memory_database(parsed):
        # One in-memory database lives as long as its one connection.
        return create_async_engine(parsed, poolclass=StaticPool)
    # A connection per test: connections never cross the event loops of different tests.
    return create_async_engine(parsed, poolclass=NullPool)


def _dispose(engine: AsyncEngine) -> None:
    """Dispose *engine* from synchronous code, whether or not an event loop is running."""
    error: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(engine.dispose())
        except BaseException as exc:  # pragma: no cover - reported below
            error.append(exc)

    thread = threading.Thread(target=run, name="sqla_uow-dispose")
    thread.start()
    thread.join()
    if error:  # pragma: no cover
        raise error[0]


@pytest.fixture(scope="session")
def sqla_uow_engine(pytestconfig: pytest.Config) -> Iterator[AsyncEngine]:
    """The engine of the test database, made from ``--sqla-uow-url`` or ``sqla_uow_url``.

    Override it with a fixture of the same name to build the engine yourself. The
    plugin's engine uses a ``NullPool`` (a new connection per test, so connections never
    cross event loops), or a ``StaticPool`` for an in-memory SQLite database (one
    connection holds the database for the whole session).

    Yields:
        The engine; it is disposed at the end of the session.

    Raises:
        pytest.UsageError: no URL is configured, or it is not a database URL.

    Example:
        ```python
        @pytest.fixture(scope="session")
        def sqla_uow_engine() -> AsyncEngine:
            return create_async_engine(os.environ["TEST_DATABASE_URL"], poolclass=NullPool)
        ```
    """
    url = configured_url(pytestconfig)
    if url is None:
        raise pytest.UsageError(
            f"the sqla_uow_engine fixture needs a database: {_HOW_TO_CONFIGURE}"
        )
    engine = _make_engine(url)
    try:
        yield engine
    finally:
        _dispose(engine)


@asynccontextmanager
async def _test_transaction(engine: object) -> AsyncGenerator[TransactionManager, None]:
    if not isinstance(engine, AsyncEngine):
        raise TypeError(
            "the sqla_uow_engine fixture must return a sqlalchemy.ext.asyncio.AsyncEngine "
            f"(create_async_engine(...)), not {type(engine).__name__}"
        )
    # A manager on the engine itself installs its connection hooks (the SQLite
    # transaction fix) before the test's connection is made.
    TransactionManager(engine)
    async with engine.connect() as connection:
        outer = await connection.begin()
        sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield TransactionManager(sessionmaker)
        finally:
            if outer.is_active:
                await outer.rollback()


if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def sqla_uow_tm(sqla_uow_engine: Any) -> AsyncIterator[TransactionManager]:
        """A `TransactionManager` whose every commit is rolled back when the test ends.

        The manager holds one connection of ``sqla_uow_engine`` with one outer
        transaction; each transaction it begins is a SAVEPOINT in it. The test and the
        code under test use it as in production (see the module documentation for the
        differences: no independent transactions, settings not applied, on_commit
        callbacks not run).

        Yields:
            The manager; the outer transaction is rolled back after the test.

        Raises:
            TypeError: ``sqla_uow_engine`` is not an `AsyncEngine`.

        Example:
            ```python
            async def test_creates_the_user(sqla_uow_tm: TransactionManager) -> None:
                async with ShopUnitOfWork(sqla_uow_tm) as uow:
                    await uow.users.create(email="ann@example.com", name="Ann")
                async with ShopUnitOfWork(sqla_uow_tm) as uow:
                    assert await uow.users.count() == 1
            ```
        """
        async with _test_transaction(sqla_uow_engine) as tm:
            yield tm

else:  # pragma: no cover - exercised only without pytest-asyncio

    @pytest.fixture(name="sqla_uow_tm")
    def _sqla_uow_tm_unavailable() -> TransactionManager:
        """Needs pytest-asyncio; without it, using the fixture fails with how to get it."""
        pytest.fail("the sqla_uow_tm fixture needs pytest-asyncio: pip install pytest-asyncio")
