"""The shop's HTTP API (FastAPI).

Serve it with ``uvicorn shop.app:app --app-dir examples`` (``DATABASE_URL`` picks the
database; the default is ``shop.db``, a SQLite file in the working directory).

Three things to notice:

- one `TransactionManager`, made in the lifespan and disposed at shutdown;
- each request gets a fresh, not yet opened `ShopUnitOfWork` from a dependency: the
  service opens it, so the transaction ends (and commits) before the response is
  built, never after it was sent;
- exceptions become HTTP answers in one place, `ERROR_STATUS`: no route catches
  `NotFoundError` or `ConflictError` itself;
- a request that fails validation is a 422 whatever it holds: `validation_error`
  answers even for input that cannot be echoed as JSON (``1e400``, a lone surrogate).

Settings come from the environment (`shop.settings`): ``SHOP_ENV=production`` requires
``SHOP_CURSOR_SECRET``, the key that makes pagination cursors unforgeable.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from sqla_uow import ConflictError, InvalidFieldError, NotFoundError, TransactionManager

from . import services
from .database import open_database
from .models import INT32_MAX
from .schemas import (
    CursorPageRead,
    ErrorBody,
    ImportResult,
    OffsetPage,
    OrderCreate,
    OrderRead,
    OrderSummaryRead,
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


def unit_of_work(tm: Annotated[TransactionManager, Depends(transaction_manager)]) -> ShopUnitOfWork:
    """A new unit of work for this request; the service it is passed to opens it."""
    return ShopUnitOfWork(tm)


def order_service(request: Request) -> OrderService:
    """The order service, bound to the application's `TransactionManager`."""
    orders: OrderService = request.app.state.orders
    return orders


UnitOfWork = Annotated[ShopUnitOfWork, Depends(unit_of_work)]
Orders = Annotated[OrderService, Depends(order_service)]

# -- parameters ------------------------------------------------------------------------

# The ids are INTEGER columns, 32-bit on PostgreSQL: a larger number in a URL must be a
# 422 from validation, not a database error (a 500) when it is bound to the query. The
# same bound keeps ?offset= within what every database accepts.
UserId = Annotated[int, Path(ge=1, le=INT32_MAX)]
Limit = Annotated[int, Query(ge=1, le=100)]
Offset = Annotated[int, Query(ge=0, le=INT32_MAX)]

# -- errors: the one place where exceptions become HTTP answers -------------------------

ERROR_STATUS: dict[type[Exception], int] = {
    NotFoundError: status.HTTP_404_NOT_FOUND,
    ConflictError: status.HTTP_409_CONFLICT,
    # InvalidCursorError is an InvalidFieldError: a bad ?cursor= or ?order_by= is a 400.
    InvalidFieldError: status.HTTP_400_BAD_REQUEST,
    OrderRejectedError: 422,  # well-formed, but the shop refuses it
}


class ConflictBody(ErrorBody):
    """A 409 answer: which kind of rule the request broke, on which columns."""

    kind: str
    columns: list[str]


class InvalidFieldBody(ErrorBody):
    """A 400 answer: which parameter was wrong and what it could have been."""

    field: str | None
    choices: list[str]


def json_safe(value: Any) -> Any:
    """*value* with whatever JSON cannot carry made printable.

    A lone surrogate (``"\\ud800"`` in a request) has no UTF-8 form: it is escaped
    (``\\ud800``). Infinity and NaN (``1e400`` parses as infinity) are not JSON
    numbers: they become strings. Without this, answering with the input would fail,
    and the client would get a 500 instead of the 422 its input deserves.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {json_safe(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Answer a `RequestValidationError` with 422 and the errors, as FastAPI does.

    FastAPI's own handler echoes each error's input as is, and fails (a 500) on input
    that JSON cannot carry; this one passes the errors through `json_safe` first.
    """
    errors = json_safe(jsonable_encoder(cast(RequestValidationError, exc).errors()))
    return JSONResponse(status_code=422, content={"detail": errors})


def not_found_detail(exc: NotFoundError) -> str:
    """One wording for every 404 (the library's message differs from the services')."""
    if exc.model is None or exc.ident is None:
        return str(exc)
    return f"no {exc.model.__name__.lower()} with id {exc.ident!r}"


