"""Python evaluation of the filters and orderings the real repository compiles to SQL.

Keyword filters go through the same ``compile_where`` as `AsyncRepository` (so they are
validated with the same errors) and the resulting SQL expressions are then evaluated
here against model instances, with SQL's three-valued logic: a comparison with NULL is
unknown, ``NOT unknown`` is unknown, and only rows whose condition is true match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy.sql import elements, operators

from sqla_uow._filterset import FilterSet
from sqla_uow._model import ModelMeta, mapped_key
from sqla_uow._ordering import order_items, parse_order_item
from sqla_uow._where import compile_where
from sqla_uow.exceptions import SqlaUowError

__all__ = [
    "Predicate",
    "UnsupportedExpressionError",
    "compile_order",
    "compile_predicate",
    "sort_instances",
]

Predicate = Callable[[Any], bool]
"""A test of one model instance."""

_Truth = Callable[[Any], "bool | None"]
"""SQL truth of a condition for one instance: True, False or None (unknown)."""


class UnsupportedExpressionError(SqlaUowError, NotImplementedError):
    """`InMemoryRepository` cannot evaluate a SQL expression in Python.

    It understands comparisons of one of the model's columns with a value (``==``,
    ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in_``, ``not_in``, ``between``, ``like``,
    ``ilike``, ``startswith``, ``endswith``, ``contains`` and their ``i`` forms, ``is_``,
    ``is_not``) combined with ``and_``, ``or_`` and ``~``, `FilterSet` instances without
    relationship paths, and ordering by the model's columns. Anything else (SQL
    functions, subqueries, comparisons between two columns, other models' columns, a
    FilterSet condition on a relationship path) raises this error: express the condition with
    keyword filters instead, or test that code against a real database.

    Example:
        ```python
        repo = InMemoryRepository(User)
        await repo.list(User.age >= 18)  # evaluated in Python
        await repo.list(age__gte=18)  # the same, as a keyword filter
        try:
            await repo.list(func.lower(User.name) == "ann")
        except UnsupportedExpressionError:
            await repo.list(name__ilike="ann")
        ```
    """


def _key_of(info: ModelMeta, expression: Any) -> str | None:
    """The attribute key of a writable column of the model that *expression* is, or None."""
    key = mapped_key(info.model, expression)
    return key if key in info.columns else None


def _unsupported(info: ModelMeta, expression: Any, *, what: str = "filter") -> Exception:
    if what == "order":
        return UnsupportedExpressionError(
            f"InMemoryRepository[{info.name}] cannot order by {str(expression)!r} in Python; "
            f"order by {info.name}'s columns instead (a name such as 'name' or '-name', "
            f"or {info.name}.name.desc())"
        )
    return UnsupportedExpressionError(
        f"InMemoryRepository[{info.name}] cannot evaluate the SQL expression "
        f"{str(expression)!r} in Python; it understands comparisons of a {info.name} column "
        "with a value joined by and_/or_/~. Use keyword filters instead "
        "(for example name__ilike='a%', age__gte=18, id__in=[1, 2])"
    )


def _like_regex(pattern: str, *, ignore_case: bool, escape: str | None = None) -> re.Pattern[str]:
    parts: list[str] = []
    escaped = False
    for char in pattern:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == escape:
            escaped = True
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


_COMPARISONS: dict[Any, Callable[[Any, Any], Any]] = {
    operators.eq: operators.eq,
    operators.ne: operators.ne,
    operators.gt: operators.gt,
    operators.ge: operators.ge,
    operators.lt: operators.lt,
    operators.le: operators.le,
}


# LIKE-based operators: (pattern before the value, pattern after it, case-insensitive).
_AFFIX_OPERATORS: dict[Any, tuple[str, str, bool]] = {
    operators.startswith_op: ("", "%", False),
    operators.istartswith_op: ("", "%", True),
    operators.endswith_op: ("%", "", False),
    operators.iendswith_op: ("%", "", True),
    operators.contains_op: ("%", "%", False),
    operators.icontains_op: ("%", "%", True),
}
_NEGATED_AFFIX_OPERATORS: dict[Any, Any] = {
    operators.not_startswith_op: operators.startswith_op,
    operators.not_istartswith_op: operators.istartswith_op,
    operators.not_endswith_op: operators.endswith_op,
    operators.not_iendswith_op: operators.iendswith_op,
    operators.not_contains_op: operators.contains_op,
    operators.not_icontains_op: operators.icontains_op,
}


def _value_truth(
    op: Any, value: Any, escape: str | None = None
) -> Callable[[Any], bool | None] | None:
    """SQL truth of ``column <op> value`` as a function of the column's value."""
    if op in _AFFIX_OPERATORS or op in _NEGATED_AFFIX_OPERATORS:
        negate = op in _NEGATED_AFFIX_OPERATORS
        before, after, ignore_case = _AFFIX_OPERATORS[_NEGATED_AFFIX_OPERATORS.get(op, op)]
        if value is None:
            return lambda v: None
        regex = _like_regex(f"{before}{value}{after}", ignore_case=ignore_case, escape=escape)
        return lambda v: None if v is None else (regex.fullmatch(str(v)) is not None) is not negate
    if op in (operators.between_op, operators.not_between_op):
        negate = op is operators.not_between_op
        low, high = value
        return lambda v: (
            None if v is None or low is None or high is None else (low <= v <= high) is not negate
        )
    if op in (operators.is_, operators.is_not):
        negate = op is operators.is_not
        return lambda v: (v is value or (v is not None and v == value)) is not negate
    if op in _COMPARISONS:
        compare = _COMPARISONS[op]
        return lambda v: None if v is None or value is None else bool(compare(v, value))
    if op in (operators.in_op, operators.not_in_op):
        negate = op is operators.not_in_op
        choices = list(value)
        has_null = any(item is None for item in choices)

        def member(v: Any) -> bool | None:
            if v is None:
                return None if choices else negate
            if any(item is not None and v == item for item in choices):
                return not negate
            return None if has_null else negate

        return member
    like_ops = (
        operators.like_op,
        operators.not_like_op,
        operators.ilike_op,
        operators.not_ilike_op,
    )
    if op in like_ops:
        negate = op in (operators.not_like_op, operators.not_ilike_op)
        if value is None:
            return lambda v: None
        regex = _like_regex(
            str(value),
            ignore_case=op in (operators.ilike_op, operators.not_ilike_op),
            escape=escape,
        )
        return lambda v: None if v is None else (regex.fullmatch(str(v)) is not None) is not negate
    return None


