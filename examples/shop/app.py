"""The shop's HTTP API (FastAPI), on `sqla_uow.ext.fastapi`.

Serve it with ``uvicorn shop.app:app --app-dir examples`` (``DATABASE_URL`` picks the
database; the default is ``shop.db``, a SQLite file in the working directory).

What to notice:

- one `TransactionManager`, made in the lifespan and disposed at shutdown, handed to
  the routes by the `transaction_manager` dependency (a test overrides that one
  dependency to run the app on another manager);
- each request gets an open `ShopUnitOfWork` from `unit_of_work`: it commits when the
  route function returns, before the response is sent, so a failed commit is an error
  answer, never a 200 for lost work; an exception rolls it back;
- errors become RFC 9457 ``application/problem+json`` answers in one place,
  `add_exception_handlers` (404 not found, 409 conflict, 422 for invalid input: a
  request that fails validation, a bad filter, a bad cursor), plus the shop's own
  `OrderRejectedError` (422); no route catches an exception itself, and a request that
  fails validation is a 422 even when its input cannot be echoed as JSON (``1e400``, a
  lone surrogate);
- every route (but the admin ones) runs in a shop: the `shop_scope` dependency reads
  the ``X-Shop-Id`` header (default: shop 1) into the context variable that
  `OrderRepository`'s ``default_scope`` reads, so another shop's orders are missing
  (404), not listed and not counted; an invalid header is a 422;
- ``DELETE /users/{id}`` soft-deletes (the orders stay); ``/admin/...`` routes, behind
  the ``X-Admin-Token`` header, restore a deleted user or delete one for good;
- ``PATCH /orders/{id}`` takes the ``version`` the client read: a stale one is a 409
  (``kind: "stale"``) and changes nothing;
- the users list takes its filters and sort order from the query string through a
  `FilterSet` (`shop.filters.UserFilters`), its page from `offset_params`; a user's
  orders are paged by keyset cursors (`cursor_params`).

Settings come from the environment (`shop.settings`): ``SHOP_ENV=production`` requires
``SHOP_CURSOR_SECRET``, the key that makes pagination cursors unforgeable;
``SHOP_ADMIN_TOKEN`` opens the admin routes.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Request, Response, status

from sqla_uow import TransactionManager
from sqla_uow.ext.fastapi import (
    CursorPageResponse,
    CursorParams,
    OffsetParams,
    PageResponse,
    ProblemResponse,
    add_exception_handlers,
    cursor_params,
    filter_params,
    offset_params,
    problem_responses,
    unit_of_work,
)

from . import services
from .database import open_database
from .filters import UserFilters
from .models import DEFAULT_SHOP_ID, INT32_MAX
from .repositories import in_shop
from .schemas import (
    ImportResult,
    OrderCreate,
    OrderRead,
    OrderSummaryRead,
    OrderUpdate,
    UserCreate,
    UserImport,
    UserProfile,
    UserRead,
    UserUpdate,
    UserWithOrderCreate,
    UserWithOrderRead,
)
from .services import OrderRejectedError, OrderService
from .settings import Settings
from .uow import ShopUnitOfWork

# -- dependencies ----------------------------------------------------------------------


def transaction_manager(request: Request) -> TransactionManager:
    """The application's `TransactionManager` (made by the lifespan)."""
    tm: TransactionManager = request.app.state.tm
    return tm


async def shop_scope(
    x_shop_id: Annotated[
        int,
        Header(ge=1, le=INT32_MAX, description=f"The shop; {DEFAULT_SHOP_ID} when absent"),
    ] = DEFAULT_SHOP_ID,
) -> AsyncIterator[None]:
    """Run the request in the shop its ``X-Shop-Id`` header names (`in_shop`).

    Every route of ``router`` depends on it: `OrderRepository` sees only this shop's
    orders.
    A header that is not a positive 32-bit integer is a 422.
    """
    with in_shop(x_shop_id):
        yield


class AdminAccessError(Exception):
    """An admin route was called without the right ``X-Admin-Token`` (or with none
    configured: ``SHOP_ADMIN_TOKEN`` is unset)."""


def require_admin(request: Request, x_admin_token: Annotated[str | None, Header()] = None) -> None:
    """Let the request through only with the ``X-Admin-Token`` of the settings.

    Raises:
        AdminAccessError: the header is missing or wrong, or no token is configured.
    """
    expected: str | None = request.app.state.settings.admin_token
    if not expected:  # None or empty: no token could be right
        raise AdminAccessError("the admin routes are closed: SHOP_ADMIN_TOKEN is not set")
    if x_admin_token is None or not secrets.compare_digest(
        x_admin_token.encode(), expected.encode()
    ):
        raise AdminAccessError("the X-Admin-Token header is missing or wrong")


