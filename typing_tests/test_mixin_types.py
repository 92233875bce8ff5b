"""Types of the columns `sqla_uow.mixins` adds (checked by mypy, never executed)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from typing_extensions import assert_type

from sqla_uow import AsyncRepository
from sqla_uow.mixins import (
    AuditMixin,
    TimestampMixin,
    UtcDateTime,
    VersionedMixin,
    acting_as,
    current_actor,
)


class Base(DeclarativeBase):
    pass


class Article(TimestampMixin, AuditMixin, VersionedMixin, Base):
    __tablename__ = "typed_articles"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(80))
    published_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


async def columns(articles: AsyncRepository[Article]) -> None:
    article = await articles.get_one(1)
    assert_type(article.created_at, dt.datetime)
    assert_type(article.updated_at, dt.datetime)
    assert_type(article.created_by, str | None)
    assert_type(article.updated_by, str | None)
    assert_type(article.version, int)
    assert_type(article.published_at, dt.datetime | None)
    with acting_as("ann"):
        assert_type(current_actor(), str | None)
