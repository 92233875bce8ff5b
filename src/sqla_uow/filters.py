"""Filters and orderings from request data: `FilterSet`.

A `FilterSet` subclass declares what clients may filter and sort a model by; its
instances come from a query string (`FilterSet.from_query`) or a JSON search body
(`FilterSet.from_json`), are validated and converted before any SQL exists, and are
passed to a repository's read methods like a SQL expression.

Example:
    ```python
    from sqla_uow.filters import FilterSet

    class OrderFilters(FilterSet[Order]):
        fields = {"status": ("eq", "in"), "price": ("gte", "lte"), "user__email": ("eq", "ilike")}
        order_by = ("created_at", "price", "id")

    filters = OrderFilters.from_query({"status__in": "paid,shipped", "order_by": "-price"})
    page = await orders.paginate(filters, limit=20, order_by=filters.ordering)
    ```
"""

from __future__ import annotations

from ._filterset import FilterParameter, FilterSet
from ._where import LOOKUPS as _LOOKUPS

__all__ = ["FilterParameter", "FilterSet", "LOOKUPS"]  # noqa: RUF022 - plainly sorted

LOOKUPS: tuple[str, ...] = _LOOKUPS
"""Every lookup a `FilterSet` field may allow (and the repositories' keyword filters take)."""
