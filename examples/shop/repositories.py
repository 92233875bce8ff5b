"""Repositories: the generic reads and writes come from `AsyncRepository`; add only queries.

A repository never commits. Its writes flush inside the transaction of whoever called
it (a unit of work, a ``@transactional`` service, a request), which decides the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import Numeric, func, select
from sqlalchemy.orm import selectinload

from sqla_uow import AsyncRepository, CursorPage

from .models import CENT, Order, User


class UserRepository(AsyncRepository[User]):
    """Users: everything `AsyncRepository` offers, plus lookups by email and with orders."""

    async def get_by_email(self, email: str) -> User | None:
        """The user with this email address, or ``None``."""
        return await self.find_one(email=email)

    async def get_with_orders(self, user_id: int) -> User:
        """The user, with ``orders`` loaded eagerly by one more ``SELECT ... IN``.

        ``User.orders`` is ``lazy="raise"``: without this eager load, reading it raises
        instead of quietly querying (which async SQLAlchemy cannot do anyway).

        Raises:
            NotFoundError: no user has this id.
        """
        return await self.get_one(user_id, options=[selectinload(User.orders)])


@dataclass(frozen=True)
class OrderSummary:
    """How many orders a user placed, what they cost together, and on average."""

    count: int
    total: Decimal
    average: Decimal | None


class OrderRepository(AsyncRepository[Order]):
    """Orders: keyset pages per user and a summary computed by the database."""

    async def list_for_user(
        self, user_id: int, *, limit: int = 20, after: str | None = None
    ) -> CursorPage[Order]:
        """One page of a user's orders, newest first.

        Keyset pagination: the cursor carries the last row's sort values, so page 100
        costs what page 1 costs and rows inserted meanwhile do not shift the pages.

        Args:
            user_id: Whose orders.
            limit: The page size.
            after: ``next_cursor`` of the previous page; ``None`` for the first page.

        Raises:
            InvalidCursorError: ``after`` is not a cursor of this user's listing.
        """
        return await self.paginate_cursor(
            # The id breaks ties (newest first too): orders created in the same instant
            # (a timestamp without fractions, as on MySQL) are neither skipped nor repeated.
            order_by=("-created_at", "-id"),
            limit=limit,
            after=after,
            user_id=user_id,
            # A cursor names the model and ordering, not the filters: binding it to the
            # user makes one user's cursor an error in another user's listing, instead
            # of a silent jump to the wrong place in it.
            cursor_scope=f"user:{user_id}",
        )

    async def summary_for_user(self, user_id: int) -> OrderSummary:
        """Count, total and average price of a user's orders, by one aggregate query.

        The rows are never loaded: the database adds them up.
        """
        price = Numeric(12, 2)
        statement = select(
            func.count(Order.id),
            func.sum(Order.price, type_=price),
            func.avg(Order.price, type_=price),
        ).where(Order.user_id == user_id)
        count, total, average = (await self.session.execute(statement)).one()
        if count == 0:  # AVG over no rows is NULL
            return OrderSummary(count=0, total=Decimal("0.00"), average=None)
        return OrderSummary(
            count=count,
            total=Decimal(total).quantize(CENT, ROUND_HALF_UP),
            average=Decimal(average).quantize(CENT, ROUND_HALF_UP),
        )
