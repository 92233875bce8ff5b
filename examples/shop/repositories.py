"""Repositories: the generic reads and writes come from `AsyncRepository`; add only queries.

A repository never commits. Its writes flush inside the transaction of whoever called
it (a unit of work, a ``@transactional`` service, a request), which decides the outcome.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, func, select
from sqlalchemy.exc import StatementError

from sqla_uow import AsyncRepository, CursorPage, InvalidCursorError

from .models import AVERAGE_ROUNDING, CENT, DEFAULT_SHOP_ID, Order, UnstorableValueError, User

current_shop: ContextVar[int] = ContextVar("current_shop", default=DEFAULT_SHOP_ID)
"""The shop whose orders `OrderRepository` sees: the request's ``X-Shop-Id`` in the API
(set by ``shop.app.shop_scope``), `DEFAULT_SHOP_ID` where nothing set it."""


@contextmanager
def in_shop(shop_id: int) -> Iterator[None]:
    """Make *shop_id* the `current_shop` inside the block (the one before is restored).

    Example:
        ```python
        with in_shop(2):
            orders = await uow.orders.list()  # shop 2's orders only
        ```
    """
    token = current_shop.set(shop_id)
    try:
        yield
    finally:
        current_shop.reset(token)


class UserRepository(AsyncRepository[User]):
    """Users: everything `AsyncRepository` offers, plus a lookup by email.

    ``User`` soft-deletes: a deleted user is invisible to every method here;
    ``including_deleted()``, ``restore`` and ``hard_delete`` are the admin's way back.
    """

    async def get_by_email(self, email: str) -> User | None:
        """The user with this email address, or ``None``."""
        return await self.find_one(email=email)


@dataclass(frozen=True)
class OrderSummary:
    """How many orders a user placed, what they cost together, and on average."""

    count: int
    total: Decimal
    average: Decimal | None


class OrderRepository(AsyncRepository[Order]):
    """Orders of the current shop: keyset pages per user and a summary by the database.

    Every read and write is confined to `current_shop` (``default_scope``): another
    shop's order is a missing key, and a new order gets the current shop's id.
    """

    def default_scope(self) -> Mapping[str, Any]:
        """``shop_id`` = the `current_shop`, asked at every operation."""
        return {"shop_id": current_shop.get()}

    async def list_for_user(
        self,
        user_id: int,
        *,
        limit: int = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> CursorPage[Order]:
        """One page of a user's orders, newest first.

        Keyset pagination: the cursor carries the last row's sort values, so page 100
        costs what page 1 costs and rows inserted meanwhile do not shift the pages.

        Args:
            user_id: Whose orders.
            limit: The page size.
            after: ``next_cursor`` of the previous page; ``None`` for the first page.
            before: ``previous_cursor`` of a page, for the page before it.

        Raises:
            InvalidCursorError: ``after`` or ``before`` is not a cursor of this user's
                listing, or holds a value the columns cannot hold.
        """
        try:
            return await self.paginate_cursor(
                # The id breaks ties (newest first too): orders created in the same instant
                # (a timestamp without fractions, as on MySQL) are neither skipped nor
                # repeated.
                order_by=("-created_at", "-id"),
                limit=limit,
                after=after,
                before=before,
                user_id=user_id,
                # A cursor names the model and ordering, not the filters: binding it to
                # the user makes one user's cursor an error in another user's listing,
                # instead of a silent jump to the wrong place in it.
                cursor_scope=f"user:{user_id}",
            )
        except StatementError as exc:
            # A cursor made by hand (or signed with a leaked key) can carry a value the
            # columns cannot hold: the column types refuse it before the driver does.
            if not isinstance(exc.orig, UnstorableValueError):
                raise
            raise InvalidCursorError(
                f"cursor holds a value the orders table cannot hold: {exc.orig}",
                model=Order,
                field="cursor" if before is None else "before",
            ) from exc

    async def summary_for_user(self, user_id: int) -> OrderSummary:
        """Count, total and average price of a user's orders, by one aggregate query.

        Only the current shop's orders count: `apply_scope` adds the repository's scope
        to this query of its own, as every built-in method has it. The rows are never
        loaded: the database adds them up. The average is computed here, as a
        `Decimal`, from the exact total and the count, and rounded to the cent half
        up (``AVERAGE_ROUNDING``): SQLite's ``AVG`` is a float, so 1.00 and 1.01
        would average to 1.00 there and 1.01 on PostgreSQL.
        """
        aggregate = select(func.count(Order.id), func.sum(Order.price, type_=Numeric(12, 2))).where(
            Order.user_id == user_id
        )
        count, total = (await self.session.execute(self.apply_scope(aggregate))).one()
        if count == 0:  # SUM over no rows is NULL
            return OrderSummary(count=0, total=Decimal("0.00"), average=None)
        # On SQLite (NUMERIC is stored as a float there) the sum arrives rounded to
        # the cent by the Numeric type; on PostgreSQL and MySQL it is exact.
        total = Decimal(total).quantize(CENT, AVERAGE_ROUNDING)
        return OrderSummary(
            count=count,
            total=total,
            average=(total / count).quantize(CENT, AVERAGE_ROUNDING),
        )
