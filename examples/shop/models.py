"""The shop's tables: users and their orders.

Relationships use ``lazy="raise"``: in async code an attribute that is not loaded
cannot be fetched behind your back, so a forgotten eager load fails loudly at the line
that needs it instead of as a ``MissingGreenlet`` somewhere else.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    func,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

OrderStatus = Literal["pending", "paid", "shipped", "cancelled"]
"""The states of an order (the API accepts these; the column is a plain string)."""

CENT = Decimal("0.01")
"""The precision of a price (``NUMERIC(12, 2)``)."""

AVERAGE_ROUNDING = ROUND_HALF_UP
"""How an average of prices is rounded to the cent: half up (1.005 becomes 1.01)."""


def utcnow() -> datetime:
    """The current time, timezone-aware (the default of every ``created_at``)."""
    return datetime.now(timezone.utc)


class UnstorableValueError(ValueError):
    """A value that a column cannot hold, refused before it reaches the database driver.

    Raised (wrapped in SQLAlchemy's ``StatementError``) by the column types below when a
    statement binds such a value. The app's own input never carries one (validation
    refuses it first); a hand-made pagination cursor can, and `OrderRepository` turns it
    into an `InvalidCursorError` (a 400).
    """


INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
"""The range of an ``INTEGER`` column on PostgreSQL and MySQL."""


class Int32(TypeDecorator[int]):
    """An ``INTEGER`` that refuses a number outside 32 bits before the driver sees it.

    ``INTEGER`` is 32-bit on PostgreSQL and MySQL: there the driver would fail on a
    larger number with an error of its own (asyncpg: ``value out of int32 range``).
    SQLite's is 64-bit, but the shop's ids are the same everywhere: 1 to 2**31 - 1.
    """

    impl = Integer
    cache_ok = True

    @property
    def python_type(self) -> type[int]:
        return int

    def process_bind_param(self, value: int | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise UnstorableValueError(f"expected an integer, got {type(value).__name__}")
        if not INT32_MIN <= value <= INT32_MAX:
            raise UnstorableValueError(f"{value} does not fit in a 32-bit INTEGER column")
        return value


ID = Integer().with_variant(Int32(), "sqlite", "postgresql", "mysql", "mariadb")
"""The type of the id columns: an ``INTEGER`` whose values `Int32` checks.

Declared as a variant rather than as `Int32` itself, so that SQLAlchemy and sqla_uow
still see an ``Integer`` (an auto-incremented key, batched inserts on SQLite).
"""


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that reads back timezone-aware (UTC) on every database.

    PostgreSQL keeps the zone (``timestamp with time zone``). SQLite and MySQL have no
    zoned type: there the value is stored as UTC without a zone and given UTC back
    when read, so the API answers the same ``...+00:00`` timestamps on all of them.

    A value is converted to UTC before it is bound, on every database. What cannot be
    (not a `datetime`, no timezone, or an instant outside the years 1-9999 in UTC, such
    as ``0001-01-01T00:00:00+14:00``) raises `UnstorableValueError` instead of an error
    from deep inside the driver.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise UnstorableValueError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise UnstorableValueError(f"{value.isoformat()} has no timezone")
        try:
            utc = value.astimezone(timezone.utc)
        except OverflowError:
            raise UnstorableValueError(
                f"{value.isoformat()} is outside the years 1-9999 in UTC"
            ) from None
        return utc if dialect.name == "postgresql" else utc.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    """The declarative base; constraint names follow one convention.

    Named constraints make migrations reproducible and let a `ConflictError` say which
    rule was broken (``exc.constraint == "uq_users_email"`` on PostgreSQL).
    """

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class User(Base):
    """A customer of the shop; the email address is unique."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=func.now()
    )

    # passive_deletes: deleting a user leaves its orders to the database's
    # ON DELETE CASCADE instead of loading them first (which lazy="raise" forbids).
    orders: Mapped[list[Order]] = relationship(
        back_populates="user", lazy="raise", passive_deletes=True, order_by="Order.id"
    )

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, email={self.email!r})"


class Order(Base):
    """An order a user placed; ``price`` is exact (`Decimal`), never a float."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("price >= 0", name="price_not_negative"),
        # Serves list_for_user: the user's orders, newest first, page by page.
        Index(None, "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    user_id: Mapped[int] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    status: Mapped[str] = mapped_column(String(20), default="pending", server_default="pending")
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=func.now()
    )

    user: Mapped[User] = relationship(back_populates="orders", lazy="raise")

    def __repr__(self) -> str:
        return f"Order(id={self.id!r}, user_id={self.user_id!r}, title={self.title!r})"
