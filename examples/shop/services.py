"""The shop's use cases.

Two styles, one transaction model:

- *Unit-of-work services* take an open `ShopUnitOfWork`: the caller owns the
  transaction. In the HTTP API it is the request's (`sqla_uow.ext.fastapi.unit_of_work`
  opens it before the route runs and commits it before the response is sent); in a
  script or a test it is ``async with ShopUnitOfWork(tm) as uow:`` around the calls.
  A service raises, and the owner of the transaction rolls back.
- *Transactional services* (`OrderService`) are decorated with ``@transactional``: the
  call is the transaction, and the repositories use ``tm.session``.

Both go through the same `TransactionManager`, so they compose: a transactional service
called inside an open unit of work joins its transaction instead of opening a second
one (`create_user_with_order` relies on it), and a failure anywhere rolls back
everything.

A service takes validated input (the pydantic schemas) and returns model instances;
HTTP lives in `shop.app`. Errors are the toolkit's: `NotFoundError`, `ConflictError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqla_uow import CursorPage, NotFoundError, Page, current_manager, transactional

from .filters import UserFilters
from .models import Order, User
from .repositories import OrderRepository, OrderSummary, UserRepository
from .schemas import OrderCreate, UserCreate
from .uow import ShopUnitOfWork

MAX_ORDER_PRICE = Decimal("10000.00")
"""The most one order may cost (a business rule of the shop)."""


class OrderRejectedError(Exception):
    """The shop refuses an order: the user is inactive or the price is over the limit."""


@dataclass(frozen=True)
class Profile:
    """A user, their orders in the current shop, and the summary of those orders."""

    user: User
    orders: list[Order]
    summary: OrderSummary


# -- unit-of-work services -------------------------------------------------------------


async def register_user(uow: ShopUnitOfWork, data: UserCreate) -> User:
    """Create a user.

    Raises:
        ConflictError: the email address is taken (the database's unique constraint
            says so; there is no check-then-insert race).
    """
    return await uow.users.create(data)


async def update_user(uow: ShopUnitOfWork, user_id: int, changes: Mapping[str, Any]) -> User:
    """Change some fields of a user.

    Raises:
        NotFoundError: no user has this id.
        InvalidFieldError: a name in *changes* is not a column of users.
        ConflictError: the new email address is taken.
    """
    return await uow.users.update(user_id, changes)


async def deactivate_user(uow: ShopUnitOfWork, user_id: int) -> User:
    """Mark a user inactive (their orders stay).

    Raises:
        NotFoundError: no user has this id.
    """
    return await uow.users.update(user_id, is_active=False)


def _user_not_found(user_id: int) -> NotFoundError:
    # Worded as the repository's own NotFoundError, so every 404 reads the same.
    return NotFoundError(f"User with primary key {user_id!r} not found", model=User, ident=user_id)


async def delete_user(uow: ShopUnitOfWork, user_id: int) -> None:
    """Soft-delete a user: the row is marked deleted, their orders stay.

    From then on the user is missing everywhere (404), until `restore_user`.

    Raises:
        NotFoundError: no live user has this id.
    """
    if not await uow.users.delete(user_id):
        raise _user_not_found(user_id)


async def restore_user(uow: ShopUnitOfWork, user_id: int) -> User:
    """Bring a soft-deleted user back, with the orders they had.

    Raises:
        NotFoundError: no deleted user has this id (a live one is not restored twice).
    """
    if not await uow.users.restore(user_id):
        raise _user_not_found(user_id)
    return await uow.users.get_one(user_id)


async def purge_user(uow: ShopUnitOfWork, user_id: int) -> None:
    """Delete a user for good, deleted or not, and by ``ON DELETE CASCADE`` their orders
    (in every shop).

    Raises:
        NotFoundError: no user, live or deleted, has this id.
    """
    if not await uow.users.hard_delete(user_id):
        raise _user_not_found(user_id)


async def import_users(
    uow: ShopUnitOfWork, users: Sequence[UserCreate], *, update_existing: bool = False
) -> int:
    """Write many users in a few statements, not one per user; all or nothing.

    Args:
        uow: The unit of work.
        users: The users to write.
        update_existing: Upsert by email: an existing user gets the new name. Without
            it, an email that exists already fails the whole import.

    Returns:
        The number of users written.

    Raises:
        ConflictError: ``update_existing`` is false and an email exists already.
    """
    rows = [user.model_dump() for user in users]
    if update_existing:
        await uow.users.upsert_many(rows, on_conflict=("email",), update=("name",))
    else:
        await uow.users.create_many(rows)
    return len(rows)


async def get_user(uow: ShopUnitOfWork, user_id: int) -> User:
    """The user with this id.

    Raises:
        NotFoundError: no user has this id.
    """
    return await uow.users.get_one(user_id)


async def list_users(
    uow: ShopUnitOfWork, filters: UserFilters | None = None, *, limit: int, offset: int
) -> Page[User]:
    """One page of the users *filters* selects, sorted as it says, with the total count.

    Without *filters*, every user, by id.
    """
    if filters is None:
        filters = UserFilters()
    return await uow.users.paginate(filters, order_by=filters.ordering, limit=limit, offset=offset)


async def list_orders(
    uow: ShopUnitOfWork,
    user_id: int,
    *,
    limit: int,
    cursor: str | None = None,
    before: str | None = None,
) -> CursorPage[Order]:
    """One page of a user's orders, newest first.

    Args:
        uow: The open unit of work.
        user_id: Whose orders.
        limit: The page size.
        cursor: ``next_cursor`` of the previous page: the page after it.
        before: ``previous_cursor`` of a page: the page before it.

    Raises:
        NotFoundError: no user has this id.
        InvalidCursorError: a cursor did not come from this listing.
    """
    await uow.users.get_one(user_id)  # an unknown user is a NotFoundError, not []
    return await uow.orders.list_for_user(user_id, limit=limit, after=cursor, before=before)


async def user_profile(uow: ShopUnitOfWork, user_id: int) -> Profile:
    """A user, their orders in the current shop and the order summary (one aggregate).

    The orders come from the order repository, whose scope is the current shop (an
    eager load of ``User.orders`` through the user repository would bring every shop's).

    Raises:
        NotFoundError: no user has this id.
    """
    user = await uow.users.get_one(user_id)
    orders = await uow.orders.list(user_id=user_id, order_by="id")
    summary = await uow.orders.summary_for_user(user_id)
    return Profile(user=user, orders=orders, summary=summary)


async def get_order(uow: ShopUnitOfWork, order_id: int) -> Order:
    """The order with this id, in the current shop.

    Raises:
        NotFoundError: no order of the current shop has this id.
    """
    return await uow.orders.get_one(order_id)


async def update_order(
    uow: ShopUnitOfWork, order_id: int, version: int, changes: Mapping[str, Any]
) -> Order:
    """Change an order, if it is still at the *version* the client read.

    Raises:
        NotFoundError: no order of the current shop has this id.
        ConflictError: the order is at another version (``kind="stale"``): someone
            changed it since the client read it; nothing is written.
    """
    return await uow.orders.update(order_id, changes, version=version)


async def create_user_with_order(
    uow: ShopUnitOfWork, orders: OrderService, user: UserCreate, order: OrderCreate
) -> tuple[User, Order]:
    """Create a user and their first order: both or neither.

    Raises:
        ConflictError: the email address is taken.
        OrderRejectedError: the order breaks a rule; the user is not created either.
    """
    new_user = await uow.users.create(user)
    # place_order is @transactional. Called while the unit of work is open, it joins
    # its transaction (same session, no second connection), so when it fails, the
    # user created above is rolled back with it.
    new_order = await orders.place_order(new_user.id, order)
    return new_user, new_order


# -- transactional services ------------------------------------------------------------


class OrderService:
    """Order use cases; every call of a public method is one transaction.

    It names no manager: each call runs on the manager whose transaction is open around
    it, else on the default that `open_database` sets at startup (a test sets its own
    with `set_default_manager` or `use_default_manager`).

    Example:
        ```python
        orders = OrderService()
        order = await orders.place_order(user.id, OrderCreate(title="Book", price=12))
        ```
    """

    # Decorated in the class body: the manager is found at each call (the one whose
    # transaction is open around the call, else the default that open_database sets).
    @transactional
    async def place_order(self, user_id: int, data: OrderCreate) -> Order:
        """Place an order for an existing, active user.

        Raises:
            NotFoundError: no user has this id.
            OrderRejectedError: the user is inactive, or the price is over the limit.
        """
        # Inside a @transactional function, the manager it runs on holds the session.
        session = current_manager().session
        users = UserRepository(session)
        orders = OrderRepository(session)
        user = await users.get_one(user_id)
        if not user.is_active:
            raise OrderRejectedError(f"user {user_id} is inactive and cannot order")
        if data.price > MAX_ORDER_PRICE:
            raise OrderRejectedError(
                f"an order may cost at most {MAX_ORDER_PRICE}, this one costs {data.price}"
            )
        return await orders.create(data, user_id=user_id)
