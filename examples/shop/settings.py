"""Configuration from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///shop.db"
"""A SQLite file in the working directory: the demo runs with nothing to set up."""


@dataclass(frozen=True)
class Settings:
    """What the shop needs to know about its environment.

    Attributes:
        database_url: An async SQLAlchemy URL (``sqlite+aiosqlite:///...``,
            ``postgresql+asyncpg://...``).
        echo_sql: Log every SQL statement (``SHOP_ECHO_SQL=1``).

    Example:
        ```python
        settings = Settings.from_env({"DATABASE_URL": "postgresql+asyncpg://localhost/shop"})
        app = create_app(settings)
        ```
    """

    database_url: str = DEFAULT_DATABASE_URL
    echo_sql: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``DATABASE_URL`` and ``SHOP_ECHO_SQL`` (from `os.environ` by default)."""
        env = os.environ if environ is None else environ
        return cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            echo_sql=env.get("SHOP_ECHO_SQL", "").lower() in {"1", "true", "yes"},
        )
