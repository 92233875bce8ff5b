"""The pytest plugin, run the way users run it: pytester runs a user's test files.

Each run is a separate pytest process with the plugin loaded through its ``pytest11``
entry point, on SQLite (file and memory), PostgreSQL and MariaDB, with pytest-asyncio in
auto and strict mode and with the tests in collection order and reversed. After every
run the database is checked directly: the tests committed, and nothing stayed.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from test_docs import python_blocks

TABLES = ("plugin_audit", "plugin_users")
HOW_TO_PAGE = Path(__file__).resolve().parents[1] / "docs" / "how-to" / "integration-tests.md"

CONFTEST = """
import asyncio
import os

import pytest

from users import Base


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PLUGIN_TEST_ORDER") == "reversed":
        items.reverse()


@pytest.fixture(scope="session", autouse=True)
def schema(sqla_uow_engine):
    async def create():
        async with sqla_uow_engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    async def drop():
        async with sqla_uow_engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)

    asyncio.run(create())
    yield
    if os.environ.get("PLUGIN_KEEP_SCHEMA") != "1":
        asyncio.run(drop())
"""

USERS = """
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import AsyncRepository, SQLAlchemyUnitOfWork, TransactionManager, transactional


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "plugin_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100), unique=True)


class Audit(Base):
    __tablename__ = "plugin_audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    event: Mapped[str] = mapped_column(String(100))


class Users(AsyncRepository[User]):
    pass


class Audits(AsyncRepository[Audit]):
    pass


class ShopUnitOfWork(SQLAlchemyUnitOfWork):
    users: Users
    audit: Audits


class EmailTakenError(Exception):
    pass


async def register(tm, email, mailer=None):
    async with ShopUnitOfWork(tm) as uow:
        if await uow.users.exists(email=email):
            raise EmailTakenError(email)
        user = await uow.users.create(email=email)
        if mailer is not None:
            tm.on_commit(lambda: mailer.append(email))
        return user


def make_signup(tm: TransactionManager):
    @transactional(tm)
    async def signup(email: str) -> None:
        tm.session.add(User(email=email))
        tm.session.add(Audit(event=f"signup {email}"))
        tm.on_commit(lambda: None)

    return signup
"""

TESTS = """
import asyncio

import pytest
from sqlalchemy import func, select

from sqla_uow import Propagation
from sqla_uow.exceptions import (
    ConflictError,
    IllegalTransactionStateError,
    RollbackOnlyError,
    TransactionRequiredError,
)
from sqla_uow.testing import capture_on_commit
from users import Audit, EmailTakenError, ShopUnitOfWork, User, make_signup, register

pytestmark = pytest.mark.asyncio


async def count(tm, model=User):
    async with tm.transaction() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def emails(tm):
    async with tm.transaction() as session:
        return sorted(await session.scalars(select(User.email)))


async def test_starts_empty_and_commits_a_unit_of_work(sqla_uow_tm):
    assert await count(sqla_uow_tm) == 0
    await register(sqla_uow_tm, "ann@example.com")
    async with ShopUnitOfWork(sqla_uow_tm) as uow:
        assert [u.email for u in await uow.users.list()] == ["ann@example.com"]


async def test_same_unique_key_first(sqla_uow_tm):
    assert await count(sqla_uow_tm) == 0
    await register(sqla_uow_tm, "same@example.com")
    assert await emails(sqla_uow_tm) == ["same@example.com"]


async def test_same_unique_key_second(sqla_uow_tm):
    assert await count(sqla_uow_tm) == 0
    await register(sqla_uow_tm, "same@example.com")
    assert await emails(sqla_uow_tm) == ["same@example.com"]


async def test_a_service_error_rolls_back_its_own_work_only(sqla_uow_tm):
    await register(sqla_uow_tm, "ann@example.com")
    with pytest.raises(EmailTakenError):
        await register(sqla_uow_tm, "ann@example.com")
    assert await emails(sqla_uow_tm) == ["ann@example.com"]


async def test_a_conflict_leaves_the_test_transaction_usable(sqla_uow_tm):
    async with ShopUnitOfWork(sqla_uow_tm) as uow:
        await uow.users.create(email="ann@example.com")
    with pytest.raises(ConflictError):
        async with ShopUnitOfWork(sqla_uow_tm) as uow:
            await uow.users.create(email="ann@example.com")
    async with ShopUnitOfWork(sqla_uow_tm) as uow:
        await uow.users.create(email="bob@example.com")
    assert await emails(sqla_uow_tm) == ["ann@example.com", "bob@example.com"]