def order_service() -> OrderService:
    """The order service (it runs on the default manager, set by `open_database`)."""
    return OrderService()


UnitOfWork = Annotated[ShopUnitOfWork, unit_of_work(ShopUnitOfWork, transaction_manager)]
"""An open unit of work, committed when the route returns (before the response)."""
Orders = Annotated[OrderService, Depends(order_service)]
Filters = Annotated[UserFilters, filter_params(UserFilters)]
Pages = Annotated[OffsetParams, offset_params(max_limit=100)]
Cursor = Annotated[CursorParams, cursor_params(max_limit=100)]

# The ids are INTEGER columns, 32-bit on PostgreSQL: a larger number in a URL must be a
# 422 from validation, not a database error (a 500) when it is bound to the query.
UserId = Annotated[int, Path(ge=1, le=INT32_MAX)]
OrderId = Annotated[int, Path(ge=1, le=INT32_MAX)]

# -- errors ----------------------------------------------------------------------------


def problem(status: int, code: str, exc: Exception) -> ProblemResponse:
    """An ``application/problem+json`` answer in the shape of sqla_uow's own handlers."""
    return ProblemResponse(
        {
            "type": "about:blank",
            "title": HTTPStatus(status).phrase,
            "status": status,
            "code": code,
            "detail": str(exc),
        },
        status_code=status,
    )


async def order_rejected(request: Request, exc: Exception) -> ProblemResponse:
    """Answer `OrderRejectedError` (well-formed, but the shop refuses it) with 422."""
    return problem(422, "order_rejected", exc)


async def admin_access_denied(request: Request, exc: Exception) -> ProblemResponse:
    """Answer `AdminAccessError` with 403."""
    return problem(403, "admin_only", exc)


# -- routes ----------------------------------------------------------------------------

router = APIRouter(dependencies=[Depends(shop_scope)])
admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


@router.post("/users", status_code=status.HTTP_201_CREATED, responses=problem_responses(409))
async def create_user(body: UserCreate, uow: UnitOfWork) -> UserRead:
    """Register a user; 409 when the email address is taken."""
    return UserRead.model_validate(await services.register_user(uow, body))


@router.get("/users", responses=problem_responses(422))
async def list_users(filters: Filters, page: Pages, uow: UnitOfWork) -> PageResponse[UserRead]:
    """A page of the users the filters select, and their total count.

    An undeclared filter, a lookup not allowed, a value of the wrong type or an unknown
    ``order_by`` field is a 422 naming the parameter and the choices. (FastAPI solves
    dependencies in the order of the parameters: the filters are checked before the
    unit of work takes a connection.)
    """
    found = await services.list_users(uow, filters, limit=page.limit, offset=page.offset)
    return PageResponse[UserRead].from_page(found)


@router.post("/users/import", responses=problem_responses(409))
async def import_users(body: UserImport, uow: UnitOfWork) -> ImportResult:
    """Create (or with ``update_existing``, upsert) many users in one transaction.

    409 when an email exists already (without ``update_existing``); 422 when two rows
    have the same email.
    """
    count = await services.import_users(uow, body.users, update_existing=body.update_existing)
    return ImportResult(count=count)


@router.get("/users/{user_id}", responses=problem_responses(404))
async def get_user(user_id: UserId, uow: UnitOfWork) -> UserRead:
    """One user."""
    return UserRead.model_validate(await services.get_user(uow, user_id))


@router.get("/users/{user_id}/profile", responses=problem_responses(404))
async def get_profile(user_id: UserId, uow: UnitOfWork) -> UserProfile:
    """A user with their orders and the order summary."""
    profile = await services.user_profile(uow, user_id)
    return UserProfile(
        **UserRead.model_validate(profile.user).model_dump(),
        orders=[OrderRead.model_validate(order) for order in profile.orders],
        summary=OrderSummaryRead.model_validate(profile.summary),
    )


