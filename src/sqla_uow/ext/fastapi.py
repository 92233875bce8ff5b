"""FastAPI integration: error answers, a per-request unit of work, filter and page parameters.

Install it with ``pip install "sqla-uow[fastapi]"``.

- `add_exception_handlers` turns sqla_uow's exceptions into RFC 9457
  ``application/problem+json`` answers: `NotFoundError` 404, `ConflictError` 409,
  `InvalidFieldError` and `InvalidCursorError` 422, and keeps FastAPI's own request
  validation errors a 422 even when the input cannot be written back as JSON.
- `unit_of_work` is a dependency that opens a unit of work for the request and commits
  it when the route function returns, before the response is sent: a commit that fails
  is an error answer, never a 200 for lost work.
- `filter_params`, `offset_params` and `cursor_params` are dependencies for a
  `FilterSet` and for pages; `PageResponse` and `CursorPageResponse` are their response
  models.

Example:
    ```python
    from typing import Annotated
    from fastapi import FastAPI
    from sqla_uow.ext.fastapi import (
        OffsetParams, PageResponse, add_exception_handlers, filter_params, offset_params,
        unit_of_work,
    )

    app = FastAPI()
    add_exception_handlers(app)
    UnitOfWork = Annotated[ShopUnitOfWork, unit_of_work(ShopUnitOfWork, tm)]

    @app.get("/orders")
    async def list_orders(
        uow: UnitOfWork,
        filters: Annotated[OrderFilters, filter_params(OrderFilters)],
        page: Annotated[OffsetParams, offset_params()],
    ) -> PageResponse[OrderRead]:
        found = await uow.orders.paginate(
            filters, limit=page.limit, offset=page.offset, order_by=filters.ordering
        )
        return PageResponse[OrderRead].from_page(found)
    ```
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, WithJsonSchema
from starlette.applications import Starlette

from sqla_uow import exceptions
from sqla_uow._filters import INT64_MAX
from sqla_uow._filterset import FilterSet
from sqla_uow._pagination import CursorPage, Page
from sqla_uow._transactions import TransactionManager
from sqla_uow._uow import AbstractUnitOfWork

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Self
    else:
        from typing_extensions import Self

__all__ = [
    "CursorPageResponse",
    "CursorParams",
    "OffsetParams",
    "PageResponse",
    "Problem",
    "ProblemResponse",
    "add_exception_handlers",
    "cursor_params",
    "filter_params",
    "offset_params",
    "problem_responses",
    "unit_of_work",
]

_logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
"""The item model of a page response."""

_UoWT = TypeVar("_UoWT", bound=AbstractUnitOfWork)
_FilterSetT = TypeVar("_FilterSetT", bound=FilterSet[Any])

# -- problem details ---------------------------------------------------------------------


class ProblemResponse(JSONResponse):
    """An RFC 9457 ``application/problem+json`` response.

    The body is written as ASCII JSON: text that is not valid Unicode (a lone surrogate
    a client sent) is escaped instead of failing the response.

    Example:
        ```python
        return ProblemResponse({"type": "about:blank", "title": "Gone", "status": 410}, 410)
        ```
    """

    media_type = "application/problem+json"

    def render(self, content: Any) -> bytes:
        """The body: *content* as compact ASCII JSON."""
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=str
        ).encode("ascii")


class Problem(BaseModel):
    """The body of an error answer (RFC 9457 problem details), for the OpenAPI schema.

    ``code`` names the kind of problem (``not_found``, ``conflict``, ``invalid_field``,
    ``invalid_cursor``, ``validation``, ...). The other optional members appear with the
    problems that have them.

    Example:
        ```python
        @app.get("/users/{user_id}", responses=problem_responses(404))
        async def get_user(user_id: int) -> UserRead: ...
        ```
    """

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    code: str
    kind: str | None = None
    """`ConflictError.kind` (409)."""
    constraint: str | None = None
    """`ConflictError.constraint` (409), when the database names it."""
    columns: list[str] | None = None
    """`ConflictError.columns` (409), when the database names them."""
    field: str | None = None
    """The parameter that was refused (422)."""
    choices: list[str] | None = None
    """What the parameter could have been (422)."""
    errors: list[dict[str, Any]] | None = None
    """FastAPI's validation errors, without the input (422)."""


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: each status code documented with the `Problem` body.

    Example:
        ```python
        @app.delete("/users/{user_id}", responses=problem_responses(404, 409))
        async def delete_user(user_id: int) -> None: ...
        ```
    """
    return {code: {"model": Problem, "content": {"application/problem+json": {}}} for code in codes}


def _problem(status: int, code: str, detail: str | None, **members: Any) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
    }
    if detail is not None:
        body["detail"] = detail
    body.update({key: value for key, value in members.items() if value is not None})
    return ProblemResponse(body, status_code=status)


async def _not_found(request: Request, exc: Exception) -> ProblemResponse:
    return _problem(404, "not_found", str(exc))


async def _conflict(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, exceptions.ConflictError)
    # The message of a ConflictError may quote the driver; the answer never does.
    subject = f" on {', '.join(exc.columns)}" if exc.columns else ""
    detail = f"the request breaks a {exc.kind.replace('_', ' ')} rule{subject}"
    if exc.kind == "stale":
        detail = "the row was changed by someone else since it was read; read it again"
    return _problem(
        409,
        "conflict",
        detail,
        kind=exc.kind,
        constraint=exc.constraint,
        columns=list(exc.columns),
    )


async def _lock_not_available(request: Request, exc: Exception) -> ProblemResponse:
    return _problem(409, "lock_not_available", "the rows are locked by another transaction")


async def _timeout(request: Request, exc: Exception) -> ProblemResponse:
    return _problem(503, "transaction_timeout", "the transaction took too long")


async def _invalid_field(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, exceptions.InvalidFieldError)
    code = "invalid_cursor" if isinstance(exc, exceptions.InvalidCursorError) else "invalid_field"
    return _problem(422, code, str(exc), field=exc.field, choices=list(exc.choices))


async def _transaction_error(request: Request, exc: Exception) -> ProblemResponse:
    _logger.error("transaction failed: %s %s", request.method, request.url.path, exc_info=exc)
    return _problem(500, "transaction_failed", "the transaction was rolled back")


async def _request_validation(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [item if isinstance(item, int) else str(item) for item in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors()
    ]
    return _problem(422, "validation", "the request is not valid", errors=errors)


def add_exception_handlers(app: Starlette) -> None:
    """Answer sqla_uow's exceptions (and request validation errors) with problem details.

    | exception | status | ``code`` |
    |---|---|---|
    | `NotFoundError` | 404 | ``not_found`` |
    | `ConflictError` | 409 | ``conflict`` (with ``kind``, ``constraint``, ``columns``) |
    | `LockNotAvailableError` | 409 | ``lock_not_available`` |
    | `InvalidFieldError` | 422 | ``invalid_field`` |
    | `InvalidCursorError` | 422 | ``invalid_cursor`` |
    | FastAPI's ``RequestValidationError`` | 422 | ``validation`` |
    | `TransactionTimeoutError` | 503 | ``transaction_timeout`` |
    | `TransactionError` (`RollbackOnlyError`, ...) | 500 | ``transaction_failed`` |

    Bodies never carry a driver message, SQL or the client's input: a conflict says
    which kind of rule and which columns, a validation error where (``loc``) and why.
    A `TransactionError` is a bug in the server (work that was not committed, such as a
    swallowed error that left the transaction rollback-only): it is logged with its
    traceback on the ``sqla_uow.ext.fastapi`` logger and answered 500.

    Example:
        ```python
        app = FastAPI()
        add_exception_handlers(app)
        ```
    """
    handlers: list[tuple[type[Exception], Callable[..., Awaitable[ProblemResponse]]]] = [
        (exceptions.NotFoundError, _not_found),
        (exceptions.ConflictError, _conflict),
        (exceptions.InvalidFieldError, _invalid_field),
        (exceptions.TransactionError, _transaction_error),
        (exceptions.LockNotAvailableError, _lock_not_available),
        (exceptions.TransactionTimeoutError, _timeout),
        (RequestValidationError, _request_validation),
    ]
    for exc_class, handler in handlers:
        app.add_exception_handler(exc_class, handler)


# -- the unit of work of a request -------------------------------------------------------


def _signature(func: Callable[..., Any], parameters: Sequence[inspect.Parameter]) -> None:
    # The dependencies below are made at run time: their parameters (what FastAPI reads
    # to inject and document them) are spelled out rather than annotated in source.
    func.__signature__ = inspect.Signature(list(parameters))  # type: ignore[attr-defined]


def unit_of_work(
    uow_class: Callable[[TransactionManager], _UoWT],
    manager: TransactionManager | Callable[..., TransactionManager | Awaitable[TransactionManager]],
) -> Any:
    """A dependency that gives each request an open unit of work, committed before the answer.

    The unit of work is entered when the request's dependencies are solved and exited
    when the route function returns, before the response is built and sent (FastAPI's
    ``Depends(scope="function")``). A clean return commits; an exception rolls back.
    A commit that fails (a deferred constraint, a serialization failure) raises in the
    request, so the client gets the error answer (409 with `add_exception_handlers`),
    never a 200 for work that was lost.

    Args:
        uow_class: The unit-of-work class (or any callable that takes the manager).
        manager: The `TransactionManager`, or a dependency that returns it (such as a
            function reading ``request.app.state``).

    Returns:
        A ``Depends`` marker: use it in ``Annotated[ShopUnitOfWork, ...]``.

    Example:
        ```python
        def transaction_manager(request: Request) -> TransactionManager:
            return request.app.state.tm

        UnitOfWork = Annotated[ShopUnitOfWork, unit_of_work(ShopUnitOfWork, transaction_manager)]

        @app.post("/users")
        async def create_user(body: UserIn, uow: UnitOfWork) -> UserOut:
            return UserOut.model_validate(await uow.users.create(body))
        ```
    """
    if isinstance(manager, TransactionManager):
        tm = manager

        def fixed_manager() -> TransactionManager:
            return tm

        provider: Callable[..., Any] = fixed_manager
    else:
        provider = manager

    async def dependency(tm: TransactionManager) -> AsyncIterator[_UoWT]:
        async with uow_class(tm) as uow:
            yield uow

    _signature(
        dependency,
        [
            inspect.Parameter(
                "tm",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=Annotated[TransactionManager, Depends(provider)],
            )
        ],
    )
    return Depends(dependency, scope="function")


# -- filters -----------------------------------------------------------------------------


def _route_query_names(request: Request) -> frozenset[str] | None:
    """The query parameters the request's route declares (all its dependencies included)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if route is None or dependant is None:
        return None
    found: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        found.update(param.alias for param in current.query_params)
        pending.extend(current.dependencies)
    return frozenset(found)