async def test_nested_rollback_keeps_the_enclosing_work(sqla_uow_tm):
    async with sqla_uow_tm.transaction() as session:
        session.add(User(email="outer@example.com"))
        with pytest.raises(RuntimeError):
            async with sqla_uow_tm.transaction(propagation=Propagation.NESTED) as inner:
                inner.add(User(email="inner@example.com"))
                await inner.flush()
                raise RuntimeError("undo the savepoint")
        async with sqla_uow_tm.transaction(propagation=Propagation.NESTED) as inner:
            inner.add(User(email="kept@example.com"))
    assert await emails(sqla_uow_tm) == ["kept@example.com", "outer@example.com"]


async def test_a_swallowed_error_makes_the_transaction_rollback_only(sqla_uow_tm):
    with pytest.raises(RollbackOnlyError):
        async with sqla_uow_tm.transaction() as session:
            session.add(User(email="lost@example.com"))
            try:
                async with sqla_uow_tm.transaction():
                    raise ValueError("inner failure")
            except ValueError:
                pass
    assert await count(sqla_uow_tm) == 0


async def test_transactional_commits_and_an_explicit_unit_of_work_commits_midway(sqla_uow_tm):
    await make_signup(sqla_uow_tm)("ann@example.com")
    async with ShopUnitOfWork(sqla_uow_tm, autocommit=False) as uow:
        await uow.users.create(email="bob@example.com")
        await uow.commit()
        await uow.users.create(email="not-committed@example.com")
    assert await emails(sqla_uow_tm) == ["ann@example.com", "bob@example.com"]
    assert await count(sqla_uow_tm, Audit) == 1


async def test_requires_new_raises_a_clear_error(sqla_uow_tm):
    async with sqla_uow_tm.transaction() as session:
        session.add(User(email="outer@example.com"))
        with pytest.raises(IllegalTransactionStateError, match="cannot be emulated"):
            async with sqla_uow_tm.transaction(propagation=Propagation.REQUIRES_NEW):
                pass
        with pytest.raises(IllegalTransactionStateError, match="cannot be emulated"):
            async with sqla_uow_tm.transaction(propagation=Propagation.NOT_SUPPORTED):
                async with sqla_uow_tm.transaction():
                    pass
    assert await emails(sqla_uow_tm) == ["outer@example.com"]


async def test_not_supported_runs_without_a_transaction(sqla_uow_tm):
    async with sqla_uow_tm.transaction() as session:
        session.add(User(email="outer@example.com"))
        async with sqla_uow_tm.transaction(propagation=Propagation.NOT_SUPPORTED) as none:
            assert none is None
            with pytest.raises(TransactionRequiredError):
                sqla_uow_tm.session
        assert sqla_uow_tm.session is session
    assert await emails(sqla_uow_tm) == ["outer@example.com"]


async def test_settings_are_checked_between_scopes(sqla_uow_tm):
    async with sqla_uow_tm.transaction(read_only=True):
        with pytest.raises(IllegalTransactionStateError, match="read-only"):
            async with sqla_uow_tm.transaction():
                pass
    async with sqla_uow_tm.transaction(isolation_level="SERIALIZABLE") as session:
        session.add(User(email="ann@example.com"))
    assert await emails(sqla_uow_tm) == ["ann@example.com"]


async def test_on_commit_callbacks_do_not_run_and_can_be_captured(sqla_uow_tm):
    mailer = []
    await register(sqla_uow_tm, "ann@example.com", mailer)
    assert mailer == []
    async with capture_on_commit(sqla_uow_tm) as callbacks:
        await register(sqla_uow_tm, "bob@example.com", mailer)
        with pytest.raises(EmailTakenError):
            await register(sqla_uow_tm, "bob@example.com", mailer)
    assert len(callbacks) == 1
    assert mailer == []
    callbacks[0]()
    assert mailer == ["bob@example.com"]


