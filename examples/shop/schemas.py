"""What the HTTP API reads and writes: pydantic models, separate from the tables.

Input models validate before anything reaches the database: a field they do not know
is an error, not silently dropped, and no text may hold a character a database cannot
store. Output models read the SQLAlchemy objects directly (``from_attributes=True``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from .models import AVERAGE_ROUNDING, CENT, INT32_MAX, OrderStatus


def storable(text: str) -> str:
    """Refuse text that a database cannot store.

    U+0000 (NUL) ends a string in C: PostgreSQL refuses it in text columns, while
    SQLite stores it, so it is refused everywhere. A lone surrogate (U+D800 to U+DFFF,
    which JSON's ``\\ud800`` escape can produce) is not Unicode and has no UTF-8 form.

    Raises:
        ValueError: *text* holds such a character (pydantic makes it a 422).
    """
    if "\x00" in text:
        raise ValueError("must not contain the NUL character (U+0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must not contain a lone surrogate (U+D800 to U+DFFF)") from None
    return text


Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"
    ),
    AfterValidator(storable),
]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(storable),
]
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(storable),
]
Description = Annotated[str, AfterValidator(storable)]


class Input(BaseModel):
    """The base of every request body: a field it does not declare is a 422."""

    model_config = ConfigDict(extra="forbid")


def in_cents(price: Decimal) -> Decimal:
    """The price with exactly two decimal places: ``1.5`` becomes ``1.50``.

    That is the value the ``NUMERIC(12, 2)`` column stores, so a POST answers the same
    price that every later GET reads.
    """
    return price.quantize(CENT)


Price = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2), AfterValidator(in_cents)]


class UserCreate(Input):
    """A new user."""

    email: Email
    name: Name


class UserUpdate(Input):
    """A partial update: only the fields present in the request body change.

    ``id``, ``created_at`` and ``updated_at`` are not fields: sending them (or any
    unknown field) is a 422, not a silent no-op.
    """

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
    updated_at: datetime


class OrderCreate(Input):
    """A new order (the user comes from the URL)."""

    title: Title
    description: Description | None = None
    price: Price
    status: OrderStatus = "pending"


class OrderRead(BaseModel):
    """An order as the API returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    shop_id: int
    user_id: int
    title: str
    description: str | None
    price: Decimal
    status: str
    version: int
    created_at: datetime
    updated_at: datetime


class OrderUpdate(Input):
    """A partial update of an order, at the version the client read.

    ``version`` is required: it is the ``version`` of the `OrderRead` the client
    changed. When the order has moved on since (someone else updated it), the update
    is refused with 409 (``kind: "stale"``) and nothing changes: read it again.
    """

    version: Annotated[int, Field(ge=1, le=INT32_MAX)]
    title: Title | None = None
    description: Description | None = None
    price: Price | None = None
    status: OrderStatus | None = None


class OrderSummaryRead(BaseModel):
    """Aggregates over a user's orders, in exact decimals."""

    model_config = ConfigDict(from_attributes=True)

    count: int
    total: Decimal
    average: Annotated[
        Decimal | None,
        Field(
            description="total / count, rounded to the cent half up "
            f"({AVERAGE_ROUNDING}: 1.005 becomes 1.01); null without orders"
        ),
    ]


class UserProfile(UserRead):
    """A user with all orders and their summary."""

    orders: list[OrderRead]
    summary: OrderSummaryRead


class UserWithOrderCreate(Input):
    """A user and a first order, created together or not at all."""

    user: UserCreate
    order: OrderCreate


class UserWithOrderRead(BaseModel):
    """The user and the order `POST /users-with-order` created."""

    user: UserRead
    order: OrderRead


class UserImport(Input):
    """Many users at once.

    With ``update_existing`` an email that exists already updates that user's name
    (an upsert); without it, one existing email rejects the whole import (409). Two
    rows with the same email (after lower-casing) are a 422: which one would win?
    """

    users: Annotated[list[UserCreate], Field(min_length=1, max_length=10_000)]
    update_existing: bool = False

    @model_validator(mode="after")
    def _emails_are_distinct(self) -> UserImport:
        first: dict[str, int] = {}
        for index, user in enumerate(self.users):
            earlier = first.setdefault(user.email, index)
            if earlier != index:
                raise ValueError(
                    f"users[{index}] has the same email as users[{earlier}] ({user.email}); "
                    "each email may appear once"
                )
        return self


class ImportResult(BaseModel):
    """How many users an import wrote (inserted or updated)."""

    count: int
