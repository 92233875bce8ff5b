"""`ScopeBase`: the scope that confines every read and write of a repository.

A scope is a stack of layers of criteria (``repo.scoped(...)`` adds one, a repository's
`default_scope` is evaluated per operation under them) plus the soft-delete filter of a
`SoftDeleteMixin` model. Each operation compiles it once into an `ActiveScope`: the WHERE
criteria, the equality values that writes fill in and keep, the loader options that
carry it into relationship loads, and the digest that binds cursors to it. A repository
without any scope skips all of this (`ScopeBase._scoping` is false).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Delete,
    Select,
    Update,
    and_,
    case,
    delete,
    select,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import with_loader_criteria
from sqlalchemy.orm.attributes import instance_state

from ._bulk_base import BulkBase
from ._dialects import Backend
from ._filters import check_value
from ._model import ModelMeta, model_meta
from ._soft_delete import deleted_now, is_soft_delete, not_deleted_loader, registry_soft_deletes
from ._typing import ModelT
from ._where import Where, compile_where
from .exceptions import ConflictError, InvalidFieldError

if TYPE_CHECKING:
    from sqlalchemy.orm.interfaces import ORMOption

    if sys.version_info >= (3, 11):
        from typing import Self
    else:
        from typing_extensions import Self

__all__ = ["ActiveScope", "ScopeBase", "ScopeLayer", "compile_scope"]

_StatementT = TypeVar("_StatementT")


@dataclasses.dataclass(frozen=True)
class ScopeLayer:
    """The criteria of one ``scoped(...)`` call (or of `default_scope`)."""

    where: tuple[Where, ...]
    filters: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class ActiveScope:
    """A repository's scope compiled for one operation."""

    model: type[Any]
    criteria: tuple[ColumnElement[bool], ...]
    """WHERE criteria that confine rows to the scope (the soft-delete filter included)."""
    fill: dict[str, Any]
    """Equality values (``tenant_id=7``): filled into new rows, kept by updates."""
    checks: dict[str, Any] | None
    """Values that decide from an object's loaded state whether it is in the scope;
    ``None`` when the criteria are more than equalities (then only a query decides)."""
    options: tuple[ORMOption, ...]
    """Loader options that carry the scope into relationship loads."""
    soft: bool
    """The model soft-deletes: deletes set ``deleted_at``."""
    digest: str | None
    """What binds cursors to the scope; ``None`` without scope criteria."""

    def apply(self, statement: Select[Any]) -> Select[Any]:
        """*statement* (a SELECT of the model) confined to the scope."""
        if self.criteria:
            statement = statement.where(*self.criteria)
        if self.options:
            statement = statement.options(*self.options)
        return statement

    def cursor_scope(self, cursor_scope: str | None) -> str | None:
        """The caller's ``cursor_scope`` bound to this scope too."""
        if self.digest is None:
            return cursor_scope
        return f"{cursor_scope or ''}\x1f{self.digest}"

    def holds(self, obj: Any) -> bool | None:
        """Whether loaded *obj* is in the scope, by its loaded state; ``None``: unknown."""
        if self.checks is None:
            return None
        state = instance_state(obj)
        loaded = state.dict
        if state.expired or any(key not in loaded for key in self.checks):
            return None
        return all(loaded[key] == value for key, value in self.checks.items())

    def _refuse(self, key: str, value: Any, where: str) -> InvalidFieldError:
        name = self.model.__name__
        return InvalidFieldError(
            f"{where}{name}.{key}={value!r} is outside the repository's scope "
            f"({key}={self.fill[key]!r})",
            model=self.model,
            field=key,
        )

    def keep(self, values: Mapping[str, Any], *, where: str = "") -> None:
        """Refuse *values* that would take a row out of the scope's equalities."""
        for key, value in self.fill.items():
            if key in values and values[key] != value:
                raise self._refuse(key, values[key], where)

    def filled(self, values: dict[str, Any], *, where: str = "") -> dict[str, Any]:
        """*values* with the scope's equalities filled in (a copy when one was missing)."""
        self.keep(values, where=where)
        if all(key in values for key in self.fill):
            return values
        return {**values, **{key: v for key, v in self.fill.items() if key not in values}}

    def filled_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Bulk *rows* with the scope's equalities filled in; contradicting rows refused."""
        if not self.fill:
            return rows
        return [self.filled(row, where=f"row {index}: ") for index, row in enumerate(rows)]


def _equality_key(meta: Any, name: str) -> str | None:
    """The column a ``name=value`` criterion compares for equality, if it is one."""
    key = name[:-4] if name.endswith("__eq") else name
    return key if key in meta.writable else None


