"""Alembic's entry point: runs the migrations on an async engine.

Two ways in:

- from the app or the demo (`shop.migrations.upgrade_to_head`), which pass an open
  connection in ``config.attributes["connection"]``: the migrations run on it;
- from the ``alembic`` command line: an engine is made from ``DATABASE_URL`` and the
  migrations run inside ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shop.migrations import lock_for_migrations
from shop.models import Base
from shop.settings import Settings

config = context.config
target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    """Configure the migration context on *connection* and run the pending migrations."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        # Before Alembic reads the current revision: a second process waits here until
        # the first has committed, then finds nothing left to do.
        lock_for_migrations(connection)
        context.run_migrations()


async def run_migrations_online() -> None:
    """Open an engine on ``DATABASE_URL`` and run the migrations (the command line path)."""
    settings = Settings.from_env()
    engine = create_async_engine(settings.database_url, **settings.engine_options())
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    """Write the migrations as SQL (``alembic upgrade head --sql``)."""
    context.configure(
        url=Settings.from_env().database_url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    if context.is_offline_mode():
        run_migrations_offline()
    else:
        asyncio.run(run_migrations_online())
