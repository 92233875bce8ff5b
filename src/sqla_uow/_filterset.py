"""`FilterSet`: a declared allow-list of filters and orderings, built from request data.

A subclass declares which fields (and relationship paths) clients may filter on, with
which lookups, and which fields they may sort by. The declaration is checked against
the mapper when the class is created. An instance is built from a query string
(`FilterSet.from_query`) or a JSON body (`FilterSet.from_json`): every parameter is
checked against the declaration and every value converted to its column's type before
any SQL exists. The instance is a WHERE condition (it has ``__clause_element__``), so
the repositories' read methods take it like any SQL expression.

Relationship paths compile to ``EXISTS`` (``has()`` for a many-to-one step, ``any()``
for a one-to-many or many-to-many step): a filter never multiplies the rows of the
model it lists.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeGuard, cast, get_args, get_origin

from sqlalchemy import ColumnElement, and_, or_, true
from sqlalchemy.orm import RelationshipProperty

from ._convert import BOOLEAN, TEXT, ConversionError, Converter, converter_for
from ._model import model_meta
from ._typing import ModelT
from ._where import LOOKUPS, compile_where
from .exceptions import InvalidFieldError

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Self
    else:
        from typing_extensions import Self

__all__ = ["FilterParameter", "FilterSet"]

_LIST_LOOKUPS = frozenset({"in", "not_in"})
_TEXT_LOOKUPS = frozenset(
    {"like", "ilike", "startswith", "istartswith", "endswith", "contains", "icontains"}
)
_NULLABLE_LOOKUPS = frozenset({"eq", "ne"})  # JSON null means IS NULL / IS NOT NULL
_GROUPS = ("and", "or")
_MAX_PATH = 3
"""The most relationship steps a declared path may take (``a__b__c__column``)."""
_MAX_FILTER_TEXT = 10_000
"""The longest JSON text the query string's ``filter`` parameter may carry."""


@dataclasses.dataclass(frozen=True)
class FilterParameter:
    """One query parameter a `FilterSet` accepts, as `FilterSet.parameters` lists it.

    Attributes:
        name: The parameter, such as ``"price__gte"`` (``"status"`` for ``eq``).
        field: The declared field or path, such as ``"user__email"``.
        lookup: The lookup, such as ``"gte"``.
        type_name: What one value is: ``"integer"``, ``"decimal"``, ``"date-time"``, ...
        json_schema: The JSON schema of the parameter's query-string value.
        description: A sentence for API documentation.

    Example:
        ```python
        [p.name for p in OrderFilters.parameters()]  # ["status", "status__in", ...]
        ```
    """

    name: str
    field: str
    lookup: str
    type_name: str
    json_schema: dict[str, Any]
    description: str


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    path: tuple[RelationshipProperty[Any], ...]
    target: type[Any]
    key: str
    lookups: tuple[str, ...]
    converter: Converter


@dataclasses.dataclass(frozen=True)
class _Condition:
    field: _Field
    lookup: str
    value: Any

    def __repr__(self) -> str:
        return f"{self.field.name}__{self.lookup}={self.value!r}"

    def compile(self) -> ColumnElement[bool]:
        spec = self.field
        name = f"{spec.key}__{self.lookup}"
        (criterion,) = compile_where(spec.target, (), {name: self.value})
        for step in reversed(spec.path):
            attr: Any = step.class_attribute
            criterion = attr.any(criterion) if step.uselist else attr.has(criterion)
        return criterion


@dataclasses.dataclass(frozen=True)
class _Group:
    operator: str
    children: tuple[_Condition | _Group, ...]

    def __repr__(self) -> str:
        return f"{self.operator}({', '.join(map(repr, self.children))})"

    def compile(self) -> ColumnElement[bool]:
        parts = [child.compile() for child in self.children]
        return or_(*parts) if self.operator == "or" else and_(*parts)


