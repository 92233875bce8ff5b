"""The shop example's HTTP API on the pytest plugin: each test rolled back, nothing committed.

The routes run as in production, through the app's unit-of-work dependency and its
``@transactional`` service, but on ``sqla_uow_tm``: the app's `transaction_manager`
dependency is overridden, every transaction of a request is a SAVEPOINT in the test's
one transaction, and that transaction is rolled back when the test ends. So no test
cleans up, two tests may write the same email, and the test reads what a request
stored through the same manager.

The end-to-end tests that need real commits (the lifespan and its migrations, two
workers, the demo, the cursor secret) stay in ``test_examples_api.py``,
``test_examples_migrations.py`` and ``test_examples_demo.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from _shop import drop_shop_schema, new_order, new_user
from shop.app import create_app, transaction_manager
from shop.database import enable_foreign_keys
from shop.migrations import upgrade_to_head
from shop.models import Order, User
from shop.settings import Settings
from shop.uow import ShopUnitOfWork
from sqla_uow import TransactionManager, set_default_manager


def instant(text: str) -> datetime:
    """An API timestamp (``...Z``) as an aware datetime; Python 3.10 reads no ``Z``."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


pytestmark = pytest.mark.backends("sqlite", "postgresql", "mariadb")

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"X-Admin-Token": ADMIN_TOKEN}


async def _migrate(engine: AsyncEngine) -> None:
    await drop_shop_schema(engine)
    await upgrade_to_head(TransactionManager(engine))


@pytest.fixture(scope="module")
def sqla_uow_engine(database_url: str) -> Iterator[AsyncEngine]:
    """The plugin's engine: this session's test database, migrated by the shop's Alembic.

    Module-scoped rather than session-scoped: the other example tests drop and migrate
    the shop's tables on the same database, so this module migrates when it starts and
    drops the tables when it ends. A ``NullPool`` gives each test a connection of its
    own (no connection crosses the event loops of two tests).
    """
    engine = create_async_engine(database_url, poolclass=NullPool)
    enable_foreign_keys(engine)
    asyncio.run(_migrate(engine))
    yield engine
    asyncio.run(drop_shop_schema(engine))


