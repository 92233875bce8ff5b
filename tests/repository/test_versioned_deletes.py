"""`delete(pk, version=N)` and `hard_delete(pk, version=N)`: deletes at the version read.

A client that read a row at version N (an HTTP ``If-Match``) deletes it only while it is
still at N; otherwise ``ConflictError(kind="stale")`` names the key and the row stays as
it was. A missing key (or one outside the scope) is ``False``, as without a version. The
database rows are checked through another session on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import MetaData, String, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import AsyncRepository, ConflictError, InvalidFieldError, TransactionManager
from sqla_uow.mixins import SoftDeleteMixin, VersionedMixin

pytestmark = pytest.mark.backends("sqlite", "postgresql", "mariadb")


class Base(DeclarativeBase):
    pass


class Order(VersionedMixin, Base):
    __tablename__ = "vdel_order"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(String(20))


class Ticket(SoftDeleteMixin, VersionedMixin, Base):
    __tablename__ = "vdel_ticket"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(20))


class Note(Base):
    __tablename__ = "vdel_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(20))


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
def tm(engine: AsyncEngine) -> TransactionManager:
    return TransactionManager(engine)


async def row_of(engine: AsyncEngine, model: type[Any], pk: int) -> tuple[Any, ...] | None:
    """The row's columns as another session reads them (``None``: no row)."""
    table: Any = model.__table__
    async with AsyncSession(engine) as other:
        row = (await other.execute(select(table).where(table.c.id == pk))).first()
    return None if row is None else tuple(row)


async def ticket_of(engine: AsyncEngine, pk: int) -> tuple[str, bool, int] | None:
    """(title, whether soft-deleted, version) of the ticket as another session reads it."""
    row = await row_of(engine, Ticket, pk)
    return None if row is None else (row[1], row[2] is not None, row[3])


async def create(tm: TransactionManager, model: type[Any], **values: Any) -> Any:
    async with tm.transaction() as session:
        return await AsyncRepository(session, model=model).create(**values)


async def bump(tm: TransactionManager, pk: int, status: str) -> None:
    """Another transaction updates the order: version + 1."""
    async with tm.transaction() as session:
        await AsyncRepository(session, model=Order).update(pk, status=status)