async def test_capture_on_commit_executes_when_asked(sqla_uow_tm):
    mailer = []
    async with capture_on_commit(sqla_uow_tm, execute=True) as callbacks:
        await register(sqla_uow_tm, "ann@example.com", mailer)
        async with sqla_uow_tm.transaction():
            with pytest.raises(RuntimeError):
                async with sqla_uow_tm.transaction(propagation=Propagation.NESTED):
                    sqla_uow_tm.on_commit(lambda: mailer.append("dropped"))
                    raise RuntimeError
        assert mailer == []
    assert len(callbacks) == 1
    assert mailer == ["ann@example.com"]


async def test_tasks_take_turns_on_the_test_connection(sqla_uow_tm):
    signup = make_signup(sqla_uow_tm)
    await asyncio.gather(*(signup(f"user{i}@example.com") for i in range(5)))
    assert await count(sqla_uow_tm) == 5
    assert await count(sqla_uow_tm, Audit) == 5
"""

STRICT_INI = "[pytest]\nasyncio_mode = strict\n"
AUTO_INI = "[pytest]\nasyncio_mode = auto\n"
COMMON_INI = (
    "asyncio_default_fixture_loop_scope = function\n"
    "asyncio_default_test_loop_scope = function\n"
    "filterwarnings =\n    error\n"
)
INNER_TESTS = 14


def user_project(pytester: pytest.Pytester, ini: str = AUTO_INI) -> None:
    """Write the user's project: models and services, conftest with the schema, tests."""
    pytester.makeini(ini + COMMON_INI)
    pytester.makepyfile(users=USERS, test_users=TESTS)
    pytester.makeconftest(CONFTEST)


async def table_counts(url: str) -> dict[str, int]:
    """Rows in the plugin test tables, read on a connection of its own."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            found = {}
            for table in TABLES:
                found[table] = (await conn.execute(text(f"SELECT COUNT(*) FROM {table}"))).scalar()
            return found
    finally:
        await engine.dispose()


async def drop_tables(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for table in TABLES:
                await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    finally:
        await engine.dispose()


class TestOnEveryBackend:
    @pytest.mark.backends("sqlite", "postgresql", "mariadb")
    @pytest.mark.parametrize(
        ("ini", "order"),
        [(AUTO_INI, "collected"), (STRICT_INI, "reversed")],
        ids=["auto-mode", "strict-mode-reversed"],
    )
    async def test_every_test_commits_and_nothing_stays(
        self,
        pytester: pytest.Pytester,
        monkeypatch: pytest.MonkeyPatch,
        database_url: str,
        ini: str,
        order: str,
    ) -> None:
        await drop_tables(database_url)
        user_project(pytester, ini)
        monkeypatch.setenv("PLUGIN_TEST_ORDER", order)
        monkeypatch.setenv("PLUGIN_KEEP_SCHEMA", "1")
        try:
            result = pytester.runpytest_subprocess(f"--sqla-uow-url={database_url}", "-v")
            result.assert_outcomes(passed=INNER_TESTS)
            assert await table_counts(database_url) == dict.fromkeys(TABLES, 0)
        finally:
            await drop_tables(database_url)
        names = [line for line in result.outlines if "::test_" in line and "PASSED" in line]
        if order == "reversed":
            assert "test_tasks_take_turns" in names[0]
        else:
            assert "test_starts_empty" in names[0]

    async def test_in_memory_sqlite(self, pytester: pytest.Pytester) -> None:
        user_project(pytester)
        result = pytester.runpytest_subprocess("--sqla-uow-url=sqlite+aiosqlite://")
        result.assert_outcomes(passed=INNER_TESTS)


POOLED_CONFTEST = """
import os

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import create_async_engine

from users import Base


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def sqla_uow_engine():
    engine = create_async_engine(os.environ["PLUGIN_DATABASE_URL"])
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield engine
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
    await engine.dispose()
"""

SESSION_LOOP_INI = (
    "[pytest]\nasyncio_mode = auto\n"
    "asyncio_default_fixture_loop_scope = session\n"
    "asyncio_default_test_loop_scope = session\n"
    "filterwarnings =\n    error\n"
)


class TestAPooledEngineOfYourOwn:
    @pytest.mark.backends("sqlite", "postgresql", "mariadb")
    async def test_works_with_tests_in_one_event_loop(
        self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, database_url: str
    ) -> None:
        await drop_tables(database_url)
        pytester.makeini(SESSION_LOOP_INI)
        pytester.makepyfile(users=USERS, test_users=TESTS)
        pytester.makeconftest(POOLED_CONFTEST)
        monkeypatch.setenv("PLUGIN_DATABASE_URL", database_url)
        result = pytester.runpytest_subprocess()
        result.assert_outcomes(passed=INNER_TESTS)


URL_PROBE = """
import pytest

