"""Users, their orders and products: the shop of the README, of the unit-of-work tests and of
the typing tests."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(50))
    age: Mapped[int | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(20), default="active")
    orders: Mapped[list[Order]] = relationship(back_populates="user")


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    title: Mapped[str] = mapped_column(String(50))
    price: Mapped[float | None]
    user: Mapped[User] = relationship(back_populates="orders")


class Product(Base):
    """A product with an optimistic version counter.

    A stale update raises ``ConflictError(kind="stale")``.
    """

    __tablename__ = "products"

    sku: Mapped[str] = mapped_column(String(20), primary_key=True)
    version_number: Mapped[int] = mapped_column(default=1)
    stock: Mapped[int] = mapped_column(default=0)

    __mapper_args__ = {"version_id_col": version_number}  # noqa: RUF012