class TestDeleteAtAVersion:
    async def test_delete_at_the_current_version_deletes_the_row(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        order = await create(tm, Order, status="new")
        await bump(tm, order.id, "paid")
        async with tm.transaction() as session:
            assert await AsyncRepository(session, model=Order).delete(order.id, version=2)
        assert await row_of(engine, Order, order.id) is None

    async def test_delete_at_another_version_is_stale_and_leaves_the_row(
        self, tm: TransactionManager, engine: AsyncEngine, statements: list[str]
    ) -> None:
        order = await create(tm, Order, status="new")
        await bump(tm, order.id, "paid")
        statements.clear()
        async with tm.transaction() as session:
            with pytest.raises(ConflictError) as caught:
                await AsyncRepository(session, model=Order).delete(order.id, version=1)
        assert caught.value.kind == "stale"
        assert caught.value.model is Order
        assert f"primary keys {order.id})" in str(caught.value)
        assert "DELETE" not in statements
        assert await row_of(engine, Order, order.id) == (order.id, 1, "paid", 2)

    async def test_a_missing_key_with_a_version_is_false(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        order = await create(tm, Order, status="new")
        async with tm.transaction() as session:
            assert not await AsyncRepository(session, model=Order).delete(order.id + 1, version=1)
        assert await row_of(engine, Order, order.id) == (order.id, 1, "new", 1)

    async def test_the_version_of_a_loaded_row_is_checked_too(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        order = await create(tm, Order, status="new")
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Order)
            loaded = await repo.get_one(order.id)
            with pytest.raises(ConflictError, match="stale"):
                await repo.delete(order.id, version=5)
            with pytest.raises(ConflictError, match="stale"):
                await repo.delete(loaded, version=5)
            assert await repo.delete(loaded, version=1)
        assert await row_of(engine, Order, order.id) is None

    async def test_an_explicit_version_wins_over_a_detached_instances(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        order = await create(tm, Order, status="new")  # detached, carries version 1
        await bump(tm, order.id, "paid")
        async with tm.transaction() as session:
            assert await AsyncRepository(session, model=Order).delete(order, version=2)
        assert await row_of(engine, Order, order.id) is None
        current = await create(tm, Order, status="new")
        async with tm.transaction() as session:
            with pytest.raises(ConflictError, match="stale"):
                await AsyncRepository(session, model=Order).delete(current, version=7)
        assert await row_of(engine, Order, current.id) == (current.id, 1, "new", 1)

    async def test_a_version_for_a_model_without_one_is_refused_before_any_sql(
        self, tm: TransactionManager, engine: AsyncEngine, statements: list[str]
    ) -> None:
        note = await create(tm, Note, text="keep")
        statements.clear()
        async with AsyncSession(engine) as session:
            repo = AsyncRepository(session, model=Note)
            for delete in (repo.delete, repo.hard_delete):
                with pytest.raises(InvalidFieldError, match="Note has no version column") as e:
                    await delete(note.id, version=1)
                assert (e.value.model, e.value.field) == (Note, "version")
        assert statements == []
        assert await row_of(engine, Note, note.id) == (note.id, "keep")

    async def test_a_version_its_column_cannot_take_is_refused(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        order = await create(tm, Order, status="new")
        async with tm.transaction() as session:
            with pytest.raises(InvalidFieldError, match="'version'"):
                await AsyncRepository(session, model=Order).delete(order.id, version="two")
        assert await row_of(engine, Order, order.id) == (order.id, 1, "new", 1)


class TestSoftDeleteAtAVersion:
    async def test_a_soft_delete_checks_the_version(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        ticket = await create(tm, Ticket, title="bug")
        async with tm.transaction() as session:
            with pytest.raises(ConflictError) as caught:
                await AsyncRepository(session, model=Ticket).delete(ticket.id, version=2)
        assert caught.value.kind == "stale"
        assert await ticket_of(engine, ticket.id) == ("bug", False, 1)
        async with tm.transaction() as session:
            assert await AsyncRepository(session, model=Ticket).delete(ticket.id, version=1)
        assert await ticket_of(engine, ticket.id) == ("bug", True, 2)  # the write counts

    async def test_a_soft_deleted_row_is_missing_whatever_the_version(
        self, tm: TransactionManager
    ) -> None:
        ticket = await create(tm, Ticket, title="bug")
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Ticket)
            assert await repo.delete(ticket.id, version=1)
            assert not await repo.delete(ticket.id, version=2)
            assert not await repo.delete(ticket.id, version=1)

    async def test_hard_delete_checks_the_version_of_a_soft_deleted_row(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        ticket = await create(tm, Ticket, title="bug")
        async with tm.transaction() as session:
            assert await AsyncRepository(session, model=Ticket).delete(ticket.id)
        async with tm.transaction() as session:
            with pytest.raises(ConflictError, match=f"primary keys {ticket.id}\\)"):
                await AsyncRepository(session, model=Ticket).hard_delete(ticket.id, version=1)
        assert await ticket_of(engine, ticket.id) == ("bug", True, 2)
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Ticket)
            assert await repo.hard_delete(ticket.id, version=2)
            assert not await repo.hard_delete(ticket.id, version=2)
        assert await row_of(engine, Ticket, ticket.id) is None

    async def test_hard_delete_of_a_plain_versioned_model_checks_the_version(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        order = await create(tm, Order, status="new")
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Order)
            with pytest.raises(ConflictError, match="stale"):
                await repo.hard_delete(order.id, version=3)
        assert await row_of(engine, Order, order.id) == (order.id, 1, "new", 1)
        async with tm.transaction() as session:
            assert await AsyncRepository(session, model=Order).hard_delete(order.id, version=1)
        assert await row_of(engine, Order, order.id) is None


class TestScopedDeleteAtAVersion:
    async def test_a_key_outside_the_scope_is_missing_not_stale(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        theirs = await create(tm, Order, shop=2, status="new")
        async with tm.transaction() as session:
            shop_one = AsyncRepository(session, model=Order).scoped(shop=1)
            assert not await shop_one.delete(theirs.id, version=1)
            assert not await shop_one.delete(theirs.id, version=9)
            assert not await shop_one.hard_delete(theirs.id, version=9)
            assert not await shop_one.delete(theirs, version=9)
        assert await row_of(engine, Order, theirs.id) == (theirs.id, 2, "new", 1)

    async def test_a_key_inside_the_scope_checks_the_version(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        ours = await create(tm, Order, shop=1, status="new")
        async with tm.transaction() as session:
            shop_one = AsyncRepository(session, model=Order).scoped(shop=1)
            with pytest.raises(ConflictError, match="stale"):
                await shop_one.delete(ours.id, version=2)
            assert await shop_one.delete(ours.id, version=1)
        assert await row_of(engine, Order, ours.id) is None
