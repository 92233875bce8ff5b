"""End-to-end tests of the shop example's HTTP API (examples/shop), on a real database.

Every route is called through ``httpx.AsyncClient`` on the ASGI app, with the lifespan
run as a server would run it (migrations included); the tests check status codes,
bodies, and what the database holds afterwards. Error answers are RFC 9457 problem
details (``application/problem+json``) from `sqla_uow.ext.fastapi`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from _shop import clean_shop_engine, new_order, new_user
from shop.app import create_app
from shop.models import Order, User
from shop.repositories import OrderRepository
from shop.settings import Settings


def instant(text: str) -> datetime:
    """An API timestamp (``...Z``) as an aware datetime; Python 3.10 reads no ``Z``."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
async def shop_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine for checking the database behind the app's back; cleans up after."""
    async with clean_shop_engine(database_url) as engine:
        yield engine


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The app's settings: the test database, development mode (no cursor secret)."""
    return Settings(database_url=database_url)


@pytest.fixture
async def app(settings: Settings, shop_engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    """The shop app on the test database, its lifespan running."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app
        pool = app.state.tm.engine.pool
        if hasattr(pool, "checkedout"):  # SQLAlchemy 2.0 gives file SQLite a NullPool
            assert pool.checkedout() == 0, "a request left a connection checked out"


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the shop app."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
        yield client


TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@pytest.fixture
def statements(app: FastAPI) -> Iterator[list[str]]:
    """The SQL statements the app sends from now on, recorded as they go.

    Transaction control is left out: FastAPI solves a route's dependencies (the unit of
    work, which begins a transaction) before it validates the request body, so a
    refused body may cost a ``BEGIN`` and its rollback, but never a statement that
    reads or writes.
    """
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.lstrip().upper().startswith(TRANSACTION_CONTROL):
            sent.append(statement)

    engine = app.state.tm.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine, "before_cursor_execute", record)


async def scalar(engine: AsyncEngine, statement: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(statement)).scalar_one()


async def count_users(engine: AsyncEngine, **filters: Any) -> int:
    statement = select(func.count()).select_from(User).filter_by(**filters)
    return int(await scalar(engine, statement))


async def count_orders(engine: AsyncEngine, **filters: Any) -> int:
    statement = select(func.count()).select_from(Order).filter_by(**filters)
    return int(await scalar(engine, statement))


async def post_user_with_order(
    client: httpx.AsyncClient, *, name: str, title: str, price: str
) -> httpx.Response:
    """POST /users-with-order for ann@example.com named *name*, with one order."""
    return await client.post(
        "/users-with-order",
        json={
            "user": {"email": "ann@example.com", "name": name},
            "order": {"title": title, "price": price},
        },
    )


USER_ROUTES = [
    ("GET", "/users/{id}"),
    ("GET", "/users/{id}/profile"),
    ("PATCH", "/users/{id}"),
    ("DELETE", "/users/{id}"),
    ("POST", "/users/{id}/orders"),
    ("GET", "/users/{id}/orders"),
]
"""Every route with a user id in its path."""


class TestOutOfRangeNumbers:
    """Numbers a column cannot hold are refused by validation (422), never a 500.

    The ids are 32-bit on PostgreSQL; 2**64 fits no integer column anywhere.
    """

    async def request(self, client: httpx.AsyncClient, method: str, path: str) -> httpx.Response:
        body = {"title": "Book", "price": "1"} if method == "POST" else {}
        return await client.request(method, path, json=body)

    async def test_an_id_out_of_range_answers_422(self, client: httpx.AsyncClient) -> None:
        for method, route in USER_ROUTES:
            for user_id in (0, 2**31, 2**64):
                response = await self.request(client, method, route.format(id=user_id))

                assert response.status_code == 422, (method, route, user_id, response.text)
                assert response.json()["errors"][0]["loc"] == ["path", "user_id"]

    async def test_the_largest_id_reaches_the_database_and_answers_404(
        self, client: httpx.AsyncClient
    ) -> None:
        for method, route in USER_ROUTES:
            response = await self.request(client, method, route.format(id=2**31 - 1))

            assert response.status_code == 404, (method, route, response.text)

    async def test_an_offset_out_of_range_answers_422(self, client: httpx.AsyncClient) -> None:
        for offset in (2**63, 2**64):
            response = await client.get("/users", params={"offset": offset})

            assert response.status_code == 422, response.text
            assert response.json()["errors"][0]["loc"] == ["query", "offset"]

    async def test_the_largest_offset_answers_an_empty_page(
        self, client: httpx.AsyncClient
    ) -> None:
        await new_user(client, "ann@example.com", "Ann")

        response = await client.get("/users", params={"offset": 2**63 - 1})

        assert response.status_code == 200
        assert (response.json()["items"], response.json()["total"]) == ([], 1)


class TestCreateUser:
    async def test_answers_201_with_the_new_user_and_stores_it(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        response = await client.post("/users", json={"email": "Ann@Example.com", "name": "Ann"})

        assert response.status_code == 201
        body = response.json()
        assert body["email"] == "ann@example.com"
        assert body["name"] == "Ann"
        assert body["is_active"] is True
        assert isinstance(body["id"], int)
        assert body["created_at"]
        assert await count_users(shop_engine, id=body["id"], email="ann@example.com") == 1

    async def test_answers_409_for_a_taken_email_and_keeps_the_first_user(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        await new_user(client, "ann@example.com", "Ann")

        response = await client.post("/users", json={"email": "ann@example.com", "name": "Other"})

        assert response.status_code == 409
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert (body["status"], body["code"], body["kind"]) == (409, "conflict", "unique")
        assert body["columns"] == ["email"]
        assert body["detail"] == "the request breaks a unique rule on email"
        assert await count_users(shop_engine) == 1
        assert await scalar(shop_engine, select(User.name)) == "Ann"

    async def test_answers_422_for_an_invalid_body_without_writing(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        response = await client.post("/users", json={"email": "not-an-email", "name": ""})

        assert response.status_code == 422
        assert await count_users(shop_engine) == 0


class TestListUsers:
    async def test_pages_by_offset_with_the_total(self, client: httpx.AsyncClient) -> None:
        for name in ["Cid", "Ann", "Bob", "Dee", "Eve"]:
            await new_user(client, f"{name.lower()}@example.com", name)

        first = (await client.get("/users", params={"limit": 2, "order_by": "name"})).json()
        last = (
            await client.get("/users", params={"limit": 2, "offset": 4, "order_by": "name"})
        ).json()

        assert [u["name"] for u in first["items"]] == ["Ann", "Bob"]
        assert (first["total"], first["limit"], first["offset"]) == (5, 2, 0)
        assert (first["has_next"], first["pages"]) == (True, 3)
        assert [u["name"] for u in last["items"]] == ["Eve"]
        assert (last["total"], last["has_next"]) == (5, False)

    async def test_sorts_descending_with_a_minus(self, client: httpx.AsyncClient) -> None:
        for name in ["Ann", "Bob"]:
            await new_user(client, f"{name.lower()}@example.com", name)

        body = (await client.get("/users", params={"order_by": "-name"})).json()

        assert [u["name"] for u in body["items"]] == ["Bob", "Ann"]

    async def test_filters_from_the_query_string(self, client: httpx.AsyncClient) -> None:
        for name in ["Ann", "Anna", "Bob", "Al"]:
            await new_user(client, f"{name.lower()}@example.com", name)
        bob = (await client.get("/users", params={"name": "Bob"})).json()["items"][0]
        await client.patch(f"/users/{bob['id']}", json={"is_active": False})

        starts = await client.get("/users", params={"name__istartswith": "AN", "order_by": "-name"})
        named = await client.get("/users?name__in=Al,Bob&order_by=name")
        inactive = await client.get("/users", params={"is_active": "false"})

        assert [u["name"] for u in starts.json()["items"]] == ["Anna", "Ann"]
        assert [u["name"] for u in named.json()["items"]] == ["Al", "Bob"]
        assert [u["name"] for u in inactive.json()["items"]] == ["Bob"]
        assert inactive.json()["total"] == 1

    async def test_an_or_group_in_the_json_form(self, client: httpx.AsyncClient) -> None:
        for name in ["Ann", "Bob", "Cy"]:
            await new_user(client, f"{name.lower()}@example.com", name)

        response = await client.get(
            "/users", params={"filter": '{"or": [{"name": "Cy"}, {"email": "ann@example.com"}]}'}
        )

        assert response.status_code == 200, response.text
        assert [u["name"] for u in response.json()["items"]] == ["Ann", "Cy"]

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"order_by": "emial"}, "order_by"),
            ({"order_by": "is_active"}, "order_by"),
            ({"nmae": "Ann"}, "nmae"),
            ({"name__gte": "A"}, "name__gte"),
            ({"is_active": "maybe"}, "is_active"),
            ({"created_at__gte": "yesterday"}, "created_at__gte"),
            ({"filter": "{not json"}, "filter"),
        ],
    )
    async def test_a_bad_filter_or_order_by_answers_422_naming_the_choices(
        self, client: httpx.AsyncClient, statements: list[str], params: dict[str, str], field: str
    ) -> None:
        response = await client.get("/users", params=params)

        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert (body["status"], body["code"]) == (422, "invalid_field")
        assert body["field"] == field
        assert statements == []

    async def test_an_unknown_order_by_names_the_sort_fields(
        self, client: httpx.AsyncClient
    ) -> None:
        body = (await client.get("/users", params={"order_by": "-emial"})).json()

        assert "emial" in body["detail"]
        assert body["choices"] == ["created_at", "email", "id", "name"]

    async def test_answers_422_for_a_limit_out_of_range(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/users", params={"limit": 0})).status_code == 422
        assert (await client.get("/users", params={"limit": 101})).status_code == 422


class TestGetUser:
    async def test_answers_the_user(self, client: httpx.AsyncClient) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")

        response = await client.get(f"/users/{ann['id']}")

        assert response.status_code == 200
        assert response.json() == ann

    async def test_answers_404_for_an_unknown_id(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/users/4242")

        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_found"
        assert "4242" in response.json()["detail"]


class TestUpdateUser:
    async def test_changes_only_the_fields_in_the_body(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")

        response = await client.patch(f"/users/{ann['id']}", json={"is_active": False})

        assert response.status_code == 200
        body = response.json()
        assert {**body, "updated_at": None} == {**ann, "is_active": False, "updated_at": None}
        assert instant(body["updated_at"]) > instant(ann["updated_at"])
        async with shop_engine.connect() as conn:
            row = (await conn.execute(select(User.name, User.is_active))).one()
        assert tuple(row) == ("Ann", False)

    async def test_ignores_an_explicit_null(self, client: httpx.AsyncClient) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")

        response = await client.patch(f"/users/{ann['id']}", json={"name": None, "email": None})

        assert response.status_code == 200
        assert response.json() == ann

    async def test_answers_404_for_an_unknown_id(self, client: httpx.AsyncClient) -> None:
        response = await client.patch("/users/4242", json={"name": "Nobody"})

        assert response.status_code == 404

    async def test_answers_409_for_a_taken_email_and_changes_nothing(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        await new_user(client, "ann@example.com", "Ann")
        bob = await new_user(client, "bob@example.com", "Bob")

        response = await client.patch(
            f"/users/{bob['id']}", json={"email": "ann@example.com", "name": "Robert"}
        )

        assert response.status_code == 409
        async with shop_engine.connect() as conn:
            row = (await conn.execute(select(User.email, User.name).filter_by(id=bob["id"]))).one()
        assert tuple(row) == ("bob@example.com", "Bob")


class TestDeleteUser:
    async def test_marks_the_user_deleted_and_keeps_their_orders(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        bob = await new_user(client, "bob@example.com", "Bob")
        await new_order(client, ann["id"], "Book")
        await new_order(client, bob["id"], "Pen")

        response = await client.delete(f"/users/{ann['id']}")

        assert response.status_code == 204
        assert response.content == b""
        assert await count_users(shop_engine) == 2
        assert await count_users(shop_engine, deleted_at=None) == 1
        assert await count_orders(shop_engine, user_id=ann["id"]) == 1
        assert await count_orders(shop_engine, user_id=bob["id"]) == 1
        assert (await client.get(f"/users/{ann['id']}")).status_code == 404

    async def test_an_admin_restores_the_user_with_the_token_of_the_settings(
        self, database_url: str, shop_engine: AsyncEngine
    ) -> None:
        app = create_app(Settings(database_url=database_url, admin_token="s3cret"))
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client,
        ):
            ann = await new_user(client, "ann@example.com", "Ann")
            await client.delete(f"/users/{ann['id']}")
            url = f"/admin/users/{ann['id']}/restore"

            refused = await client.post(url, headers={"X-Admin-Token": "guess"})
            restored = await client.post(url, headers={"X-Admin-Token": "s3cret"})

        assert refused.status_code == 403
        assert restored.status_code == 200
        assert {**restored.json(), "updated_at": None} == {**ann, "updated_at": None}
        assert await count_users(shop_engine, deleted_at=None) == 1

    async def test_without_an_admin_token_set_the_admin_routes_are_closed(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")

        response = await client.delete(f"/admin/users/{ann['id']}", headers={"X-Admin-Token": ""})

        assert response.status_code == 403
        assert "SHOP_ADMIN_TOKEN" in response.json()["detail"]
        assert await count_users(shop_engine) == 1

    async def test_answers_404_for_an_unknown_id(self, client: httpx.AsyncClient) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        assert (await client.delete(f"/users/{ann['id']}")).status_code == 204

        assert (await client.delete(f"/users/{ann['id']}")).status_code == 404


class TestPlaceOrder:
    async def test_answers_201_with_the_order_and_stores_it(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")

        response = await client.post(
            f"/users/{ann['id']}/orders",
            json={"title": "Book", "description": "A novel", "price": "12.50"},
        )

        assert response.status_code == 201
        body = response.json()
        assert body["user_id"] == ann["id"]
        assert (body["title"], body["description"], body["status"]) == (
            "Book",
            "A novel",
            "pending",
        )
        assert Decimal(body["price"]) == Decimal("12.50")
        price = await scalar(shop_engine, select(Order.price).filter_by(id=body["id"]))
        assert price == Decimal("12.50")

    async def test_answers_404_for_an_unknown_user_without_writing(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        response = await client.post("/users/4242/orders", json={"title": "Book", "price": "1"})

        assert response.status_code == 404
        assert await count_orders(shop_engine) == 0

    async def test_answers_422_for_an_inactive_user(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        await client.patch(f"/users/{ann['id']}", json={"is_active": False})

        response = await client.post(
            f"/users/{ann['id']}/orders", json={"title": "Book", "price": "1"}
        )

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "order_rejected"
        assert "inactive" in response.json()["detail"]
        assert await count_orders(shop_engine) == 0

    @pytest.mark.parametrize(("sent", "stored"), [("1.5", "1.50"), ("7", "7.00"), (3, "3.00")])
    async def test_answers_the_price_as_stored_and_listed(
        self, client: httpx.AsyncClient, sent: str | int, stored: str
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")

        response = await client.post(
            f"/users/{ann['id']}/orders", json={"title": "Book", "price": sent}
        )

        assert response.status_code == 201
        assert response.json()["price"] == stored
        listed = (await client.get(f"/users/{ann['id']}/orders")).json()["items"]
        assert [order["price"] for order in listed] == [stored]

    async def test_answers_422_for_a_price_with_fractions_of_a_cent(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")

        response = await client.post(
            f"/users/{ann['id']}/orders", json={"title": "Book", "price": "1.505"}
        )

        assert response.status_code == 422
        assert await count_orders(shop_engine) == 0

    async def test_answers_422_for_a_negative_price(self, client: httpx.AsyncClient) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")

        response = await client.post(
            f"/users/{ann['id']}/orders", json={"title": "Book", "price": "-1"}
        )

        assert response.status_code == 422


class TestListOrders:
    async def test_pages_newest_first_by_cursor_without_gaps_or_repeats(
        self, client: httpx.AsyncClient
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        bob = await new_user(client, "bob@example.com", "Bob")
        placed = [(await new_order(client, ann["id"], f"Order {i}"))["id"] for i in range(5)]
        await new_order(client, bob["id"], "Not Ann's")

        pages: list[list[int]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor is not None:
                params["cursor"] = cursor
            response = await client.get(f"/users/{ann['id']}/orders", params=params)
            assert response.status_code == 200
            body = response.json()
            pages.append([order["id"] for order in body["items"]])
            cursor = body["next_cursor"]
            if cursor is None:
                break

        assert [len(page) for page in pages] == [2, 2, 1]
        assert [order_id for page in pages for order_id in page] == placed[::-1]

    async def test_pages_back_with_the_previous_cursor(self, client: httpx.AsyncClient) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        for i in range(5):
            await new_order(client, ann["id"], f"Order {i}")
        first = (await client.get(f"/users/{ann['id']}/orders", params={"limit": 2})).json()
        second = (
            await client.get(
                f"/users/{ann['id']}/orders", params={"limit": 2, "cursor": first["next_cursor"]}
            )
        ).json()

        back = await client.get(
            f"/users/{ann['id']}/orders", params={"limit": 2, "before": second["previous_cursor"]}
        )

        assert back.status_code == 200, back.text
        assert back.json()["items"] == first["items"]
        assert (second["has_next"], second["limit"]) == (True, 2)

    @pytest.mark.parametrize("name", ["cursor", "before"])
    async def test_answers_422_for_a_cursor_it_did_not_make(
        self, client: httpx.AsyncClient, name: str
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")

        response = await client.get(f"/users/{ann['id']}/orders", params={name: "bogus"})

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "invalid_cursor"

    async def test_answers_422_for_a_cursor_of_another_users_orders(
        self, client: httpx.AsyncClient
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        bob = await new_user(client, "bob@example.com", "Bob")
        for owner in (ann, bob, ann, bob, ann, bob):
            await new_order(client, owner["id"], f"{owner['name']}'s order")
        first = (await client.get(f"/users/{ann['id']}/orders", params={"limit": 2})).json()
        cursor = first["next_cursor"]
        assert cursor is not None

        response = await client.get(f"/users/{bob['id']}/orders", params={"cursor": cursor})

        assert response.status_code == 422
        assert response.json()["code"] == "invalid_cursor"
        assert "another scope" in response.json()["detail"]
        # In Ann's own listing the same cursor leads on to her last order.
        rest = (await client.get(f"/users/{ann['id']}/orders", params={"cursor": cursor})).json()
        assert [order["user_id"] for order in rest["items"]] == [ann["id"]]

    async def test_answers_404_for_an_unknown_user(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/users/4242/orders")).status_code == 404


class TestProfile:
    async def test_answers_the_user_with_orders_and_summary(
        self, client: httpx.AsyncClient
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        for title, price in [("Book", "12.50"), ("Pen", "2.25"), ("Lamp", "40.00")]:
            await new_order(client, ann["id"], title, price)

        response = await client.get(f"/users/{ann['id']}/profile")

        assert response.status_code == 200
        body = response.json()
        assert body["email"] == "ann@example.com"
        assert [order["title"] for order in body["orders"]] == ["Book", "Pen", "Lamp"]
        summary = body["summary"]
        assert summary["count"] == 3
        assert Decimal(summary["total"]) == Decimal("54.75")
        assert Decimal(summary["average"]) == Decimal("18.25")

    @pytest.mark.parametrize(
        ("prices", "total", "average"),
        [
            (["1.00", "1.01"], "2.01", "1.01"),  # 1.005: half up, on every database
            (["1.00", "1.00", "1.01"], "3.01", "1.00"),  # 1.00333...
            (["0.01", "0.02", "0.02"], "0.05", "0.02"),  # 0.01666...
            (["9999.99", "0.01"], "10000.00", "5000.00"),
        ],
    )
    async def test_the_average_is_an_exact_decimal_rounded_half_up(
        self, client: httpx.AsyncClient, prices: list[str], total: str, average: str
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        for price in prices:
            await new_order(client, ann["id"], "Item", price)

        summary = (await client.get(f"/users/{ann['id']}/profile")).json()["summary"]

        # Strings, as every Decimal is answered: never a float on the way.
        assert (summary["count"], summary["total"], summary["average"]) == (
            len(prices),
            total,
            average,
        )

    async def test_summarises_no_orders_as_zero_without_an_average(
        self, client: httpx.AsyncClient
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")

        body = (await client.get(f"/users/{ann['id']}/profile")).json()

        assert body["orders"] == []
        assert body["summary"]["count"] == 0
        assert Decimal(body["summary"]["total"]) == 0
        assert body["summary"]["average"] is None

    async def test_answers_404_for_an_unknown_id(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/users/4242/profile")).status_code == 404


class TestCreateUserWithOrder:
    async def test_creates_both(self, client: httpx.AsyncClient, shop_engine: AsyncEngine) -> None:
        response = await post_user_with_order(client, name="Ann", title="Book", price="12.5")

        assert response.status_code == 201
        body = response.json()
        assert body["order"]["user_id"] == body["user"]["id"]
        assert body["order"]["price"] == "12.50"
        assert await count_users(shop_engine, email="ann@example.com") == 1
        assert await count_orders(shop_engine, user_id=body["user"]["id"]) == 1

    async def test_a_refused_order_leaves_no_user_behind(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        response = await post_user_with_order(
            client, name="Ann", title="Grand piano", price="25000.00"
        )

        assert response.status_code == 422
        assert response.json()["code"] == "order_rejected"
        assert "at most" in response.json()["detail"]
        assert await count_users(shop_engine) == 0
        assert await count_orders(shop_engine) == 0

    async def test_a_taken_email_answers_409_and_places_no_order(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        await new_user(client, "ann@example.com", "Ann")

        response = await post_user_with_order(client, name="Ann again", title="Book", price="12.50")

        assert response.status_code == 409
        assert await count_users(shop_engine) == 1
        assert await count_orders(shop_engine) == 0


class TestImportUsers:
    async def test_creates_every_user(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        users = [{"email": f"user{i}@example.com", "name": f"User {i}"} for i in range(50)]

        response = await client.post("/users/import", json={"users": users})

        assert response.status_code == 200
        assert response.json() == {"count": 50}
        assert await count_users(shop_engine) == 50
        assert await count_users(shop_engine, email="user49@example.com", name="User 49") == 1

    async def test_one_taken_email_rejects_the_whole_import(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        await new_user(client, "ann@example.com", "Ann")
        users = [
            {"email": "bob@example.com", "name": "Bob"},
            {"email": "ann@example.com", "name": "Ann again"},
        ]

        response = await client.post("/users/import", json={"users": users})

        assert response.status_code == 409
        assert await count_users(shop_engine) == 1
        assert await count_users(shop_engine, name="Ann") == 1

    async def test_update_existing_upserts_by_email(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        users = [
            {"email": "ann@example.com", "name": "Ann Smith"},
            {"email": "bob@example.com", "name": "Bob"},
        ]

        response = await client.post(
            "/users/import", json={"users": users, "update_existing": True}
        )

        assert response.status_code == 200
        assert response.json() == {"count": 2}
        assert await count_users(shop_engine) == 2
        assert await count_users(shop_engine, id=ann["id"], name="Ann Smith") == 1
        assert await count_users(shop_engine, email="bob@example.com") == 1

    async def test_answers_422_for_an_empty_import(self, client: httpx.AsyncClient) -> None:
        assert (await client.post("/users/import", json={"users": []})).status_code == 422


class TestOpenAPI:
    async def test_documents_every_route(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/openapi.json")

        assert response.status_code == 200
        paths = response.json()["paths"]
        assert set(paths) == {
            "/users",
            "/users/import",
            "/users/{user_id}",
            "/users/{user_id}/profile",
            "/users/{user_id}/orders",
            "/users-with-order",
            "/orders/{order_id}",
            "/admin/users/{user_id}",
            "/admin/users/{user_id}/restore",
        }
        assert set(paths["/users/{user_id}"]) == {"get", "patch", "delete"}
        assert set(paths["/orders/{order_id}"]) == {"get", "patch"}
        assert {"404", "409", "422"} <= set(paths["/orders/{order_id}"]["patch"]["responses"])
        assert "403" in paths["/admin/users/{user_id}"]["delete"]["responses"]
        assert "409" in paths["/users"]["post"]["responses"]

    async def test_lists_every_error_status_a_route_can_answer(
        self, client: httpx.AsyncClient
    ) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]

        assert {"409", "422"} <= set(paths["/users/import"]["post"]["responses"])
        assert {"404", "422"} <= set(paths["/users/{user_id}/orders"]["get"]["responses"])
        assert "400" not in paths["/users/{user_id}/orders"]["get"]["responses"]
        problem = paths["/users/{user_id}"]["get"]["responses"]["404"]["content"]
        assert "application/problem+json" in problem

    async def test_lists_the_filters_and_page_parameters_of_the_users_list(
        self, client: httpx.AsyncClient
    ) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]

        parameters = {p["name"]: p for p in paths["/users"]["get"]["parameters"]}
        assert list(parameters) == [
            "email",
            "email__icontains",
            "name",
            "name__in",
            "name__istartswith",
            "name__icontains",
            "is_active",
            "created_at__gte",
            "created_at__lt",
            "order_by",
            "filter",
            "limit",
            "offset",
            "x-shop-id",
        ]
        assert parameters["is_active"]["schema"]["type"] == "boolean"
        assert parameters["limit"]["schema"]["maximum"] == 100
        orders = {p["name"] for p in paths["/users/{user_id}/orders"]["get"]["parameters"]}
        assert orders == {"user_id", "limit", "cursor", "before", "x-shop-id"}
        assert {"404", "409", "422"} <= set(paths["/users/{user_id}"]["patch"]["responses"])

    async def test_states_how_the_average_is_rounded(self, client: httpx.AsyncClient) -> None:
        schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]

        description = schemas["OrderSummaryRead"]["properties"]["average"]["description"]
        assert "half up" in description
        assert "ROUND_HALF_UP" in description


NUL = "\x00"

NUL_REQUESTS = [
    ("POST", "/users", {"email": f"n{NUL}l@example.com", "name": "Nul"}),
    ("POST", "/users", {"email": "nul@example.com", "name": f"Nu{NUL}l"}),
    ("PATCH", "/users/{id}", {"name": f"Ann{NUL}"}),
    ("PATCH", "/users/{id}", {"email": f"ann{NUL}@example.com"}),
    ("POST", "/users/{id}/orders", {"title": f"Bo{NUL}ok", "price": "1"}),
    ("POST", "/users/{id}/orders", {"title": "Book", "description": NUL, "price": "1"}),
    (
        "POST",
        "/users/import",
        {
            "users": [
                {"email": "ok@example.com", "name": "Ok"},
                {"email": "n@example.com", "name": NUL},
            ]
        },
    ),
    (
        "POST",
        "/users/import",
        {"users": [{"email": f"{NUL}@example.com", "name": "Nul"}], "update_existing": True},
    ),
    (
        "POST",
        "/users-with-order",
        {
            "user": {"email": "nul@example.com", "name": "Nul"},
            "order": {"title": NUL, "price": "1"},
        },
    ),
]
"""A U+0000 in every string field the API reads (PostgreSQL cannot store it)."""


@pytest.mark.backends("sqlite", "postgresql", "mariadb")
class TestHostileInput:
    """Input no database should see is a 422 before any SQL, on every backend."""

    @pytest.mark.parametrize(("method", "route", "body"), NUL_REQUESTS)
    async def test_a_nul_character_answers_422_before_any_sql(
        self,
        client: httpx.AsyncClient,
        shop_engine: AsyncEngine,
        statements: list[str],
        method: str,
        route: str,
        body: dict[str, Any],
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        statements.clear()

        response = await client.request(method, route.format(id=ann["id"]), json=body)

        assert response.status_code == 422, response.text
        assert "U+0000" in response.json()["errors"][0]["msg"]
        assert statements == []
        assert await count_users(shop_engine) == 1
        assert await count_users(shop_engine, email="ann@example.com", name="Ann") == 1
        assert await count_orders(shop_engine) == 0

    @pytest.mark.parametrize(
        ("route", "raw"),
        [
            ("/users/{id}/orders", '{"title": "Book", "price": 1e400}'),
            ("/users/{id}/orders", '{"title": "Book", "price": -1e400}'),
            ("/users/{id}/orders", '{"title": "\\ud800", "price": "1"}'),
            ("/users", '{"email": "eve@example.com", "name": "Eve \\udfff"}'),
            ("/users/{id}", '{"\\ud800": 1}'),
        ],
    )
    async def test_input_that_json_cannot_echo_answers_422(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine, route: str, raw: str
    ) -> None:
        # 1e400 parses as infinity and "\ud800" as a lone surrogate: neither can be
        # written back as JSON, which FastAPI's own handler tries (and fails: a 500).
        ann = await new_user(client, "ann@example.com", "Ann")
        method = "PATCH" if route == "/users/{id}" else "POST"

        response = await client.request(
            method,
            route.format(id=ann["id"]),
            content=raw.encode(),
            headers={"content-type": "application/json"},
        )

        assert response.status_code == 422, response.text
        assert response.json()["code"] == "validation"
        assert response.json()["errors"]
        assert await count_users(shop_engine) == 1
        assert await count_orders(shop_engine) == 0

    @pytest.mark.parametrize(
        "body",
        [{"bogus": 1}, {"id": 500}, {"created_at": "2020-01-01T00:00:00Z"}, {"name": "Bo", "x": 1}],
    )
    async def test_patch_with_an_unknown_or_read_only_field_answers_422(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine, body: dict[str, Any]
    ) -> None:
        ann = await new_user(client, "ann@example.com", "Ann")
        before = (await client.get(f"/users/{ann['id']}")).json()

        response = await client.patch(f"/users/{ann['id']}", json=body)

        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["type"] == "extra_forbidden"
        assert (await client.get(f"/users/{ann['id']}")).json() == before
        assert await count_users(shop_engine, id=500) == 0

    async def test_a_post_with_an_unknown_field_answers_422(
        self, client: httpx.AsyncClient, shop_engine: AsyncEngine
    ) -> None:
        response = await client.post(
            "/users", json={"email": "ann@example.com", "name": "Ann", "is_admin": True}
        )

        assert response.status_code == 422
        assert await count_users(shop_engine) == 0

    @pytest.mark.parametrize("update_existing", [False, True])
    async def test_an_import_with_one_email_twice_answers_422_and_writes_nothing(
        self,
        client: httpx.AsyncClient,
        shop_engine: AsyncEngine,
        statements: list[str],
        update_existing: bool,
    ) -> None:
        users = [
            {"email": "Ann@Example.com", "name": "Ann"},
            {"email": "bob@example.com", "name": "Bob"},
            {"email": "ann@example.com", "name": "Ann again"},
        ]

        response = await client.post(
            "/users/import", json={"users": users, "update_existing": update_existing}
        )

        assert response.status_code == 422, response.text
        message = response.json()["errors"][0]["msg"]
        assert "users[2] has the same email as users[0] (ann@example.com)" in message
        assert statements == []
        assert await count_users(shop_engine) == 0

    async def test_every_404_for_a_user_says_the_same(self, client: httpx.AsyncClient) -> None:
        order = {"title": "Book", "price": "1"}
        answers = [
            await client.request(
                method, route.format(id=4242), json=order if method == "POST" else {}
            )
            for method, route in USER_ROUTES
        ]

        assert [answer.status_code for answer in answers] == [404] * len(USER_ROUTES)
        assert {answer.json()["detail"] for answer in answers} == {
            "User with primary key 4242 not found"
        }


PUBLIC_CURSOR_KEY = b"sqla_uow cursor v1"
"""The key sqla_uow signs cursors with when no ``cursor_secret`` is set (it is public)."""


def cursor_document(cursor: str) -> dict[str, Any]:
    """The JSON document inside a cursor: fingerprint, scope digest and sort values."""
    encoded = cursor.partition(".")[0]
    document: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    )
    return document


def forge(cursor: str, values: list[Any], key: bytes = PUBLIC_CURSOR_KEY) -> str:
    """*cursor* with its sort values replaced by *values*, signed again with *key*."""
    document = {**cursor_document(cursor), "v": values}
    body = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    checksum = hmac.new(key, body, hashlib.sha256).hexdigest()[:16]
    return f"{base64.urlsafe_b64encode(body).decode().rstrip('=')}.{checksum}"


async def first_page(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    """Ann, with three orders; the first page of her orders (one order, and a cursor)."""
    ann = await new_user(client, "ann@example.com", "Ann")
    for title in ("A", "B", "C"):
        await new_order(client, ann["id"], title)
    page = (await client.get(f"/users/{ann['id']}/orders", params={"limit": 1})).json()
    assert page["next_cursor"] is not None
    return ann["id"], page


FORGED_VALUES = [
    pytest.param(lambda real: [real[0], 2**40], id="id-2**40"),
    pytest.param(lambda real: [real[0], -(2**40)], id="id-minus-2**40"),
    pytest.param(lambda real: [real[0], "3"], id="id-a-string"),
    pytest.param(lambda real: [12345, real[1]], id="created_at-12345"),
    pytest.param(lambda real: [True, real[1]], id="created_at-true"),
    pytest.param(lambda real: ["2026-01-01T00:00:00+00:00", real[1]], id="created_at-a-string"),
    pytest.param(lambda real: [{"dt": "0001-01-01T00:00:00+14:00"}, 1], id="before-year-1-in-utc"),
    pytest.param(lambda real: [{"dt": "9999-12-31T23:59:59-14:00"}, 1], id="after-9999-in-utc"),
    pytest.param(lambda real: [{"dt": "2026-01-01T00:00:00"}, real[1]], id="no-timezone"),
]


class TestForgedCursors:
    """A cursor signed with sqla_uow's public key, carrying values the app never made."""

    async def test_a_cursor_forged_with_the_real_values_pages_on(
        self, client: httpx.AsyncClient
    ) -> None:
        # The forgery works: the 422s below come from the values, not from a bad checksum.
        user_id, page = await first_page(client)
        real = page["next_cursor"]
        forged = forge(real, cursor_document(real)["v"])

        answer = await client.get(f"/users/{user_id}/orders", params={"cursor": forged})
        expected = await client.get(f"/users/{user_id}/orders", params={"cursor": real})

        assert answer.status_code == 200
        assert answer.json()["items"] == expected.json()["items"]
        assert [order["title"] for order in answer.json()["items"]] == ["B", "A"]

    @pytest.mark.parametrize("values", FORGED_VALUES)
    async def test_a_value_the_columns_cannot_hold_answers_422(
        self, client: httpx.AsyncClient, values: Any
    ) -> None:
        user_id, page = await first_page(client)
        real = page["next_cursor"]
        forged = forge(real, values(cursor_document(real)["v"]))

        response = await client.get(f"/users/{user_id}/orders", params={"cursor": forged})

        assert response.status_code == 422, response.text
        assert response.json()["code"] == "invalid_cursor"


