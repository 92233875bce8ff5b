"""sqla_uow.mixins: timestamps, audit fields and optimistic locking on real databases.

Every write method keeps the columns right on SQLite, PostgreSQL and MariaDB, and the
in-memory fake behaves the same way (`TestTheFakeMatchesTheDatabase`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import MetaData, String, inspect, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.orm.exc import StaleDataError

from sqla_uow import AsyncRepository, ConflictError, InvalidFieldError, TransactionManager
from sqla_uow.exceptions import RollbackOnlyError
from sqla_uow.mixins import (
    AuditMixin,
    TimestampMixin,
    UtcDateTime,
    VersionedMixin,
    acting_as,
    current_actor,
)
from sqla_uow.testing import InMemoryRepository

pytestmark = pytest.mark.backends("sqlite", "postgresql", "mariadb")

UTC = dt.timezone.utc
TICK = 0.02
"""Longer than the coarsest clock (SQLite's milliseconds)."""


class Base(DeclarativeBase):
    pass


class Article(TimestampMixin, AuditMixin, Base):
    __tablename__ = "mixin_article"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(String(80))


class Order(TimestampMixin, VersionedMixin, Base):
    __tablename__ = "mixin_order"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    status: Mapped[str] = mapped_column(String(20))


class Event(Base):
    __tablename__ = "mixin_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
def tm(engine: AsyncEngine) -> TransactionManager:
    return TransactionManager(engine)


async def stored(engine: AsyncEngine, model: type[Any], pk: int) -> Any:
    """The row as another session reads it."""
    async with AsyncSession(engine) as other:
        return await other.get(model, pk)


def aware(value: dt.datetime) -> bool:
    return value.tzinfo is not None and value.utcoffset() == dt.timedelta(0)


class TestTimestamps:
    async def test_create_sets_both_to_the_database_clock_in_utc(
        self, tm: TransactionManager
    ) -> None:
        before = dt.datetime.now(UTC) - dt.timedelta(seconds=2)
        async with tm.transaction() as session:
            article = await AsyncRepository(session, model=Article).create(slug="a", title="A")
        after = dt.datetime.now(UTC) + dt.timedelta(seconds=2)
        assert aware(article.created_at)
        assert aware(article.updated_at)
        assert before < article.created_at < after
        assert article.updated_at == article.created_at

    async def test_values_read_back_are_aware_utc_with_the_stored_precision(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            article = await AsyncRepository(session, model=Article).create(slug="a", title="A")
        row = await stored(engine, Article, article.id)
        assert aware(row.created_at)
        assert row.created_at == article.created_at
        assert row.created_at.microsecond % 1000 == 0 or engine.dialect.name != "sqlite"

    async def test_update_refreshes_updated_at_and_keeps_created_at(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            article = await AsyncRepository(session, model=Article).create(slug="a", title="A")
        await asyncio.sleep(TICK)
        async with tm.transaction() as session:
            updated = await AsyncRepository(session, model=Article).update(article.id, title="B")
            assert updated.updated_at > article.updated_at
        row = await stored(engine, Article, article.id)
        assert (row.title, row.created_at) == ("B", article.created_at)
        assert row.updated_at == updated.updated_at

    async def test_update_many_refreshes_updated_at_and_reads_it_into_loaded_objects(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Article)
            first, second = await repo.create_many(
                [{"slug": "a", "title": "A"}, {"slug": "b", "title": "B"}]
            )
        await asyncio.sleep(TICK)
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Article)
            loaded = await repo.get_one(first.id)
            assert await repo.update_many([{"id": first.id, "title": "A2"}]) == 1
            assert not inspect(loaded).expired_attributes
            assert loaded.title == "A2"
            assert loaded.updated_at > first.updated_at
            assert await repo.get_one(first.id) is loaded
        assert (await stored(engine, Article, first.id)).updated_at == loaded.updated_at
        assert (await stored(engine, Article, second.id)).updated_at == second.updated_at

    async def test_upsert_many_reads_updated_at_into_loaded_objects(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            article = await AsyncRepository(session, model=Article).create(slug="a", title="A")
        await asyncio.sleep(TICK)
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Article)
            loaded = await repo.get_one(article.id)
            await repo.upsert_many([{"slug": "a", "title": "A2"}], on_conflict=("slug",))
            assert not inspect(loaded).expired_attributes
            assert (loaded.title, loaded.created_at) == ("A2", article.created_at)
            assert loaded.updated_at > article.updated_at
        assert (await stored(engine, Article, article.id)).updated_at == loaded.updated_at

    async def test_upsert_many_refreshes_updated_at_of_updated_rows_only(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            article = await AsyncRepository(session, model=Article).create(slug="a", title="A")
        await asyncio.sleep(TICK)
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Article)
            written = await repo.upsert_many(
                [{"slug": "a", "title": "A2"}, {"slug": "b", "title": "B"}],
                on_conflict=("slug",),
            )
            assert written == 2
        row = await stored(engine, Article, article.id)
        assert row.title == "A2"
        assert row.created_at == article.created_at
        assert row.updated_at > article.updated_at
        async with tm.transaction() as session:
            (new,) = await AsyncRepository(session, model=Article).list(slug="b")
        assert aware(new.created_at)
        assert new.created_at > article.created_at

    async def test_upsert_many_with_explicit_update_columns_still_refreshes_updated_at(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            article = await AsyncRepository(session, model=Article).create(slug="a", title="A")
        await asyncio.sleep(TICK)
        async with tm.transaction() as session:
            await AsyncRepository(session, model=Article).upsert_many(
                [{"slug": "a", "title": "A2"}], on_conflict=("slug",), update=("title",)
            )
        assert (await stored(engine, Article, article.id)).updated_at > article.updated_at

    async def test_upsert_many_that_updates_nothing_leaves_updated_at(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            article = await AsyncRepository(session, model=Article).create(slug="a", title="A")
        await asyncio.sleep(TICK)
        async with tm.transaction() as session:
            await AsyncRepository(session, model=Article).upsert_many(
                [{"slug": "a", "title": "A2"}], on_conflict=("slug",), update=()
            )
        row = await stored(engine, Article, article.id)
        assert (row.title, row.updated_at) == ("A", article.updated_at)

    async def test_filters_compare_aware_values_and_refuse_naive_ones(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Article)
            article = await repo.create(slug="a", title="A")
            assert await repo.count(created_at__lte=article.created_at) == 1
            assert await repo.count(created_at__gt=article.created_at) == 0
            with pytest.raises(InvalidFieldError, match="created_at"):
                await repo.count(created_at__lte=article.created_at.replace(tzinfo=None))

    async def test_cursor_pages_order_by_the_timestamps(self, tm: TransactionManager) -> None:
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Article)
            for slug in ("a", "b", "c"):
                await repo.create(slug=slug, title=slug.upper())
                await asyncio.sleep(TICK)
            first = await repo.paginate_cursor(limit=2, order_by=("-created_at", "id"))
            rest = await repo.paginate_cursor(
                limit=2, after=first.next_cursor, order_by=("-created_at", "id")
            )
        assert [a.slug for a in first.items] == ["c", "b"]
        assert [a.slug for a in rest.items] == ["a"]


class TestUtcDateTime:
    async def test_stores_any_zone_as_utc_and_reads_it_back_aware(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        paris = dt.timezone(dt.timedelta(hours=2))
        at = dt.datetime(2026, 6, 1, 14, 30, 15, 250000, tzinfo=paris)
        async with tm.transaction() as session:
            event = await AsyncRepository(session, model=Event).create(at=at)
        row = await stored(engine, Event, event.id)
        assert row.at == at
        assert row.at.tzinfo == UTC
        assert row.at.hour == 12

    async def test_refuses_a_naive_datetime_before_any_sql(self, tm: TransactionManager) -> None:
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Event)
            with pytest.raises(InvalidFieldError, match="at"):
                await repo.create(at=dt.datetime(2026, 6, 1, 12, 0))
            assert await repo.count() == 0


class TestAudit:
    async def test_every_write_method_fills_created_by_and_updated_by(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Article)
            with acting_as("ann"):
                one = await repo.create(slug="a", title="A")
                (two,) = await repo.create_many([{"slug": "b", "title": "B"}])
                assert await repo.insert_many([{"slug": "c", "title": "C"}]) == 1
            with acting_as("bob"):
                await repo.update(one.id, title="A2")
                await repo.update_many([{"id": two.id, "title": "B2"}])
                await repo.upsert_many(
                    [{"slug": "c", "title": "C2"}, {"slug": "d", "title": "D"}],
                    on_conflict=("slug",),
                )
        async with tm.transaction() as session:
            rows = await AsyncRepository(session, model=Article).list(order_by="slug")
        assert [(r.slug, r.created_by, r.updated_by) for r in rows] == [
            ("a", "ann", "bob"),
            ("b", "ann", "bob"),
            ("c", "ann", "bob"),
            ("d", "bob", "bob"),
        ]

    async def test_outside_any_actor_the_fields_are_null(self, tm: TransactionManager) -> None:
        async with tm.transaction() as session:
            article = await AsyncRepository(session, model=Article).create(slug="a", title="A")
        assert (article.created_by, article.updated_by) == (None, None)

    async def test_a_value_given_explicitly_wins(self, tm: TransactionManager) -> None:
        async with tm.transaction() as session:
            with acting_as("ann"):
                article = await AsyncRepository(session, model=Article).create(
                    slug="a", title="A", created_by="importer"
                )
        assert (article.created_by, article.updated_by) == ("importer", "ann")

    def test_acting_as_nests_and_restores_the_actor(self) -> None:
        assert current_actor() is None
        with acting_as("ann"):
            with acting_as(None):
                assert current_actor() is None
            with acting_as("bob"):
                assert current_actor() == "bob"
            assert current_actor() == "ann"
        assert current_actor() is None

    async def test_each_task_sees_its_own_actor(self) -> None:
        async def act(name: str) -> str | None:
            with acting_as(name):
                await asyncio.sleep(0)
                return current_actor()

        assert await asyncio.gather(act("ann"), act("bob")) == ["ann", "bob"]


async def bump_elsewhere(engine: AsyncEngine, pk: int, status: str) -> None:
    """Another transaction changes the order (and its version)."""
    async with AsyncSession(engine) as other, other.begin():
        order = await other.get_one(Order, pk)
        order.status = status


async def bump_behind_the_session(session: AsyncSession, pk: int) -> None:
    """Change the row as another writer would, leaving the loaded object as it was.

    (A second connection cannot write while this transaction has read, on SQLite.)
    """
    table = Order.__table__
    await session.execute(
        update(table).where(table.c.id == pk).values(status="paid", version=table.c.version + 1)
    )


async def write_a_changed_row(
    tm: TransactionManager, pk: int, how: str, *, swallow: bool = False, touch: int = 0
) -> None:
    """Load the order, let it change behind the session, then update or delete it.

    *touch*: first update that other order; *swallow*: catch the stale error.
    """
    async with tm.transaction() as session:
        repo = AsyncRepository(session, model=Order)
        loaded = await repo.get_one(pk)
        if touch:
            await repo.update(touch, status="touched")
        await bump_behind_the_session(session, pk)
        try:
            if how == "update":
                await repo.update(loaded, status="cancelled")
            else:
                await repo.delete(loaded)
        except ConflictError:
            if not swallow:
                raise


class TestOptimisticLocking:
    async def test_versions_start_at_one_and_every_update_increments_them(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Order)
            order = await repo.create(code="o1", status="new")
            assert order.version == 1
            await repo.update(order.id, status="paid")
            assert order.version == 2

    async def test_update_at_the_version_read_succeeds_and_increments_it(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            order = await AsyncRepository(session, model=Order).create(code="o1", status="new")
        async with tm.transaction() as session:
            updated = await AsyncRepository(session, model=Order).update(
                order.id, version=1, status="paid"
            )
        row = await stored(engine, Order, order.id)
        assert (updated.version, row.version, row.status) == (2, 2, "paid")

    async def test_update_at_another_version_is_stale_and_changes_nothing(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            order = await AsyncRepository(session, model=Order).create(code="o1", status="new")
        await bump_elsewhere(engine, order.id, "paid")
        async with tm.transaction() as session:
            with pytest.raises(ConflictError) as caught:
                await AsyncRepository(session, model=Order).update(
                    order.id, version=1, status="cancelled"
                )
        assert caught.value.kind == "stale"
        assert caught.value.model is Order
        assert f"primary keys {order.id}" in str(caught.value)
        row = await stored(engine, Order, order.id)
        assert (row.version, row.status) == (2, "paid")

    async def test_update_of_an_object_changed_since_it_was_loaded_is_stale(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            order = await AsyncRepository(session, model=Order).create(code="o1", status="new")
        with pytest.raises(ConflictError) as caught:
            await write_a_changed_row(tm, order.id, "update")
        assert caught.value.kind == "stale"
        assert isinstance(caught.value.__cause__, StaleDataError)
        row = await stored(engine, Order, order.id)
        assert (row.version, row.status) == (1, "new")

    async def test_a_swallowed_stale_flush_leaves_the_transaction_rollback_only(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            order = await AsyncRepository(session, model=Order).create(code="o1", status="new")
            other = await AsyncRepository(session, model=Order).create(code="o2", status="new")
        with pytest.raises(RollbackOnlyError):
            await write_a_changed_row(tm, order.id, "update", swallow=True, touch=other.id)
        assert (await stored(engine, Order, other.id)).status == "new"

    async def test_update_of_a_detached_instance_with_an_old_version_is_stale(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            order = await AsyncRepository(session, model=Order).create(code="o1", status="new")
        await bump_elsewhere(engine, order.id, "paid")
        order.status = "cancelled"
        async with tm.transaction() as session:
            with pytest.raises(ConflictError) as caught:
                await AsyncRepository(session, model=Order).update(order)
        assert caught.value.kind == "stale"
        assert (await stored(engine, Order, order.id)).status == "paid"

    async def test_update_of_a_current_detached_instance_succeeds(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            order = await AsyncRepository(session, model=Order).create(code="o1", status="new")
        order.status = "paid"
        async with tm.transaction() as session:
            updated = await AsyncRepository(session, model=Order).update(order)
        row = await stored(engine, Order, order.id)
        assert (updated.version, row.version, row.status) == (2, 2, "paid")

    async def test_delete_of_a_changed_row_is_stale_and_keeps_it(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            order = await AsyncRepository(session, model=Order).create(code="o1", status="new")
        with pytest.raises(ConflictError) as caught:
            await write_a_changed_row(tm, order.id, "delete")
        assert caught.value.kind == "stale"
        assert (await stored(engine, Order, order.id)).status == "new"

    async def test_delete_of_a_detached_instance_with_an_old_version_is_stale(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            order = await AsyncRepository(session, model=Order).create(code="o1", status="new")
        await bump_elsewhere(engine, order.id, "paid")
        async with tm.transaction() as session:
            with pytest.raises(ConflictError) as caught:
                await AsyncRepository(session, model=Order).delete(order)
        assert caught.value.kind == "stale"
        assert await stored(engine, Order, order.id) is not None

    async def test_update_many_checks_the_versions_given_and_names_the_stale_keys(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            one, two, three = await AsyncRepository(session, model=Order).create_many(
                [{"code": f"o{i}", "status": "new"} for i in range(3)]
            )
        await bump_elsewhere(engine, two.id, "paid")
        async with tm.transaction() as session:
            with pytest.raises(ConflictError) as caught:
                await AsyncRepository(session, model=Order).update_many(
                    [
                        {"id": one.id, "version": 1, "status": "sent"},
                        {"id": two.id, "version": 1, "status": "sent"},
                        {"id": three.id, "status": "sent"},
                    ]
                )
        assert caught.value.kind == "stale"
        assert f"primary keys {two.id})" in str(caught.value)
        rows = [await stored(engine, Order, o.id) for o in (one, two, three)]
        assert [(r.status, r.version) for r in rows] == [("new", 1), ("paid", 2), ("new", 1)]

    async def test_update_many_increments_versions_given_or_not(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            one, two = await AsyncRepository(session, model=Order).create_many(
                [{"code": "o1", "status": "new"}, {"code": "o2", "status": "new"}]
            )
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Order)
            loaded = await repo.get_one(one.id)
            matched = await repo.update_many(
                [{"id": one.id, "version": 1, "status": "sent"}, {"id": two.id, "status": "sent"}]
            )
            assert matched == 2
            assert loaded.version == 2
            other = await repo.get_one(two.id)
            assert other.version == 2
        rows = [await stored(engine, Order, o.id) for o in (one, two)]
        assert [(r.status, r.version) for r in rows] == [("sent", 2), ("sent", 2)]

    async def test_update_many_ignores_missing_keys_with_versions(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Order)
            assert await repo.update_many([{"id": 999, "version": 1, "status": "x"}]) == 0

    async def test_upsert_many_increments_the_version_of_updated_rows(
        self, tm: TransactionManager, engine: AsyncEngine
    ) -> None:
        async with tm.transaction() as session:
            order = await AsyncRepository(session, model=Order).create(code="o1", status="new")
        async with tm.transaction() as session:
            await AsyncRepository(session, model=Order).upsert_many(
                [{"code": "o1", "status": "paid"}, {"code": "o2", "status": "new"}],
                on_conflict=("code",),
            )
        async with tm.transaction() as session:
            rows = await AsyncRepository(session, model=Order).list(order_by="code")
        assert [(r.code, r.status, r.version) for r in rows] == [
            ("o1", "paid", 2),
            ("o2", "new", 1),
        ]
        assert rows[0].updated_at > order.updated_at

    async def test_upsert_many_refuses_to_overwrite_the_version(
        self, tm: TransactionManager
    ) -> None:
        async with tm.transaction() as session:
            with pytest.raises(InvalidFieldError, match="version counter"):
                await AsyncRepository(session, model=Order).upsert_many(
                    [{"code": "o1", "status": "x", "version": 5}],
                    on_conflict=("code",),
                    update=("status", "version"),
                )


Scenario = Callable[[Any], Awaitable[list[Any]]]


async def audit_scenario(repo: Any) -> list[Any]:
    seen: list[Any] = []
    with acting_as("ann"):
        one = await repo.create(slug="a", title="A")
        await repo.create_many([{"slug": "b", "title": "B"}])
    seen.append((one.created_by, one.updated_by, one.created_at == one.updated_at))
    with acting_as("bob"):
        await repo.update(one.id, title="A2")
        await repo.update_many([{"id": one.id, "title": "A3"}])
        await repo.upsert_many(
            [{"slug": "b", "title": "B2"}, {"slug": "c", "title": "C"}], on_conflict=("slug",)
        )
    rows = await repo.list(order_by="slug")
    seen.append([(r.slug, r.title, r.created_by, r.updated_by) for r in rows])
    seen.append([aware(r.created_at) and aware(r.updated_at) for r in rows])
    return seen


async def version_scenario(repo: Any) -> list[Any]:
    seen: list[Any] = []
    one, two = await repo.create_many(
        [{"code": "o1", "status": "new"}, {"code": "o2", "status": "new"}]
    )
    updated = await repo.update(one.id, version=1, status="paid")
    seen.append(updated.version)
    unchanged = await repo.update(one.id, version=2, status="paid")
    seen.append(unchanged.version)
    for attempt in (
        lambda: repo.update(one.id, version=1, status="x"),
        lambda: repo.update_many([{"id": two.id, "version": 3, "status": "x"}]),
    ):
        try:
            await attempt()
        except ConflictError as exc:
            seen.append(exc.kind)
    seen.append(
        await repo.update_many(
            [{"id": one.id, "version": 2, "status": "sent"}, {"id": two.id, "status": "sent"}]
        )
    )
    await repo.upsert_many([{"code": "o2", "status": "done"}], on_conflict=("code",))
    rows = await repo.list(order_by="code")
    seen.append([(r.code, r.status, r.version) for r in rows])
    return seen


class TestTheFakeMatchesTheDatabase:
    @pytest.mark.parametrize(
        ("model", "scenario"), [(Article, audit_scenario), (Order, version_scenario)]
    )
    async def test_the_same_calls_give_the_same_results(
        self, tm: TransactionManager, model: type[Any], scenario: Scenario
    ) -> None:
        async with tm.transaction() as session:
            real = await scenario(AsyncRepository(session, model=model))
        fake = await scenario(InMemoryRepository(model))
        assert fake == real

    async def test_the_fake_keeps_timestamps_increasing(self) -> None:
        repo = InMemoryRepository(Article)
        article = await repo.create(slug="a", title="A")
        created = article.updated_at
        await asyncio.sleep(TICK)
        await repo.update(article.id, title="B")
        assert aware(article.updated_at)
        assert article.updated_at > created == article.created_at

    async def test_the_fake_refuses_a_stale_update_many_and_changes_nothing(self) -> None:
        repo = InMemoryRepository(Order)
        one, two = await repo.create_many(
            [{"code": "o1", "status": "new"}, {"code": "o2", "status": "new"}]
        )
        await repo.update(two.id, status="paid")
        with pytest.raises(ConflictError, match=rf"primary keys {two.id}\)") as caught:
            await repo.update_many(
                [
                    {"id": one.id, "version": 1, "status": "sent"},
                    {"id": two.id, "version": 1, "status": "sent"},
                ]
            )
        assert caught.value.kind == "stale"
        assert [(o.status, o.version) for o in repo.rows] == [("new", 1), ("paid", 2)]

    async def test_the_fake_refuses_a_detached_copy_with_an_old_version(self) -> None:
        repo = InMemoryRepository(Order)
        order = await repo.create(code="o1", status="new")
        copy = Order(id=order.id, code="o1", status="cancelled", version=1)
        await repo.update(order.id, status="paid")
        with pytest.raises(ConflictError) as updating:
            await repo.update(copy)
        with pytest.raises(ConflictError) as deleting:
            await repo.delete(copy)
        assert (updating.value.kind, deleting.value.kind) == ("stale", "stale")
        assert [(o.status, o.version) for o in repo.rows] == [("paid", 2)]