def filter_params(filterset: type[_FilterSetT]) -> Any:
    """A dependency that builds *filterset* from the request's query string.

    Every declared parameter (``status``, ``price__gte``, ...), ``order_by`` and
    ``filter`` (the JSON form, for OR groups) appears in the OpenAPI schema with its
    type and lookup. A query parameter that neither the filter set nor the route
    declares is refused (422), so a misspelt filter never silently lists everything.

    Returns:
        A ``Depends`` marker: use it in ``Annotated[OrderFilters, ...]``.

    Example:
        ```python
        @app.get("/orders")
        async def list_orders(
            uow: UnitOfWork, filters: Annotated[OrderFilters, filter_params(OrderFilters)]
        ) -> list[OrderRead]:
            found = await uow.orders.list(filters, order_by=filters.ordering)
            return [OrderRead.model_validate(order) for order in found]
        ```
    """
    parameters = filterset.parameters()
    own = {parameter.name for parameter in parameters} | {"order_by", "filter"}

    def dependency(request: Request, **_: Any) -> _FilterSetT:
        route_names = _route_query_names(request)
        ignore = (route_names - own) if route_names is not None else ()
        return filterset.from_query(request.query_params, ignore=ignore)

    signature = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)
    ]
    signature.extend(
        _query_parameter(f"p{index}", p.name, p.json_schema, p.description)
        for index, p in enumerate(parameters)
    )
    sort_fields = ", ".join(filterset.order_by) or "none"
    signature.append(
        _query_parameter(
            "order_by",
            "order_by",
            {"type": "string"},
            f"comma-separated sort fields, - for descending; fields: {sort_fields}",
        )
    )
    signature.append(
        _query_parameter(
            "filter",
            "filter",
            {"type": "string"},
            'the JSON form, for or/and groups: {"or": [{"status": "paid"}, {"price__gte": 100}]}',
        )
    )
    _signature(dependency, signature)
    return Depends(dependency)