async def error_response(request: Request, exc: Exception) -> JSONResponse:
    """Answer one of the `ERROR_STATUS` exceptions with its status and a JSON body."""
    body: ErrorBody
    if isinstance(exc, ConflictError):
        body = ConflictBody(detail=str(exc), kind=exc.kind, columns=list(exc.columns))
    elif isinstance(exc, InvalidFieldError):
        body = InvalidFieldBody(detail=str(exc), field=exc.field, choices=list(exc.choices))
    elif isinstance(exc, NotFoundError):
        body = ErrorBody(detail=not_found_detail(exc))
    else:
        body = ErrorBody(detail=str(exc))
    code = next(code for cls, code in ERROR_STATUS.items() if isinstance(exc, cls))
    return JSONResponse(status_code=code, content=json_safe(body.model_dump()))


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the error answers a route can give."""
    models: dict[int, type[BaseModel]] = {409: ConflictBody, 400: InvalidFieldBody}
    return {code: {"model": models.get(code, ErrorBody)} for code in codes}


# -- routes ----------------------------------------------------------------------------

router = APIRouter()


@router.post("/users", status_code=status.HTTP_201_CREATED, responses=_errors(409))
async def create_user(body: UserCreate, uow: UnitOfWork) -> UserRead:
    """Register a user; 409 when the email address is taken."""
    return UserRead.model_validate(await services.register_user(uow, body))


@router.get("/users", responses=_errors(400))
async def list_users(
    uow: UnitOfWork,
    limit: Limit = 20,
    offset: Offset = 0,
    order_by: Annotated[str, Query(description='a column; "-name" sorts descending')] = "id",
) -> OffsetPage[UserRead]:
    """A page of users and the total count; an unknown ``order_by`` column is a 400."""
    page = await services.list_users(uow, limit=limit, offset=offset, order_by=order_by)
    return OffsetPage[UserRead](
        items=[UserRead.model_validate(user) for user in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post("/users/import", responses=_errors(409))
async def import_users(body: UserImport, uow: UnitOfWork) -> ImportResult:
    """Create (or with ``update_existing``, upsert) many users in one transaction.

    409 when an email exists already (without ``update_existing``); 422 when two rows
    have the same email.
    """
    count = await services.import_users(uow, body.users, update_existing=body.update_existing)
    return ImportResult(count=count)


@router.get("/users/{user_id}", responses=_errors(404))
async def get_user(user_id: UserId, uow: UnitOfWork) -> UserRead:
    """One user."""
    return UserRead.model_validate(await services.get_user(uow, user_id))


@router.get("/users/{user_id}/profile", responses=_errors(404))
async def get_profile(user_id: UserId, uow: UnitOfWork) -> UserProfile:
    """A user with their orders and the order summary."""
    profile = await services.user_profile(uow, user_id)
    return UserProfile(
        **UserRead.model_validate(profile.user).model_dump(),
        orders=[OrderRead.model_validate(order) for order in profile.orders],
        summary=OrderSummaryRead.model_validate(profile.summary),
    )


@router.patch("/users/{user_id}", responses=_errors(404, 409))
async def update_user(user_id: UserId, body: UserUpdate, uow: UnitOfWork) -> UserRead:
    """Change the fields the body names (an explicit null changes nothing)."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return UserRead.model_validate(await services.update_user(uow, user_id, changes))


@router.delete(
    "/users/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_errors(404),
)
async def delete_user(user_id: UserId, uow: UnitOfWork) -> None:
    """Delete a user and their orders."""
    await services.delete_user(uow, user_id)


@router.post(
    "/users/{user_id}/orders", status_code=status.HTTP_201_CREATED, responses=_errors(404, 422)
)
async def place_order(user_id: UserId, body: OrderCreate, orders: Orders) -> OrderRead:
    """Place an order; 404 for an unknown user, 422 when the shop refuses it."""
    return OrderRead.model_validate(await orders.place_order(user_id, body))


@router.get("/users/{user_id}/orders", responses=_errors(400, 404))
async def list_orders(
    user_id: UserId,
    uow: UnitOfWork,
    limit: Limit = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> CursorPageRead[OrderRead]:
    """A user's orders, newest first, a page at a time (keyset pagination)."""
    page = await services.list_orders(uow, user_id, limit=limit, cursor=cursor)
    return CursorPageRead[OrderRead](
        items=[OrderRead.model_validate(order) for order in page.items],
        next_cursor=page.next_cursor,
    )


@router.post("/users-with-order", status_code=status.HTTP_201_CREATED, responses=_errors(409, 422))
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
        settings: Where the database is and the cursors' key; read from the
            environment when omitted.

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
            app.state.orders = OrderService(tm)
            yield

    app = FastAPI(title="sqla_uow shop", lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, validation_error)
    for exc_class in ERROR_STATUS:
        app.add_exception_handler(exc_class, error_response)
    app.include_router(router)
    return app


app = create_app()
"""The application that ``uvicorn shop.app:app --app-dir examples`` serves."""
