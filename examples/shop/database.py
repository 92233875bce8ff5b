"""Opening the shop's database: one `TransactionManager` for the life of the process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from sqla_uow import TransactionManager, set_default_manager

from .migrations import upgrade_to_head
from .repositories import OrderRepository
from .settings import Settings


def _enable_sqlite_foreign_keys(dbapi_connection: Any, connection_record: Any) -> None:
    # SQLite ignores foreign keys (and ON DELETE CASCADE) unless each connection asks.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def enable_foreign_keys(engine: AsyncEngine) -> None:
    """Make every new SQLite connection of *engine* enforce foreign keys.

    The shop relies on them (``ON DELETE CASCADE`` removes a user's orders). Other
    databases always enforce them: there this does nothing.

    Example:
        ```python
        engine = create_async_engine("sqlite+aiosqlite:///shop.db")
        enable_foreign_keys(engine)
        ```
    """
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _enable_sqlite_foreign_keys)


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[TransactionManager]:
    """Yield the shop's `TransactionManager`, with the schema migrated to the newest revision.

    The migrations run under a lock, so several processes starting at once on an empty
    database migrate it once. Until the block exits, when the engine (and its
    connection pool) is disposed, the manager is the process's default (the one the
    ``@transactional`` services use) and ``settings.cursor_secret`` is the key of
    `OrderRepository`'s cursors.

    Example:
        ```python
        async with open_database(Settings.from_env()) as tm:
            async with ShopUnitOfWork(tm) as uow:
                ...
        ```
    """
    options = settings.engine_options(echo=settings.echo_sql)
    async with TransactionManager(settings.database_url, **options) as tm:
        enable_foreign_keys(tm.engine)
        await upgrade_to_head(tm)
        # cursor_secret is a class attribute: one key per process, as there is one
        # shop per process (restored on exit, for tests that open several in turn).
        previous_secret = OrderRepository.cursor_secret
        OrderRepository.cursor_secret = settings.cursor_secret
        # The manager of @transactional services called outside a transaction.
        previous_manager = set_default_manager(tm)
        try:
            yield tm
        finally:
            set_default_manager(previous_manager)
            OrderRepository.cursor_secret = previous_secret
