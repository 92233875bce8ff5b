"""Bulk writes of AsyncRepository: create_many, insert_many, update_many, delete_*, upsert_many.

Statement counts are measured with a ``before_cursor_execute`` listener on the engine (an
executemany call counts as one statement).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import math
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pydantic
import pytest
from sqlalchemy import JSON, ForeignKey, MetaData, Numeric, String, event, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from sqla_uow import AsyncRepository
from sqla_uow._dialects import backend_for
from sqla_uow.exceptions import ConflictError, InvalidFieldError

ALL_BACKENDS = pytest.mark.backends("sqlite", "postgresql", "mariadb")
MANY = 10_000


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "bulk_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    qty: Mapped[int] = mapped_column(server_default=text("0"))
    note: Mapped[str | None] = mapped_column(String(80))
    token: Mapped[str] = mapped_column(String(36), default=lambda: str(uuid.uuid4()))
    tags: Mapped[list[Tag]] = relationship(back_populates="item", lazy="raise")


class Tag(Base):
    __tablename__ = "bulk_tag"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("bulk_item.id"))
    label: Mapped[str] = mapped_column(String(40))
    item: Mapped[Item] = relationship(back_populates="tags", lazy="raise")


class Pair(Base):
    __tablename__ = "bulk_pair"

    left: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    right: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    label: Mapped[str] = mapped_column(String(40))


class Counter(Base):
    """SQLite AUTOINCREMENT: keys are never reused, even after the largest is deleted."""

    __tablename__ = "bulk_counter"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(40))


class Renamed(Base):
    """Attribute names that differ from the column names."""

    __tablename__ = "bulk_renamed"

    ident: Mapped[int] = mapped_column("renamed_id", primary_key=True)
    code: Mapped[str] = mapped_column("code_text", String(40), unique=True)
    title: Mapped[str] = mapped_column("title_text", String(40))


class Doc(Base):
    """A JSON column: PostgreSQL statements take the VALUES form instead of unnest()."""

    __tablename__ = "bulk_doc"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    day: Mapped[datetime.date | None]
    at: Mapped[datetime.datetime | None]
    flag: Mapped[bool | None]
    price: Mapped[decimal.Decimal | None] = mapped_column(Numeric(10, 2))
    ref: Mapped[uuid.UUID | None]


class Memo(Base):
    """Every column but the key may be left out: a row can give nothing."""

    __tablename__ = "bulk_memo"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str | None] = mapped_column(String(40))


class ItemRepository(AsyncRepository[Item]):
    pass


class ItemIn(pydantic.BaseModel):
    code: str
    name: str


@dataclasses.dataclass
class ItemData:
    code: str
    name: str


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


class StatementCounter:
    """Counts statements sent to the database while ``active``."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.active = False

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.active:
            self.statements.append(statement)

    @property
    def count(self) -> int:
        return len(self.statements)

    def __enter__(self) -> StatementCounter:
        self.statements.clear()
        self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.active = False


@pytest.fixture
def counter(engine: AsyncEngine) -> Iterator[StatementCounter]:
    listener = StatementCounter()
    event.listen(engine.sync_engine, "before_cursor_execute", listener)
    yield listener
    event.remove(engine.sync_engine, "before_cursor_execute", listener)


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        await session.connection()
        yield session


@pytest.fixture
async def fk_session(engine: AsyncEngine, backend: str) -> AsyncIterator[AsyncSession]:
    """A session whose SQLite connections enforce foreign keys (a connect event)."""

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    if backend != "sqlite":  # the server backends enforce foreign keys already
        async with AsyncSession(engine, expire_on_commit=False) as session:
            yield session
        return
    event.listen(engine.sync_engine, "connect", on_connect)
    await engine.dispose()  # connections made from now on run on_connect
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            yield session
    finally:
        event.remove(engine.sync_engine, "connect", on_connect)


@pytest.fixture
def items(session: AsyncSession) -> ItemRepository:
    return ItemRepository(session)


def rows(n: int, *, prefix: str = "c", start: int = 0) -> list[dict[str, Any]]:
    return [{"code": f"{prefix}{i}", "name": f"name {i}"} for i in range(start, start + n)]


