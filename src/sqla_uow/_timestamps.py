"""`TimestampMixin`, `AuditMixin` and the UTC column type and actor they use.

Both mixins work through column defaults, so every write path fills them without
knowing about them: the ORM (``create``, ``update``) and Core statements
(``create_many``, ``insert_many``, ``update_many``) apply ``server_default``,
``default`` and ``onupdate``; ``upsert_many``, whose ``ON CONFLICT`` update SQLAlchemy
leaves alone, adds them itself (`ModelMeta.upsert_refresh`, `ModelMeta.python_onupdates`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Generator
from contextvars import ContextVar
from typing import Any

from sqlalchemy import String
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import DateTime, TypeDecorator, TypeEngine

from ._dialects import UtcNow, backend_for

__all__ = [
    "AuditMixin",
    "TimestampMixin",
    "UtcDateTime",
    "acting_as",
    "current_actor",
]


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware datetime column that stores UTC and reads back aware UTC values.

    PostgreSQL stores ``TIMESTAMP WITH TIME ZONE``; MySQL / MariaDB ``DATETIME(6)`` and
    SQLite text, both holding UTC without a zone. Values are converted to UTC before
    they are bound and come back as ``datetime`` objects with ``tzinfo=UTC`` on every
    backend. A naive datetime is refused (`InvalidFieldError` from the repository,
    before any SQL), as its zone would be a guess.

    Example:
        ```python
        class Event(Base):
            __tablename__ = "events"
            id: Mapped[int] = mapped_column(primary_key=True)
            starts_at: Mapped[datetime] = mapped_column(UtcDateTime())
        ```
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[dt.datetime]:
        """``datetime``."""
        return dt.datetime

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """The database's column type for an aware UTC timestamp."""
        return dialect.type_descriptor(backend_for(dialect).utc_datetime_type())

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        """*value* (an aware datetime or ISO 8601 text) in UTC, naive where the column is.

        Raises:
            ValueError: A naive datetime.
            TypeError: Not a datetime.
        """
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("a naive datetime: give one with a time zone")
        utc = value.astimezone(dt.timezone.utc)
        return utc.replace(tzinfo=None) if backend_for(dialect).naive_utc_datetimes else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        """The stored value as an aware UTC datetime."""
        if not isinstance(value, dt.datetime):
            return None if value is None else value  # pragma: no cover - driver quirk
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class TimestampMixin:
    """``created_at`` and ``updated_at``: aware UTC datetimes the database sets.

    Both default to the database's clock when a row is inserted (``server_default``).
    Every update refreshes ``updated_at``: `AsyncRepository.update` and ``update_many``
    (through the column's ``onupdate``) and the update half of ``upsert_many``. The
    clock is the time of the statement: ``statement_timestamp()`` on PostgreSQL,
    ``UTC_TIMESTAMP(6)`` on MySQL / MariaDB (microseconds), ``strftime('%f')`` on
    SQLite (milliseconds). Values read back are timezone-aware (UTC) everywhere.

    The in-memory fakes set both from Python's clock.

    Example:
        ```python
        class Article(TimestampMixin, Base):
            __tablename__ = "articles"
            id: Mapped[int] = mapped_column(primary_key=True)
            title: Mapped[str] = mapped_column(String(200))

        article = await articles.create(title="Hello")
        assert article.created_at.tzinfo is not None
        ```
    """

    created_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime(), server_default=UtcNow(), nullable=False
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime(), server_default=UtcNow(), onupdate=UtcNow(), nullable=False
    )


_ACTOR: ContextVar[str | None] = ContextVar("sqla_uow_actor", default=None)


def current_actor() -> str | None:
    """Who is writing: the actor of the innermost `acting_as` block, else ``None``.

    `AuditMixin` fills ``created_by`` and ``updated_by`` with it. It is a context
    variable: each asyncio task sees its own (a task started inside a block inherits
    the actor of that moment).

    Example:
        ```python
        with acting_as("ann@example.com"):
            assert current_actor() == "ann@example.com"
        assert current_actor() is None
        ```
    """
    return _ACTOR.get()


@contextlib.contextmanager
def acting_as(actor: str | None) -> Generator[None, None, None]:
    """Make *actor* the `current_actor` inside the block (``None``: nobody).

    Use it where the application knows who acts: a request's dependency or
    middleware, a job runner, a test. Blocks nest; leaving one restores the actor
    before it.

    Example:
        ```python
        with acting_as("ann@example.com"):
            article = await articles.create(title="Hello")
        assert article.created_by == "ann@example.com"
        ```
    """
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


class AuditMixin:
    """``created_by`` and ``updated_by``: the `current_actor` that wrote the row.

    Filled by column defaults from `current_actor` (a string of at most 255
    characters, ``None`` outside any `acting_as` block): ``created_by`` when the row
    is inserted, ``updated_by`` then and on every update, by every write method
    (``create``, ``create_many``, ``insert_many``, ``update``, ``update_many``,
    ``upsert_many``) and by the in-memory fakes. A value the caller gives explicitly
    wins.

    Example:
        ```python
        class Article(AuditMixin, Base):
            __tablename__ = "articles"
            id: Mapped[int] = mapped_column(primary_key=True)
            title: Mapped[str] = mapped_column(String(200))

        with acting_as("ann"):
            article = await articles.create(title="Hello")
        with acting_as("bob"):
            await articles.update(article.id, title="Hello!")
        assert (article.created_by, article.updated_by) == ("ann", "bob")
        ```
    """

    created_by: Mapped[str | None] = mapped_column(String(255), default=current_actor)
    updated_by: Mapped[str | None] = mapped_column(
        String(255), default=current_actor, onupdate=current_actor
    )