@pytest.fixture
async def client(sqla_uow_tm: TransactionManager) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the shop app whose requests run on the test's manager.

    The lifespan does not run (it would open the database of the settings): the one
    dependency that hands out the manager is overridden instead.
    """
    app = create_app(Settings(admin_token=ADMIN_TOKEN))
    app.dependency_overrides[transaction_manager] = lambda: sqla_uow_tm
    # What open_database does at startup: services that name no manager use this one.
    previous = set_default_manager(sqla_uow_tm)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as c:
            yield c
    finally:
        set_default_manager(previous)


async def stored(tm: TransactionManager) -> tuple[list[tuple[str, str]], list[str]]:
    """``([(email, name), ...], [order title, ...])`` as the database holds them, by id."""
    async with ShopUnitOfWork(tm) as uow:
        users = [(user.email, user.name) for user in await uow.users.list(order_by="id")]
        orders = [order.title for order in await uow.orders.list(order_by="id")]
    return users, orders


class TestEachTestIsRolledBack:
    @pytest.mark.parametrize("attempt", [1, 2])
    async def test_two_tests_register_the_same_email_and_both_pass(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager, attempt: int
    ) -> None:
        assert await stored(sqla_uow_tm) == ([], [])

        await new_user(client, "ann@example.com", f"Ann {attempt}")

        assert await stored(sqla_uow_tm) == ([("ann@example.com", f"Ann {attempt}")], [])

    async def test_rows_the_test_writes_are_what_the_app_reads(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager
    ) -> None:
        async with ShopUnitOfWork(sqla_uow_tm) as uow:
            ann = await uow.users.create(email="ann@example.com", name="Ann")

        response = await client.get(f"/users/{ann.id}")

        assert response.status_code == 200
        assert response.json()["email"] == "ann@example.com"


class TestCreateUser:
    async def test_stores_the_user(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager
    ) -> None:
        body = await new_user(client, "Ann@Example.com", "Ann")

        async with ShopUnitOfWork(sqla_uow_tm) as uow:
            user = await uow.users.get_one(body["id"])
        assert (user.email, user.name, user.is_active) == ("ann@example.com", "Ann", True)

    async def test_a_taken_email_is_409_and_the_test_goes_on(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager
    ) -> None:
        await new_user(client, "ann@example.com", "Ann")

        taken = await client.post("/users", json={"email": "ann@example.com", "name": "Other"})
        # The failed request rolled back to its savepoint: the test's transaction (and
        # the next request) carry on, on PostgreSQL too.
        await new_user(client, "bob@example.com", "Bob")

        assert taken.status_code == 409
        assert (taken.json()["code"], taken.json()["columns"]) == ("conflict", ["email"])
        assert await stored(sqla_uow_tm) == (
            [("ann@example.com", "Ann"), ("bob@example.com", "Bob")],
            [],
        )


class TestRequestsRollBack:
    async def test_a_refused_order_leaves_no_user_behind(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager
    ) -> None:
        response = await client.post(
            "/users-with-order",
            json={
                "user": {"email": "ann@example.com", "name": "Ann"},
                "order": {"title": "Grand piano", "price": "25000.00"},
            },
        )

        assert response.status_code == 422
        assert response.json()["code"] == "order_rejected"
        assert await stored(sqla_uow_tm) == ([], [])

    async def test_a_user_with_an_order_is_stored_together(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager
    ) -> None:
        response = await client.post(
            "/users-with-order",
            json={
                "user": {"email": "ann@example.com", "name": "Ann"},
                "order": {"title": "Book", "price": "12.5"},
            },
        )

        assert response.status_code == 201, response.text
        assert await stored(sqla_uow_tm) == ([("ann@example.com", "Ann")], ["Book"])

    async def test_a_patch_to_a_taken_email_changes_nothing(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager
    ) -> None:
        await new_user(client, "ann@example.com", "Ann")
        bob = await new_user(client, "bob@example.com", "Bob")

        response = await client.patch(
            f"/users/{bob['id']}", json={"email": "ann@example.com", "name": "Robert"}
        )

        assert response.status_code == 409
        users, _ = await stored(sqla_uow_tm)
        assert users == [("ann@example.com", "Ann"), ("bob@example.com", "Bob")]


class TestOrders:
    async def test_the_transactional_service_stores_the_order(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")

        order = await new_order(client, ann["id"], "Book", "12.50")

        async with ShopUnitOfWork(sqla_uow_tm) as uow:
            price = (await uow.orders.get_one(order["id"])).price
        assert price == Decimal("12.50")

    async def test_an_inactive_user_cannot_order(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        await client.patch(f"/users/{ann['id']}", json={"is_active": False})

        response = await client.post(
            f"/users/{ann['id']}/orders", json={"title": "Book", "price": "1"}
        )

        assert response.status_code == 422
        assert await stored(sqla_uow_tm) == ([("ann@example.com", "Ann")], [])

    async def test_deleting_a_user_keeps_their_orders(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        bob = await new_user(client, "bob@example.com", "Bob")
        await new_order(client, ann["id"], "Book")
        await new_order(client, bob["id"], "Pen")

        assert (await client.delete(f"/users/{ann['id']}")).status_code == 204

        assert await stored(sqla_uow_tm) == ([("bob@example.com", "Bob")], ["Book", "Pen"])

    async def test_pages_forward_and_back_by_cursor(self, client: httpx.AsyncClient) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        placed = [(await new_order(client, ann["id"], f"Order {i}"))["id"] for i in range(5)]
        url = f"/users/{ann['id']}/orders"

        first = (await client.get(url, params={"limit": 2})).json()
        second = (await client.get(url, params={"limit": 2, "cursor": first["next_cursor"]})).json()
        back = (
            await client.get(url, params={"limit": 2, "before": second["previous_cursor"]})
        ).json()

        assert [o["id"] for o in first["items"] + second["items"]] == placed[::-1][:4]
        assert back["items"] == first["items"]


class TestListUsers:
    async def test_filters_sorts_and_pages_rows_the_test_wrote(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager
    ) -> None:
        async with ShopUnitOfWork(sqla_uow_tm) as uow:
            await uow.users.create_many(
                [
                    {"email": f"{name.lower()}@example.com", "name": name, "is_active": active}
                    for name, active in [
                        ("Ann", True),
                        ("Anna", True),
                        ("Andy", False),
                        ("Bob", True),
                    ]
                ]
            )

        response = await client.get(
            "/users",
            params={
                "name__istartswith": "an",
                "is_active": "true",
                "order_by": "-name",
                "limit": 1,
            },
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert [user["name"] for user in body["items"]] == ["Anna"]
        assert (body["total"], body["has_next"], body["pages"]) == (2, True, 2)

    async def test_a_filter_it_does_not_offer_is_422(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/users", params={"email__startswith": "ann"})

        assert response.status_code == 422
        assert response.json()["field"] == "email__startswith"
        assert "email__icontains" in response.json()["choices"]


async def rows(tm: TransactionManager, statement: Any) -> list[tuple[Any, ...]]:
    """What *statement* reads in the test's transaction, past every repository scope."""
    async with tm.transaction() as session:
        return [tuple(row) for row in (await session.execute(statement)).all()]


