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

from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import NoSuchModuleError

from ._dialects import backend_for
from .exceptions import UnsupportedDialectError

__all__ = ["pgbouncer_options"]


def _driver_connect_args(url: URL) -> dict[str, Any]:
    try:
        dialect = url.get_dialect()()
    except NoSuchModuleError as exc:
        raise UnsupportedDialectError(
            f"pgbouncer_options() does not know the database of {url.drivername!r}",
            dialect=url.get_backend_name(),
        ) from exc
    connect_args = backend_for(dialect).transaction_pooler_connect_args()
    if connect_args is None:
        raise UnsupportedDialectError(
            "pgbouncer_options() is for PostgreSQL URLs with the asyncpg or psycopg driver, "
            f"got {url.drivername!r}",
            dialect=url.get_backend_name(),
        )
    return connect_args


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
