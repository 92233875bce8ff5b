"""The shop's unit of work: one transaction, both repositories."""

from __future__ import annotations

from sqla_uow import SQLAlchemyUnitOfWork

from .repositories import OrderRepository, UserRepository


class ShopUnitOfWork(SQLAlchemyUnitOfWork):
    """``users`` and ``orders`` bound to the session of one transaction.

    Example:
        ```python
        async with ShopUnitOfWork(tm) as uow:
            user = await uow.users.create(email="ann@example.com", name="Ann")
            await uow.orders.create(user_id=user.id, title="Book", price=Decimal("12.50"))
        # committed here; an exception inside the block would have rolled both back
        ```
    """

    users: UserRepository
    orders: OrderRepository
