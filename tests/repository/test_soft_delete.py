"""`SoftDeleteMixin`: deletes set ``deleted_at``, reads and writes skip soft-deleted rows."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import ForeignKey, MetaData, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload

from sqla_uow import AsyncRepository, ConflictError, InvalidFieldError, NotFoundError
from sqla_uow.mixins import SoftDeleteMixin

pytestmark = pytest.mark.backends("sqlite", "postgresql", "mariadb")


class Base(DeclarativeBase):
    pass


class Author(SoftDeleteMixin, Base):
    __tablename__ = "soft_author"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop_id: Mapped[int] = mapped_column(default=7)
    email: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(50))


class Book(Base):
    __tablename__ = "soft_book"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    reviews: Mapped[list[Review]] = relationship(back_populates="book")


class Review(SoftDeleteMixin, Base):
    __tablename__ = "soft_review"

    id: Mapped[int] = mapped_column(primary_key=True)
    book_id: Mapped[int] = mapped_column(ForeignKey("soft_book.id"))
    text: Mapped[str] = mapped_column(String(50))
    book: Mapped[Book] = relationship(back_populates="reviews")


class AuthorRepository(AsyncRepository[Author]):
    pass


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
def authors(session: AsyncSession) -> AuthorRepository:
    return AuthorRepository(session)


@pytest.fixture
async def seeded(session: AsyncSession, authors: AuthorRepository) -> dict[str, Author]:
    """Ann, Bob (shop 7) and Cat (shop 8), all live."""
    made = await authors.create_many(
        [
            {"email": "ann@x.io", "name": "Ann"},
            {"email": "bob@x.io", "name": "Bob"},
            {"email": "cat@x.io", "name": "Cat", "shop_id": 8},
        ]
    )
    await session.commit()
    return {obj.name: obj for obj in made}


async def stored(session: AsyncSession) -> dict[str, bool]:
    """Each stored author's name and whether it is soft-deleted."""
    result = await session.execute(select(Author.name, Author.deleted_at).order_by(Author.name))
    return {name: deleted_at is not None for name, deleted_at in result.all()}


class TestDeleteSetsDeletedAt:
    async def test_delete_keeps_the_row_and_reads_skip_it(
        self, session: AsyncSession, authors: AuthorRepository, seeded: dict[str, Author]
    ) -> None:
        ann = seeded["Ann"]
        assert await authors.delete(ann.id)
        assert ann.deleted_at is not None
        assert not await authors.delete(ann.id)  # already deleted: a missing key
        assert await authors.get(ann.id) is None
        with pytest.raises(NotFoundError):
            await authors.get_one(ann.id)
        assert [a.name for a in await authors.list(order_by="name")] == ["Bob", "Cat"]
        assert await authors.count() == 2
        assert not await authors.exists(name="Ann")
        assert await authors.get_many([ann.id]) == []
        assert (await authors.paginate(limit=5)).total == 2
        await session.commit()
        session.expunge_all()
        assert await authors.get(ann.id) is None
        assert await stored(session) == {"Ann": True, "Bob": False, "Cat": False}

    async def test_delete_many_and_delete_where_soft_delete(
        self, session: AsyncSession, authors: AuthorRepository, seeded: dict[str, Author]
    ) -> None:
        assert await authors.delete_many([seeded["Ann"].id, seeded["Bob"].id]) == 2
        assert seeded["Ann"].deleted_at is not None  # the loaded objects are in step
        assert seeded["Cat"].deleted_at is None
        assert await authors.get(seeded["Bob"].id) is None
        assert await authors.delete_many([seeded["Ann"].id]) == 0
        assert await authors.delete_where(name__in=["Ann", "Cat"]) == 1
        await session.commit()
        assert await stored(session) == {"Ann": True, "Bob": True, "Cat": True}

    async def test_writes_treat_a_soft_deleted_row_as_missing(
        self, session: AsyncSession, authors: AuthorRepository, seeded: dict[str, Author]
    ) -> None:
        ann = seeded["Ann"]
        await authors.delete(ann)
        with pytest.raises(NotFoundError):
            await authors.update(ann.id, name="Anna")
        assert await authors.update_many([{"id": ann.id, "name": "Anna"}]) == 0
        with pytest.raises(ConflictError):
            await authors.upsert_many([{"email": "ann@x.io", "name": "A"}], on_conflict=("email",))
        await session.rollback()
        assert await authors.including_deleted().count(name="Ann") == 1


class TestIncludingDeletedRestoreAndHardDelete:
    async def test_including_deleted_sees_deleted_rows_within_the_other_scope(
        self, authors: AuthorRepository, seeded: dict[str, Author]
    ) -> None:
        await authors.delete_many([seeded["Ann"].id, seeded["Cat"].id])
        view = authors.scoped(shop_id=7).including_deleted()
        assert [a.name for a in await view.list(order_by="name")] == ["Ann", "Bob"]
        assert await view.get(seeded["Ann"].id) is seeded["Ann"]
        assert await view.get(seeded["Cat"].id) is None

    async def test_restore_brings_a_row_back(
        self, session: AsyncSession, authors: AuthorRepository, seeded: dict[str, Author]
    ) -> None:
        ann = seeded["Ann"]
        await authors.delete(ann.id)
        assert await authors.restore(ann.id)
        assert not await authors.restore(ann.id)  # not deleted any more
        assert not await authors.scoped(shop_id=8).restore(seeded["Cat"].id)
        assert await authors.get(ann.id) is ann
        await session.commit()
        assert await stored(session) == {"Ann": False, "Bob": False, "Cat": False}

    async def test_hard_delete_removes_live_and_deleted_rows(
        self, session: AsyncSession, authors: AuthorRepository, seeded: dict[str, Author]
    ) -> None:
        await authors.delete(seeded["Ann"].id)
        assert await authors.hard_delete(seeded["Ann"].id)
        assert await authors.including_deleted().hard_delete(seeded["Bob"])
        assert not await authors.scoped(shop_id=7).hard_delete(seeded["Cat"].id)
        await session.commit()
        assert await stored(session) == {"Cat": False}

    async def test_restore_needs_a_soft_deleting_model(self, session: AsyncSession) -> None:
        books = AsyncRepository(session, model=Book)
        with pytest.raises(InvalidFieldError, match="SoftDeleteMixin"):
            await books.restore(1)
        book = await books.create(title="Dune")
        assert await books.hard_delete(book.id)
        assert await books.get(book.id) is None


class TestRelationshipLoadsSkipDeletedRows:
    async def test_a_selectinload_of_a_soft_deleting_model_skips_deleted_rows(
        self, session: AsyncSession
    ) -> None:
        books = AsyncRepository(session, model=Book)
        book = await books.create(title="Dune")
        reviews = AsyncRepository(session, model=Review)
        kept, dropped = await reviews.create_many(
            [{"book_id": book.id, "text": "great"}, {"book_id": book.id, "text": "meh"}]
        )
        assert await reviews.delete(dropped)
        await session.commit()
        session.expunge_all()
        loaded: Any = await books.get_one(book.id, options=[selectinload(Book.reviews)])
        assert [r.text for r in loaded.reviews] == ["great"]
        session.expunge_all()
        every = await books.including_deleted().list(options=[selectinload(Book.reviews)])
        assert sorted(r.text for r in every[0].reviews) == ["great", "meh"]
        assert kept.id != dropped.id
