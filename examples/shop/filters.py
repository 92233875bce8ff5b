"""What clients may filter and sort the shop's lists on: `FilterSet` declarations.

A `FilterSet` is an allow-list: a query parameter it does not declare, a lookup it does
not allow or a value that does not convert to the column's type is an
`InvalidFieldError` (a 422 in the app) before any SQL is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from sqla_uow.filters import FilterSet

from .models import User


class UserFilters(FilterSet[User]):
    """The filters of ``GET /users``: ``?name__istartswith=an&is_active=true&order_by=-name``.

    Example:
        ```python
        filters = UserFilters.from_query({"is_active": "true", "order_by": "-name"})
        page = await uow.users.paginate(filters, order_by=filters.ordering, limit=20)
        ```
    """

    fields: ClassVar[Mapping[str, Sequence[str]]] = {
        "email": ("eq", "icontains"),
        "name": ("eq", "in", "istartswith", "icontains"),
        "is_active": ("eq",),
        "created_at": ("gte", "lt"),
    }
    order_by = ("id", "name", "email", "created_at")
    default_order = ("id",)
