"""Caller values are checked against the column's type before any SQL, on every backend.

Each test sends the bad value through the real repository (and, where it has the method,
the in-memory fake), asserts the typed error, and then shows the database untouched and
the transaction still usable: a value that had reached PostgreSQL would have aborted it.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Enum,
    Float,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    TypeDecorator,
    Uuid,
    event,
    text,
)
from sqlalchemy.dialects import registry
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_uow import AsyncRepository, InvalidCursorError, InvalidFieldError
from sqla_uow._filters import check_write_values
from sqla_uow._model import model_meta, value_rule
from sqla_uow._pagination import _checksum, encode_cursor, ordering_fingerprint
from sqla_uow.testing import InMemoryRepository


class Base(DeclarativeBase):
    pass


class Hue(enum.Enum):
    red = "r"
    blue = "b"


class Cents(TypeDecorator[Decimal]):
    """Money stored as an integer number of cents."""

    impl = Integer
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        return None if value is None else int(Decimal(value) * 100)

    def process_result_value(self, value: int | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value) / 100


class Specimen(Base):
    __tablename__ = "valid_specimen"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    sku: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(40))
    small: Mapped[int | None] = mapped_column(SmallInteger)
    big: Mapped[int | None] = mapped_column(BigInteger)
    uid: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    at: Mapped[dt.datetime | None]
    day: Mapped[dt.date | None]
    price: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    ratio: Mapped[float | None] = mapped_column(Float)
    flag: Mapped[bool | None] = mapped_column(Boolean)
    hue: Mapped[Hue | None] = mapped_column(Enum(Hue))
    cost: Mapped[Decimal | None] = mapped_column(Cents)


class SpecimenRepository(AsyncRepository[Specimen]):
    pass


UID = uuid.UUID("12345678-1234-5678-1234-567812345678")
AT = dt.datetime(2024, 5, 1, 12, 30)


def rows() -> list[dict[str, Any]]:
    return [
        {
            "id": 1,
            "sku": "A-1",
            "name": "one",
            "small": 1,
            "big": 2**40,
            "uid": UID,
            "at": AT,
            "day": dt.date(2024, 5, 1),
            "price": Decimal("9.99"),
            "ratio": 0.5,
            "flag": True,
            "hue": Hue.red,
            "cost": Decimal("1.50"),
        },
        {"id": 2, "sku": "B-2", "name": "two", "flag": False, "hue": Hue.blue},
        {"id": 3, "sku": "C-3", "name": "three"},
    ]


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
async def specimens(session: AsyncSession) -> SpecimenRepository:
    repo = SpecimenRepository(session)
    await repo.create_many(rows())
    await session.commit()
    return repo


async def table_state(repo: SpecimenRepository) -> list[tuple[Any, ...]]:
    """Every row as read from the database (the identity map bypassed)."""
    repo.session.expire_all()
    return [(s.id, s.sku, s.name, s.small) for s in await repo.list(order_by="id")]


def fake() -> InMemoryRepository[Specimen]:
    return InMemoryRepository(Specimen, rows=rows())


WRONG_FILTERS: list[tuple[dict[str, Any], str]] = [
    ({"id": "abc"}, "an integer"),
    ({"id__gt": "a"}, "an integer"),
    ({"id": True}, "an integer"),
    ({"id": 1.0}, "an integer"),
    ({"id__in": [1, "x"]}, "an integer"),
    ({"id": 2**64}, "an integer"),
    ({"small": 2**15}, "16-bit"),
    ({"big__lt": 2**63}, "64-bit"),
    ({"uid": "not-a-uuid"}, "a UUID"),
    ({"uid__in": [UID, 7]}, "a UUID"),
    ({"at": "yesterday"}, "a datetime"),
    ({"at__gte": dt.date(2024, 1, 1)}, "a datetime"),
    ({"at": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)}, "without a time zone"),
    ({"day": AT}, "not a datetime"),
    ({"price": "cheap"}, "a finite number"),
    ({"price__gt": Decimal("NaN")}, "a finite number"),
    ({"price": Decimal("1e5000")}, "a finite number"),
    ({"ratio": float("inf")}, "a finite number"),
    ({"ratio": 10**400}, "a finite number"),
    ({"flag": 1}, "True or False"),
    ({"flag": "true"}, "True or False"),
    ({"hue": "green"}, "Hue member"),
    ({"hue__in": ["red", 3]}, "Hue member"),
    ({"name": 5}, "a str"),
    ({"name": "a\x00b"}, "without NUL"),
    ({"name": "\ud800"}, "valid Unicode"),
    ({"name__like": "\x00%"}, "without NUL"),
    ({"id__like": "1%"}, "not a text column"),
    ({"at__ilike": "2024%"}, "not a text column"),
    ({"cost": "lots"}, "Cents accepts"),
]


@pytest.mark.backends("sqlite", "postgresql", "mariadb")
class TestFilterValues:
    @pytest.mark.parametrize(("filters", "expected"), WRONG_FILTERS)
    async def test_a_value_the_column_does_not_take_is_refused_before_sql(
        self, specimens: SpecimenRepository, filters: dict[str, Any], expected: str
    ) -> None:
        before = await table_state(specimens)
        (name,) = filters
        for repo in (specimens, fake()):
            with pytest.raises(InvalidFieldError, match=expected) as info:
                await repo.list(**filters)
            assert info.value.field == name
            assert f"filter {name!r} on Specimen got" in str(info.value)
            with pytest.raises(InvalidFieldError):
                await repo.count(**filters)
        with pytest.raises(InvalidFieldError):
            await specimens.delete_where(**filters)
        # Nothing reached the database: on PostgreSQL the transaction would be aborted.
        assert await table_state(specimens) == before

    async def test_a_value_in_exact_text_form_is_converted(
        self, specimens: SpecimenRepository
    ) -> None:
        cases: list[dict[str, Any]] = [
            {"id": "1"},
            {"id__in": ["1", 1]},
            {"uid": str(UID)},
            {"uid": UID.hex},
            {"at": AT.isoformat()},
            {"at__gte": "2024-05-01", "at__lt": "2024-05-02T00:00:00"},
            {"day": "2024-05-01"},
            {"price": "9.99"},
            {"ratio__lt": "0.75"},
            {"hue": "red"},
            {"cost": Decimal("1.5")},
        ]
        for filters in cases:
            for repo in (specimens, fake()):
                assert [s.id for s in await repo.list(**filters)] == [1], filters

    async def test_a_text_value_is_never_converted_to_another_type(
        self, specimens: SpecimenRepository
    ) -> None:
        for filters in ({"flag": "1"}, {"id": "1.0"}, {"id": " 1"}):
            with pytest.raises(InvalidFieldError):
                await specimens.list(**filters)

    async def test_integer_width_follows_the_column_type_and_the_database(
        self, specimens: SpecimenRepository, backend: str
    ) -> None:
        # Integer is 32 bits on PostgreSQL and MariaDB, 64 on SQLite (and in the fakes).
        if backend == "sqlite":
            assert await specimens.list(id=2**31) == []
            assert await fake().list(id=2**31) == []
        else:
            with pytest.raises(InvalidFieldError, match="32-bit column"):
                await specimens.list(id=2**31)
        assert [s.id for s in await specimens.list(id__lt=2**31 - 1)] == [1, 2, 3]
        assert [s.id for s in await specimens.list(big=2**40)] == [1]
        assert await specimens.list(big__gt=2**63 - 1) == []
        assert await specimens.list(small=-(2**15)) == []

    async def test_a_number_beyond_the_column_precision_is_refused_on_every_backend(
        self, specimens: SpecimenRepository
    ) -> None:
        # NUMERIC(10, 2): PostgreSQL's drivers send a compared value cast to the column's
        # type, where 10**8 overflows; every backend and the fakes refuse it the same way.
        before = await table_state(specimens)
        for repo in (specimens, fake()):
            for filters in ({"price__lt": Decimal("1e8")}, {"price__in": [1, 10**9]}):
                with pytest.raises(InvalidFieldError, match=r"NUMERIC\(10, 2\)"):
                    await repo.list(**filters)
            assert [s.id for s in await repo.list(price__lt=Decimal("99999999.99"))] == [1]
        assert await table_state(specimens) == before


@pytest.mark.backends("sqlite", "postgresql", "mariadb")
class TestPrimaryKeyValues:
    @pytest.mark.parametrize("key", [True, False, 2**64, -(2**63) - 1, "x", 1.0, b"1"])
    async def test_every_primary_key_method_refuses_a_key_of_the_wrong_type(
        self, specimens: SpecimenRepository, key: Any
    ) -> None:
        before = await table_state(specimens)
        repos: tuple[Any, ...] = (specimens, fake())
        for repo in repos:
            calls = [
                repo.get(key),
                repo.get_one(key),
                repo.get_many([1, key]),
                repo.delete(key),
                repo.delete_many([1, key]),
                repo.update(key, name="changed"),
                repo.update_many([{"id": key, "name": "changed"}]),
            ]
            for call in calls:
                with pytest.raises(InvalidFieldError, match="'id'") as info:
                    await call
                assert info.value.field == "id"
        assert await table_state(specimens) == before

    async def test_a_signaling_nan_key_in_an_update_is_refused(
        self, specimens: SpecimenRepository
    ) -> None:
        # Compared with the current key before being checked, it raised InvalidOperation.
        for repo in (specimens, fake()):
            with pytest.raises(InvalidFieldError, match="field 'id'"):
                await repo.update(2, id=Decimal("sNaN"))

    async def test_get_true_does_not_return_row_one(self, specimens: SpecimenRepository) -> None:
        with pytest.raises(InvalidFieldError, match=r"True \(bool\)"):
            await specimens.get(True)

    async def test_keys_in_exact_text_form_find_their_rows(
        self, specimens: SpecimenRepository
    ) -> None:
        assert (await specimens.get_one("1")).id == 1
        assert [s.id for s in await specimens.get_many(["2", 2, 1])] == [2, 1]
        assert await specimens.update_many([{"id": "3", "name": "three!"}]) == 1
        assert await specimens.delete_many(["3"]) == 1
        assert [s.id for s in await specimens.list(order_by="id")] == [1, 2]

    async def test_upsert_conflict_values_are_checked(self, specimens: SpecimenRepository) -> None:
        for repo in (specimens, fake()):
            with pytest.raises(InvalidFieldError, match="row 0 of Specimen: field 'sku'"):
                await repo.upsert_many([{"id": 9, "sku": 5, "name": "x"}], on_conflict=("sku",))


@pytest.mark.backends("sqlite", "postgresql", "mariadb")
class TestLongInLists:
    async def test_forty_thousand_values_in_one_filter(
        self, engine: AsyncEngine, specimens: SpecimenRepository, backend: str
    ) -> None:
        statements: list[tuple[str, Any]] = []

        def record(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
            statements.append((statement, params))

        ids = [*range(100_000, 140_000), 2, 3]
        event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            found = await specimens.list(id__in=ids, order_by="id")
            counted = await specimens.count(id__in=ids, name__ne="x")
            names = await specimens.list(name__in=[f"n{i}" for i in range(40_000)] + ["one"])
            uids = await specimens.list(uid__in=[uuid.uuid4() for _ in range(40_000)] + [UID])
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", record)
        assert [s.id for s in found] == [2, 3]
        assert counted == 2
        assert [s.id for s in names] == [1]
        assert [s.id for s in uids] == [1]
        if backend == "postgresql":
            # One array parameter: the statement text is the same whatever the length.
            statement, params = statements[0]
            assert "= ANY (" in statement
            assert len(params) == 1

    async def test_in_lists_of_every_length_match_the_same_rows(
        self, specimens: SpecimenRepository
    ) -> None:
        for extra in (0, 1, 499, 500, 501, 3_000):
            ids = [1, 3, *range(1_000, 1_000 + extra)]
            assert [s.id for s in await specimens.list(id__in=ids, order_by="id")] == [1, 3]
        hues = await specimens.list(hue__in=[Hue.blue] * 700, order_by="id")
        assert [s.id for s in hues] == [2]
        assert await specimens.list(id__in=[]) == []
        assert [s.id for s in await specimens.list(at__in=[AT] * 600)] == [1]
        typed: list[dict[str, Any]] = [
            {"cost__in": [Decimal("1.50"), Decimal("2")]},
            {"uid__in": [str(UID), UID.hex]},
            {"price__in": ["9.99", 1]},
            {"day__in": [dt.date(2024, 5, 1), "2024-05-01"]},
            {"flag__in": [True]},
            {"ratio__in": [0.5, 2]},
            {"sku__in": ["A-1", "Z-9"]},
        ]
        for filters in typed:
            for repo in (specimens, fake()):
                assert [s.id for s in await repo.list(**filters)] == [1], filters


@pytest.mark.backends("sqlite", "postgresql")
class TestUpsertTargets:
    async def test_an_undeclared_target_names_the_declared_unique_keys(
        self, specimens: SpecimenRepository
    ) -> None:
        before = await table_state(specimens)
        for repo in (specimens, fake()):
            with pytest.raises(InvalidFieldError, match="Unique: id; sku") as info:
                await repo.upsert_many(
                    [{"id": 7, "sku": "Z", "name": "one"}], on_conflict=("name",)
                )
            assert info.value.choices == ("id", "sku")
            assert isinstance(info.value.__cause__, Exception) or repo is not specimens
        # The transaction is still usable (a savepoint held the failed statement).
        assert await table_state(specimens) == before
        await specimens.session.commit()

    async def test_a_unique_index_that_exists_only_in_the_database_is_used(
        self, specimens: SpecimenRepository
    ) -> None:
        await specimens.session.execute(
            text("CREATE UNIQUE INDEX valid_specimen_name_db_only ON valid_specimen (name)")
        )
        written = await specimens.upsert_many(
            [{"id": 8, "sku": "Y", "name": "one", "small": 5}], on_conflict=("name",)
        )
        assert written == 1
        assert (await table_state(specimens))[0] == (1, "Y", "one", 5)


def forged(fingerprint: str, values: Any, *, raw_body: bytes | None = None) -> str:
    """A cursor with any body, signed with the public default key."""
    body = raw_body
    if body is None:
        body = json.dumps({"f": fingerprint, "v": values}, separators=(",", ":")).encode()
    encoded = base64.urlsafe_b64encode(body).decode().rstrip("=")
    return f"{encoded}.{_checksum(body, None)}"


@pytest.mark.backends("sqlite", "postgresql", "mariadb")
class TestForgedCursors:
    async def test_cursors_signed_with_the_public_key_cannot_crash_the_decoder(
        self, specimens: SpecimenRepository, backend: str
    ) -> None:
        keys = (("id", False),)
        fingerprint = ordering_fingerprint(Specimen, keys)
        deep = b'{"f":"x","v":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        cursors = [
            forged(fingerprint, [{"uuid": 5}]),
            forged(fingerprint, [{"b": 1}]),
            forged(fingerprint, [{"dt": []}]),
            forged(fingerprint, [{"td": 5}]),
            forged(fingerprint, [{"td": [10**12, 0, 0]}]),
            forged(fingerprint, [{"dec": {"a": 1}}]),
            forged(fingerprint, [{"enum": 3}]),
            forged(fingerprint, [[1, 2]]),
            forged(fingerprint, [True]),
            forged(fingerprint, ["abc"]),
            forged(fingerprint, [2**64]),
            forged(fingerprint, [1.5]),
            forged(fingerprint, {"id": 1}),
            forged(fingerprint, [], raw_body=b"[1, 2]"),
            forged(fingerprint, [], raw_body=b'"text"'),
            forged(fingerprint, [], raw_body=deep),
            forged(fingerprint, [], raw_body=b"\xff\xfe"),
            "abc.\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
            "\u00e9." + "0" * 16,
            "x" * 100_000,
        ]
        if backend != "sqlite":
            cursors.append(forged(fingerprint, [2**31]))  # 64-bit, but Integer is 32 here
        for cursor in cursors:
            for repo in (specimens, fake()):
                if repo is not specimens and cursor == cursors[-1] and backend != "sqlite":
                    continue  # the fakes take 64-bit Integer values, as SQLite does
                with pytest.raises(InvalidCursorError):
                    await repo.paginate_cursor(limit=2, order_by="id", after=cursor)

    async def test_a_type_decorator_column_checks_cursor_values_through_its_impl(
        self, specimens: SpecimenRepository
    ) -> None:
        keys = (("cost", False), ("id", False))
        fingerprint = ordering_fingerprint(Specimen, keys)
        for bad in ("lots", {"dec": "NaN"}, 2**62):
            with pytest.raises(InvalidCursorError, match="cursor value for 'cost'"):
                await specimens.paginate_cursor(
                    limit=1, order_by="cost", after=forged(fingerprint, [bad, 1])
                )
        good = forged(fingerprint, [{"dec": "1.00"}, 1])
        page = await specimens.paginate_cursor(limit=5, order_by="cost", after=good)
        assert [s.id for s in page.items] == [1, 2, 3]

    async def test_the_largest_limit_does_not_overflow(self, specimens: SpecimenRepository) -> None:
        for repo in (specimens, fake()):
            page = await repo.paginate_cursor(limit=2**63 - 1, order_by="id")
            assert [s.id for s in page.items] == [1, 2, 3]
            assert page.next_cursor is None


class TestCursorSecrets:
    @pytest.mark.parametrize("base", [AsyncRepository, InMemoryRepository])
    def test_an_empty_secret_is_refused_when_the_class_is_defined(self, base: Any) -> None:
        with pytest.raises(ValueError, match="cursor_secret is empty"):

            class Empty(base[Specimen]):  # type: ignore[misc,valid-type]
                cursor_secret = b""

        with pytest.raises(TypeError, match="must be bytes"):

            class Text(base[Specimen]):  # type: ignore[misc,valid-type]
                cursor_secret = "secret"

        with pytest.raises(ValueError, match="public default key"):

            class Public(base[Specimen]):  # type: ignore[misc,valid-type]
                cursor_secret = b"sqla_uow cursor v1"

    @pytest.mark.backends("sqlite")
    async def test_an_empty_secret_set_later_is_refused_before_any_cursor_is_made(
        self, specimens: SpecimenRepository
    ) -> None:
        specimens.cursor_secret = b""  # type: ignore[misc]
        with pytest.raises(ValueError, match="cursor_secret is empty"):
            await specimens.paginate_cursor(limit=1, order_by="id")
        signed = encode_cursor([1], fingerprint="x", secret=b"k")
        with pytest.raises(InvalidCursorError):
            await fake().paginate_cursor(limit=1, after=signed)


@pytest.mark.backends("sqlite", "postgresql", "mariadb")
class TestWrittenValues:
    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            ({"name": "x" * 41}, "at most 40 characters"),
            ({"price": Decimal("100000000")}, r"NUMERIC\(10, 2\)"),
            ({"price": "99999999.995"}, r"NUMERIC\(10, 2\)"),
            ({"small": 2**15}, "16-bit"),
            ({"at": "yesterday"}, "a datetime"),
            ({"flag": "yes"}, "True or False"),
            ({"hue": "green"}, "Hue member"),
            ({"uid": "not-a-uuid"}, "a UUID"),
            ({"cost": "lots"}, "Cents accepts"),
            ({"cost": Decimal(2**62)}, "-bit column"),  # the impl's width, after processing
        ],
    )
    async def test_a_value_the_column_cannot_store_is_refused_before_sql(
        self, specimens: SpecimenRepository, values: dict[str, Any], expected: str
    ) -> None:
        before = await table_state(specimens)
        (name,) = values
        for repo in (specimens, fake()):
            calls = [
                repo.create(**{"id": 9, "sku": "N-9", "name": "nine", **values}),
                repo.update(1, **values),
                repo.update_many([{"id": 2, "name": "two"}, {"id": 3, **values}]),
                repo.create_many([{"id": 9, "sku": "N-9", "name": "n"}, {**values, "id": 10}]),
                repo.upsert_many([{"id": 9, "sku": "A-1", **values}], on_conflict=("sku",)),
            ]
            for call in calls:
                with pytest.raises(InvalidFieldError, match=expected) as info:
                    await call
                assert info.value.field == name
        assert await table_state(specimens) == before

    @pytest.mark.parametrize(
        ("field", "bad", "expected"),
        [
            ("name", "x" * 41, "at most 40 characters"),
            ("name", "nul\x00", "without NUL characters"),
            ("name", "\ud800", "valid Unicode"),
            ("small", 2**15, "16-bit"),
            ("small", True, "an integer"),
            ("flag", 1, "True or False"),
        ],
    )
    async def test_one_bad_value_among_many_rows_names_its_row(
        self, specimens: SpecimenRepository, field: str, bad: Any, expected: str
    ) -> None:
        """A bulk call checks each column of all its rows at once; a bad value among good
        ones (non-ASCII text, NULLs) is still found, named with its row, before any SQL."""
        before = await table_state(specimens)
        good: dict[str, Any] = {"name": "żółw", "small": -7, "flag": False}
        batch = [
            {"id": 100 + i, "sku": f"BULK-{i}", **good, field: None if i % 3 else good[field]}
            for i in range(300)
        ]
        batch[217][field] = bad
        for repo in (specimens, fake()):
            with pytest.raises(InvalidFieldError, match=f"row 217 of Specimen: field '{field}'"):
                await repo.insert_many(batch)
            with pytest.raises(InvalidFieldError, match=expected) as info:
                await repo.insert_many(batch)
            assert info.value.field == field
        assert await table_state(specimens) == before

    async def test_the_first_bad_row_is_named_whatever_its_column(
        self, specimens: SpecimenRepository
    ) -> None:
        batch = [{"id": 100 + i, "sku": f"BULK-{i}", "name": "n", "flag": True} for i in range(200)]
        batch[150]["name"] = "x" * 41
        batch[40]["flag"] = "yes"
        for repo in (specimens, fake()):
            with pytest.raises(InvalidFieldError, match="row 40 of Specimen: field 'flag'"):
                await repo.create_many(batch)

    async def test_many_rows_in_exact_text_form_are_stored_converted(
        self, specimens: SpecimenRepository
    ) -> None:
        batch = [{"id": 100 + i, "sku": f"BULK-{i}", "name": "n", "small": i} for i in range(200)]
        batch[120]["small"] = "-12"
        await specimens.insert_many(batch)
        stored = await specimens.list(order_by="id")
        assert [row.small for row in stored if row.id >= 100] == [
            -12 if i == 120 else i for i in range(200)
        ]

    async def test_values_in_exact_text_form_are_stored_converted(
        self, specimens: SpecimenRepository
    ) -> None:
        updated = await specimens.update(
            3, at="2024-06-01T08:00:00", price="12.50", uid=str(UID), hue="blue", small="7"
        )
        assert (updated.at, updated.price, updated.uid, updated.hue, updated.small) == (
            dt.datetime(2024, 6, 1, 8),
            Decimal("12.50"),
            UID,
            Hue.blue,
            7,
        )
        await specimens.session.commit()
        specimens.session.expire_all()
        stored = await specimens.get_one(3)
        assert (stored.at, stored.price, stored.uid, stored.hue, stored.small) == (
            dt.datetime(2024, 6, 1, 8),
            Decimal("12.50"),
            UID,
            Hue.blue,
            7,
        )


SAMPLES: list[Any] = [
    None,
    0,
    -(2**15),
    2**15,
    2**40,
    2**63,
    True,
    1.5,
    Decimal("1.5"),
    "",
    "seven",
    "7",
    "x" * 41,
    "a\x00b",
    "\ud800",
    "élan",
    UID,
    AT,
    Hue.red,
    text("1"),
]


class TestColumnsCheckedAtOnce:
    """`ValueRule.passes`, the test of a whole column of bulk rows, never lets through a
    value its per-value ``check`` refuses or converts."""

    @pytest.mark.parametrize("dialect_name", [None, "sqlite", "postgresql", "mysql"])
    def test_a_passing_column_holds_only_values_check_takes_unchanged(
        self, dialect_name: str | None
    ) -> None:
        dialect = None if dialect_name is None else registry.load(dialect_name)()
        tested = 0
        for key in model_meta(Specimen).writable_keys:
            rule = value_rule(Specimen, key, dialect, write=True)
            if rule.passes is None:
                continue
            for first in SAMPLES:
                for second in SAMPLES:
                    column = [first, second, None]
                    if not rule.passes(column):
                        continue
                    tested += 1
                    for value in column:
                        row = {key: value}
                        assert check_write_values(Specimen, row, dialect=dialect) is row
        assert tested > 50

    async def test_bulk_rows_name_the_first_bad_row(self, session: AsyncSession) -> None:
        bulk = [{"id": i, "sku": f"S-{i}", "name": f"n{i}"} for i in range(100, 1100)]
        bulk[500]["name"] = "x" * 41
        bulk[700]["bogus"] = 1
        for repo in (SpecimenRepository(session), fake()):
            for call in (repo.create_many, repo.insert_many):
                with pytest.raises(InvalidFieldError, match="row 500 ") as info:
                    await call(bulk)
                assert info.value.field == "name"
        assert await SpecimenRepository(session).count() == 0
