"""A small catalog (customers, orders, tags) shared by the FilterSet and FastAPI tests.

Every column type a FilterSet converts is here: 16-, 32- and 64-bit integers, Decimal,
float, bool, UUID, date, timezone-aware datetime, an enum, text; and every relationship
kind: many-to-one (order -> customer), one-to-many (customer -> orders) and
many-to-many (order <-> tags).
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Enum,
    ForeignKey,
    Numeric,
    SmallInteger,
    String,
    Table,
    Uuid,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from sqla_uow import AsyncRepository
from sqla_uow.filters import FilterSet


class Base(DeclarativeBase):
    pass


class Status(enum.Enum):
    pending = "pending"
    paid = "paid"
    shipped = "shipped"


order_tags = Table(
    "catalog_order_tags",
    Base.metadata,
    Column("order_id", ForeignKey("catalog_orders.id"), primary_key=True),
    Column("tag_id", ForeignKey("catalog_tags.id"), primary_key=True),
)


class Customer(Base):
    __tablename__ = "catalog_customers"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    email: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(100))
    vip: Mapped[bool] = mapped_column(default=False)
    orders: Mapped[list[Order]] = relationship(back_populates="customer")


class Tag(Base):
    __tablename__ = "catalog_tags"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    label: Mapped[str] = mapped_column(String(40))


class Order(Base):
    __tablename__ = "catalog_orders"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    customer_id: Mapped[int] = mapped_column(ForeignKey("catalog_customers.id"))
    status: Mapped[Status] = mapped_column(Enum(Status, native_enum=False, length=20))
    title: Mapped[str] = mapped_column(String(100))
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    weight: Mapped[float | None]
    quantity: Mapped[int] = mapped_column(SmallInteger)
    serial: Mapped[int] = mapped_column(BigInteger)
    ref: Mapped[uuid.UUID] = mapped_column(Uuid)
    due: Mapped[dt.date | None]
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(String(100))
    customer: Mapped[Customer] = relationship(back_populates="orders")
    tags: Mapped[list[Tag]] = relationship(secondary=order_tags)


class OrderRepository(AsyncRepository[Order]):
    pass


class CustomerRepository(AsyncRepository[Customer]):
    pass


class OrderFilters(FilterSet[Order]):
    fields = {  # noqa: RUF012 - the declaration FilterSet reads
        "id": ("eq", "in", "not_in"),
        "status": ("eq", "ne", "in", "not_in"),
        "title": (
            "eq",
            "like",
            "ilike",
            "startswith",
            "istartswith",
            "endswith",
            "contains",
            "icontains",
        ),
        "price": ("eq", "gt", "gte", "lt", "lte", "between"),
        "weight": ("gte", "lte", "is_null"),
        "quantity": ("eq", "gte"),
        "serial": ("eq",),
        "ref": ("eq",),
        "due": ("eq", "lt", "is_null"),
        "created_at": ("gte", "lt"),
        "note": ("eq", "ne", "is_null"),
        "customer__email": ("eq", "icontains"),
        "customer__vip": ("eq",),
        "tags__label": ("eq", "in"),
    }
    order_by = ("created_at", "price", "id", "title")


class CustomerFilters(FilterSet[Customer]):
    fields = {  # noqa: RUF012
        "name": ("eq", "startswith"),
        "vip": ("eq",),
        "orders__status": ("eq", "in"),
        "orders__price": ("gte",),
        "orders__tags__label": ("eq",),
    }
    order_by = ("name", "id")
    default_order = ("name",)


T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
REFS = [uuid.UUID(int=n) for n in range(1, 7)]

CUSTOMERS: list[dict[str, Any]] = [
    {"id": 1, "email": "ann@example.com", "name": "Ann", "vip": True},
    {"id": 2, "email": "bob@example.org", "name": "Bob", "vip": False},
    {"id": 3, "email": "cy@example.com", "name": "Cy", "vip": False},
]
TAGS: list[dict[str, Any]] = [{"id": 1, "label": "gift"}, {"id": 2, "label": "fragile"}]
ORDERS: list[dict[str, Any]] = [
    {
        "id": 1,
        "customer_id": 1,
        "status": Status.paid,
        "title": "100% cotton",
        "price": Decimal("10.00"),
        "weight": 1.5,
        "quantity": 1,
        "serial": 2**40,
        "due": dt.date(2024, 2, 1),
        "note": "leave at door",
    },
    {
        "id": 2,
        "customer_id": 1,
        "status": Status.paid,
        "title": "100x cotton",
        "price": Decimal("150.00"),
        "weight": None,
        "quantity": 3,
        "serial": 2,
        "due": None,
        "note": None,
    },
    {
        "id": 3,
        "customer_id": 1,
        "status": Status.shipped,
        "title": "a_b/c wool",
        "price": Decimal("50.00"),
        "weight": 3.0,
        "quantity": 2,
        "serial": 3,
        "due": dt.date(2024, 3, 1),
        "note": "gift wrap",
    },
    {
        "id": 4,
        "customer_id": 2,
        "status": Status.pending,
        "title": "axb/c silk",
        "price": Decimal("99.99"),
        "weight": 0.5,
        "quantity": 5,
        "serial": 4,
        "due": None,
        "note": None,
    },
    {
        "id": 5,
        "customer_id": 2,
        "status": Status.paid,
        "title": "Linen",
        "price": Decimal("100.00"),
        "weight": 2.0,
        "quantity": 1,
        "serial": 5,
        "due": dt.date(2024, 1, 15),
        "note": "",
    },
]
ORDER_TAGS = [(1, 1), (1, 2), (3, 1), (5, 2)]
"""(order id, tag id): order 1 has both tags, so a join on tags would repeat it."""


def order_rows() -> list[dict[str, Any]]:
    """The orders with their generated columns (ref, created_at) filled in."""
    return [
        {**row, "ref": REFS[row["id"]], "created_at": T0 + dt.timedelta(days=row["id"])}
        for row in ORDERS
    ]


async def seed(session: AsyncSession) -> None:
    """Insert the catalog and commit."""
    tags = {row["id"]: Tag(**row) for row in TAGS}
    session.add_all(Customer(**row) for row in CUSTOMERS)
    session.add_all(tags.values())
    await session.flush()
    orders = {row["id"]: Order(**row) for row in order_rows()}
    for order_id, tag_id in ORDER_TAGS:
        orders[order_id].tags.append(tags[tag_id])
    session.add_all(orders.values())
    await session.commit()
