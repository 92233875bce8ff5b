"""The shop's tables: users and their orders.

Both models take their columns for timestamps, soft delete and optimistic locking from
`sqla_uow.mixins`, and the repositories maintain them: ``created_at`` / ``updated_at``
(`TimestampMixin`, set by the database's clock, timezone-aware on every database),
``User.deleted_at`` (`SoftDeleteMixin`: deleting a user only marks it, so its orders
stay) and ``Order.version`` (`VersionedMixin`: a write that read an older version is
refused as stale). Orders belong to a shop (``shop_id``), the scope of
`OrderRepository`.

Relationships use ``lazy="raise"``: in async code an attribute that is not loaded
cannot be fetched behind your back, so a forgotten eager load fails loudly at the line
that needs it instead of as a ``MissingGreenlet`` somewhere else.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from sqla_uow.mixins import SoftDeleteMixin, TimestampMixin, VersionedMixin

OrderStatus = Literal["pending", "paid", "shipped", "cancelled"]
"""The states of an order (the API accepts these; the column is a plain string)."""

CENT = Decimal("0.01")
"""The precision of a price (``NUMERIC(12, 2)``)."""

AVERAGE_ROUNDING = ROUND_HALF_UP
"""How an average of prices is rounded to the cent: half up (1.005 becomes 1.01)."""


class UnstorableValueError(ValueError):
    """A value that a column cannot hold, refused before it reaches the database driver.

    Raised (wrapped in SQLAlchemy's ``StatementError``) by the column types below when a
    statement binds such a value. The app's own input never carries one (validation
    refuses it first); a hand-made pagination cursor can, and `OrderRepository` turns it
    into an `InvalidCursorError` (a 422).
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


DEFAULT_SHOP_ID = 1
"""The shop of the orders placed without naming one (no ``X-Shop-Id`` header)."""


class User(SoftDeleteMixin, TimestampMixin, Base):
    """A customer of the shop; the email address is unique.

    Deleting a user through the repository sets ``deleted_at`` (the orders stay); the
    user is then invisible to every read until restored. The email stays taken by the
    deleted user: the unique constraint covers every row (MySQL and MariaDB have no
    partial unique index), until an admin deletes the user for good.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())

    # passive_deletes: deleting a user for good (hard_delete) leaves its orders to the database's
    # ON DELETE CASCADE instead of loading them first (which lazy="raise" forbids).
    orders: Mapped[list[Order]] = relationship(
        back_populates="user", lazy="raise", passive_deletes=True, order_by="Order.id"
    )

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, email={self.email!r})"


class Order(TimestampMixin, VersionedMixin, Base):
    """An order a user placed in a shop; ``price`` is exact (`Decimal`), never a float.

    ``version`` starts at 1 and every update adds one: an update that names the
    version the client read is refused (``ConflictError``, kind ``"stale"``) when the
    order has changed since.
    """

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("price >= 0", name="price_not_negative"),
        # Serves list_for_user: a user's orders in a shop, newest first, page by page
        # (and the foreign key, which MySQL wants indexed by a key that starts with it).
        Index(None, "user_id", "shop_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True)
    shop_id: Mapped[int] = mapped_column(ID)
    user_id: Mapped[int] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    status: Mapped[str] = mapped_column(String(20), default="pending", server_default="pending")

    user: Mapped[User] = relationship(back_populates="orders", lazy="raise")

    def __repr__(self) -> str:
        return (
            f"Order(id={self.id!r}, shop_id={self.shop_id!r}, user_id={self.user_id!r}, "
            f"title={self.title!r})"
        )