USER_ROUTES = [
    ("GET", "/users/{id}", None),
    ("GET", "/users/{id}/profile", None),
    ("GET", "/users/{id}/orders", None),
    ("PATCH", "/users/{id}", {"name": "Ghost"}),
    ("DELETE", "/users/{id}", None),
    ("POST", "/users/{id}/orders", {"title": "Lamp", "price": "3.00"}),
]
"""Every route with a user id in its path, with a valid body."""


class TestSoftDeletedUsers:
    async def test_a_deleted_user_is_missing_from_every_user_route(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        await new_user(client, "bob@example.com", "Bob")
        await new_order(client, ann["id"], "Book")

        assert (await client.delete(f"/users/{ann['id']}")).status_code == 204

        for method, route, body in USER_ROUTES:
            response = await client.request(method, route.format(id=ann["id"]), json=body)
            assert response.status_code == 404, (method, route, response.text)
            assert response.json()["code"] == "not_found"
        listed = (await client.get("/users")).json()
        assert [u["email"] for u in listed["items"]] == ["bob@example.com"]
        assert listed["total"] == 1
        # The row and its order are still there, marked deleted (and unchanged by the 404s).
        users = select(User.name, User.deleted_at.is_not(None)).order_by(User.id)
        assert await rows(sqla_uow_tm, users) == [("Ann", True), ("Bob", False)]
        assert await rows(sqla_uow_tm, select(Order.title)) == [("Book",)]

    async def test_restoring_brings_the_user_back_with_their_orders(
        self, client: httpx.AsyncClient
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        book = await new_order(client, ann["id"], "Book")
        await client.delete(f"/users/{ann['id']}")

        response = await client.post(f"/admin/users/{ann['id']}/restore", headers=ADMIN)

        assert response.status_code == 200, response.text
        assert response.json()["email"] == "ann@example.com"
        assert (await client.get(f"/users/{ann['id']}")).status_code == 200
        profile = (await client.get(f"/users/{ann['id']}/profile")).json()
        assert [o["id"] for o in profile["orders"]] == [book["id"]]
        assert profile["summary"]["count"] == 1

    async def test_restoring_a_live_or_unknown_user_answers_404(
        self, client: httpx.AsyncClient
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")

        for user_id in (ann["id"], 4242):
            response = await client.post(f"/admin/users/{user_id}/restore", headers=ADMIN)
            assert response.status_code == 404, response.text

    async def test_a_hard_delete_removes_the_user_and_their_orders(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        bob = await new_user(client, "bob@example.com", "Bob")
        await new_order(client, ann["id"], "Book")
        await new_order(client, bob["id"], "Pen")
        await client.delete(f"/users/{ann['id']}")

        response = await client.delete(f"/admin/users/{ann['id']}", headers=ADMIN)

        assert response.status_code == 204
        assert await rows(sqla_uow_tm, select(User.name)) == [("Bob",)]
        assert await rows(sqla_uow_tm, select(Order.title)) == [("Pen",)]  # Ann's went too
        again = await client.delete(f"/admin/users/{ann['id']}", headers=ADMIN)
        assert again.status_code == 404

    @pytest.mark.parametrize("headers", [{}, {"X-Admin-Token": "wrong"}])
    async def test_the_admin_routes_answer_403_without_the_token_and_change_nothing(
        self,
        client: httpx.AsyncClient,
        sqla_uow_tm: TransactionManager,
        headers: dict[str, str],
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        await client.delete(f"/users/{ann['id']}")

        restore = await client.post(f"/admin/users/{ann['id']}/restore", headers=headers)
        purge = await client.delete(f"/admin/users/{ann['id']}", headers=headers)

        for response in (restore, purge):
            assert response.status_code == 403
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "admin_only"
        assert await rows(sqla_uow_tm, select(User.name, User.deleted_at.is_not(None))) == [
            ("Ann", True)
        ]


class TestOrderVersions:
    async def test_get_answers_the_order_with_its_version(self, client: httpx.AsyncClient) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        book = await new_order(client, ann["id"], "Book")

        response = await client.get(f"/orders/{book['id']}")

        assert response.status_code == 200
        assert response.json() == book
        assert (book["version"], book["shop_id"]) == (1, 1)

    async def test_a_patch_at_the_version_read_updates_and_moves_it_on(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        book = await new_order(client, ann["id"], "Book")

        response = await client.patch(
            f"/orders/{book['id']}", json={"version": 1, "status": "paid", "price": "12.50"}
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["status"], body["price"], body["version"]) == ("paid", "12.50", 2)
        assert await rows(sqla_uow_tm, select(Order.status, Order.price, Order.version)) == [
            ("paid", Decimal("12.50"), 2)
        ]

    async def test_a_stale_version_answers_409_and_changes_nothing(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        book = await new_order(client, ann["id"], "Book")
        first = await client.patch(f"/orders/{book['id']}", json={"version": 1, "status": "paid"})
        assert first.status_code == 200

        late = await client.patch(
            f"/orders/{book['id']}", json={"version": 1, "status": "cancelled"}
        )

        assert late.status_code == 409
        assert late.headers["content-type"] == "application/problem+json"
        assert late.json()["kind"] == "stale"
        assert await rows(sqla_uow_tm, select(Order.status, Order.version)) == [("paid", 2)]

    async def test_a_patch_without_a_version_answers_422(self, client: httpx.AsyncClient) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        book = await new_order(client, ann["id"], "Book")

        response = await client.patch(f"/orders/{book['id']}", json={"status": "paid"})

        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "version"]

    async def test_an_order_id_out_of_range_answers_422(self, client: httpx.AsyncClient) -> None:
        for order_id in (0, 2**31, 2**64):
            for response in (
                await client.get(f"/orders/{order_id}"),
                await client.patch(f"/orders/{order_id}", json={"version": 1}),
            ):
                assert response.status_code == 422, response.text
                assert response.json()["errors"][0]["loc"] == ["path", "order_id"]

    async def test_an_unknown_order_answers_404(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/orders/4242")).status_code == 404
        patch = await client.patch("/orders/4242", json={"version": 1, "status": "paid"})
        assert patch.status_code == 404


def shop(shop_id: int) -> dict[str, str]:
    return {"X-Shop-Id": str(shop_id)}


class TestShops:
    async def test_orders_of_another_shop_are_invisible(
        self, client: httpx.AsyncClient, sqla_uow_tm: TransactionManager
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        url = f"/users/{ann['id']}/orders"
        mine = (await client.post(url, json={"title": "Book", "price": "1.00"})).json()
        theirs = (
            await client.post(url, json={"title": "Pen", "price": "2.00"}, headers=shop(2))
        ).json()
        assert (mine["shop_id"], theirs["shop_id"]) == (1, 2)

        for shop_id, own, other in ((1, mine, theirs), (2, theirs, mine)):
            headers = shop(shop_id)
            listed = (await client.get(url, headers=headers)).json()
            assert [o["id"] for o in listed["items"]] == [own["id"]]
            profile = (await client.get(f"/users/{ann['id']}/profile", headers=headers)).json()
            assert [o["id"] for o in profile["orders"]] == [own["id"]]
            assert (profile["summary"]["count"], profile["summary"]["total"]) == (
                1,
                own["price"],
            )
            assert (await client.get(f"/orders/{own['id']}", headers=headers)).status_code == 200
            assert (await client.get(f"/orders/{other['id']}", headers=headers)).status_code == 404
            patch = await client.patch(
                f"/orders/{other['id']}", json={"version": 1, "status": "paid"}, headers=headers
            )
            assert patch.status_code == 404
        assert await rows(sqla_uow_tm, select(Order.shop_id, Order.status).order_by(Order.id)) == [
            (1, "pending"),
            (2, "pending"),
        ]

    async def test_without_the_header_requests_are_in_shop_1(
        self, client: httpx.AsyncClient
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        book = await new_order(client, ann["id"], "Book")

        response = await client.get(f"/orders/{book['id']}", headers=shop(1))

        assert (book["shop_id"], response.status_code) == (1, 200)

    @pytest.mark.parametrize("value", ["0", "-1", "two", str(2**31)])
    async def test_an_invalid_header_answers_422(
        self, client: httpx.AsyncClient, value: str
    ) -> None:
        response = await client.get("/users", headers={"X-Shop-Id": value})

        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["header", "x-shop-id"]


class TestTimestamps:
    async def test_are_aware_and_updated_at_moves_on_update(
        self, client: httpx.AsyncClient
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        book = await new_order(client, ann["id"], "Book")
        for body in (ann, book):
            created = instant(body["created_at"])
            assert created.utcoffset() is not None
            assert body["updated_at"] == body["created_at"]
        await asyncio.sleep(0.01)  # SQLite's clock counts milliseconds

        user = (await client.patch(f"/users/{ann['id']}", json={"name": "Annie"})).json()
        order = (
            await client.patch(f"/orders/{book['id']}", json={"version": 1, "status": "paid"})
        ).json()

        for before, after in ((ann, user), (book, order)):
            assert after["created_at"] == before["created_at"]
            assert instant(after["updated_at"]) > instant(before["updated_at"])
