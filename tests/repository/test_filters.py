"""Keyword lookups and ``order_by`` parsing, checked against rows in a real database."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import ForeignKey, MetaData, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column, relationship

from sqla_uow import AsyncRepository, InvalidFieldError
from sqla_uow._filters import as_values, check_assignable, check_window
from sqla_uow._model import model_columns
from sqla_uow._ordering import compile_order_by
from sqla_uow._where import LOOKUPS, compile_where


class Base(DeclarativeBase):
    pass


class Gadget(Base):
    __tablename__ = "filters_gadget"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(40))
    color: Mapped[str | None] = mapped_column(String(20))
    weight: Mapped[int | None]
    parts: Mapped[list[Part]] = relationship(back_populates="gadget")

    @property
    def label(self) -> str:
        return f"{self.name} ({self.color})"


class Part(Base):
    __tablename__ = "filters_part"

    id: Mapped[int] = mapped_column(primary_key=True)
    gadget_id: Mapped[int] = mapped_column(ForeignKey("filters_gadget.id"))
    gadget: Mapped[Gadget] = relationship(back_populates="parts")


Gadget.name_upper = column_property(Gadget.__table__.c.name + "!")  # type: ignore[attr-defined]

ROWS: list[dict[str, Any]] = [
    {"id": 1, "name": "Anvil", "color": "black", "weight": 50},
    {"id": 2, "name": "apple", "color": "red", "weight": 1},
    {"id": 3, "name": "Banjo", "color": None, "weight": 4},
    {"id": 4, "name": "bolt", "color": "grey", "weight": None},
    {"id": 5, "name": "Crate", "color": "red", "weight": 12},
]


class GadgetRepository(AsyncRepository[Gadget]):
    pass


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
async def gadgets(session: AsyncSession) -> GadgetRepository:
    session.add_all([Gadget(**row) for row in ROWS])
    await session.commit()
    return GadgetRepository(session)


async def ids(repo: GadgetRepository, *where: Any, **filters: Any) -> list[int]:
    return sorted(g.id for g in await repo.list(*where, **filters))


@pytest.mark.backends("sqlite", "postgresql", "mariadb")
class TestLookups:
    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            ({"name": "Anvil"}, [1]),
            ({"color": None}, [3]),
            ({"color__eq": "red"}, [2, 5]),
            ({"color__ne": "red"}, [1, 4]),
            ({"color__ne": None}, [1, 2, 4, 5]),
            ({"id__in": [1, 3, 99]}, [1, 3]),
            ({"id__in": (5,)}, [5]),
            ({"id__in": {2, 4}}, [2, 4]),
            ({"id__in": []}, []),
            ({"weight__gt": 4}, [1, 5]),
            ({"weight__gte": 4}, [1, 3, 5]),
            ({"weight__lt": 4}, [2]),
            ({"weight__lte": 4}, [2, 3]),
            ({"name__like": "%n%"}, [1, 3]),
            ({"name__ilike": "b%"}, [3, 4]),
            ({"color__is_null": True}, [3]),
            ({"weight__is_null": False}, [1, 2, 3, 5]),
            ({"color": "red", "weight__gt": 5}, [5]),
            ({"name_upper": "Crate!"}, [5]),
        ],
    )
    async def test_lookup_selects_matching_rows(
        self, gadgets: GadgetRepository, filters: dict[str, Any], expected: list[int]
    ) -> None:
        assert await ids(gadgets, **filters) == expected
        assert await gadgets.count(**filters) == len(expected)
        assert await gadgets.exists(**filters) is bool(expected)

    async def test_expressions_and_keywords_combine_with_and(
        self, gadgets: GadgetRepository
    ) -> None:
        assert await ids(gadgets, Gadget.weight > 1, color="red") == [5]

    def test_every_documented_lookup_is_known(self) -> None:
        assert set(LOOKUPS) == {
            "eq",
            "ne",
            "in",
            "gt",
            "gte",
            "lt",
            "lte",
            "like",
            "ilike",
            "is_null",
            "not_in",
            "between",
            "startswith",
            "istartswith",
            "endswith",
            "contains",
            "icontains",
        }


class TestInvalidFilters:
    def test_unknown_field_names_the_field_and_the_choices(self) -> None:
        with pytest.raises(InvalidFieldError) as info:
            compile_where(Gadget, [], {"colour": "red"})
        assert str(info.value) == (
            "unknown field 'colour' on Gadget; fields: color, id, name, name_upper, weight"
        )
        assert info.value.field == "colour"
        assert info.value.model is Gadget
        assert "color" in info.value.choices

    def test_unknown_field_with_a_lookup_names_the_field(self) -> None:
        with pytest.raises(InvalidFieldError, match="unknown field 'colour'"):
            compile_where(Gadget, [], {"colour__in": ["red"]})

    def test_unknown_lookup_names_the_lookup_and_the_choices(self) -> None:
        with pytest.raises(InvalidFieldError) as info:
            compile_where(Gadget, [], {"weight__near": (1, 2)})
        assert "unknown lookup 'near' in 'weight__near'" in str(info.value)
        assert "gte" in info.value.choices

    def test_relationship_is_not_filterable(self) -> None:
        with pytest.raises(InvalidFieldError, match="unknown field 'parts'"):
            compile_where(Gadget, [], {"parts": 1})

    @pytest.mark.parametrize(
        ("filters", "message"),
        [
            ({"id__in": "123"}, "needs a list"),
            ({"id__in": 3}, "needs a list"),
            ({"id__in": {"a": 1}}, "needs a list"),
            ({"color__is_null": "yes"}, "needs True or False"),
            ({"color__is_null": 1}, "needs True or False"),
            ({"name__like": 3}, "expected a string pattern"),
            ({"weight__gt": None}, "got None"),
        ],
    )
    def test_value_of_the_wrong_kind_is_rejected(
        self, filters: dict[str, Any], message: str
    ) -> None:
        with pytest.raises(InvalidFieldError, match=message):
            compile_where(Gadget, [], filters)

    @pytest.mark.parametrize(
        "filters", [{"weight__gt": 2**70}, {"weight": -(2**64)}, {"weight__in": [1, 2**63]}]
    )
    async def test_integers_beyond_64_bits_are_rejected_before_sql(
        self, gadgets: GadgetRepository, filters: dict[str, Any]
    ) -> None:
        from sqla_uow.testing import InMemoryRepository

        for repo in (gadgets, InMemoryRepository(Gadget)):
            with pytest.raises(InvalidFieldError, match=r"-bit column") as info:
                await repo.list(**filters)
            assert info.value.field == next(iter(filters))
        assert await gadgets.count() == len(ROWS)  # the transaction is still usable

    def test_positional_filter_must_be_an_expression(self) -> None:
        with pytest.raises(InvalidFieldError, match="must be SQL expressions"):
            compile_where(Gadget, ["id = 1"], {})  # type: ignore[list-item]

    async def test_repository_raises_before_touching_the_database(
        self, gadgets: GadgetRepository
    ) -> None:
        with pytest.raises(InvalidFieldError):
            await gadgets.list(nmae="Anvil")
        with pytest.raises(InvalidFieldError):
            await gadgets.count(weight__foo=1)
        with pytest.raises(InvalidFieldError):
            await gadgets.exists(colour=None)
        assert await gadgets.count() == len(ROWS)

    def test_caller_strings_never_reach_sql_text(self) -> None:
        hostile = "name; DROP TABLE filters_gadget"
        with pytest.raises(InvalidFieldError):
            compile_order_by(Gadget, hostile)
        (criterion,) = compile_where(Gadget, [], {"name": hostile})
        assert "DROP" not in str(select(Gadget).where(criterion))


class TestOrderBy:
    @pytest.mark.parametrize(
        ("order_by", "expected"),
        [
            ("weight", [2, 5, 1]),
            ("-weight", [1, 5, 2]),
            ("+weight", [2, 5, 1]),
            (Gadget.weight, [2, 5, 1]),
            (Gadget.weight.desc(), [1, 5, 2]),
            (["color", "-id"], [1, 5, 2]),
            (("-color", Gadget.id), [2, 5, 1]),
        ],
    )
    async def test_orders_rows_by_names_and_expressions(
        self, gadgets: GadgetRepository, order_by: Any, expected: list[int]
    ) -> None:
        found = await gadgets.list(weight__is_null=False, color__is_null=False, order_by=order_by)
        assert [g.id for g in found] == expected

    def test_unknown_order_key_names_the_key_and_the_choices(self) -> None:
        with pytest.raises(InvalidFieldError) as info:
            compile_order_by(Gadget, "-wieght")
        assert "unknown order key '-wieght' on Gadget" in str(info.value)
        assert "weight" in info.value.choices

    @pytest.mark.parametrize("bad", ["", "-", "parts", "label", 3, None])
    def test_rejects_invalid_items_in_a_sequence(self, bad: Any) -> None:
        with pytest.raises(InvalidFieldError):
            compile_order_by(Gadget, ["id", bad])

    def test_none_means_no_ordering(self) -> None:
        assert compile_order_by(Gadget, None) == []

    @pytest.mark.parametrize(
        "bad", [{"weight": "desc"}, {"weight"}, frozenset({"weight"}), b"weight"], ids=repr
    )
    async def test_collections_that_are_not_a_sequence_of_keys_are_rejected(
        self, gadgets: GadgetRepository, bad: Any
    ) -> None:
        from sqla_uow.testing import InMemoryRepository

        for repo in (gadgets, InMemoryRepository(Gadget)):
            with pytest.raises(InvalidFieldError, match="list or tuple") as info:
                await repo.list(order_by=bad)
            assert info.value.field == "order_by"
            assert "weight" in info.value.choices


class TestAssignable:
    def test_model_columns_lists_writable_columns_only(self) -> None:
        assert set(model_columns(Gadget)) == {"id", "name", "color", "weight"}

    @pytest.mark.parametrize(
        ("name", "message"),
        [
            ("parts", "'parts' on Gadget is a relationship"),
            ("label", "'label' on Gadget is not a mapped column"),
            ("name_upper", "'name_upper' on Gadget is not a writable column"),
            ("nmae", "unknown field 'nmae' on Gadget; fields: color, id, name, weight"),
        ],
    )
    def test_rejects_non_column_names(self, name: str, message: str) -> None:
        with pytest.raises(InvalidFieldError, match=message) as info:
            check_assignable(Gadget, {name: 1})
        assert info.value.field == name
        assert info.value.choices == ("color", "id", "name", "weight")

    def test_primary_key_can_be_refused(self) -> None:
        check_assignable(Gadget, {"id": 3})
        with pytest.raises(InvalidFieldError, match="primary key 'id'"):
            check_assignable(Gadget, {"id": 3}, allow_primary_key=False)


@dataclasses.dataclass
class GadgetData:
    name: str
    color: str | None = None


class GadgetIn(BaseModel):
    name: str
    color: str | None = None


class TestAsValues:
    def test_converts_every_supported_kind(self) -> None:
        assert as_values(None, {"name": "x"}) == {"name": "x"}
        assert as_values({"name": "a"}, {"color": "b"}) == {"name": "a", "color": "b"}
        assert as_values(GadgetData("a"), {}) == {"name": "a", "color": None}
        assert as_values(GadgetIn(name="a"), {"color": "c"}) == {"name": "a", "color": "c"}
        assert as_values(GadgetIn(name="a"), {}, exclude_unset=True) == {"name": "a"}
        assert as_values(Gadget(name="g", weight=2), {}) == {"name": "g", "weight": 2}

    def test_keywords_override_data(self) -> None:
        assert as_values({"name": "a"}, {"name": "b"}) == {"name": "b"}

    @pytest.mark.parametrize("bad", [3, "name=a", [("name", "a")], GadgetData])
    def test_rejects_other_kinds(self, bad: Any) -> None:
        with pytest.raises(TypeError, match="data must be a mapping"):
            as_values(bad, {})


class TestWindow:
    @pytest.mark.parametrize(
        ("limit", "offset", "field"),
        [(-1, None, "limit"), (None, -5, "offset"), (True, None, "limit"), (1.5, 0, "limit")],
    )
    def test_rejects_negative_or_non_integer_values(
        self, limit: Any, offset: Any, field: str
    ) -> None:
        with pytest.raises(InvalidFieldError) as info:
            check_window(Gadget, limit=limit, offset=offset)
        assert info.value.field == field

    async def test_list_rejects_a_negative_limit(self, gadgets: GadgetRepository) -> None:
        with pytest.raises(InvalidFieldError, match="limit must be zero or more"):
            await gadgets.list(limit=-1)
        with pytest.raises(InvalidFieldError, match="offset must be zero or more"):
            await gadgets.list(offset=-1)
