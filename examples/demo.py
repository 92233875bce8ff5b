"""The shop's story, told on a real database: ``python examples/demo.py``.

Runs on the SQLite file ``shop.db`` in the working directory by default; set
``DATABASE_URL`` (for example ``postgresql+asyncpg://postgres@localhost/shop``) to run
the same story on PostgreSQL. The first thing it does is remove what an earlier run
left (the users whose email ends in ``@demo.example``, deleted or not, for good), so it
can run again and again.

The second half shows what `sqla_uow.mixins` adds to the models: timestamps the database
keeps, an order update refused because its version is stale, orders confined to the
current shop, and a user deleted softly (the orders stay) and restored.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy.engine import make_url

from shop import services
from shop.database import open_database
from shop.repositories import in_shop
from shop.schemas import OrderCreate, UserCreate
from shop.services import OrderRejectedError, OrderService
from shop.settings import Settings
from shop.uow import ShopUnitOfWork
from sqla_uow import ConflictError, NotFoundError, TransactionManager

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
            # Deleted users too, for good (their orders go with them, in every shop):
            # a soft-deleted user still holds its email address.
            left = await work.users.including_deleted().list(email__like=f"%{DOMAIN}")
            for user in left:
                await work.users.hard_delete(user)
        print(f"Removed {len(left)} user(s) left by an earlier run.")

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

        step("Profile: the orders of the current shop, summary by one aggregate query")
        async with uow() as work:
            profile = await services.user_profile(work, ann.id)
        for order in profile.orders:
            print(f"  #{order.id} {order.title:<10} {order.price:>8} {order.status}")
        summary = profile.summary
        print(f"  {summary.count} orders, total {summary.total}, average {summary.average}")

        await timestamps(tm, ann.id)
        await stale_update(tm, profile.orders[0].id)
        await shops(tm, orders, ann.id)
        await soft_delete(tm, dave.id)

    print("\nDone.")


async def timestamps(tm: TransactionManager, user_id: int) -> None:
    """created_at and updated_at come from the database's clock; an update moves updated_at."""
    step("Timestamps: created_at and updated_at (TimestampMixin)")
    async with ShopUnitOfWork(tm) as uow:
        user = await uow.users.get_one(user_id)
        created, before = user.created_at, user.updated_at
    await asyncio.sleep(0.01)  # SQLite's clock counts milliseconds
    async with ShopUnitOfWork(tm) as uow:
        user = await uow.users.update(user_id, name="Ann Smith")
    print(f"  created_at {created.isoformat()} (timezone-aware)")
    print(f"  renamed to {user.name}: updated_at moved on: {user.updated_at > before}")
    print(f"  created_at unchanged: {user.created_at == created}")


async def stale_update(tm: TransactionManager, order_id: int) -> None:
    """Two clients read an order at the same version; the second save is refused."""
    step("Optimistic locking: an update at a stale version is refused (VersionedMixin)")
    async with ShopUnitOfWork(tm) as uow:
        read = (await uow.orders.get_one(order_id)).version
    print(f"  two clients read order #{order_id} at version {read}")
    async with ShopUnitOfWork(tm) as uow:
        order = await services.update_order(uow, order_id, read, {"status": "paid"})
    print(f"  the first saves status={order.status}: now version {order.version}")
    try:
        async with ShopUnitOfWork(tm) as uow:
            await services.update_order(uow, order_id, read, {"status": "cancelled"})
    except ConflictError as exc:
        print(f"  the second, still at version {read}, is refused: kind={exc.kind}")
    async with ShopUnitOfWork(tm) as uow:
        order = await uow.orders.get_one(order_id)
    print(f"  the order is as the first left it: status={order.status}, version {order.version}")


async def shops(tm: TransactionManager, orders: OrderService, user_id: int) -> None:
    """Orders belong to the current shop; another shop's are invisible."""
    step("Shops: each sees only its own orders (OrderRepository.default_scope)")
    with in_shop(2):
        order = await orders.place_order(user_id, OrderCreate(title="Stool", price=Decimal("25")))
        async with ShopUnitOfWork(tm) as uow:
            summary = await uow.orders.summary_for_user(user_id)
        print(f"  in shop 2: order #{order.id} {order.title}; Ann has {summary.count} order(s)")
    async with ShopUnitOfWork(tm) as uow:
        summary = await uow.orders.summary_for_user(user_id)
        missing = await uow.orders.get(order.id)
    print(f"  in shop 1 (the default): Ann has {summary.count} orders; #{order.id}: {missing}")


async def soft_delete(tm: TransactionManager, user_id: int) -> None:
    """A deleted user disappears, keeps their orders, and can be restored."""
    step("Soft delete and restore (SoftDeleteMixin)")
    async with ShopUnitOfWork(tm) as uow:
        await services.delete_user(uow, user_id)
    try:
        async with ShopUnitOfWork(tm) as uow:
            await services.get_user(uow, user_id)
    except NotFoundError:
        print(f"  user #{user_id} deleted: not found any more")
    async with ShopUnitOfWork(tm) as uow:
        kept = await uow.orders.count(user_id=user_id)
    print(f"  their orders are kept: {kept}")
    async with ShopUnitOfWork(tm) as uow:
        user = await services.restore_user(uow, user_id)
    print(f"  restored: {user.name} is back (deleted_at={user.deleted_at})")


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