def compile_scope(
    model: type[Any],
    layers: Sequence[ScopeLayer],
    *,
    dialect: Dialect | None,
    include_deleted: bool,
) -> ActiveScope:
    """Compile *layers* (and the soft-delete filter) into the `ActiveScope` of *model*.

    Raises:
        InvalidFieldError: An unknown field or lookup, a value its column does not take,
            or two layers asking for different values of one column.
    """
    meta = model_meta(model)
    layer_criteria: list[ColumnElement[bool]] = []
    fill: dict[str, Any] = {}
    equalities_only = True
    for layer in layers:
        layer_criteria.extend(compile_where(model, layer.where, layer.filters, dialect=dialect))
        equalities_only = equalities_only and not layer.where
        for name, value in layer.filters.items():
            key = _equality_key(meta, name)
            if key is None:
                equalities_only = False
                continue
            if value is not None:
                value = check_value(
                    model, key, value, dialect=dialect, label=f"scope {name!r}", field=name
                )
            if key in fill and fill[key] != value:
                raise InvalidFieldError(
                    f"scope {name}={value!r} on {model.__name__} contradicts the enclosing "
                    f"scope ({key}={fill[key]!r})",
                    model=model,
                    field=name,
                )
            fill[key] = value
    criteria = list(layer_criteria)
    checks: dict[str, Any] | None = dict(fill) if equalities_only else None
    options: list[ORMOption] = []
    soft = is_soft_delete(model)
    if not include_deleted:
        if soft:
            criteria.append(model.deleted_at.is_(None))
            if checks is not None:
                checks["deleted_at"] = None
        if registry_soft_deletes(model):
            options.append(not_deleted_loader())
    digest = None
    if layer_criteria:
        options.append(with_loader_criteria(model, and_(*layer_criteria), include_aliases=True))
        digest = _digest(layer_criteria, dialect)
    return ActiveScope(model, tuple(criteria), fill, checks, tuple(options), soft, digest)


def _digest(criteria: Sequence[ColumnElement[bool]], dialect: Dialect | None) -> str:
    parts: list[str] = []
    for criterion in criteria:
        compiled = criterion.compile(dialect=dialect)
        params = sorted(compiled.params.items(), key=lambda item: item[0])
        parts.append(f"{compiled}{params!r}")
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()[:24]