def _is_filterset_class(value: object) -> TypeGuard[type[FilterSet[Any]]]:
    return isinstance(value, type) and issubclass(value, FilterSet)


def _is_list(value: object) -> TypeGuard[list[object]]:
    return isinstance(value, list)


def _is_str_list(value: object) -> TypeGuard[list[str]]:
    return _is_list(value) and all(isinstance(item, str) for item in value)


class _Budget:
    """Counts the conditions and groups one request builds, against the class's bound."""

    def __init__(self, owner: type[FilterSet[Any]]) -> None:
        self.owner = owner
        self.left = owner.max_conditions

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            owner = self.owner
            raise InvalidFieldError(
                f"too many filter conditions for {owner.__name__}: at most "
                f"{owner.max_conditions} (groups included)",
                model=owner.model,
                field="filter",
            )


class FilterSet(Generic[ModelT]):
    """The filters and orderings clients may apply to a model, declared once.

    Subclass it with the model as type argument and declare ``fields`` (each field or
    relationship path with the lookups it allows) and ``order_by`` (the fields clients
    may sort by; ``default_order`` is the ordering when a client gives none). Build
    instances with `from_query` or `from_json`; pass an instance to a repository's read
    method like a SQL expression, and its `ordering` as ``order_by=``. The declaration
    is checked against the mapper when the subclass is created (`InvalidFieldError`
    for an unknown column, relationship or lookup).

    Lookups: ``eq`` (the bare name: ``?status=paid``), ``ne``, ``in`` and ``not_in``
    (a list; comma-separated or repeated in a query string), ``gt``, ``gte``, ``lt``,
    ``lte``, ``between`` (two values, inclusive), ``like`` and ``ilike`` (the client's
    pattern), ``startswith``, ``istartswith``, ``endswith``, ``contains``,
    ``icontains`` (literal text: ``%`` and ``_`` match only themselves), ``is_null``.

    Class attributes bound what one request may ask for: ``max_conditions`` (conditions
    and groups together), ``max_depth`` (nesting of ``and`` / ``or`` groups) and
    ``max_values`` (items of one ``in`` list).

    Attributes:
        ordering: The validated ordering of this instance (``("-created_at",)``), or
            ``default_order`` when the client gave none: pass it as ``order_by=``.

    Example:
        ```python
        class OrderFilters(FilterSet[Order]):
            fields = {
                "status": ("eq", "in"),
                "price": ("gte", "lte", "between"),
                "user__email": ("eq", "icontains"),
            }
            order_by = ("created_at", "price", "id")

        filters = OrderFilters.from_query({"status__in": "paid,shipped", "order_by": "-price"})
        orders = await repo.list(filters, order_by=filters.ordering)
        ```
    """

    model: ClassVar[type[Any]]
    fields: ClassVar[Mapping[str, Sequence[str]]] = {}
    order_by: ClassVar[Sequence[str]] = ()
    default_order: ClassVar[Sequence[str]] = ()
    max_conditions: ClassVar[int] = 20
    max_depth: ClassVar[int] = 3
    max_values: ClassVar[int] = 100
    _fields: ClassVar[dict[str, _Field]] = {}
    _parameters: ClassVar[dict[str, tuple[_Field, str]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        model = cls.__dict__.get("model")
        if model is None:
            model = _model_argument(cls)
            if model is None:
                return  # a generic intermediate class: declared by its own subclasses
            cls.model = model
        cls._fields = {
            name: _declared_field(cls, name, lookups) for name, lookups in cls.fields.items()
        }
        cls._parameters = {
            (spec.name if lookup == "eq" else f"{spec.name}__{lookup}"): (spec, lookup)
            for spec in cls._fields.values()
            for lookup in spec.lookups
        }
        columns = model_meta(cls.model).filterable
        for key in (*cls.order_by, *(item.lstrip("+-") for item in cls.default_order)):
            if key not in columns:
                raise InvalidFieldError(
                    f"{cls.__name__}.order_by names {key!r}, not a column of "
                    f"{cls.model.__name__}; columns: {', '.join(sorted(columns))}",
                    model=cls.model,
                    field=key,
                    choices=sorted(columns),
                )
        cls._check_ordering(cls.default_order)

    def __init__(
        self, conditions: Iterable[_Condition | _Group] = (), *, ordering: Sequence[str] = ()
    ) -> None:
        """Hold already validated conditions; build instances with `from_query` or `from_json`."""
        self._conditions = tuple(conditions)
        self.ordering: tuple[str, ...] = tuple(ordering) or tuple(self.default_order)

    # ------------------------------------------------------------------ declaration

    @classmethod
    def parameters(cls) -> list[FilterParameter]:
        """The query parameters instances accept, in declaration order.

        Example:
            ```python
            for parameter in OrderFilters.parameters():
                print(parameter.name, parameter.type_name)
            ```
        """
        found: list[FilterParameter] = []
        for name, (spec, lookup) in cls._parameters.items():
            converter = _value_converter(spec, lookup)
            schema = dict(converter.json_schema)
            if lookup in _LIST_LOOKUPS:
                what = f"comma-separated {converter.type_name} values (repeatable)"
                schema = {"type": "string"}
            elif lookup == "between":
                what = f"two comma-separated {converter.type_name} values, inclusive"
                schema = {"type": "string"}
            else:
                what = f"a {converter.type_name}"
            description = f"{spec.name} {lookup}: {what}"
            if converter.choices:
                description += f"; one of {', '.join(converter.choices)}"
            found.append(
                FilterParameter(name, spec.name, lookup, converter.type_name, schema, description)
            )
        return found

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_query(
        cls,
        params: Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]],
        *,
        ignore: Iterable[str] = (),
    ) -> Self:
        """An instance from query-string parameters.

        *params* is a mapping (a value may be a list, for a repeated key), Starlette's
        ``request.query_params`` or a sequence of ``(key, value)`` pairs. Each key is a
        declared parameter (``status``, ``price__gte``); ``order_by`` takes a
        comma-separated list of ``order_by`` fields (``-price`` descending); ``filter``
        takes the JSON form (see `from_json`) for OR groups. All conditions are ANDed.

        Args:
            params: The query parameters.
            ignore: Keys that belong to something else (``limit``, ``cursor``).

        Raises:
            InvalidFieldError: An undeclared parameter or lookup, a repeated parameter
                (other than ``__in`` / ``__not_in``), a value that does not convert,
                or more conditions than ``max_conditions``; it names the parameter and
                what it may be.

        Example:
            ```python
            filters = OrderFilters.from_query(request.query_params, ignore=("limit",))
            ```
        """
        skipped = set(ignore)
        pairs = [(key, value) for key, value in _pairs(params) if key not in skipped]
        if len(pairs) > cls.max_conditions + cls.max_values + 2:
            raise cls._error(
                f"too many query parameters for {cls.__name__}", field="filter", choices=()
            )
        budget = _Budget(cls)
        grouped: dict[str, list[str]] = {}
        ordering: tuple[str, ...] = ()
        conditions: list[_Condition | _Group] = []
        for key, value in pairs:
            text = _query_text(cls, key, value)
            if key == "order_by":
                if ordering:
                    raise cls._error("order_by given more than once", field="order_by")
                ordering = cls._parse_ordering([item for item in text.split(",") if item])
            elif key == "filter":
                if len(text) > _MAX_FILTER_TEXT:
                    raise cls._error(
                        f"filter longer than {_MAX_FILTER_TEXT} characters", field="filter"
                    )
                try:
                    data: object = json.loads(text)
                except (ValueError, RecursionError):
                    raise cls._error(
                        'filter must be a JSON object such as {"or": [{"status": "paid"}]}',
                        field="filter",
                    ) from None
                conditions.extend(cls._parse_object(data, budget, depth=0))
            else:
                grouped.setdefault(key, []).append(text)
        for key, values in grouped.items():
            spec, lookup = cls._parameter(key)
            if len(values) > 1 and lookup not in _LIST_LOOKUPS:
                raise cls._error(f"{key!r} given more than once", field=key)
            budget.spend()
            raw: object
            if lookup in _LIST_LOOKUPS:
                raw = [item for value in values for item in value.split(",")]
            elif lookup == "between":
                raw = values[0].split(",")
            else:
                raw = values[0]
            conditions.append(cls._condition(key, spec, lookup, raw))
        return cls(conditions, ordering=ordering)

    @classmethod
    def from_json(cls, data: object) -> Self:
        """An instance from a JSON search body (already decoded).

        *data* is an object whose keys are declared parameters (``"price__gte": 50``;
        lists for ``in``, ``not_in`` and ``between``; ``null`` with ``eq`` / ``ne``
        for IS NULL / IS NOT NULL), ``"and"`` / ``"or"`` (a list of such objects,
        nested up to ``max_depth``) and, at the top, ``"order_by"`` (a list of
        fields, ``"-price"`` descending). The keys of one object are ANDed.

        Raises:
            InvalidFieldError: Anything `from_query` refuses, a group that is not a
                non-empty list of objects, or groups nested deeper than ``max_depth``.

        Example:
            ```python
            filters = OrderFilters.from_json(
                {"or": [{"status": "paid"}, {"price__gte": "100"}], "order_by": ["-price"]}
            )
            ```
        """
        budget = _Budget(cls)
        ordering: tuple[str, ...] = ()
        if _is_dict(data) and "order_by" in data:
            body = dict(data)
            raw_order = body.pop("order_by")
            items = [raw_order] if isinstance(raw_order, str) else raw_order
            if not _is_str_list(items):
                raise cls._error("order_by must be a list of field names", field="order_by")
            ordering = cls._parse_ordering(items)
            data = body
        return cls(cls._parse_object(data, budget, depth=0), ordering=ordering)

    # ------------------------------------------------------------------ SQL

    def __clause_element__(self) -> ColumnElement[bool]:
        """The conditions as one SQL boolean expression (``true()`` when there are none)."""
        if not self._conditions:
            return true()
        return and_(*(condition.compile() for condition in self._conditions))

    @property
    def uses_relationships(self) -> bool:
        """Whether a condition follows a relationship path (the in-memory fake refuses these).

        Example:
            ```python
            OrderFilters.from_query({"user__email": "ann@example.com"}).uses_relationships
            ```
        """
        return any(_uses_path(condition) for condition in self._conditions)

    def __bool__(self) -> bool:
        """Whether the instance holds at least one condition."""
        return bool(self._conditions)

    def __repr__(self) -> str:
        conditions = ", ".join(map(repr, self._conditions)) or "no conditions"
        return f"<{type(self).__name__} {conditions}; ordering={self.ordering!r}>"

    # ------------------------------------------------------------------ parsing

    @classmethod
    def _error(
        cls, message: str, *, field: str, choices: Sequence[str] | None = None
    ) -> InvalidFieldError:
        if choices is None:
            choices = sorted(cls._parameters)
        return InvalidFieldError(message, model=cls.model, field=field, choices=choices)

    @classmethod
    def _parameter(cls, key: str) -> tuple[_Field, str]:
        found = cls._parameters.get(key)
        if found is not None:
            return found
        base, sep, lookup = key.rpartition("__")
        spec = cls._fields.get(base) if sep else cls._fields.get(key)
        if spec is not None and sep:
            raise cls._error(
                f"lookup {lookup!r} is not allowed on {base!r} by {cls.__name__}; "
                f"allowed: {', '.join(spec.lookups)}",
                field=key,
                choices=[name for name, (s, _) in cls._parameters.items() if s is spec],
            )
        return_choices = sorted(cls._parameters)
        raise cls._error(
            f"unknown filter {key[:100]!r} for {cls.__name__}; "
            f"parameters: {', '.join(return_choices)}",
            field=key[:100],
            choices=return_choices,
        )

    @classmethod
    def _condition(cls, key: str, spec: _Field, lookup: str, raw: object) -> _Condition:
        convert = _value_converter(spec, lookup)
        try:
            if lookup in _LIST_LOOKUPS:
                if not _is_list(raw):
                    raise ConversionError(f"expected a list of {convert.type_name} values")
                if len(raw) > cls.max_values:
                    raise ConversionError(f"at most {cls.max_values} values")
                value: Any = [convert(item) for item in raw]
            elif lookup == "between":
                if not _is_list(raw) or len(raw) != 2:
                    raise ConversionError(f"expected two {convert.type_name} values: low,high")
                value = (convert(raw[0]), convert(raw[1]))
            elif raw is None and lookup in _NULLABLE_LOOKUPS:
                value = None
            else:
                value = convert(raw)
        except ConversionError as exc:
            choices = list(convert.choices) or [key]
            raise cls._error(
                f"invalid value for {key!r} on {cls.__name__}: {exc}", field=key, choices=choices
            ) from None
        return _Condition(spec, lookup, value)

    @classmethod
    def _parse_object(
        cls, data: object, budget: _Budget, *, depth: int
    ) -> list[_Condition | _Group]:
        if not _is_dict(data):
            raise cls._error(
                "filters must be a JSON object of parameters and and/or groups",
                field="filter",
            )
        found: list[_Condition | _Group] = []
        for key, raw in data.items():
            if not isinstance(key, str):  # pragma: no cover - JSON keys are strings
                raise cls._error("filter keys must be strings", field="filter")
            if key in _GROUPS:
                found.append(cls._parse_group(key, raw, budget, depth=depth + 1))
                continue
            if key == "order_by":
                raise cls._error("order_by belongs at the top of the search body", field=key)
            spec, lookup = cls._parameter(key)
            budget.spend()
            found.append(cls._condition(key, spec, lookup, raw))
        return found

    @classmethod
    def _parse_group(cls, operator: str, raw: object, budget: _Budget, *, depth: int) -> _Group:
        if depth > cls.max_depth:
            raise cls._error(
                f"and/or groups nested deeper than {cls.max_depth} for {cls.__name__}",
                field=operator,
                choices=_GROUPS,
            )
        if not _is_list(raw) or not raw:
            raise cls._error(
                f'"{operator}" takes a non-empty list of objects, such as '
                f'{{"{operator}": [{{"status": "paid"}}, {{"price__gte": 100}}]}}',
                field=operator,
                choices=_GROUPS,
            )
        budget.spend()
        children: list[_Condition | _Group] = []
        for member in raw:
            parts = cls._parse_object(member, budget, depth=depth)
            if not parts:
                raise cls._error(f'an empty object in "{operator}"', field=operator)
            children.append(parts[0] if len(parts) == 1 else _Group("and", tuple(parts)))
        return _Group(operator, tuple(children))

    @classmethod
    def _parse_ordering(cls, items: Sequence[str]) -> tuple[str, ...]:
        cls._check_ordering(items)
        return tuple(items)

    @classmethod
    def _check_ordering(cls, items: Sequence[str]) -> None:
        allowed = set(cls.order_by)
        seen: set[str] = set()
        for item in items:
            key = item[1:] if item[:1] in ("-", "+") else item
            if key not in allowed or key in seen:
                reason = "given twice" if key in seen else "not a sort field"
                choices = sorted(allowed)
                raise cls._error(
                    f"cannot order {cls.__name__} by {item[:100]!r} ({reason}); "
                    f"order_by: {', '.join(choices) or 'none'} (prefix - for descending)",
                    field="order_by",
                    choices=choices,
                )
            seen.add(key)