_NO_VALUE = object()


def _literal(element: Any) -> Any:
    if isinstance(element, elements.Grouping):
        inner: Any = cast(Any, element).element
        return _literal(inner)
    if isinstance(element, elements.BindParameter):
        return cast(Any, element).effective_value
    if isinstance(element, elements.Null):
        return None
    if isinstance(element, elements.True_):
        return True
    if isinstance(element, elements.False_):
        return False
    if isinstance(element, (elements.ClauseList, elements.ExpressionClauseList)):
        values = [_literal(item) for item in cast(Any, element).clauses]
        return _NO_VALUE if _NO_VALUE in values else values
    return _NO_VALUE


def _truth(info: ModelMeta, expression: Any) -> _Truth:
    if isinstance(expression, elements.Grouping):
        grouped: Any = cast(Any, expression).element
        return _truth(info, grouped)
    if isinstance(expression, (elements.True_, elements.False_)):
        constant = isinstance(expression, elements.True_)
        return lambda obj: constant
    if isinstance(expression, elements.BooleanClauseList):
        parts = [_truth(info, clause) for clause in expression.clauses]
        if expression.operator is operators.and_:
            return lambda obj: _and(part(obj) for part in parts)
        if expression.operator is operators.or_:
            return lambda obj: _or(part(obj) for part in parts)
    elif isinstance(expression, elements.UnaryExpression) and expression.operator is operators.inv:
        inner = _truth(info, expression.element)
        return lambda obj: _not(inner(obj))
    elif isinstance(expression, elements.BinaryExpression):
        key = _key_of(info, expression.left)
        value = _literal(expression.right)
        if key is not None and value is not _NO_VALUE:
            test = _value_truth(expression.operator, value, expression.modifiers.get("escape"))
            if test is not None:
                field: str = key
                return lambda obj: test(getattr(obj, field))
    else:
        key = _key_of(info, expression)
        if key is not None:
            attr: str = key
            return lambda obj: None if getattr(obj, attr) is None else bool(getattr(obj, attr))
    raise _unsupported(info, expression)


def _and(values: Iterable[bool | None]) -> bool | None:
    result: bool | None = True
    for value in values:
        if value is False:
            return False
        if value is None:
            result = None
    return result


def _or(values: Iterable[bool | None]) -> bool | None:
    result: bool | None = False
    for value in values:
        if value is True:
            return True
        if value is None:
            result = None
    return result


def _not(value: bool | None) -> bool | None:
    return None if value is None else not value


def compile_predicate(
    info: ModelMeta, where: Sequence[Any], filters: Mapping[str, Any]
) -> Predicate:
    """One predicate for positional expressions and keyword filters, all ANDed.

    Validation is ``compile_where``'s, so the errors are the real repository's.

    Raises:
        InvalidFieldError: an unknown field or lookup, or a value the lookup cannot take.
        UnsupportedExpressionError: a positional expression this module cannot evaluate.
    """
    for expression in where:
        if isinstance(expression, FilterSet) and expression.uses_relationships:
            raise UnsupportedExpressionError(
                f"InMemoryRepository[{info.name}] cannot follow the relationship paths of "
                f"{expression!r}: it holds one model's rows only. Test filters across "
                "relationships against a real database"
            )
    criteria = compile_where(info.model, where, filters)
    parts = [_truth(info, criterion) for criterion in criteria]
    return lambda obj: _and(part(obj) for part in parts) is True


def compile_order(info: ModelMeta, order_by: Any) -> list[tuple[str, bool]]:
    """``[(field, descending), ...]`` for ``order_by`` (one item or a sequence of them).

    Raises:
        InvalidFieldError: an unknown field name or an item of another type.
        UnsupportedExpressionError: an expression that is not one of the model's columns.
    """
    order: list[tuple[str, bool]] = []
    for item in order_items(info.model, order_by):
        _, descending, key = parse_order_item(info.model, item)
        if key is None or key not in info.columns:
            raise _unsupported(info, item, what="order")
        order.append((key, descending))
    return order


def sort_instances(objs: Iterable[Any], order: Sequence[tuple[str, bool]]) -> list[Any]:
    """Sort *objs* stably by *order*; NULL sorts as the greatest value.

    NULLs come last ascending and first descending, as `compile_order_by` makes every
    database sort them.
    """
    result = list(objs)
    for field, descending in reversed(order):
        result.sort(key=_null_last_key(field), reverse=descending)
    return result


def _null_last_key(field: str) -> Callable[[Any], tuple[bool, Any]]:
    def key(obj: Any) -> tuple[bool, Any]:
        value = getattr(obj, field)
        return (value is None, value)

    return key
