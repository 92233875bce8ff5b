"""sqla_uow.ext.fastapi: error answers, the request's unit of work, filter and page parameters.

A small app is built on the test database and called through httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey, MetaData, event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column

from models.catalog import (
    Base,
    Customer,
    CustomerRepository,
    OrderFilters,
    OrderRepository,
    seed,
)
from sqla_uow import (
    ConflictError,
    LockNotAvailableError,
    NotFoundError,
    SQLAlchemyUnitOfWork,
    TransactionManager,
    TransactionTimeoutError,
)
from sqla_uow.ext.fastapi import (
    CursorPageResponse,
    CursorParams,
    OffsetParams,
    PageResponse,
    add_exception_handlers,
    cursor_params,
    filter_params,
    offset_params,
    problem_responses,
    unit_of_work,
)


class Ticket(Base):
    """A row whose foreign key is checked at COMMIT, not at the INSERT."""

    __tablename__ = "ext_tickets"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("catalog_customers.id", deferrable=True, initially="DEFERRED")
    )


class CatalogUnitOfWork(SQLAlchemyUnitOfWork):
    orders: OrderRepository
    customers: CustomerRepository


class OrderRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    price: Decimal


class CustomerIn(BaseModel):
    id: int
    email: str
    name: str


class Quantity(BaseModel):
    amount: int


def transaction_manager(request: Request) -> TransactionManager:
    tm: TransactionManager = request.app.state.tm
    return tm


UnitOfWork = Annotated[CatalogUnitOfWork, unit_of_work(CatalogUnitOfWork, transaction_manager)]
Filters = Annotated[OrderFilters, filter_params(OrderFilters)]


def build_app(tm: TransactionManager) -> FastAPI:
    app = FastAPI()
    app.state.tm = tm
    add_exception_handlers(app)

    @app.get("/orders")
    async def list_orders(
        uow: UnitOfWork, filters: Filters, page: Annotated[OffsetParams, offset_params(max_limit=3)]
    ) -> PageResponse[OrderRead]:
        found = await uow.orders.paginate(
            filters, limit=page.limit, offset=page.offset, order_by=filters.ordering
        )
        return PageResponse[OrderRead].from_page(found)

    @app.get("/orders/by-cursor")
    async def orders_by_cursor(
        uow: UnitOfWork, filters: Filters, page: Annotated[CursorParams, cursor_params()]
    ) -> CursorPageResponse[OrderRead]:
        found = await uow.orders.paginate_cursor(
            filters,
            limit=page.limit,
            after=page.after,
            before=page.before,
            order_by=filters.ordering or "id",
        )
        return CursorPageResponse[OrderRead].from_page(found)

    @app.post("/orders/search")
    async def search_orders(uow: UnitOfWork, body: dict[str, Any]) -> list[OrderRead]:
        filters = OrderFilters.from_json(body)
        found = await uow.orders.list(filters, order_by=filters.ordering or "id")
        return [OrderRead.model_validate(order) for order in found]

    @app.get("/orders/{order_id}", responses=problem_responses(404))
    async def get_order(order_id: int, uow: UnitOfWork) -> OrderRead:
        return OrderRead.model_validate(await uow.orders.get_one(order_id))

    @app.post("/customers", status_code=201, responses=problem_responses(409))
    async def create_customer(body: CustomerIn, uow: UnitOfWork) -> dict[str, int]:
        customer = await uow.customers.create(body)
        return {"id": customer.id}

    @app.post("/customers/then-fail")
    async def create_then_fail(uow: UnitOfWork) -> None:
        await uow.customers.create(id=8, email="eve@example.com", name="Eve")
        raise NotFoundError("no such shelf")

    @app.post("/tickets/{ticket_id}")
    async def create_ticket(ticket_id: int, customer_id: int, uow: UnitOfWork) -> dict[str, str]:
        # The foreign key is deferred: the INSERT passes, the COMMIT fails.
        uow.session.add(Ticket(id=ticket_id, customer_id=customer_id))
        await uow.session.flush()
        return {"status": "created"}

    @app.post("/swallowed")
    async def swallowed(uow: UnitOfWork) -> dict[str, str]:
        await uow.customers.create(id=90, email="x@example.com", name="X")
        try:
            async with CatalogUnitOfWork(transaction_manager_of(app)):
                raise NotFoundError("inner failure")
        except NotFoundError:
            pass  # a bug: the joined scope marked the transaction rollback-only
        return {"status": "ok"}

    @app.post("/orders/{order_id}/busy")
    async def busy_order(order_id: int, timed_out: bool = False) -> None:
        if timed_out:
            raise TransactionTimeoutError("canceling statement due to statement timeout")
        raise LockNotAvailableError("could not obtain lock on row", code="55P03")

    @app.post("/quantities")
    async def quantities(body: Quantity) -> Quantity:
        return body

    return app


def transaction_manager_of(app: FastAPI) -> TransactionManager:
    tm: TransactionManager = app.state.tm
    return tm


async def enforce_sqlite_foreign_keys(engine: AsyncEngine) -> None:
    """Turn SQLite's foreign keys on (PostgreSQL always checks them)."""
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        await engine.dispose()  # pooled connections were opened before the listener