async def table_rows(engine: AsyncEngine) -> dict[str, tuple[int, str, int]]:
    """code -> (id, name, qty) as committed in the database."""
    async with engine.connect() as conn:
        result = await conn.execute(select(Item.code, Item.id, Item.name, Item.qty))
        return {code: (ident, name, qty) for code, ident, name, qty in result}


async def seed(items: ItemRepository, n: int) -> list[Item]:
    created = await items.create_many(rows(n))
    await items.session.commit()
    return created


class TestCreateMany:
    @ALL_BACKENDS
    async def test_creates_ten_thousand_rows_in_input_order_with_one_statement_per_chunk(
        self,
        backend: str,
        engine: AsyncEngine,
        items: ItemRepository,
        counter: StatementCounter,
    ) -> None:
        data = rows(MANY)
        with counter:
            created = await items.create_many(data)
        # SQLite: INSERT ... SELECT statements of a few shapes (10,000 = 8192 + 1024 + 512 +
        # 256 + 16 rows, see `chunk_sizes`); PostgreSQL / MariaDB: insertmanyvalues pages
        # of DEFAULT_CHUNK_SIZE rows.
        expected = 5 if backend == "sqlite" else math.ceil(MANY / 1000)
        assert counter.count == expected
        assert [item.code for item in created] == [row["code"] for row in data]
        assert all(item in items.session for item in created)
        assert len({item.id for item in created}) == MANY
        assert {item.qty for item in created} == {0}  # server default read back
        assert all(len(item.token) == 36 for item in created)  # Python default applied
        assert len({item.token for item in created}) == MANY  # called once per row
        await items.session.commit()
        stored = await table_rows(engine)
        assert {code: ident for code, (ident, _, _) in stored.items()} == {
            item.code: item.id for item in created
        }

    @ALL_BACKENDS
    async def test_chunk_size_sets_the_rows_per_statement(
        self, items: ItemRepository, counter: StatementCounter
    ) -> None:
        with counter:
            created = await items.create_many(rows(25), chunk_size=10)
        assert counter.count == 3
        assert [item.code for item in created] == [f"c{i}" for i in range(25)]

    @ALL_BACKENDS
    async def test_rows_with_different_keys_come_back_in_input_order(
        self, items: ItemRepository, counter: StatementCounter
    ) -> None:
        data: list[dict[str, Any]] = [
            {"code": f"c{i}", "name": "n", **({"note": f"note {i}"} if i % 2 else {})}
            for i in range(10)
        ]
        with counter:
            created = await items.create_many(data)
        assert counter.count == 2  # one statement per set of keys
        assert [item.code for item in created] == [f"c{i}" for i in range(10)]
        assert [item.note for item in created] == [
            f"note {i}" if i % 2 else None for i in range(10)
        ]

    @ALL_BACKENDS
    async def test_keeps_explicit_primary_keys_in_one_statement(
        self, items: ItemRepository, counter: StatementCounter
    ) -> None:
        data = [{"id": ident, "code": f"c{ident}", "name": "n"} for ident in (50, 10, 30)]
        with counter:
            created = await items.create_many(data)
        assert counter.count == 1
        assert [(item.id, item.code) for item in created] == [(50, "c50"), (10, "c10"), (30, "c30")]

    @pytest.mark.backends("sqlite")
    async def test_sqlite_generated_keys_follow_the_largest_existing_key(
        self, engine: AsyncEngine, items: ItemRepository
    ) -> None:
        await items.create_many([{"id": 41, "code": "x", "name": "n"}])
        created = await items.create_many(rows(3))
        assert [item.id for item in created] == [42, 43, 44]

    @pytest.mark.backends("sqlite")
    async def test_sqlite_autoincrement_never_reuses_a_deleted_key(
        self, session: AsyncSession
    ) -> None:
        counters = AsyncRepository(session, model=Counter)
        first = await counters.create_many([{"label": "a"}, {"label": "b"}, {"label": "c"}])
        assert [c.id for c in first] == [1, 2, 3]
        await counters.delete_many([3])
        again = await counters.create_many([{"label": "d"}, {"label": "e"}])
        assert [c.id for c in again] == [4, 5]

    async def test_accepts_mappings_instances_pydantic_models_and_dataclasses(
        self, items: ItemRepository
    ) -> None:
        created = await items.create_many(
            [
                {"code": "a", "name": "dict"},
                Item(code="b", name="instance"),
                ItemIn(code="c", name="pydantic"),
                ItemData(code="d", name="dataclass"),
            ]
        )
        assert [(item.code, item.name) for item in created] == [
            ("a", "dict"),
            ("b", "instance"),
            ("c", "pydantic"),
            ("d", "dataclass"),
        ]
        assert all(item.id is not None for item in created)

    async def test_returns_an_empty_list_without_sql_for_no_rows(
        self, items: ItemRepository, counter: StatementCounter
    ) -> None:
        with counter:
            assert await items.create_many([]) == []
        assert counter.count == 0

    async def test_unknown_field_raises_before_any_sql(
        self, items: ItemRepository, counter: StatementCounter
    ) -> None:
        data = [*rows(5), {"code": "x", "nmae": "typo"}]
        with counter, pytest.raises(InvalidFieldError) as info:
            await items.create_many(data)
        assert counter.count == 0
        assert info.value.field == "nmae"
        assert "name" in info.value.choices

    async def test_relationship_key_raises(self, items: ItemRepository) -> None:
        with pytest.raises(InvalidFieldError) as info:
            await items.create_many([{"code": "x", "name": "n", "tags": []}])
        assert info.value.field == "tags"

    async def test_instance_with_a_relationship_set_raises(self, items: ItemRepository) -> None:
        item = Item(code="x", name="n", tags=[Tag(label="t")])
        with pytest.raises(InvalidFieldError, match="relationship 'tags'"):
            await items.create_many([item])

    async def test_a_row_of_another_kind_raises(self, items: ItemRepository) -> None:
        with pytest.raises(InvalidFieldError, match="row 1"):
            await items.create_many([{"code": "x", "name": "n"}, 42])

    @pytest.mark.parametrize("chunk_size", [0, -1, True, 2.5])
    async def test_invalid_chunk_size_raises(self, items: ItemRepository, chunk_size: Any) -> None:
        with pytest.raises(InvalidFieldError) as info:
            await items.create_many(rows(2), chunk_size=chunk_size)
        assert info.value.field == "chunk_size"

    @ALL_BACKENDS
    async def test_a_conflict_leaves_the_table_as_it_was(
        self, engine: AsyncEngine, items: ItemRepository
    ) -> None:
        await seed(items, 1)
        data = [*rows(500, start=1), {"code": "c0", "name": "duplicate"}]
        with pytest.raises(ConflictError) as info:
            await items.create_many(data)
        assert info.value.kind == "unique"
        assert isinstance(info.value.__cause__, IntegrityError)
        await items.session.rollback()
        assert list(await table_rows(engine)) == ["c0"]