class TestCursorSecret:
    """With ``cursor_secret`` set, a cursor signed with any other key is refused."""

    SECRET = b"k" * 32

    @pytest.fixture
    def settings(self, database_url: str) -> Settings:
        return Settings(database_url=database_url, cursor_secret=self.SECRET)

    async def test_the_app_signs_with_the_secret_and_pages_on(
        self, client: httpx.AsyncClient
    ) -> None:
        user_id, page = await first_page(client)
        real = page["next_cursor"]
        same = forge(real, cursor_document(real)["v"], key=self.SECRET)

        answer = await client.get(f"/users/{user_id}/orders", params={"cursor": real})

        assert same == real  # signed with SECRET: not with the public key
        assert answer.status_code == 200
        assert [order["title"] for order in answer.json()["items"]] == ["B", "A"]
        assert OrderRepository.cursor_secret == self.SECRET

    async def test_a_cursor_signed_with_the_public_key_answers_422(
        self, client: httpx.AsyncClient
    ) -> None:
        user_id, page = await first_page(client)
        real = page["next_cursor"]
        forged = forge(real, cursor_document(real)["v"])

        response = await client.get(f"/users/{user_id}/orders", params={"cursor": forged})

        assert response.status_code == 422
        assert "integrity" in response.json()["detail"]

    async def test_the_secret_is_the_apps_only_while_it_runs(
        self, settings: Settings, shop_engine: AsyncEngine
    ) -> None:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            assert OrderRepository.cursor_secret == self.SECRET

        assert OrderRepository.cursor_secret is None
