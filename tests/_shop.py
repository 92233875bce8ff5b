"""Shared set-up of the tests of the shop example: its import path and a clean schema.

Importing this module puts ``examples/`` on ``sys.path`` so that ``shop`` imports.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from shop.models import Base  # noqa: E402


async def drop_shop_schema(engine: AsyncEngine) -> None:
    """Remove the shop's tables and Alembic's version table."""
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


@asynccontextmanager
async def clean_shop_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on *database_url* without the shop's tables, before and after."""
    engine = create_async_engine(database_url)
    await drop_shop_schema(engine)
    try:
        yield engine
    finally:
        await drop_shop_schema(engine)
        await engine.dispose()