@router.patch("/users/{user_id}", responses=problem_responses(404, 409))
async def update_user(user_id: UserId, body: UserUpdate, uow: UnitOfWork) -> UserRead:
    """Change the fields the body names (an explicit null changes nothing)."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return UserRead.model_validate(await services.update_user(uow, user_id, changes))


@router.delete(
    "/users/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(404),
)
async def delete_user(user_id: UserId, uow: UnitOfWork) -> None:
    """Delete a user (softly: their orders stay, an admin can restore the user)."""
    await services.delete_user(uow, user_id)


@router.post(
    "/users/{user_id}/orders",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(404, 422),
)
async def place_order(user_id: UserId, body: OrderCreate, orders: Orders) -> OrderRead:
    """Place an order; 404 for an unknown user, 422 when the shop refuses it.

    `OrderService.place_order` is ``@transactional``: the call is the transaction, so
    this route needs no unit of work.
    """
    return OrderRead.model_validate(await orders.place_order(user_id, body))


@router.get("/users/{user_id}/orders", responses=problem_responses(404, 422))
async def list_orders(
    user_id: UserId, page: Cursor, uow: UnitOfWork
) -> CursorPageResponse[OrderRead]:
    """A user's orders, newest first, a page at a time (keyset pagination).

    ``?cursor=`` takes a page's ``next_cursor``, ``?before=`` its ``previous_cursor``;
    a cursor the app did not make for this user's listing is a 422.
    """
    found = await services.list_orders(
        uow, user_id, limit=page.limit, cursor=page.after, before=page.before
    )
    return CursorPageResponse[OrderRead].from_page(found)


@router.get("/orders/{order_id}", responses=problem_responses(404))
async def get_order(order_id: OrderId, uow: UnitOfWork) -> OrderRead:
    """One order of the request's shop (another shop's is a 404)."""
    return OrderRead.model_validate(await services.get_order(uow, order_id))


@router.patch("/orders/{order_id}", responses=problem_responses(404, 409))
async def update_order(order_id: OrderId, body: OrderUpdate, uow: UnitOfWork) -> OrderRead:
    """Change an order at the ``version`` the client read.

    409 (``kind: "stale"``) when the order has another version now: nothing changes,
    and the client reads the order again before deciding.
    """
    changes = body.model_dump(exclude_unset=True, exclude_none=True, exclude={"version"})
    order = await services.update_order(uow, order_id, body.version, changes)
    return OrderRead.model_validate(order)


@admin.post("/users/{user_id}/restore", responses=problem_responses(403, 404))
async def restore_user(user_id: UserId, uow: UnitOfWork) -> UserRead:
    """Restore a deleted user (with their orders); 404 unless the user is deleted."""
    return UserRead.model_validate(await services.restore_user(uow, user_id))


@admin.delete(
    "/users/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(403, 404),
)
async def purge_user(user_id: UserId, uow: UnitOfWork) -> None:
    """Delete a user for good, deleted or not, with their orders in every shop."""
    await services.purge_user(uow, user_id)


@router.post(
    "/users-with-order", status_code=status.HTTP_201_CREATED, responses=problem_responses(409, 422)
)
async def create_user_with_order(
    body: UserWithOrderCreate, uow: UnitOfWork, orders: Orders
) -> UserWithOrderRead:
    """Create a user and a first order atomically: if the order fails, no user remains."""
    user, order = await services.create_user_with_order(uow, orders, body.user, body.order)
    return UserWithOrderRead(
        user=UserRead.model_validate(user), order=OrderRead.model_validate(order)
    )


# -- the application -------------------------------------------------------------------


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the shop's FastAPI application.

    Args:
        settings: Where the database is, the cursors' key and the admin token; read
            from the environment when omitted.

    Raises:
        SettingsError: the environment asks for production without a cursor secret.

    Example:
        ```python
        app = create_app(Settings(database_url="sqlite+aiosqlite:///test.db"))
        async with app.router.lifespan_context(app):  # what the server does at startup
            ...
        ```
    """
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Startup: one TransactionManager (engine and pool) for the whole process, and
        # the schema migrated to the newest revision. Shutdown: the pool is disposed.
        async with open_database(settings) as tm:
            app.state.tm = tm
            yield

    app = FastAPI(title="sqla_uow shop", lifespan=lifespan)
    app.state.settings = settings
    add_exception_handlers(app)
    app.add_exception_handler(OrderRejectedError, order_rejected)
    app.add_exception_handler(AdminAccessError, admin_access_denied)
    app.include_router(router)
    app.include_router(admin)
    return app


app = create_app()
"""The application that ``uvicorn shop.app:app --app-dir examples`` serves."""