@pytest.fixture
def metadata() -> MetaData:
    return Base.metadata


@pytest.fixture
async def tm(engine: AsyncEngine) -> TransactionManager:
    await enforce_sqlite_foreign_keys(engine)
    manager = TransactionManager(engine)
    async with manager.transaction() as session:
        await seed(session)
    return manager


@pytest.fixture
async def client(tm: TransactionManager) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(tm))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def is_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == "about:blank"
    assert body["title"]
    return body


async def count(engine: AsyncEngine, model: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(model))).scalar_one())


class TestExceptionHandlers:
    async def test_not_found_is_404(self, client: httpx.AsyncClient) -> None:
        body = is_problem(await client.get("/orders/99"), 404, "not_found")
        assert "99" in body["detail"]

    async def test_conflict_is_409_with_kind_and_no_driver_message(
        self, client: httpx.AsyncClient, engine: AsyncEngine
    ) -> None:
        response = await client.post(
            "/customers", json={"id": 1, "email": "again@example.com", "name": "Again"}
        )
        body = is_problem(response, 409, "conflict")
        assert body["kind"] == "unique"
        assert isinstance(body.get("columns", []), list)
        text = response.text.lower()
        for leak in ("insert", "constraint failed", "duplicate key", "catalog_customers.id"):
            assert leak not in text
        assert await count(engine, Customer) == 3

    async def test_a_stale_version_is_409_telling_the_client_to_read_again(self) -> None:
        app = FastAPI()
        add_exception_handlers(app)

        @app.patch("/orders/1")
        async def patch_order() -> None:
            raise ConflictError("stale version writing Order (primary keys 1)", kind="stale")

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            body = is_problem(await client.patch("/orders/1"), 409, "conflict")
        assert body["kind"] == "stale"
        assert "read it again" in body["detail"]

    async def test_invalid_field_is_422_naming_the_parameter(
        self, client: httpx.AsyncClient
    ) -> None:
        body = is_problem(await client.get("/orders?price__gte=ten"), 422, "invalid_field")
        assert body["field"] == "price__gte"
        assert "price__gte" in body["detail"]

    async def test_invalid_cursor_is_422_too(self, client: httpx.AsyncClient) -> None:
        body = is_problem(
            await client.get("/orders/by-cursor?cursor=bm90LWEtY3Vyc29y"), 422, "invalid_cursor"
        )
        assert body["field"] is not None

    async def test_request_validation_stays_422_for_input_json_cannot_echo(
        self, client: httpx.AsyncClient
    ) -> None:
        for raw in ('{"amount": 1e400}', '{"amount": "\\ud800"}', '{"amount": NaN}'):
            response = await client.post(
                "/quantities", content=raw, headers={"content-type": "application/json"}
            )
            body = is_problem(response, 422, "validation")
            assert body["errors"][0]["loc"][0] == "body"
            assert "input" not in body["errors"][0]

    async def test_rollback_only_is_500_and_logged(
        self,
        client: httpx.AsyncClient,
        engine: AsyncEngine,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        with caplog.at_level(logging.ERROR, logger="sqla_uow.ext.fastapi"):
            body = is_problem(await client.post("/swallowed"), 500, "transaction_failed")
        assert "rolled back" in body["detail"]
        assert any(record.exc_info for record in caplog.records)
        assert await count(engine, Customer) == 3

    async def test_a_lock_not_available_is_409_and_a_timeout_503_without_driver_text(
        self, client: httpx.AsyncClient
    ) -> None:
        body = is_problem(await client.post("/orders/1/busy"), 409, "lock_not_available")
        assert "could not obtain" not in body["detail"]
        response = await client.post("/orders/1/busy", params={"timed_out": True})
        body = is_problem(response, 503, "transaction_timeout")
        assert "canceling" not in body["detail"]


class TestUnitOfWork:
    async def test_commits_before_the_response(
        self, client: httpx.AsyncClient, engine: AsyncEngine
    ) -> None:
        response = await client.post(
            "/customers", json={"id": 7, "email": "dee@example.com", "name": "Dee"}
        )
        assert response.status_code == 201
        assert await count(engine, Customer) == 4

    async def test_a_failed_commit_is_an_error_answer_never_a_200(
        self, client: httpx.AsyncClient, engine: AsyncEngine
    ) -> None:
        response = await client.post("/tickets/1?customer_id=999")
        body = is_problem(response, 409, "conflict")
        assert body["kind"] == "foreign_key"
        assert await count(engine, Ticket) == 0
        assert (await client.post("/tickets/2?customer_id=1")).status_code == 200
        assert await count(engine, Ticket) == 1

    async def test_an_exception_in_the_route_rolls_back(
        self, client: httpx.AsyncClient, engine: AsyncEngine
    ) -> None:
        is_problem(await client.post("/customers/then-fail"), 404, "not_found")
        assert await count(engine, Customer) == 3

    async def test_takes_a_transaction_manager_directly(self, tm: TransactionManager) -> None:
        app = FastAPI()

        # A default, not an annotation: this module's annotations are strings, and a
        # string cannot name the local ``tm``.
        @app.get("/n")
        async def n(uow: CatalogUnitOfWork = unit_of_work(CatalogUnitOfWork, tm)) -> int:  # noqa: B008
            return await uow.customers.count()

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/n")).json() == 3


class TestFilterParams:
    async def test_filters_sorts_and_pages_from_the_query_string(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get(
            "/orders", params={"status": "paid", "order_by": "-price", "limit": 2, "offset": 1}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert [item["id"] for item in body["items"]] == [5, 1]
        assert (body["total"], body["limit"], body["offset"]) == (3, 2, 1)
        assert (body["has_next"], body["pages"]) == (False, 2)

    async def test_repeated_in_keys_and_relationship_paths(self, client: httpx.AsyncClient) -> None:
        query = "tags__label__in=gift&tags__label__in=fragile&order_by=id"
        body = (await client.get(f"/orders?{query}")).json()
        assert [item["id"] for item in body["items"]] == [1, 3, 5]
        assert body["total"] == 3

    async def test_or_groups_through_the_filter_parameter(self, client: httpx.AsyncClient) -> None:
        group = json.dumps({"or": [{"status": "shipped"}, {"price__gte": "100"}]})
        query = urllib.parse.urlencode({"filter": group, "order_by": "id"})
        body = (await client.get(f"/orders?{query}")).json()
        assert [item["id"] for item in body["items"]] == [2, 3, 5]

    async def test_json_search_body(self, client: httpx.AsyncClient) -> None:
        body = {"or": [{"customer__vip": True}, {"title__icontains": "LINEN"}], "order_by": ["-id"]}
        response = await client.post("/orders/search", json=body)
        assert [item["id"] for item in response.json()] == [5, 3, 2, 1]

    async def test_a_misspelt_parameter_is_refused(self, client: httpx.AsyncClient) -> None:
        body = is_problem(await client.get("/orders?stauts=paid"), 422, "invalid_field")
        assert body["field"] == "stauts"
        assert "status" in body["choices"]

    async def test_the_route_s_own_parameters_are_not_filters(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/orders", params={"limit": 1, "offset": 0})
        assert response.status_code == 200
        assert response.json()["total"] == 5

    async def test_the_openapi_schema_lists_each_filter_with_its_type(
        self, client: httpx.AsyncClient
    ) -> None:
        schema = (await client.get("/openapi.json")).json()
        parameters = {p["name"]: p for p in schema["paths"]["/orders"]["get"]["parameters"]}
        assert {p.name for p in OrderFilters.parameters()} <= set(parameters)
        assert parameters["price__gte"]["schema"]["format"] == "decimal"
        quantity = parameters["quantity__gte"]["schema"]
        assert (quantity["type"], quantity["format"]) == ("integer", "int16")
        assert parameters["created_at__lt"]["schema"]["format"] == "date-time"
        assert parameters["status"]["schema"]["enum"] == ["pending", "paid", "shipped"]
        assert "gte" in parameters["price__gte"]["description"]
        assert "comma-separated" in parameters["id__in"]["description"]
        assert "price" in parameters["order_by"]["description"]
        assert {"filter", "limit", "offset"} <= set(parameters)
        assert parameters["limit"]["schema"]["maximum"] == 3
        responses = schema["paths"]["/orders/{order_id}"]["get"]["responses"]
        assert "application/problem+json" in responses["404"]["content"]


class TestPages:
    async def test_limit_out_of_range_is_422(self, client: httpx.AsyncClient) -> None:
        for query in ("limit=4", "limit=0", "offset=-1", f"offset={2**63}"):
            is_problem(await client.get(f"/orders?{query}"), 422, "validation")

    async def test_cursor_pages_walk_forward_and_back(self, client: httpx.AsyncClient) -> None:
        first = (await client.get("/orders/by-cursor?limit=2&status__ne=pending")).json()
        assert [item["id"] for item in first["items"]] == [1, 2]
        assert first["has_next"]
        second = (
            await client.get(
                "/orders/by-cursor",
                params={"limit": 2, "status__ne": "pending", "cursor": first["next_cursor"]},
            )
        ).json()
        assert [item["id"] for item in second["items"]] == [3, 5]
        assert second["next_cursor"] is None
        back = (
            await client.get(
                "/orders/by-cursor",
                params={"limit": 2, "status__ne": "pending", "before": second["previous_cursor"]},
            )
        ).json()
        assert [item["id"] for item in back["items"]] == [1, 2]


# -- hostile query strings: 422, never 500 ------------------------------------------------

_KEYS = st.sampled_from(
    [p.name for p in OrderFilters.parameters()]
    + ["order_by", "filter", "limit", "offset", "nope", "id__", "__in", "customer__secret"]
)
_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "1e400",
            "NaN",
            "-0",
            str(2**31),
            str(2**63),
            "9" * 50,
            "2024-02-30",
            "2024-01-01T00:00:00",
            "\x00",
            "%",
            "_",
            "/",
            "1,2,3",
            ",",
            '{"or": []}',
            '{"or": [{"or": [{"or": [{"or": [{"id": 1}]}]}]}]}',
            '{"price__gte": 1e400}',
            '{"title": "\\ud800"}',
            "[" * 2000,
        ]
    ),
    st.integers().map(str),
    st.floats().map(str),
)


def test_hostile_query_strings_are_answered_422_never_500(database_url: str) -> None:
    async def prepare() -> None:
        engine = create_async_engine(database_url)
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.run_sync(Base.metadata.create_all)
        await engine.dispose()

    async def drop() -> None:
        engine = create_async_engine(database_url)
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
        await engine.dispose()

    async def ask(client: httpx.AsyncClient, pairs: list[tuple[str, str]]) -> httpx.Response:
        return await client.get("/orders", params=pairs)

    async def main(examples: list[list[tuple[str, str]]]) -> list[int]:
        tm = TransactionManager(database_url)
        try:
            transport = httpx.ASGITransport(app=build_app(tm))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return [(await ask(client, pairs)).status_code for pairs in examples]
        finally:
            await tm.engine.dispose()

    examples: list[list[tuple[str, str]]] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(_KEYS, _VALUES), max_size=6))
    def collect(pairs: list[tuple[str, str]]) -> None:
        examples.append(pairs)

    collect()
    asyncio.run(prepare())
    try:
        statuses = asyncio.run(main(examples))
    finally:
        asyncio.run(drop())
    assert set(statuses) <= {200, 422}, [
        (pairs, status) for pairs, status in zip(examples, statuses, strict=True) if status >= 500
    ]
    assert 200 in statuses
    assert 422 in statuses
