"""The shop's story, told on a real database: ``python examples/demo.py``.

Runs on the SQLite file ``shop.db`` in the working directory by default; set
``DATABASE_URL`` (for example ``postgresql+asyncpg://postgres@localhost/shop``) to run
the same story on PostgreSQL. The first thing it does is remove what an earlier run
left (the users whose email ends in ``@demo.example``), so it can run again and again.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy.engine import make_url

from shop import services
from shop.database import open_database
from shop.schemas import OrderCreate, UserCreate
from shop.services import OrderRejectedError, OrderService
from shop.settings import Settings
from shop.uow import ShopUnitOfWork
from sqla_uow import ConflictError, TransactionManager

DOMAIN = "@demo.example"


def step(title: str) -> None:
    """Print the heading of one part of the story."""
    print(f"\n== {title}")


async def main() -> None:
    """Tell the story, part by part."""
    settings = Settings.from_env()
    print("Database:", make_url(settings.database_url).render_as_string(hide_password=True))

    # The schema comes from the Alembic migrations, applied when the database opens.
    async with open_database(settings) as tm:
        print("Schema migrated to the newest revision.")
        orders = OrderService()

        def uow() -> ShopUnitOfWork:
            # A unit of work per use case, as the API opens one per request; the
            # services run inside it, and leaving the block commits.
            return ShopUnitOfWork(tm)

        async with uow() as work:
            removed = await work.users.delete_where(email__like=f"%{DOMAIN}")
        print(f"Removed {removed} user(s) left by an earlier run.")

        step("Register users (unit of work)")
        async with uow() as work:
            ann = await services.register_user(work, UserCreate(email=f"ann{DOMAIN}", name="Ann"))
        async with uow() as work:
            bob = await services.register_user(work, UserCreate(email=f"bob{DOMAIN}", name="Bob"))
        for user in (ann, bob):
            print(f"  #{user.id} {user.name} <{user.email}> active={user.is_active}")

        step("Place orders (@transactional service)")
        for title, price in [("Keyboard", "49.90"), ("Monitor", "189.00"), ("Cable", "9.99")]:
            order = await orders.place_order(ann.id, OrderCreate(title=title, price=Decimal(price)))
            print(f"  order #{order.id} for {ann.name}: {order.title} at {order.price}")

        step("A conflict: the same email address again")
        try:
            async with uow() as work:
                await services.register_user(work, UserCreate(email=f"ann{DOMAIN}", name="Ann 2"))
        except ConflictError as exc:
            print(f"  refused with ConflictError: {exc} (kind={exc.kind})")

        step("A rollback: a user and a first order, atomically")
        try:
            async with uow() as work:
                await services.create_user_with_order(
                    work,
                    orders,
                    UserCreate(email=f"carol{DOMAIN}", name="Carol"),
                    OrderCreate(title="Grand piano", price=Decimal("25000.00")),
                )
        except OrderRejectedError as exc:
            print(f"  the order was refused: {exc}")
        async with uow() as work:
            carol = await work.users.get_by_email(f"carol{DOMAIN}")
        print(f"  Carol in the database afterwards: {carol is not None} (nothing left behind)")
        async with uow() as work:
            dave, first = await services.create_user_with_order(
                work,
                orders,
                UserCreate(email=f"dave{DOMAIN}", name="Dave"),
                OrderCreate(title="Guitar", price=Decimal("350.00")),
            )
        print(f"  with a valid order: user #{dave.id} {dave.name} and order #{first.id} committed")

        step("Composition: a @transactional service inside a unit of work")
        await composed_purchase(tm, orders, bob.id)

        step("Bulk import (create_many), then an upsert (upsert_many)")
        new_users = [UserCreate(email=f"user{i}{DOMAIN}", name=f"User {i}") for i in range(1, 6)]
        async with uow() as work:
            count = await services.import_users(work, new_users)
        print(f"  imported {count} users with one INSERT")
        renamed = [
            UserCreate(email=f"user1{DOMAIN}", name="User One"),
            UserCreate(email=f"erin{DOMAIN}", name="Erin"),
        ]
        async with uow() as work:
            count = await services.import_users(work, renamed, update_existing=True)
        print(f"  upserted {count} users: user1 renamed, Erin added")

        step("Pagination")
        offset = 0
        while True:
            async with uow() as work:
                page = await work.users.paginate(
                    email__like=f"%{DOMAIN}", order_by="email", limit=4, offset=offset
                )
            names = ", ".join(user.name for user in page.items)
            print(f"  users page {page.page}/{page.pages} (of {page.total}): {names}")
            if not page.has_next:
                break
            offset += page.limit
        cursor: str | None = None
        number = 1
        while True:
            async with uow() as work:
                order_page = await services.list_orders(work, ann.id, limit=2, cursor=cursor)
            titles = ", ".join(order.title for order in order_page.items)
            print(f"  Ann's orders, newest first, page {number}: {titles}")
            if order_page.next_cursor is None:
                break
            cursor, number = order_page.next_cursor, number + 1

        step("Deactivate a user")
        async with uow() as work:
            bob = await services.deactivate_user(work, bob.id)
        print(f"  {bob.name} active={bob.is_active}")
        try:
            await orders.place_order(bob.id, OrderCreate(title="Mouse", price=Decimal("19.00")))
        except OrderRejectedError as exc:
            print(f"  a new order is refused: {exc}")

        step("Profile: orders by one eager load, summary by one aggregate query")
        async with uow() as work:
            profile = await services.user_profile(work, ann.id)
        for order in profile.orders:
            print(f"  #{order.id} {order.title:<10} {order.price:>8} {order.status}")
        summary = profile.summary
        print(f"  {summary.count} orders, total {summary.total}, average {summary.average}")

    print("\nDone.")


async def composed_purchase(tm: TransactionManager, orders: OrderService, user_id: int) -> None:
    """Two orders in one unit of work: the service joins its transaction, nothing commits early."""
    async with ShopUnitOfWork(tm) as uow:
        await orders.place_order(user_id, OrderCreate(title="Desk", price=Decimal("240")))
        await orders.place_order(user_id, OrderCreate(title="Lamp", price=Decimal("35")))
        # Inside the block, tm.session is the unit of work's session: the service joined.
        joined = tm.session is uow.session
        count = await uow.orders.count(user_id=user_id)
    print(f"  the service joined the unit of work's transaction: {joined}")
    print(f"  both orders committed together at the end of the block: {count} orders")


if __name__ == "__main__":
    asyncio.run(main())