class ScopeBase(BulkBase[ModelT]):
    """`scoped`, `including_deleted` and `default_scope`; the base of the repository mixins."""

    _scope_layers: tuple[ScopeLayer, ...] = ()
    _include_deleted: bool = False
    _scoping: bool = False
    """Whether any operation has a scope to apply; false keeps the hot paths as they were."""
    _has_default_scope: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._has_default_scope = cls.default_scope is not _NO_DEFAULT_SCOPE

    def _init_scoping(self) -> None:
        """Decide once, when the repository is made, whether it has any scope to apply."""
        self._scoping = (
            self._has_default_scope or bool(self._scope_layers) or registry_soft_deletes(self.model)
        )

    def default_scope(self) -> Mapping[str, Any] | None:
        """Criteria every operation of this repository class is confined to.

        Override it to give a repository class a scope a service cannot forget, such as
        the current tenant read from a context variable. It is called once per operation
        (so it sees the current context), under the layers added by `scoped`, and takes
        the same ``field=value`` / ``field__lookup=value`` criteria; ``None`` or an empty
        mapping means no default scope for this operation. The base class has none, and
        a repository class that does not override it pays nothing.

        Example:
            ```python
            current_shop: ContextVar[int] = ContextVar("current_shop")

            class ShopOrderRepository(AsyncRepository[ShopOrder]):
                def default_scope(self) -> Mapping[str, Any] | None:
                    return {"shop_id": current_shop.get()}
            ```
        """
        return None

    def scoped(self, *where: Where, **criteria: Any) -> Self:
        """A repository over the same session confined to rows matching the criteria.

        Takes the same ``*where`` expressions and ``field=value`` / ``field__lookup=value``
        criteria as `list`; scopes stack (``repo.scoped(a=1).scoped(b=2)``). Every read,
        write and bulk method of the returned repository honours the scope:

        - reads and counts see only rows in the scope; a key outside it is a missing key
          (``get`` returns ``None``, ``get_one`` / ``update`` raise `NotFoundError`,
          ``delete`` returns ``False``; bulk updates and deletes leave such rows alone);
        - equality criteria (``shop_id=7``) are filled into new rows by ``create``,
          ``create_many``, ``insert_many`` and ``upsert_many``; a row or update that
          contradicts one is refused with `InvalidFieldError` before any SQL;
        - ``upsert_many`` refuses (`ConflictError`, nothing written) rows whose
          ``on_conflict`` values belong to a row outside the scope;
        - relationship loads of the model (``selectinload``, lazy loads) obey the scope,
          and ``paginate_cursor`` cursors are bound to it.

        ``get`` answers from the identity map when the scope is made of equalities the
        loaded object can be checked against; otherwise it queries.

        Raises:
            InvalidFieldError: An unknown field or lookup, a value its column's type does
                not take, or an equality that contradicts an enclosing scope.

        Example:
            ```python
            shop_orders = orders.scoped(shop_id=7)
            order = await shop_orders.create(title="Lamp")  # shop_id=7 filled in
            assert await shop_orders.get(other_shop_order.id) is None
            ```
        """
        layer = ScopeLayer(tuple(where), dict(criteria))
        layers = (*self._scope_layers, layer)
        compile_scope(self.model, layers, dialect=self._dialect(), include_deleted=True)
        view = copy.copy(self)
        view._scope_layers = layers
        view._scoping = True
        return view

    def including_deleted(self) -> Self:
        """The view of this repository that also sees soft-deleted rows (other scope kept).

        For a `SoftDeleteMixin` model, its reads return soft-deleted rows too and its
        ``hard_delete`` can delete them; ``delete`` still soft-deletes. For other models
        it behaves like the repository itself.

        Example:
            ```python
            everyone = await users.including_deleted().list(order_by="id")
            ```
        """
        view = copy.copy(self)
        view._include_deleted = True
        view._scoping = True
        return view

    def apply_scope(self, statement: _StatementT) -> _StatementT:
        """*statement*, a SELECT over this repository's model, confined to its scope.

        For the queries a repository subclass writes itself (aggregates, joins): adds
        the scope's WHERE criteria (the `scoped` layers, `default_scope`, the soft-delete
        filter) and the loader criteria that carry it into relationship loads. A
        repository without a scope returns *statement* unchanged.

        Raises:
            TypeError: *statement* is not a SELECT.

        Example:
            ```python
            class OrderRepository(AsyncRepository[Order]):
                async def total(self) -> Decimal:
                    statement = self.apply_scope(select(func.sum(Order.price)))
                    return (await self.session.scalar(statement)) or Decimal(0)
            ```
        """
        given: object = statement
        if not isinstance(given, Select):
            raise TypeError(
                f"apply_scope() takes a SELECT (sqlalchemy.select(...)), not {statement!r}"
            )
        scope = self._active_scope()
        if scope is None:
            return statement
        scoped: Any = scope.apply(cast("Select[Any]", given))
        return cast("_StatementT", scoped)

    def _scoped_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Bulk *rows* to insert, with the scope's equalities filled in."""
        scope = self._active_scope()
        return rows if scope is None else scope.filled_rows(rows)

    def _delete_statement(self) -> Delete | Update:
        """The ORM statement of a bulk delete confined to the scope, before its own criteria.

        For a soft-deleting model an ``UPDATE`` that sets ``deleted_at`` on live rows.
        """
        scope = self._active_scope()
        if scope is None:
            return delete(self.model)
        if not scope.soft:
            return delete(self.model).where(*scope.criteria)
        statement = update(self.model).values(deleted_at=deleted_now())
        if self._include_deleted:
            statement = statement.where(self.model.deleted_at.is_(None))  # type: ignore[attr-defined]
        return statement.where(*scope.criteria)

    async def _rows_in_scope(
        self,
        meta: ModelMeta,
        backend: Backend,
        scope: ActiveScope,
        rows: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """The *rows* whose primary key is a row in *scope* (one SELECT per chunk)."""
        keys = [tuple(row[name] for name in meta.pk) for row in rows]
        width = len(meta.pk)
        found = {
            tuple(row[:width])
            for row in await self._select_by_keys(meta, backend, keys, [], where=scope.criteria)
        }
        return [row for row, key in zip(rows, keys, strict=True) if key in found]

    async def _refuse_conflicts_outside(
        self,
        meta: ModelMeta,
        backend: Backend,
        scope: ActiveScope,
        conflict: Sequence[str],
        rows: list[dict[str, Any]],
    ) -> None:
        """Refuse an upsert whose ``on_conflict`` values are those of a row outside *scope*.

        Such a row must be neither updated (the scope forbids it) nor skipped in silence;
        this raises, like the INSERT of a duplicate key would, before anything is written.

        Raises:
            ConflictError: ``kind="unique"``, naming the first colliding values.
        """
        columns = [getattr(self.model, name) for name in conflict]
        keys = list(dict.fromkeys(tuple(row[name] for name in conflict) for row in rows))
        inside = case((and_(*scope.criteria), 1), else_=0)
        outside: list[tuple[Any, ...]] = []
        for criterion in self._key_criteria(backend, columns, keys):
            result = await self._execute(backend, select(*columns, inside).where(criterion))
            outside.extend(tuple(row[:-1]) for row in result.all() if not row[-1])
        if outside:
            raise ConflictError(
                f"unique violation writing {meta.name}: {len(outside)} row(s) of upsert_many "
                f"collide on ({', '.join(conflict)}) with rows outside the repository's "
                f"scope (first: {outside[0]!r}); nothing was written",
                kind="unique",
                model=self.model,
                columns=[meta.columns[name].name for name in conflict],
            )

    def _active_scope(self) -> ActiveScope | None:
        """The scope of this operation, or ``None`` when the repository has none."""
        if not self._scoping:
            return None
        layers = self._scope_layers
        if self._has_default_scope:
            default = self.default_scope()
            if default:
                layers = (ScopeLayer((), dict(default)), *layers)
        return compile_scope(
            self.model, layers, dialect=self._dialect(), include_deleted=self._include_deleted
        )


_NO_DEFAULT_SCOPE: Any = ScopeBase.__dict__["default_scope"]