class TestInsertMany:
    @ALL_BACKENDS
    async def test_inserts_ten_thousand_rows_in_one_statement_or_one_copy(
        self,
        engine: AsyncEngine,
        items: ItemRepository,
        counter: StatementCounter,
    ) -> None:
        with counter:
            count = await items.insert_many(rows(MANY))
        assert count == MANY
        # PostgreSQL (asyncpg, psycopg) loads the rows with COPY, which sends no statement
        # through SQLAlchemy.
        assert counter.count == (0 if engine.dialect.name == "postgresql" else 1)
        assert len(items.session.identity_map) == 0
        await items.session.commit()
        stored = await table_rows(engine)
        assert len(stored) == MANY
        assert stored["c9999"][1:] == ("name 9999", 0)

    async def test_chunk_size_splits_the_executemany(
        self, items: ItemRepository, counter: StatementCounter
    ) -> None:
        with counter:  # fewer rows than PostgreSQL's drivers COPY
            assert await items.insert_many(rows(15), chunk_size=6) == 15
        assert counter.count == 3

    @ALL_BACKENDS
    async def test_statements_stay_within_the_bind_parameter_limit(
        self, engine: AsyncEngine, items: ItemRepository
    ) -> None:
        sent: list[int] = []

        def parameters(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
            if statement.startswith("INSERT"):
                many = rest[-1]
                sent.append(max(map(len, params)) if many else len(params))

        limit = backend_for(engine.dialect).max_parameters
        big = [{**row, "note": f"n{i}", "token": f"t{i}"} for i, row in enumerate(rows(MANY))]
        event.listen(engine.sync_engine, "before_cursor_execute", parameters)
        try:
            assert await items.insert_many(big) == MANY
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", parameters)
        assert all(count <= limit for count in sent)
        result = await items.session.execute(
            select(Item.code, Item.name, Item.note, Item.token).where(Item.code == "c9999")
        )
        assert result.one() == ("c9999", "name 9999", "n9999", "t9999")
        assert await items.count() == MANY

    @ALL_BACKENDS
    async def test_python_defaults_are_filled_per_row(self, items: ItemRepository) -> None:
        assert await items.insert_many(rows(3)) == 3
        result = await items.session.execute(select(Item.code, Item.token, Item.qty))
        stored = {code: (token, qty) for code, token, qty in result}
        assert sorted(stored) == ["c0", "c1", "c2"]
        assert len({token for token, _ in stored.values()}) == 3
        assert all(isinstance(uuid.UUID(token), uuid.UUID) for token, _ in stored.values())
        assert {qty for _, qty in stored.values()} == {0}  # the server default

    @ALL_BACKENDS
    async def test_pending_objects_are_flushed_first(self, items: ItemRepository) -> None:
        items.session.add(Item(code="x", name="pending"))
        with pytest.raises(ConflictError) as info:
            await items.insert_many([{"code": "x", "name": "bulk"}])
        assert info.value.kind == "unique"

    @ALL_BACKENDS
    async def test_rows_that_give_no_column(self, session: AsyncSession) -> None:
        memos = AsyncRepository(session, model=Memo)
        assert await memos.insert_many([{}, {"text": "a"}, {}]) == 3
        result = await session.execute(select(Memo.text).order_by(Memo.id))
        assert result.scalars().all() == [None, None, "a"]

    async def test_unknown_field_raises_before_any_sql(
        self, items: ItemRepository, counter: StatementCounter
    ) -> None:
        with counter, pytest.raises(InvalidFieldError):
            await items.insert_many([{"code": "x", "bogus": 1}])
        assert counter.count == 0

    async def test_conflict_raises_conflict_error(self, items: ItemRepository) -> None:
        with pytest.raises(ConflictError) as info:
            await items.insert_many([{"code": "x", "name": "n"}, {"code": "x", "name": "n"}])
        assert info.value.kind == "unique"


class TestUpdateMany:
    @ALL_BACKENDS
    async def test_updates_ten_thousand_rows_by_primary_key(
        self,
        engine: AsyncEngine,
        items: ItemRepository,
        counter: StatementCounter,
    ) -> None:
        created = await seed(items, MANY)
        with counter:
            matched = await items.update_many(
                [{"id": item.id, "name": f"new {item.code}"} for item in created]
            )
        assert matched == MANY
        assert counter.count == 1
        await items.session.commit()
        stored = await table_rows(engine)
        assert all(name == f"new {code}" for code, (_, name, _) in stored.items())

    @ALL_BACKENDS
    async def test_writes_only_the_columns_each_row_names(
        self, engine: AsyncEngine, items: ItemRepository
    ) -> None:
        first, second = await seed(items, 2)
        matched = await items.update_many(
            [{"id": first.id, "name": "renamed"}, {"id": second.id, "qty": 7}]
        )
        assert matched == 2
        await items.session.commit()
        stored = await table_rows(engine)
        assert stored["c0"][1:] == ("renamed", 0)
        assert stored["c1"][1:] == ("name 1", 7)

    @ALL_BACKENDS
    async def test_counts_only_rows_that_exist(self, items: ItemRepository) -> None:
        (item,) = await seed(items, 1)
        assert await items.update_many([{"id": item.id, "qty": 1}, {"id": 99_999, "qty": 1}]) == 1

    async def test_updates_objects_already_in_the_session(self, items: ItemRepository) -> None:
        (item,) = await seed(items, 1)
        await items.update_many([{"id": item.id, "name": "fresh"}])
        assert item.name == "fresh"
        assert item not in items.session.dirty

    async def test_row_without_primary_key_raises_before_any_sql(
        self, items: ItemRepository, counter: StatementCounter
    ) -> None:
        with counter, pytest.raises(InvalidFieldError) as info:
            await items.update_many([{"name": "no key"}])
        assert counter.count == 0
        assert info.value.field == "id"

    async def test_row_that_sets_nothing_raises(self, items: ItemRepository) -> None:
        with pytest.raises(InvalidFieldError, match="sets no column"):
            await items.update_many([{"id": 1}])

    async def test_unknown_field_raises(self, items: ItemRepository) -> None:
        with pytest.raises(InvalidFieldError) as info:
            await items.update_many([{"id": 1, "nmae": "x"}])
        assert info.value.field == "nmae"

    async def test_conflict_raises_conflict_error(self, items: ItemRepository) -> None:
        first, _ = await seed(items, 2)
        with pytest.raises(ConflictError) as info:
            await items.update_many([{"id": first.id, "code": "c1"}])
        assert info.value.kind == "unique"


class TestDelete:
    async def test_delete_many_deletes_by_key_and_ignores_missing_keys(
        self, engine: AsyncEngine, items: ItemRepository, counter: StatementCounter
    ) -> None:
        created = await seed(items, 5)
        with counter:
            deleted = await items.delete_many([created[0].id, created[3].id, 99_999])
        assert deleted == 2
        assert counter.count == 1
        assert created[0] not in items.session
        await items.session.commit()
        assert sorted(await table_rows(engine)) == ["c1", "c2", "c4"]

    async def test_delete_many_with_composite_keys(self, session: AsyncSession) -> None:
        pairs = AsyncRepository(session, model=Pair)
        await pairs.insert_many(
            [{"left": a, "right": b, "label": "x"} for a in (1, 2) for b in (1, 2)]
        )
        assert await pairs.delete_many([(1, 2), (2, 1), (3, 3)]) == 2
        left = await session.execute(select(Pair.left, Pair.right).order_by(Pair.left))
        assert left.all() == [(1, 1), (2, 2)]

    async def test_delete_many_rejects_a_key_of_the_wrong_shape(
        self, session: AsyncSession
    ) -> None:
        pairs = AsyncRepository(session, model=Pair)
        with pytest.raises(InvalidFieldError, match="tuple of 2 values"):
            await pairs.delete_many([(1, 2), 3])

    async def test_delete_many_of_nothing_sends_no_sql(
        self, items: ItemRepository, counter: StatementCounter
    ) -> None:
        with counter:
            assert await items.delete_many([]) == 0
        assert counter.count == 0

    async def test_delete_where_deletes_matching_rows(
        self, engine: AsyncEngine, items: ItemRepository
    ) -> None:
        await seed(items, 6)
        assert await items.delete_where(Item.code.in_(["c0", "c1"])) == 2
        assert await items.delete_where(code__in=["c2", "c3"], name__ne="x") == 2
        await items.session.commit()
        assert sorted(await table_rows(engine)) == ["c4", "c5"]

    async def test_delete_where_without_criteria_refuses_to_empty_the_table(
        self, engine: AsyncEngine, items: ItemRepository, counter: StatementCounter
    ) -> None:
        await seed(items, 3)
        with counter, pytest.raises(InvalidFieldError, match="all_rows=True"):
            await items.delete_where()
        assert counter.count == 0
        assert await items.delete_where(all_rows=True) == 3
        await items.session.commit()
        assert await table_rows(engine) == {}

    async def test_delete_where_rejects_unknown_fields(self, items: ItemRepository) -> None:
        with pytest.raises(InvalidFieldError) as info:
            await items.delete_where(nmae="x")
        assert info.value.field == "nmae"

    async def test_deleting_a_referenced_row_raises_conflict_error(
        self, fk_session: AsyncSession
    ) -> None:
        items = ItemRepository(fk_session)
        (item,) = await items.create_many(rows(1))
        await AsyncRepository(fk_session, model=Tag).insert_many(
            [{"item_id": item.id, "label": "t"}]
        )
        with pytest.raises(ConflictError) as info:
            await items.delete_many([item.id])
        assert info.value.kind == "foreign_key"


class TestUpsertMany:
    @ALL_BACKENDS
    async def test_upserts_ten_thousand_mixed_new_and_existing_rows(
        self,
        backend: str,
        engine: AsyncEngine,
        items: ItemRepository,
        counter: StatementCounter,
    ) -> None:
        existing = await seed(items, MANY // 2)
        data = [{"code": f"c{i}", "name": f"upserted {i}"} for i in range(MANY)]
        with counter:
            written = await items.upsert_many(data, on_conflict=("code",))
        assert written == MANY
        assert counter.count == 1
        await items.session.commit()
        stored = await table_rows(engine)
        assert len(stored) == MANY
        assert all(name == f"upserted {code[1:]}" for code, (_, name, _) in stored.items())
        assert all(stored[item.code][0] == item.id for item in existing)  # rows kept their key

    @ALL_BACKENDS
    async def test_empty_update_leaves_existing_rows_alone(
        self, backend: str, engine: AsyncEngine, items: ItemRepository
    ) -> None:
        await seed(items, 2)
        data = [{"code": f"c{i}", "name": "changed"} for i in range(4)]
        written = await items.upsert_many(data, on_conflict=("code",), update=())
        # MariaDB reports an untouched duplicate as matched (CLIENT_FOUND_ROWS).
        assert written == (4 if backend == "mariadb" else 2)
        await items.session.commit()
        stored = await table_rows(engine)
        assert [stored[f"c{i}"][1] for i in range(4)] == ["name 0", "name 1", "changed", "changed"]

    @ALL_BACKENDS
    async def test_update_names_the_columns_to_overwrite(
        self, engine: AsyncEngine, items: ItemRepository
    ) -> None:
        await seed(items, 1)
        data = [{"code": "c0", "name": "ignored", "qty": 5}]
        assert await items.upsert_many(data, on_conflict=("code",), update=("qty",)) == 1
        await items.session.commit()
        assert (await table_rows(engine))["c0"][1:] == ("name 0", 5)

    async def test_updates_objects_already_in_the_session(self, items: ItemRepository) -> None:
        (item,) = await seed(items, 1)
        await items.upsert_many([{"code": "c0", "name": "fresh"}], on_conflict=("code",))
        assert item.name == "fresh"

    async def test_on_conflict_is_required(
        self, items: ItemRepository, counter: StatementCounter
    ) -> None:
        with counter, pytest.raises(TypeError, match="on_conflict"):
            await items.upsert_many(rows(1))  # type: ignore[call-arg]
        assert counter.count == 0

    async def test_on_conflict_must_name_columns(
        self, items: ItemRepository, counter: StatementCounter
    ) -> None:
        with counter, pytest.raises(InvalidFieldError) as info:
            await items.upsert_many(rows(1), on_conflict=("cdoe",))
        assert counter.count == 0
        assert info.value.field == "cdoe"
        assert "code" in info.value.choices

    async def test_update_must_name_columns(self, items: ItemRepository) -> None:
        with pytest.raises(InvalidFieldError) as info:
            await items.upsert_many(rows(1), on_conflict=("code",), update=("tags",))
        assert info.value.field == "tags"

    async def test_every_row_needs_the_conflict_columns(self, items: ItemRepository) -> None:
        with pytest.raises(InvalidFieldError, match="on_conflict column 'code'"):
            await items.upsert_many([{"name": "no code"}], on_conflict=("code",))

    async def test_every_row_needs_the_update_columns(self, items: ItemRepository) -> None:
        with pytest.raises(InvalidFieldError, match="update column 'qty'"):
            await items.upsert_many(rows(1), on_conflict=("code",), update=("qty",))

    async def test_two_rows_with_the_same_conflict_values_raise(
        self, items: ItemRepository
    ) -> None:
        with pytest.raises(InvalidFieldError, match="same code as row 0"):
            await items.upsert_many([*rows(1), *rows(1)], on_conflict=("code",))

    async def test_another_integrity_violation_raises_conflict_error(
        self, items: ItemRepository
    ) -> None:
        with pytest.raises(ConflictError) as info:
            await items.upsert_many([{"code": "x", "name": None}], on_conflict=("code",))
        assert info.value.kind == "not_null"

    async def test_writes_are_flushed_but_not_committed(
        self, engine: AsyncEngine, items: ItemRepository
    ) -> None:
        await items.upsert_many(rows(3), on_conflict=("code",))
        async with engine.connect() as conn:
            # The upsert is not committed: another connection sees nothing yet.
            assert (await conn.execute(select(func.count()).select_from(Item))).scalar() == 0


class TestMappedNames:
    @ALL_BACKENDS
    async def test_every_method_uses_attribute_names_not_column_names(
        self, session: AsyncSession
    ) -> None:
        renamed = AsyncRepository(session, model=Renamed)
        created = await renamed.create_many(
            [{"code": "a", "title": "A"}, {"code": "b", "title": "B"}]
        )
        assert [(r.code, r.title) for r in created] == [("a", "A"), ("b", "B")]
        assert await renamed.update_many([{"ident": created[0].ident, "title": "A2"}]) == 1
        assert (
            await renamed.upsert_many(
                [{"code": "b", "title": "B2"}, {"code": "c", "title": "C"}], on_conflict=("code",)
            )
            == 2
        )
        assert await renamed.insert_many([{"code": "d", "title": "D"}]) == 1
        assert await renamed.delete_where(code="d") == 1
        result = await session.execute(select(Renamed.code, Renamed.title).order_by(Renamed.code))
        assert result.all() == [("a", "A2"), ("b", "B2"), ("c", "C")]


class TestUpsertDefaults:
    @ALL_BACKENDS
    async def test_python_defaults_fill_new_rows_and_spare_existing_ones(
        self, items: ItemRepository
    ) -> None:
        (existing,) = await seed(items, 1)
        await items.upsert_many(rows(3), on_conflict=("code",))
        result = await items.session.execute(select(Item.code, Item.token).order_by(Item.code))
        tokens = dict(result.all())
        assert tokens["c0"] == existing.token  # not overwritten by a fresh default
        assert len(set(tokens.values())) == 3  # each new row got its own


class TestTypesWithBindProcessing:
    @ALL_BACKENDS
    async def test_json_values_round_trip_through_every_method(self, session: AsyncSession) -> None:
        docs = AsyncRepository(session, model=Doc)
        created = await docs.create_many([{"code": f"d{i}", "data": {"n": i}} for i in range(3)])
        assert [doc.data for doc in created] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert (
            await docs.update_many([{"id": created[0].id, "data": {"n": 10, "tags": ["a"]}}]) == 1
        )
        assert (
            await docs.upsert_many(
                [{"code": "d1", "data": {"n": 11}}, {"code": "d3", "data": {"n": 3}}],
                on_conflict=("code",),
            )
            == 2
        )
        result = await session.execute(select(Doc.code, Doc.data).order_by(Doc.code))
        assert result.all() == [
            ("d0", {"n": 10, "tags": ["a"]}),
            ("d1", {"n": 11}),
            ("d2", {"n": 2}),
            ("d3", {"n": 3}),
        ]

    @ALL_BACKENDS
    async def test_explicit_keys_with_dates_and_decimals_round_trip(
        self, session: AsyncSession
    ) -> None:
        docs = AsyncRepository(session, model=Doc)
        at = datetime.datetime(2024, 2, 29, 12, 30, 15)
        rows = [
            {"id": ident, "code": f"k{ident}", "data": {"n": ident}, "at": at}
            | {"day": datetime.date(2024, 3, ident), "price": decimal.Decimal(f"{ident}.25")}
            for ident in (7, 3)
        ]
        created = await docs.create_many(rows)
        assert [(doc.id, doc.day, doc.at, doc.price) for doc in created] == [
            (7, datetime.date(2024, 3, 7), at, decimal.Decimal("7.25")),
            (3, datetime.date(2024, 3, 3), at, decimal.Decimal("3.25")),
        ]

    @ALL_BACKENDS
    async def test_dates_decimals_booleans_and_uuids_round_trip(
        self, session: AsyncSession
    ) -> None:
        docs = AsyncRepository(session, model=Doc)
        ref = uuid.uuid4()
        values = {
            "data": {},
            "day": datetime.date(2024, 2, 29),
            "at": datetime.datetime(2024, 2, 29, 12, 30, 15),
            "flag": True,
            "price": decimal.Decimal("12.50"),
            "ref": ref,
        }
        (created,) = await docs.create_many([{"code": "a", **values}])
        await docs.insert_many([{"code": "b", **values}])
        changed = {**values, "day": datetime.date(2025, 1, 1), "flag": False, "ref": None}
        assert await docs.update_many([{"id": created.id, **changed}]) == 1
        assert await docs.upsert_many([{"code": "b", **changed}], on_conflict=("code",)) == 1
        assert await docs.upsert_many([{"code": "c", **values}], on_conflict=("code",)) == 1
        columns = (Doc.code, Doc.day, Doc.at, Doc.flag, Doc.price, Doc.ref)
        result = await session.execute(select(*columns).order_by(Doc.code))
        expected_changed = ("2025-01-01", False, None)
        assert [
            (code, str(day), at, flag, price, ref_) for code, day, at, flag, price, ref_ in result
        ] == [
            ("a", expected_changed[0], values["at"], False, values["price"], None),
            ("b", expected_changed[0], values["at"], False, values["price"], None),
            ("c", "2024-02-29", values["at"], True, values["price"], ref),
        ]


class TestAuditRegressions:
    @ALL_BACKENDS
    async def test_a_none_generated_key_asks_for_a_generated_key(
        self, session: AsyncSession
    ) -> None:
        items = ItemRepository(session)
        created = await items.create_many(
            [
                {"id": None, "code": "a", "name": "A"},
                Item(id=None, code="b", name="B"),
                {"code": "c", "name": "C"},
            ]
        )
        assert [item.code for item in created] == ["a", "b", "c"]
        assert all(isinstance(item.id, int) for item in created)
        assert len({item.id for item in created}) == 3
        assert await items.insert_many([{"id": None, "code": "d", "name": "D"}]) == 1
        assert (
            await items.upsert_many([{"id": None, "code": "e", "name": "E"}], on_conflict=("code",))
            == 1
        )
        result = await session.execute(select(Item.code).where(Item.id.is_not(None)))
        assert sorted(result.scalars()) == ["a", "b", "c", "d", "e"]

    @ALL_BACKENDS
    async def test_delete_many_of_ten_thousand_composite_keys(
        self, session: AsyncSession, counter: StatementCounter
    ) -> None:
        pairs = AsyncRepository(session, model=Pair)
        keys = [(a, b) for a in range(100) for b in range(100)]
        await pairs.insert_many([{"left": a, "right": b, "label": "x"} for a, b in keys])
        with counter:
            assert await pairs.delete_many(keys) == 10_000
        assert counter.count == 10
        assert (await session.execute(select(func.count()).select_from(Pair))).scalar() == 0

    @ALL_BACKENDS
    async def test_update_many_refuses_a_primary_key_given_twice(
        self, session: AsyncSession, counter: StatementCounter
    ) -> None:
        items = ItemRepository(session)
        (item,) = await items.create_many([{"code": "a", "name": "A"}])
        with counter, pytest.raises(InvalidFieldError, match="same id as row 0"):
            await items.update_many([{"id": item.id, "name": "B"}, {"id": item.id, "name": "C"}])
        assert counter.count == 0
        await session.refresh(item)
        assert item.name == "A"