def _is_dict(value: object) -> TypeGuard[dict[Any, Any]]:
    return isinstance(value, dict)


def _uses_path(node: _Condition | _Group) -> bool:
    if isinstance(node, _Condition):
        return bool(node.field.path)
    return any(_uses_path(child) for child in node.children)


def _pairs(
    params: Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]],
) -> list[tuple[str, object]]:
    multi_items = getattr(params, "multi_items", None)
    if callable(multi_items):  # Starlette's QueryParams, a multi-dict
        items: Any = multi_items()
        return [(str(key), value) for key, value in items]
    if isinstance(params, Mapping):
        mapping = cast("Mapping[str, object]", params)
        found: list[tuple[str, object]] = []
        for key, value in mapping.items():
            if isinstance(value, (list, tuple)):
                found.extend((key, item) for item in cast("Sequence[object]", value))
            else:
                found.append((key, value))
        return found
    return [(key, value) for key, value in params]


def _query_text(owner: type[FilterSet[Any]], key: str, value: object) -> str:
    if not isinstance(value, str):
        raise owner._error(  # pyright: ignore[reportPrivateUsage]
            f"query parameter {key!r} must be text, got {type(value).__name__}", field=key
        )
    return value


def _value_converter(spec: _Field, lookup: str) -> Converter:
    if lookup in _TEXT_LOOKUPS:
        return TEXT
    if lookup == "is_null":
        return BOOLEAN
    return spec.converter


