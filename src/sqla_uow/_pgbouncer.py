"""Engine options for PostgreSQL behind a transaction-pooling connection pooler (PgBouncer).

In PgBouncer's ``pool_mode = transaction`` a client connection is handed a server
connection for one transaction at a time, so server-side state that outlives a
transaction is unsafe: a prepared statement made in one transaction may be missing, or
made twice, in the next. The drivers' statement caches rely on exactly that state.

The transaction manager's own per-transaction settings are already transaction-local:
the isolation level and ``read_only`` are part of the ``BEGIN`` statement on PostgreSQL
(``BEGIN ISOLATION LEVEL ... READ ONLY``), never ``SET SESSION``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import URL, make_url

from .exceptions import UnsupportedDialectError

__all__ = ["pgbouncer_options"]


def _asyncpg_statement_name() -> str:
    # Unique per statement: names from asyncpg's per-connection counter collide on a
    # server connection that another client connection used before.
    return f"__asyncpg_{uuid.uuid4().hex}__"


def _driver_connect_args(url: URL) -> dict[str, Any]:
    driver = url.get_driver_name()
    if url.get_backend_name() != "postgresql":
        raise UnsupportedDialectError(
            f"pgbouncer_options() is for PostgreSQL URLs, got {url.drivername!r}",
            dialect=url.get_backend_name(),
        )
    if driver == "asyncpg":
        return {
            # asyncpg's own statement cache, and SQLAlchemy's cache of prepared
            # statements in its asyncpg adapter: both keep statements across transactions.
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _asyncpg_statement_name,
        }
    if driver == "psycopg":
        # psycopg 3 prepares a statement after it ran `prepare_threshold` times; None never.
        return {"prepare_threshold": None}
    raise UnsupportedDialectError(
        f"pgbouncer_options() knows the asyncpg and psycopg drivers, got {url.drivername!r}",
        dialect=url.get_backend_name(),
    )


def pgbouncer_options(url: str | URL, /, **engine_options: Any) -> dict[str, Any]:
    """Engine options that make *url*'s driver safe behind PgBouncer in transaction mode.

    Returns *engine_options* with ``connect_args`` extended so that no prepared statement
    outlives its transaction: for asyncpg, its statement caches are off and every
    prepared statement gets a unique name; for psycopg 3, statements are never prepared
    server-side. ``connect_args`` given by the caller are kept and win over these.
    Session pooling and statement pooling need none of this.

    Args:
        url: The database URL (``postgresql+asyncpg://...`` or
            ``postgresql+psycopg://...``), pointing at the pooler.
        **engine_options: Other options for `create_async_engine` (pool size, echo,
            ``connect_args``, ...), passed through.

    Returns:
        The options to pass on, e.g. to `TransactionManager` with the same URL.

    Raises:
        UnsupportedDialectError: *url* is not PostgreSQL with asyncpg or psycopg.

    Example:
        ```python
        url = "postgresql+asyncpg://app@pgbouncer.internal:6432/shop"
        tm = TransactionManager(url, **pgbouncer_options(url, pool_size=20))
        ```
    """
    connect_args = _driver_connect_args(make_url(url))
    given: Mapping[str, Any] = engine_options.get("connect_args") or {}
    return {**engine_options, "connect_args": {**connect_args, **given}}
