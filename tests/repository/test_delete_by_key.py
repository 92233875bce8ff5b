"""`delete(pk)` of a plain model's unloaded row: one DELETE instead of a SELECT and a DELETE.

The ORM's path (load the object, ``session.delete``, flush) runs wherever it does more:
the row is loaded, the model has relationships or a version counter, or an event listener
watches deletes. Both paths answer the same and leave the same rows.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import ForeignKey, MetaData, String, event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from sqla_uow import AsyncRepository, ConflictError

pytestmark = pytest.mark.backends("sqlite", "postgresql", "mariadb")


class Base(DeclarativeBase):
    pass


class Label(Base):
    __tablename__ = "dbk_label"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


class Sticker(Base):
    """Refers to a label without a relationship: the database's foreign key guards it."""

    __tablename__ = "dbk_sticker"

    id: Mapped[int] = mapped_column(primary_key=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("dbk_label.id", ondelete="RESTRICT"))


class LabelRepository(AsyncRepository[Label]):
    pass


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
def labels(session: AsyncSession) -> LabelRepository:
    return LabelRepository(session)


async def seed(session: AsyncSession, *names: str) -> list[int]:
    session.add_all([Label(name=name) for name in names])
    await session.commit()
    found = await session.scalars(select(Label.id).order_by(Label.id))
    ids = list(found)
    session.expunge_all()
    return ids


async def names(session: AsyncSession) -> list[str]:
    return list(await session.scalars(select(Label.name).order_by(Label.id)))


class TestOneStatement:
    async def test_deletes_an_unloaded_row_with_one_delete_and_no_select(
        self, session: AsyncSession, labels: LabelRepository, statements: list[str]
    ) -> None:
        first, _ = await seed(session, "red", "blue")
        statements.clear()
        assert await labels.delete(first)
        assert [s for s in statements if s in ("SELECT", "DELETE")] == ["DELETE"]
        await session.commit()
        assert await names(session) == ["blue"]

    async def test_answers_false_for_a_key_that_matches_nothing(
        self, session: AsyncSession, labels: LabelRepository
    ) -> None:
        await seed(session, "red")
        assert not await labels.delete(10_000)
        assert await names(session) == ["red"]

    async def test_flushes_the_session_work_before_it(
        self, engine: AsyncEngine, statements: list[str]
    ) -> None:
        async with AsyncSession(engine, autoflush=False) as session:
            (first,) = await seed(session, "red")
            session.add(Label(name="green"))
            assert await LabelRepository(session).delete(first)
            await session.commit()
            assert await names(session) == ["green"]

    @pytest.mark.backends("postgresql", "mariadb")  # SQLite enforces foreign keys only on request
    async def test_a_foreign_key_violation_is_a_conflict_and_the_row_stays(
        self, session: AsyncSession, labels: LabelRepository
    ) -> None:
        (first,) = await seed(session, "red")
        session.add(Sticker(label_id=first))
        await session.commit()
        with pytest.raises(ConflictError) as caught:
            await labels.delete(first)
        assert caught.value.kind == "foreign_key"
        await session.rollback()
        assert await names(session) == ["red"]


class TestTheOrmPathWhereItDoesMore:
    async def test_a_loaded_object_is_deleted_through_the_session(
        self, session: AsyncSession, labels: LabelRepository
    ) -> None:
        (first,) = await seed(session, "red")
        loaded = await labels.get_one(first)
        assert await labels.delete(first)
        assert loaded not in session  # the ORM deleted it: no stale object is left behind
        await session.commit()
        assert await names(session) == []

    async def test_a_before_delete_listener_still_sees_the_delete(
        self, session: AsyncSession, labels: LabelRepository
    ) -> None:
        (first,) = await seed(session, "red")
        seen: list[str] = []

        def watch(mapper: Any, connection: Any, target: Label) -> None:
            seen.append(target.name)

        event.listen(Label, "before_delete", watch)
        try:
            assert await labels.delete(first)
        finally:
            event.remove(Label, "before_delete", watch)
        assert seen == ["red"]

    async def test_a_session_flush_listener_still_sees_the_delete(
        self, session: AsyncSession, labels: LabelRepository
    ) -> None:
        (first,) = await seed(session, "red")
        deleted: list[Any] = []

        def watch(sync_session: Session, context: Any, instances: Any) -> None:
            deleted.extend(obj.name for obj in sync_session.deleted)

        event.listen(session.sync_session, "before_flush", watch)
        try:
            assert await labels.delete(first)
        finally:
            event.remove(session.sync_session, "before_flush", watch)
        assert deleted == ["red"]
