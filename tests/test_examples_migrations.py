"""The shop example's Alembic migrations produce exactly the schema its models describe."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Boolean, Connection, func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from _shop import EXAMPLES, clean_shop_engine
from shop.migrations import MIGRATION_LOCK_ID, alembic_config, upgrade_to_head
from shop.models import Base
from sqla_uow import TransactionManager

SHOP_TABLES = {"users", "orders"}


@pytest.fixture
async def shop_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the test database without the shop's tables; they are dropped after."""
    async with clean_shop_engine(database_url) as engine:
        yield engine


def differences(connection: Connection) -> list[Any]:
    """What autogenerate would change to make the database match the models."""
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": same_boolean_default}
    )
    return list(compare_metadata(context, Base.metadata))


_TRUTH = {"1": True, "true": True, "0": False, "false": False}


def same_boolean_default(
    context: Any,
    inspected_column: Any,
    metadata_column: Any,
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """Whether a server default differs, telling equal booleans apart from their spelling.

    MariaDB stores ``BOOLEAN`` as ``TINYINT(1)`` and reflects ``DEFAULT true`` as ``1``;
    every other default is left to Alembic's own comparison (None).
    """
    if not isinstance(metadata_column.type, Boolean) or None in (
        inspected_default,
        rendered_metadata_default,
    ):
        return None
    reflected = _TRUTH.get(str(inspected_default).strip("'\"").lower())
    declared = _TRUTH.get(str(rendered_metadata_default).strip("'\"").lower())
    if reflected is None or declared is None:
        return None
    return reflected != declared


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


@pytest.mark.backends("sqlite", "postgresql", "mariadb")
class TestMigrations:
    async def test_the_migrated_schema_matches_the_models(self, shop_engine: AsyncEngine) -> None:
        await upgrade_to_head(TransactionManager(shop_engine))

        async with shop_engine.connect() as conn:
            assert await conn.run_sync(differences) == []
            assert await conn.run_sync(table_names) >= SHOP_TABLES

    async def test_an_empty_database_differs_from_the_models(
        self, shop_engine: AsyncEngine
    ) -> None:
        # The comparison above can fail: without the migrations it finds the tables missing.
        async with shop_engine.connect() as conn:
            added = {diff[1].name for diff in await conn.run_sync(differences)}

        assert added >= SHOP_TABLES

    async def test_upgrading_twice_is_a_no_op(self, shop_engine: AsyncEngine) -> None:
        await upgrade_to_head(TransactionManager(shop_engine))
        await upgrade_to_head(TransactionManager(shop_engine))

        async with shop_engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert [tuple(row) for row in version] == [("0002",)]

    async def test_downgrade_to_base_removes_the_tables(self, shop_engine: AsyncEngine) -> None:
        await upgrade_to_head(TransactionManager(shop_engine))

        def downgrade(connection: Connection) -> None:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "base")

        async with shop_engine.begin() as conn:
            await conn.run_sync(downgrade)
        async with shop_engine.connect() as conn:
            assert not SHOP_TABLES & await conn.run_sync(table_names)


class TestConcurrentStarts:
    """Processes that start at once on an empty database migrate it once.

    (tests/test_examples_demo.py starts two server workers on an empty database.)
    """

    @pytest.mark.backends("postgresql")
    async def test_an_upgrade_waits_for_the_migration_lock(
        self, database_url: str, shop_engine: AsyncEngine
    ) -> None:
        async with shop_engine.connect() as holder:
            await holder.execute(select(func.pg_advisory_lock(MIGRATION_LOCK_ID)))
            async with TransactionManager(database_url) as tm:
                upgrade = asyncio.ensure_future(upgrade_to_head(tm))
                try:
                    await asyncio.sleep(1)
                    assert not upgrade.done()
                    async with shop_engine.connect() as conn:
                        assert not SHOP_TABLES & await conn.run_sync(table_names)
                finally:
                    await holder.execute(select(func.pg_advisory_unlock(MIGRATION_LOCK_ID)))
                await asyncio.wait_for(upgrade, timeout=30)

        async with shop_engine.connect() as conn:
            assert await conn.run_sync(table_names) >= SHOP_TABLES


class TestAlembicCommandLine:
    def test_upgrade_and_check_from_the_shop_directory(
        self, database_url: str, shop_engine: AsyncEngine
    ) -> None:
        # The command line path of env.py: its own engine from DATABASE_URL, asyncio.run.
        env = {**os.environ, "DATABASE_URL": database_url}

        def alembic(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "alembic", *args],
                cwd=EXAMPLES / "shop",
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )

        try:
            upgrade = alembic("upgrade", "head")
            assert upgrade.returncode == 0, upgrade.stderr
            assert "Running upgrade 0001 -> 0002" in upgrade.stderr
            check = alembic("check")
            assert check.returncode == 0, check.stderr
            assert "No new upgrade operations detected" in check.stdout + check.stderr
        finally:
            downgrade = alembic("downgrade", "base")
            assert downgrade.returncode == 0, downgrade.stderr
