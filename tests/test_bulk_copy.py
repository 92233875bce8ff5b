"""`insert_many` and `create_many` through COPY on PostgreSQL, and their fallbacks.

With asyncpg and with psycopg (``SQLA_UOW_TEST_POSTGRES_URL`` naming ``postgresql+psycopg``)
the rows of a big enough call over plain scalar columns are loaded with
``COPY ... FROM STDIN`` on the session's connection: no ``INSERT`` reaches the
``before_cursor_execute`` listener.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import enum
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import (
    CHAR,
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    Enum,
    Float,
    ForeignKey,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import AsyncRepository, TransactionManager, pgbouncer_options
from sqla_uow._dialects.postgresql import PostgreSQLBackend
from sqla_uow.exceptions import ConflictError, RollbackOnlyError

pytestmark = pytest.mark.backends("postgresql")

N = 1_000
"""Rows per call: enough for COPY (`PostgreSQLBackend.copy_create_min_rows`)."""


class Base(DeclarativeBase):
    pass


class Parent(Base):
    __tablename__ = "copy_parent"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


class Reading(Base):
    """Plain scalar columns only: COPY serves both methods."""

    __tablename__ = "copy_reading"
    __table_args__ = (CheckConstraint("qty >= 0", name="copy_reading_qty_check"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    label: Mapped[str] = mapped_column(String(40))
    note: Mapped[str] = mapped_column(String(40), default="new")
    qty: Mapped[int | None]
    amount: Mapped[decimal.Decimal | None] = mapped_column(Numeric(12, 4))
    ref: Mapped[uuid.UUID | None]
    at: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True))
    day: Mapped[datetime.date | None]
    flag: Mapped[bool | None]
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("copy_parent.id"))


class Stamped(Base):
    """A server default: `create_many` rows that leave it out need RETURNING."""

    __tablename__ = "copy_stamped"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40))
    level: Mapped[int] = mapped_column(server_default=text("7"))


class Measure(Base):
    """More plain scalar types, for values of looser Python types than the columns'."""

    __tablename__ = "copy_measure"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40))
    small: Mapped[int | None] = mapped_column(SmallInteger)
    big: Mapped[int | None] = mapped_column(BigInteger)
    ratio: Mapped[float | None] = mapped_column(Float)
    exact: Mapped[float | None] = mapped_column(Double)
    price: Mapped[decimal.Decimal | None] = mapped_column(Numeric(12, 4))
    body: Mapped[str | None] = mapped_column(Text)
    initials: Mapped[str | None] = mapped_column(CHAR(3))
    ref: Mapped[uuid.UUID | None]
    aware: Mapped[datetime.datetime | None] = mapped_column(DateTime(timezone=True))
    naive: Mapped[datetime.datetime | None]
    clock: Mapped[datetime.time | None]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Doc(Base):
    """JSON and enum columns: values need the dialect's bind processing, so no COPY."""

    __tablename__ = "copy_doc"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    color: Mapped[Color] = mapped_column(Enum(Color))


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