pytestmark = pytest.mark.asyncio


async def test_url(sqla_uow_tm):
    print("URL", sqla_uow_tm.engine.url.database)
"""


class TestConfiguration:
    async def run(self, pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
        pytester.makepyfile(test_probe=URL_PROBE)
        return pytester.runpytest_subprocess("-s", *args)

    async def test_the_ini_option_names_the_database(self, pytester: pytest.Pytester) -> None:
        pytester.makeini(AUTO_INI + COMMON_INI + "sqla_uow_url = sqlite+aiosqlite:///ini.db\n")
        result = await self.run(pytester)
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*URL ini.db*"])

    async def test_the_command_line_overrides_the_ini(self, pytester: pytest.Pytester) -> None:
        pytester.makeini(AUTO_INI + COMMON_INI + "sqla_uow_url = sqlite+aiosqlite:///ini.db\n")
        result = await self.run(pytester, "--sqla-uow-url=sqlite+aiosqlite:///cli.db")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*URL cli.db*"])

    async def test_a_user_engine_fixture_overrides_both(self, pytester: pytest.Pytester) -> None:
        pytester.makeini(AUTO_INI + COMMON_INI + "sqla_uow_url = sqlite+aiosqlite:///ini.db\n")
        pytester.makeconftest(
            """
            import pytest
            from sqlalchemy.ext.asyncio import create_async_engine
            from sqlalchemy.pool import NullPool

            @pytest.fixture(scope="session")
            def sqla_uow_engine():
                return create_async_engine("sqlite+aiosqlite:///mine.db", poolclass=NullPool)
            """
        )
        result = await self.run(pytester, "--sqla-uow-url=sqlite+aiosqlite:///cli.db")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*URL mine.db*"])

    async def test_without_a_database_the_fixture_says_how_to_configure_one(
        self, pytester: pytest.Pytester
    ) -> None:
        pytester.makeini(AUTO_INI + COMMON_INI)
        result = await self.run(pytester)
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(
            ["*sqla_uow_engine fixture needs a database*--sqla-uow-url*sqla_uow_url*"]
        )

    async def test_a_bad_url_is_named(self, pytester: pytest.Pytester) -> None:
        pytester.makeini(AUTO_INI + COMMON_INI)
        result = await self.run(pytester, "--sqla-uow-url=not a url")
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*'not a url' is not a database URL*"])

    async def test_an_engine_fixture_of_the_wrong_type_is_named(
        self, pytester: pytest.Pytester
    ) -> None:
        pytester.makeini(AUTO_INI + COMMON_INI)
        pytester.makeconftest(
            """
            import pytest

            @pytest.fixture(scope="session")
            def sqla_uow_engine():
                return "sqlite+aiosqlite://"
            """
        )
        result = await self.run(pytester)
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*must return a sqlalchemy.ext.asyncio.AsyncEngine*not str*"])


class TestInert:
    async def test_tests_that_do_not_ask_for_it_are_untouched(
        self, pytester: pytest.Pytester
    ) -> None:
        pytester.makeini(STRICT_INI + COMMON_INI)
        pytester.makepyfile(
            test_plain=textwrap.dedent(
                """
                def test_plain():
                    assert 1 + 1 == 2
                """
            )
        )
        result = pytester.runpytest_subprocess("--strict-config", "--trace-config")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*sqla_uow.testing.pytest_plugin*"])


class TestTheHowToPage:
    @pytest.mark.backends("sqlite", "postgresql", "mariadb")
    async def test_its_code_is_a_test_suite_that_passes(
        self, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, database_url: str
    ) -> None:
        page = HOW_TO_PAGE.read_text(encoding="utf-8").splitlines()
        speed = page.index("## Speed") + 1  # its blocks show another set-up, tested above
        blocks = [block for block in python_blocks(HOW_TO_PAGE) if block.line < speed]
        source = "\n\n".join(block.source for block in blocks)
        pytester.makeini(AUTO_INI + COMMON_INI)
        pytester.makepyfile(test_page=source)
        monkeypatch.setenv("TEST_DATABASE_URL", database_url)
        result = pytester.runpytest_subprocess()
        result.assert_outcomes(passed=4)
