"""The shop's Alembic migrations, and a function that applies them.

The app (in its lifespan) and the demo call `upgrade_to_head` on start, so a new
database gets its schema from the same migrations production would run. The command
line works too, from ``examples/shop``: ``alembic upgrade head``.

When several processes start at once on an empty database (``uvicorn --workers 2``),
one migrates and the others wait, then find the schema up to date: on PostgreSQL every
run holds an advisory lock (`MIGRATION_LOCK_ID`) for its transaction, on SQLite the
transaction takes the write lock as it begins.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, func, select

from sqla_uow import TransactionManager

__all__ = ["MIGRATION_LOCK_ID", "alembic_config", "lock_for_migrations", "upgrade_to_head"]

_HERE = Path(__file__).resolve().parent


def alembic_config() -> Config:
    """The Alembic configuration of the shop (``shop/alembic.ini``), usable from any directory."""
    config = Config(str(_HERE.parent / "alembic.ini"))
    config.set_main_option("script_location", str(_HERE))
    return config


MIGRATION_LOCK_ID = 0x73686F70  # "shop"
"""The key of the PostgreSQL advisory lock held while the shop's migrations run."""


def lock_for_migrations(connection: Connection) -> None:
    """Wait for, then hold, the migration lock until *connection*'s transaction ends.

    On PostgreSQL (``pg_advisory_xact_lock``, released at commit or rollback: DDL is
    transactional there, so the lock covers the whole migration). Other databases
    take no lock here: on SQLite `upgrade_to_head` begins with ``BEGIN IMMEDIATE``,
    which queues the processes; MySQL commits each DDL statement on its own, so no
    lock could make its migrations atomic: run ``alembic upgrade head`` once before
    starting several workers there.

    Example:
        ```python
        with context.begin_transaction():
            lock_for_migrations(connection)
            context.run_migrations()
        ```
    """
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_ID)))


def _upgrade(connection: Connection, config: Config) -> None:
    # env.py runs the migrations on this connection instead of opening its own.
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_to_head(tm: TransactionManager) -> None:
    """Bring the database behind *tm* to the newest revision (a no-op when it is there).

    One transaction of *tm*: on SQLite it begins with ``BEGIN IMMEDIATE`` (the write
    lock at once, so a second process waits its turn instead of failing halfway), on
    PostgreSQL the migrations hold `MIGRATION_LOCK_ID`.

    Example:
        ```python
        await upgrade_to_head(tm)
        ```
    """
    async with tm.transaction() as session:
        connection = await session.connection()
        await connection.run_sync(_upgrade, alembic_config())