def _query_parameter(
    name: str, alias: str, schema: Mapping[str, Any], description: str
) -> inspect.Parameter:
    # The value is read from request.query_params by FilterSet.from_query (repeated keys
    # included); the declared parameter is what the OpenAPI schema shows.
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            WithJsonSchema(dict(schema)),
            Query(alias=alias, title=alias, description=description),
        ],
    )


# -- pages -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OffsetParams:
    """The ``limit`` and ``offset`` of an offset-paginated request (`offset_params`).

    Example:
        ```python
        page = await uow.users.paginate(limit=params.limit, offset=params.offset)
        ```
    """

    limit: int
    offset: int


@dataclasses.dataclass(frozen=True)
class CursorParams:
    """The ``limit`` and cursors of a keyset-paginated request (`cursor_params`).

    Attributes:
        limit: The page size.
        after: The ``next_cursor`` of the previous page (query parameter ``cursor``).
        before: A ``previous_cursor``, to page backwards (query parameter ``before``).

    Example:
        ```python
        page = await uow.orders.paginate_cursor(
            limit=params.limit, after=params.after, before=params.before, order_by="-id"
        )
        ```
    """

    limit: int
    after: str | None
    before: str | None


def offset_params(*, default_limit: int = 20, max_limit: int = 100) -> Any:
    """A dependency for ``?limit=`` (1 to *max_limit*) and ``?offset=`` (0 or more).

    Out-of-range values are FastAPI validation errors (422).

    Returns:
        A ``Depends`` marker giving an `OffsetParams`.

    Example:
        ```python
        Pages = Annotated[OffsetParams, offset_params(max_limit=50)]
        ```
    """

    def dependency(limit: int, offset: int) -> OffsetParams:
        return OffsetParams(limit=limit, offset=offset)

    _signature(
        dependency,
        [
            inspect.Parameter(
                "limit",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=default_limit,
                annotation=Annotated[int, Query(ge=1, le=max_limit, description="page size")],
            ),
            inspect.Parameter(
                "offset",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=0,
                annotation=Annotated[int, Query(ge=0, le=INT64_MAX, description="rows to skip")],
            ),
        ],
    )
    return Depends(dependency)


