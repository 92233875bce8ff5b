"""Configuration from the environment.

- ``DATABASE_URL``: an async SQLAlchemy URL (default ``sqlite+aiosqlite:///shop.db``).
- ``SHOP_ENV``: ``development`` (the default) or ``production``.
- ``SHOP_CURSOR_SECRET``: the key that signs pagination cursors, 32 characters or more;
  required in production.
- ``SHOP_ADMIN_TOKEN``: the token the ``/admin/...`` routes require in the
  ``X-Admin-Token`` header; unset, those routes are closed (403).
- ``SHOP_ECHO_SQL``: ``1`` logs every SQL statement.
- ``DATABASE_PGBOUNCER``: ``1`` when ``DATABASE_URL`` points at PgBouncer in transaction
  pooling mode (the engine then gets `sqla_uow.pgbouncer_options`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqla_uow import pgbouncer_options

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///shop.db"
"""A SQLite file in the working directory: the demo runs with nothing to set up."""

Environment = Literal["development", "production"]
"""How the shop runs: ``production`` requires every secret to be set."""

ENVIRONMENTS: tuple[Environment, ...] = ("development", "production")

MIN_SECRET_LENGTH = 32
"""The shortest ``SHOP_CURSOR_SECRET`` accepted."""

MAKE_A_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
"""A command that prints a good ``SHOP_CURSOR_SECRET``."""


class SettingsError(ValueError):
    """The environment does not describe a shop that can start (the message says why)."""


@dataclass(frozen=True)
class Settings:
    """What the shop needs to know about its environment.

    Attributes:
        database_url: An async SQLAlchemy URL (``sqlite+aiosqlite:///...``,
            ``postgresql+asyncpg://...``).
        echo_sql: Log every SQL statement (``SHOP_ECHO_SQL=1``).
        environment: ``development`` (the default) or ``production`` (``SHOP_ENV``).
        pgbouncer: ``DATABASE_URL`` points at PgBouncer in transaction pooling mode
            (``DATABASE_PGBOUNCER=1``): no prepared statement may outlive its
            transaction.
        cursor_secret: The key that signs the pagination cursors the API hands out
            (``SHOP_CURSOR_SECRET``), so that a client cannot make one up. Required in
            production; without it (in development) cursors are signed with sqla_uow's
            public key: tamper-evident, not unforgeable.
        admin_token: The token of the admin routes (``SHOP_ADMIN_TOKEN``), sent by a
            client in the ``X-Admin-Token`` header; ``None`` closes them.

    Raises:
        SettingsError: ``environment`` is unknown, or it is ``production`` and
            ``cursor_secret`` is missing or shorter than 32 characters.

    Example:
        ```python
        settings = Settings.from_env({"DATABASE_URL": "postgresql+asyncpg://localhost/shop"})
        app = create_app(settings)
        ```
    """

    database_url: str = DEFAULT_DATABASE_URL
    echo_sql: bool = False
    environment: Environment = "development"
    cursor_secret: bytes | None = None
    pgbouncer: bool = False
    admin_token: str | None = None

    def __post_init__(self) -> None:
        if self.environment not in ENVIRONMENTS:
            raise SettingsError(
                f"SHOP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {self.environment!r}"
            )
        if self.environment != "production":
            return
        if not self.cursor_secret:
            raise SettingsError(
                "SHOP_CURSOR_SECRET is not set: in production (SHOP_ENV=production) the "
                "pagination cursors must be signed with a secret key, or clients could "
                f"forge them. Set it to a random string, for example the output of {MAKE_A_SECRET}"
            )
        if len(self.cursor_secret) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"SHOP_CURSOR_SECRET is {len(self.cursor_secret)} characters long; use "
                f"{MIN_SECRET_LENGTH} or more, for example the output of {MAKE_A_SECRET}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the variables in the module's table (from `os.environ` by default).

        Raises:
            SettingsError: as the class does.
        """
        env = os.environ if environ is None else environ
        secret = env.get("SHOP_CURSOR_SECRET", "").strip()
        admin_token = env.get("SHOP_ADMIN_TOKEN", "").strip()
        return cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            echo_sql=env.get("SHOP_ECHO_SQL", "").lower() in {"1", "true", "yes"},
            environment=cast("Environment", env.get("SHOP_ENV", "").strip() or "development"),
            cursor_secret=secret.encode() if secret else None,
            pgbouncer=env.get("DATABASE_PGBOUNCER", "").lower() in {"1", "true", "yes"},
            admin_token=admin_token or None,
        )

    def engine_options(self, **options: Any) -> dict[str, Any]:
        """*options* for the engine of `database_url`, made safe behind PgBouncer if need be."""
        if self.pgbouncer:
            return pgbouncer_options(self.database_url, **options)
        return options