class Statements:
    """The statements sent while active (``before_cursor_execute``)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.active = False

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.active:
            self.seen.append(" ".join(statement.split()).upper())

    @property
    def inserts(self) -> list[str]:
        return [s for s in self.seen if s.startswith("INSERT")]

    def __enter__(self) -> Statements:
        self.seen.clear()
        self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.active = False


@pytest.fixture
def statements(engine: AsyncEngine) -> Iterator[Statements]:
    listener = Statements()
    event.listen(engine.sync_engine, "before_cursor_execute", listener)
    yield listener
    event.remove(engine.sync_engine, "before_cursor_execute", listener)


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        yield session


def readings(n: int, *, prefix: str = "r", **extra: Any) -> list[dict[str, Any]]:
    return [{"code": f"{prefix}{i}", "label": f"label {i}", **extra} for i in range(n)]


def varied(n: int, prefix: str) -> list[dict[str, Any]]:
    """Rows with NULLs, Decimals, UUIDs, aware datetimes, dates and booleans."""
    zone = datetime.timezone(datetime.timedelta(hours=2))
    return [
        {
            "code": f"{prefix}{i}",
            "label": f"label {i} é",
            "qty": None if i % 3 == 0 else i,
            "amount": None if i % 4 == 0 else decimal.Decimal(f"{i}.{i % 10000:04d}"),
            "ref": None if i % 5 == 0 else uuid.UUID(int=i + 1),
            "at": None
            if i % 6 == 0
            else datetime.datetime(2026, 1, 1, 12, 30, tzinfo=zone) + datetime.timedelta(i),
            "day": None if i % 7 == 0 else datetime.date(2026, 1, 1) + datetime.timedelta(i),
            "flag": None if i % 2 == 0 else bool(i % 4 == 1),
        }
        for i in range(n)
    ]


def measures(n: int, prefix: str, *, loose: bool, char: bool) -> list[dict[str, Any]]:
    """Rows of `Measure` (every third one NULLs); *loose*: of other Python types where the
    server converts them; *char*: with the CHAR column too."""
    zone = datetime.timezone(datetime.timedelta(hours=-5))
    rows: list[dict[str, Any]] = []
    for i in range(n):
        at = datetime.datetime(2026, 3, 1, 8, 15, tzinfo=zone) + datetime.timedelta(hours=i)
        row: dict[str, Any] = {
            "code": f"{prefix}{i}",
            "small": i % 30_000,
            "big": 2**40 + i,
            "ratio": i + 0.5,
            "exact": i / 3,
            "price": decimal.Decimal(i) + decimal.Decimal("0.5"),
            "body": f"body {i}",
            "ref": uuid.UUID(int=i),
            "aware": at,
            "naive": at.replace(tzinfo=None),
            "clock": datetime.time(i % 24, 30, 15, 250),
        }
        if loose:
            row |= {
                "ratio": i if i % 2 else i + 0.5,
                "exact": decimal.Decimal(i) / 4,
                "price": float(i) + 0.5 if i % 2 else i,
                "ref": str(uuid.UUID(int=i)),
                "aware": at.replace(tzinfo=None),
            }
        if char:
            row["initials"] = "ab"
        if i % 3 == 0:
            row = {"code": row["code"]} | dict.fromkeys(row.keys() - {"code"})
        rows.append(row)
    return rows


STORED = (
    Reading.label,
    Reading.note,
    Reading.qty,
    Reading.amount,
    Reading.ref,
    Reading.at,
    Reading.day,
    Reading.flag,
)


async def stored(engine: AsyncEngine, prefix: str) -> list[tuple[Any, ...]]:
    """The committed rows whose code starts with *prefix*, by their number, without id."""
    async with engine.connect() as conn:
        result = await conn.execute(
            select(Reading.code, *STORED).where(Reading.code.startswith(prefix))
        )
        found = {row[0]: tuple(row[1:]) for row in result}
    return [found[code] for code in sorted(found, key=lambda code: int(code[len(prefix) :]))]


@contextlib.contextmanager
def without_copy() -> Iterator[None]:
    """Force the INSERT path (COPY for no driver)."""
    before = PostgreSQLBackend.copy_min_rows, PostgreSQLBackend.copy_create_min_rows
    PostgreSQLBackend.copy_min_rows = PostgreSQLBackend.copy_create_min_rows = {}
    try:
        yield
    finally:
        PostgreSQLBackend.copy_min_rows, PostgreSQLBackend.copy_create_min_rows = before


class TestInsertManyThroughCopy:
    async def test_loads_the_rows_without_an_insert_statement(
        self, engine: AsyncEngine, session: AsyncSession, statements: Statements
    ) -> None:
        with statements:
            count = await AsyncRepository(session, model=Reading).insert_many(readings(N))
        assert count == N
        assert statements.inserts == []
        assert len(session.identity_map) == 0
        await session.commit()
        rows = await stored(engine, "r")
        assert len(rows) == N
        assert rows[N - 1][:2] == (f"label {N - 1}", "new")  # the Python-side default

    async def test_is_rolled_back_with_the_transaction(
        self, engine: AsyncEngine, session: AsyncSession
    ) -> None:
        await AsyncRepository(session, model=Reading).insert_many(readings(N))
        await session.rollback()
        assert await stored(engine, "r") == []

    async def test_sees_and_is_seen_by_the_transactions_other_statements(
        self, engine: AsyncEngine, session: AsyncSession
    ) -> None:
        session.add(Parent(id=1, name="p"))  # pending: flushed before the rows are loaded
        repo = AsyncRepository(session, model=Reading)
        await repo.insert_many(readings(N, parent_id=1))
        assert await session.scalar(select(func.count()).select_from(Reading)) == N
        await session.commit()
        assert len(await stored(engine, "r")) == N

    @pytest.mark.parametrize(
        ("bad", "kind"),
        [
            ({"code": "r0", "label": "again"}, "unique"),
            ({"code": "x", "label": "orphan", "parent_id": 99}, "foreign_key"),
            ({"code": "x", "label": None}, "not_null"),
            ({"code": "x", "label": "negative", "qty": -1}, "check"),
        ],
    )
    async def test_a_violation_raises_conflict_error_and_loads_nothing(
        self, engine: AsyncEngine, session: AsyncSession, bad: dict[str, Any], kind: str
    ) -> None:
        with pytest.raises(ConflictError) as info:
            await AsyncRepository(session, model=Reading).insert_many([*readings(N), bad])
        assert info.value.kind == kind
        assert isinstance(info.value.__cause__, IntegrityError)
        await session.rollback()
        assert await stored(engine, "r") == []

    async def test_a_conflict_leaves_the_transaction_rollback_only(
        self, engine: AsyncEngine
    ) -> None:
        tm = TransactionManager(engine)

        async def swallow_the_conflict() -> None:
            async with tm.transaction() as session:
                repo = AsyncRepository(session, model=Reading)
                await repo.insert_many(readings(N, prefix="ok"))
                with contextlib.suppress(ConflictError):
                    await repo.insert_many([*readings(N), {"code": "r0", "label": "again"}])

        with pytest.raises(RollbackOnlyError):
            await swallow_the_conflict()
        assert await stored(engine, "ok") == []

    async def test_a_conflict_in_a_savepoint_rolls_back_only_the_savepoint(
        self, engine: AsyncEngine, session: AsyncSession
    ) -> None:
        repo = AsyncRepository(session, model=Reading)
        await repo.insert_many(readings(N, prefix="kept"))
        with pytest.raises(ConflictError):
            async with session.begin_nested():
                await repo.insert_many([*readings(N), {"code": "r0", "label": "again"}])
        await repo.insert_many(readings(N, prefix="after"))
        await session.commit()
        assert len(await stored(engine, "kept")) == len(await stored(engine, "after")) == N
        assert await stored(engine, "r") == []

    async def test_few_rows_go_through_insert(
        self, engine: AsyncEngine, session: AsyncSession, statements: Statements
    ) -> None:
        driver = engine.dialect.driver
        few = PostgreSQLBackend.copy_min_rows[driver] - 1
        with statements:
            await AsyncRepository(session, model=Reading).insert_many(readings(few))
        assert len(statements.inserts) == 1
        few = PostgreSQLBackend.copy_create_min_rows[driver] - 1
        with statements:
            await AsyncRepository(session, model=Reading).create_many(readings(few, prefix="s"))
        assert len(statements.inserts) == 1

    async def test_values_are_stored_as_through_insert(
        self, engine: AsyncEngine, session: AsyncSession
    ) -> None:
        repo = AsyncRepository(session, model=Reading)
        await repo.insert_many(varied(N, "c"))
        with without_copy():
            await repo.insert_many(varied(N, "i"))
        await session.commit()
        copied, inserted = await stored(engine, "c"), await stored(engine, "i")
        assert copied == inserted
        assert copied[1][3] == decimal.Decimal("1.0001")
        assert copied[1][5] == datetime.datetime(2026, 1, 2, 10, 30, tzinfo=datetime.timezone.utc)

    @pytest.mark.parametrize(
        ("loose", "char"), [(False, False), (True, False), (False, True)], ids=str
    )
    async def test_more_types_are_stored_as_through_insert(
        self,
        engine: AsyncEngine,
        session: AsyncSession,
        statements: Statements,
        loose: bool,
        char: bool,
    ) -> None:
        """Values of the columns' own Python types (psycopg's binary format), of types the
        server converts (an ``int`` for ``numeric``, a ``str`` for ``uuid``, a naive
        datetime for ``timestamptz``), or for a CHAR column (both psycopg's text format)."""
        repo = AsyncRepository(session, model=Measure)
        with statements:
            await repo.insert_many(measures(N, "c", loose=loose, char=char))
        assert statements.inserts == []
        with without_copy():
            await repo.insert_many(measures(N, "i", loose=loose, char=char))
        await session.commit()
        columns = [c for c in Measure.__table__.c if c.name not in ("id", "code")]
        async with engine.connect() as conn:
            result = await conn.execute(select(Measure.code, *columns).order_by(Measure.id))
            found = {row[0]: tuple(row[1:]) for row in result}
        assert len(found) == 2 * N
        assert all(found[f"c{i}"] == found[f"i{i}"] for i in range(N))
        assert found["c1"][4] == decimal.Decimal("1.5000")  # price

    async def test_json_and_enum_columns_go_through_insert(
        self, engine: AsyncEngine, session: AsyncSession, statements: Statements
    ) -> None:
        docs = [{"code": f"d{i}", "data": {"n": i}, "color": Color.BLUE} for i in range(N)]
        with statements:
            await AsyncRepository(session, model=Doc).insert_many(docs)
        assert len(statements.inserts) == 1
        await session.commit()
        async with engine.connect() as conn:
            row = (await conn.execute(select(Doc.data, Doc.color).where(Doc.code == "d7"))).one()
        assert tuple(row) == ({"n": 7}, Color.BLUE)


class TestCreateManyThroughCopy:
    async def test_returns_persistent_objects_in_input_order_with_keys_from_the_sequence(
        self, engine: AsyncEngine, session: AsyncSession, statements: Statements
    ) -> None:
        with statements:
            created = await AsyncRepository(session, model=Reading).create_many(varied(N, "c"))
        assert statements.inserts == []
        [draw] = statements.seen
        assert "NEXTVAL" in draw
        assert [obj.code for obj in created] == [f"c{i}" for i in range(N)]
        assert len({obj.id for obj in created}) == N
        assert all(obj.note == "new" for obj in created)
        with statements:
            assert await session.get(Reading, created[5].id) is created[5]
        assert statements.seen == []
        await session.commit()
        async with engine.connect() as conn:
            found = dict((await conn.execute(select(Reading.code, Reading.id))).all())
        assert all(found[obj.code] == obj.id for obj in created)
        assert [tuple(getattr(obj, c.key) for c in STORED) for obj in created] == await stored(
            engine, "c"
        )

    async def test_objects_hold_the_values_insert_returning_would_load(
        self, session: AsyncSession
    ) -> None:
        repo = AsyncRepository(session, model=Reading)
        copied = await repo.create_many(varied(N, "c"))
        with without_copy():
            inserted = await repo.create_many(varied(N, "i"))
        assert [tuple(getattr(o, c.key) for c in STORED) for o in copied] == [
            tuple(getattr(o, c.key) for c in STORED) for o in inserted
        ]

    async def test_rows_that_give_their_key_keep_it(
        self, session: AsyncSession, statements: Statements
    ) -> None:
        given = [{"id": 100_000 + i, "code": f"g{i}", "label": "given"} for i in range(N)]
        rows = [row for pair in zip(given, readings(N), strict=True) for row in pair]
        created = await AsyncRepository(session, model=Reading).create_many(rows)
        assert [obj.code for obj in created] == [row["code"] for row in rows]
        assert [obj.id for obj in created[::2]] == [100_000 + i for i in range(N)]
        session.add(Reading(code="later", label="later"))
        await session.flush()  # the sequence moved past the keys drawn
        assert await session.scalar(select(func.count()).select_from(Reading)) == 2 * N + 1

    async def test_a_conflict_raises_and_the_copy_adds_no_object(
        self, session: AsyncSession
    ) -> None:
        repo = AsyncRepository(session, model=Reading)
        # Two sets of columns: the first set is copied before the second one fails.
        noted = readings(N, prefix="n", qty=1)
        with pytest.raises(ConflictError) as info:
            await repo.create_many([*noted, *readings(N), {"code": "r1", "label": "again"}])
        assert info.value.kind == "unique"
        assert len(session.identity_map) == 0
        await session.rollback()

    async def test_a_server_default_left_out_goes_through_insert_returning(
        self, session: AsyncSession, statements: Statements
    ) -> None:
        repo = AsyncRepository(session, model=Stamped)
        with statements:
            created = await repo.create_many([{"code": f"s{i}"} for i in range(N)])
        assert len(statements.inserts) == 1
        assert all(obj.level == 7 for obj in created)
        with statements:
            given = await repo.create_many([{"code": f"t{i}", "level": 1} for i in range(N)])
        assert statements.inserts == []
        assert [obj.level for obj in given[:2]] == [1, 1]


BOUNCER_VARIABLE = "SQLA_UOW_TEST_PGBOUNCER_URL"


class TestCopyThroughPgBouncer:
    """COPY in PgBouncer's transaction pooling, with `pgbouncer_options`."""

    @pytest.fixture
    async def tm(self, engine: AsyncEngine) -> AsyncIterator[TransactionManager]:
        bouncer = os.environ.get(BOUNCER_VARIABLE)
        if not bouncer:
            pytest.skip(f"needs {BOUNCER_VARIABLE} (`scripts/pg-cluster up` starts PgBouncer)")
        database = engine.url.database
        driver = f"postgresql+{engine.dialect.driver}"
        url = make_url(bouncer).set(drivername=driver, database=database)
        bound = create_async_engine(url, **pgbouncer_options(url))
        async with TransactionManager(bound) as manager:
            yield manager
        await bound.dispose()

    async def test_loads_rolls_back_and_reports_conflicts(
        self, engine: AsyncEngine, tm: TransactionManager
    ) -> None:
        for _ in range(3):  # server connections change between transactions
            with contextlib.suppress(ValueError):
                async with tm.transaction() as session:
                    await AsyncRepository(session, model=Reading).insert_many(
                        readings(N, prefix="x")
                    )
                    raise ValueError("roll back")
        async with tm.transaction() as session:
            repo = AsyncRepository(session, model=Reading)
            await repo.insert_many(readings(N))
            created = await repo.create_many(readings(N, prefix="k"))
        assert len(await stored(engine, "r")) == N
        assert len(await stored(engine, "k")) == N
        assert await stored(engine, "x") == []
        assert created[-1].code == f"k{N - 1}"
        with pytest.raises(ConflictError):
            async with tm.transaction() as session:
                await AsyncRepository(session, model=Reading).insert_many(readings(N))
