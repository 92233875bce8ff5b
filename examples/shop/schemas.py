"""What the HTTP API reads and writes: pydantic models, separate from the tables.

Input models validate before anything reaches the database; output models read the
SQLAlchemy objects directly (``from_attributes=True``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from .models import CENT, OrderStatus

_ItemT = TypeVar("_ItemT")

Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"
    ),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


def in_cents(price: Decimal) -> Decimal:
    """The price with exactly two decimal places: ``1.5`` becomes ``1.50``.

    That is the value the ``NUMERIC(12, 2)`` column stores, so a POST answers the same
    price that every later GET reads.
    """
    return price.quantize(CENT)


Price = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2), AfterValidator(in_cents)]


class UserCreate(BaseModel):
    """A new user."""

    email: Email
    name: Name


class UserUpdate(BaseModel):
    """A partial update: only the fields present in the request body change."""

    email: Email | None = None
    name: Name | None = None
    is_active: bool | None = None


class UserRead(BaseModel):
    """A user as the API returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    is_active: bool
    created_at: datetime


class OrderCreate(BaseModel):
    """A new order (the user comes from the URL)."""

    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    description: str | None = None
    price: Price
    status: OrderStatus = "pending"


class OrderRead(BaseModel):
    """An order as the API returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    title: str
    description: str | None
    price: Decimal
    status: str
    created_at: datetime


class OrderSummaryRead(BaseModel):
    """Aggregates over a user's orders."""

    model_config = ConfigDict(from_attributes=True)

    count: int
    total: Decimal
    average: Decimal | None


class UserProfile(UserRead):
    """A user with all orders and their summary."""

    orders: list[OrderRead]
    summary: OrderSummaryRead


class UserWithOrderCreate(BaseModel):
    """A user and a first order, created together or not at all."""

    user: UserCreate
    order: OrderCreate


class UserWithOrderRead(BaseModel):
    """The user and the order `POST /users-with-order` created."""

    user: UserRead
    order: OrderRead


class UserImport(BaseModel):
    """Many users at once.

    With ``update_existing`` an email that exists already updates that user's name
    (an upsert); without it, one existing email rejects the whole import (409).
    """

    users: Annotated[list[UserCreate], Field(min_length=1, max_length=10_000)]
    update_existing: bool = False


class ImportResult(BaseModel):
    """How many users an import wrote (inserted or updated)."""

    count: int


class OffsetPage(BaseModel, Generic[_ItemT]):
    """A page by offset, with the total count of matching rows."""

    items: list[_ItemT]
    total: int
    limit: int
    offset: int


class CursorPageRead(BaseModel, Generic[_ItemT]):
    """A page by keyset cursor: pass ``next_cursor`` as ``?cursor=`` for the next page."""

    items: list[_ItemT]
    next_cursor: str | None


class ErrorBody(BaseModel):
    """The body of every error answer."""

    detail: str
