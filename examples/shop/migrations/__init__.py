"""The shop's Alembic migrations, and a function that applies them.

The app (in its lifespan) and the demo call `upgrade_to_head` on start, so a new
database gets its schema from the same migrations production would run. The command
line works too, from ``examples/shop``: ``alembic upgrade head``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["alembic_config", "upgrade_to_head"]

_HERE = Path(__file__).resolve().parent


def alembic_config() -> Config:
    """The Alembic configuration of the shop (``shop/alembic.ini``), usable from any directory."""
    config = Config(str(_HERE.parent / "alembic.ini"))
    config.set_main_option("script_location", str(_HERE))
    return config


def _upgrade(connection: Connection, config: Config) -> None:
    # env.py runs the migrations on this connection instead of opening its own.
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Bring the database behind *engine* to the newest revision (a no-op when it is there).

    Example:
        ```python
        await upgrade_to_head(tm.engine)
        ```
    """
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, alembic_config())
