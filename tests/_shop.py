"""Shared set-up of the tests of the shop example: its import path and a clean schema.

Importing this module puts ``examples/`` on ``sys.path`` so that ``shop`` imports.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
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


async def new_user(client: httpx.AsyncClient, email: str, name: str = "Someone") -> dict[str, Any]:
    """POST /users through the shop app's *client*; the created user's body (201 asserted)."""
    response = await client.post("/users", json={"email": email, "name": name})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def new_order(
    client: httpx.AsyncClient, user_id: int, title: str, price: str = "10.00"
) -> dict[str, Any]:
    """POST an order for *user_id* through *client*; the created order's body (201 asserted)."""
    response = await client.post(f"/users/{user_id}/orders", json={"title": title, "price": price})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