def _model_argument(cls: type[Any]) -> type[Any] | None:
    for base in cls.__dict__.get("__orig_bases__", ()):
        if _is_filterset_class(get_origin(base)):
            args = get_args(base)
            if args and isinstance(args[0], type):
                return args[0]
    for base in cls.__bases__:
        if _is_filterset_class(base) and base is not FilterSet:
            inherited: type[Any] | None = base.__dict__.get("model") or getattr(base, "model", None)
            return inherited
    return None


def _declared_field(owner: type[FilterSet[Any]], name: str, lookups: Sequence[str]) -> _Field:
    model = owner.model
    *steps, key = name.split("__")
    if len(steps) > _MAX_PATH:
        raise InvalidFieldError(
            f"{owner.__name__}.fields: path {name!r} takes more than {_MAX_PATH} relationships",
            model=model,
            field=name,
        )
    path: list[RelationshipProperty[Any]] = []
    target = model
    for step in steps:
        relationships = model_meta(target).mapper.relationships
        if step not in relationships:
            names = sorted(relationships.keys())
            raise InvalidFieldError(
                f"{owner.__name__}.fields: {step!r} in {name!r} is not a relationship of "
                f"{target.__name__}; relationships: {', '.join(names) or 'none'}",
                model=model,
                field=name,
                choices=names,
            )
        relationship = relationships[step]
        path.append(relationship)
        target = relationship.mapper.class_
    meta = model_meta(target)
    if key not in meta.filterable:
        raise InvalidFieldError(
            f"{owner.__name__}.fields: {key!r} in {name!r} is not a column of "
            f"{target.__name__}; columns: {', '.join(sorted(meta.filterable))}",
            model=model,
            field=name,
            choices=sorted(meta.filterable),
        )
    if isinstance(lookups, str) or not lookups:
        raise InvalidFieldError(
            f"{owner.__name__}.fields[{name!r}] must be a tuple of lookups such as ('eq', 'in')",
            model=model,
            field=name,
            choices=LOOKUPS,
        )
    for lookup in lookups:
        if lookup not in LOOKUPS:
            raise InvalidFieldError(
                f"{owner.__name__}.fields[{name!r}]: unknown lookup {lookup!r}; "
                f"lookups: {', '.join(LOOKUPS)}",
                model=model,
                field=name,
                choices=LOOKUPS,
            )
    converter = converter_for(meta.filterable[key].columns[0].type)
    return _Field(name, tuple(path), target, key, tuple(lookups), converter)