def cursor_params(*, default_limit: int = 20, max_limit: int = 100) -> Any:
    """A dependency for ``?limit=``, ``?cursor=`` (a ``next_cursor``) and ``?before=``.

    A malformed or foreign cursor is an `InvalidCursorError` when the page is read (422
    with `add_exception_handlers`).

    Returns:
        A ``Depends`` marker giving a `CursorParams`.

    Example:
        ```python
        Cursor = Annotated[CursorParams, cursor_params()]
        ```
    """

    def dependency(limit: int, cursor: str | None, before: str | None) -> CursorParams:
        return CursorParams(limit=limit, after=cursor, before=before)

    cursor_query = Query(max_length=4096, description="next_cursor of the previous page")
    before_query = Query(max_length=4096, description="previous_cursor, to page backwards")
    _signature(
        dependency,
        [
            inspect.Parameter(
                "limit",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=default_limit,
                annotation=Annotated[int, Query(ge=1, le=max_limit, description="page size")],
            ),
            inspect.Parameter(
                "cursor",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=None,
                annotation=Annotated[str | None, cursor_query],
            ),
            inspect.Parameter(
                "before",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=None,
                annotation=Annotated[str | None, before_query],
            ),
        ],
    )
    return Depends(dependency)


class PageResponse(BaseModel, Generic[ItemT]):
    """A page of an offset-paginated list, as a response model.

    Example:
        ```python
        return PageResponse[UserRead].from_page(await uow.users.paginate(limit=20))
        ```
    """

    items: list[ItemT]
    total: int
    limit: int
    offset: int
    has_next: bool
    pages: int

    @classmethod
    def from_page(cls, page: Page[Any]) -> Self:
        """The response for a repository's `Page`; items validated from their attributes.

        Example:
            ```python
            PageResponse[UserRead].from_page(page)
            ```
        """
        return cls.model_validate(page, from_attributes=True)


class CursorPageResponse(BaseModel, Generic[ItemT]):
    """A page of a keyset-paginated list, as a response model, with its cursors.

    Example:
        ```python
        return CursorPageResponse[OrderRead].from_page(page)
        ```
    """

    items: list[ItemT]
    limit: int
    next_cursor: str | None
    previous_cursor: str | None
    has_next: bool

    @classmethod
    def from_page(cls, page: CursorPage[Any]) -> Self:
        """The response for a repository's `CursorPage`; items validated from their attributes.

        Example:
            ```python
            CursorPageResponse[OrderRead].from_page(page)
            ```
        """
        return cls.model_validate(page, from_attributes=True)
