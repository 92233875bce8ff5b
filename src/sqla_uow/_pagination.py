"""Pages of results: offset pages (`Page`) and keyset pages (`CursorPage`), and cursors.

A cursor is an opaque, URL-safe string: base64 of a small JSON document holding the sort
values of one row, a fingerprint of the model and ordering it belongs to and, when the
caller named one, a digest of its scope, followed by a keyed checksum. Decoding checks
them all, so a cursor that was cut short, edited, or made for another model, ordering
or scope raises `InvalidCursorError`. The values a cursor carries only ever become
bound parameters; they cannot change the shape of a query, and decoding checks them
against their columns' types (integer width included) before any SQL is sent.

Without a ``cursor_secret`` the checksum key is public: cursors are protected against
accidental damage, not against forgery. Set ``cursor_secret`` to make them unforgeable.
Even a forged cursor cannot do more than name a position: its values are checked against
their columns' types like filter values, and any malformed one raises
`InvalidCursorError`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import hashlib
import hmac
import json
import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar, cast

from sqlalchemy.engine import Dialect

from ._filters import (
    INT64_MAX,
    check_page_size,
    check_value,
)
from ._model import model_meta
from ._ordering import order_items, parse_order_item
from ._typing import ModelT
from .exceptions import InvalidCursorError, InvalidFieldError

__all__ = [
    "CursorPage",
    "KeysetRequest",
    "Page",
    "check_scope",
    "check_secret",
    "decode_cursor",
    "encode_cursor",
    "keyset_order",
    "ordering_fingerprint",
]


@dataclass(frozen=True)
class Page(Generic[ModelT]):
    """One page of an offset-paginated query, with the total number of matching rows.

    Attributes:
        items: The rows of this page, in query order.
        total: How many rows match the query across all pages.
        limit: The page size that was asked for.
        offset: How many matching rows come before this page.

    Example:
        ```python
        page = await users.paginate(limit=20, offset=40, order_by="name")
        print(page.page, "/", page.pages, [u.name for u in page.items])
        if page.has_next:
            ...
        ```
    """

    items: list[ModelT]
    total: int
    limit: int
    offset: int

    @property
    def has_next(self) -> bool:
        """Whether rows follow this page."""
        return self.offset + len(self.items) < self.total

    @property
    def has_previous(self) -> bool:
        """Whether rows come before this page."""
        return self.offset > 0

    @property
    def pages(self) -> int:
        """The number of pages of ``limit`` rows needed for ``total`` rows (0 when empty)."""
        return math.ceil(self.total / self.limit) if self.limit > 0 else 0

    @property
    def page(self) -> int:
        """The 1-based number of this page (when ``offset`` is a multiple of ``limit``)."""
        return self.offset // self.limit + 1 if self.limit > 0 else 1

    def __iter__(self) -> Iterator[ModelT]:
        """Iterate over ``items``."""
        return iter(self.items)

    def __len__(self) -> int:
        """The number of rows on this page."""
        return len(self.items)


@dataclass(frozen=True)
class CursorPage(Generic[ModelT]):
    """One page of a keyset-paginated query.

    Pass ``next_cursor`` as ``after=`` to get the following page and ``previous_cursor``
    as ``before=`` to get the preceding one; a cursor is ``None`` when there is no
    such page. Keyset pages do not count the total: every page costs one query, so
    ``previous_cursor`` is set on every non-empty page reached with ``after=`` (and
    ``next_cursor`` on every non-empty page reached with ``before=``) without a check
    that rows remain on that side; following it may give an empty page.

    Attributes:
        items: The rows of this page, in query order.
        limit: The page size that was asked for.
        next_cursor: The cursor of the following page, or ``None`` on the last page.
        previous_cursor: The cursor of the preceding page, or ``None`` on the first page.

    Example:
        ```python
        page = await orders.paginate_cursor(order_by="-created_at", limit=20)
        while page.next_cursor is not None:
            page = await orders.paginate_cursor(
                order_by="-created_at", limit=20, after=page.next_cursor
            )
        ```
    """

    items: list[ModelT]
    limit: int
    next_cursor: str | None = None
    previous_cursor: str | None = None

    @property
    def has_next(self) -> bool:
        """Whether a following page exists (``next_cursor`` is set)."""
        return self.next_cursor is not None

    @property
    def has_previous(self) -> bool:
        """Whether a preceding page exists (``previous_cursor`` is set)."""
        return self.previous_cursor is not None

    def __iter__(self) -> Iterator[ModelT]:
        """Iterate over ``items``."""
        return iter(self.items)

    def __len__(self) -> int:
        """The number of rows on this page."""
        return len(self.items)


_DEFAULT_KEY = b"sqla_uow cursor v1"
_MAX_CURSOR_LENGTH = 65_536
"""The longest cursor accepted, in characters (a cursor holds one row's sort values)."""
_CHECKSUM = frozenset("0123456789abcdef")
"""The checksum key without a ``cursor_secret``: it is public, so such a cursor is
protected against accidental damage (truncation, edits by hand), not against forgery."""


def ordering_fingerprint(model: type[Any], ordering: Sequence[tuple[str, bool]]) -> str:
    """A short digest naming *model* and its keyset *ordering* (key, descending) pairs."""
    spec = ",".join(("-" if descending else "+") + key for key, descending in ordering)
    table = getattr(model, "__tablename__", "")
    raw = f"{model.__module__}.{model.__qualname__}:{table}:{spec}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _encode_value(value: Any) -> Any:
    # Enums first: a str or int Enum member is also a str or an int.
    if isinstance(value, enum.Enum):
        return {"enum": value.name}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return {"float": repr(value)}
        return value
    if isinstance(value, dt.datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, dt.date):
        return {"d": value.isoformat()}
    if isinstance(value, dt.time):
        return {"t": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"td": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, Decimal):
        return {"dec": str(value)}
    if isinstance(value, uuid.UUID):
        return {"uuid": str(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"b": base64.urlsafe_b64encode(bytes(value)).decode()}
    if isinstance(value, memoryview):
        return {"b": base64.urlsafe_b64encode(value.tobytes()).decode()}
    raise TypeError(f"cannot put a {type(value).__name__} value into a pagination cursor")


def _check_int(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64_MAX:
        raise ValueError("integer out of the 64-bit range")


_TEXT_TAGS = frozenset({"dt", "d", "t", "dec", "uuid", "b", "float", "enum"})


def _decode_value(raw: Any, expected: type[Any] | None) -> Any:
    if raw is None or isinstance(raw, (bool, int, str, float)):
        _check_int(raw)
        value: Any = raw
    elif isinstance(raw, dict) and len(tagged := cast("dict[str, Any]", raw)) == 1:
        # A JSON object: string keys, values of any JSON type.
        ((tag, payload),) = tagged.items()
        if tag in _TEXT_TAGS and not isinstance(payload, str):
            raise ValueError(f"malformed {tag!r} value")
        if tag == "dt":
            value = dt.datetime.fromisoformat(payload)
        elif tag == "d":
            value = dt.date.fromisoformat(payload)
        elif tag == "t":
            value = dt.time.fromisoformat(payload)
        elif tag == "td":
            parts: object = payload
            if not isinstance(parts, list) or len(payload) != 3:
                raise ValueError("malformed timedelta")
            days, seconds, micros = cast("tuple[Any, Any, Any]", tuple(payload))
            for part in (days, seconds, micros):
                if isinstance(part, bool) or not isinstance(part, int):
                    raise ValueError("malformed timedelta")
                _check_int(part)
            value = dt.timedelta(days=days, seconds=seconds, microseconds=micros)
        elif tag == "dec":
            value = Decimal(payload)
        elif tag == "uuid":
            value = uuid.UUID(payload)
        elif tag == "b":
            value = base64.urlsafe_b64decode(payload.encode())
        elif tag == "float":
            value = float(payload)
        elif tag == "enum" and expected is not None and issubclass(expected, enum.Enum):
            if payload not in expected.__members__:
                raise ValueError(f"{payload!r} is not a {expected.__name__} member")
            value = expected.__members__[payload]
        else:
            raise ValueError(f"unknown value tag {tag!r}")
    else:
        raise ValueError("malformed value")
    if value is None or expected is None:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if expected is float:
            return float(value)
        if expected is Decimal:
            return Decimal(value)
    if expected is float and isinstance(value, Decimal):
        return float(value)
    if isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool):
        return value
    raise ValueError(f"expected {expected.__name__}, got {type(value).__name__}")


def _checksum(body: bytes, secret: bytes | None) -> str:
    return hmac.new(_DEFAULT_KEY if secret is None else secret, body, hashlib.sha256).hexdigest()[
        :16
    ]


def check_secret(owner: str, secret: object) -> None:
    """Check a ``cursor_secret``: ``None`` (the public key) or non-empty ``bytes``.

    *owner* names the class the secret belongs to, for the message.

    Raises:
        TypeError: The secret is not ``bytes`` (a ``str`` must be encoded).
        ValueError: The secret is empty, or is the public key used without a secret.
    """
    if secret is None:
        return
    if not isinstance(secret, bytes):
        raise TypeError(
            f"{owner}.cursor_secret must be bytes kept secret (or None), got "
            f"{type(secret).__name__}; encode a str with .encode()"
        )
    if not secret or secret == _DEFAULT_KEY:
        what = "empty" if not secret else "the public default key"
        raise ValueError(
            f"{owner}.cursor_secret is {what}, which anyone can use to forge cursors; "
            "set it to random bytes kept secret (such as secrets.token_bytes(32)), or to "
            "None for tamper-evident cursors only"
        )


def _scope_digest(scope: str) -> str:
    # A digest, not the scope itself: a cursor is only base64, and a scope such as
    # "tenant:42" need not be readable from it.
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def check_scope(model: type[Any], scope: str | None) -> None:
    """Check that a ``cursor_scope`` is a string (or ``None``).

    Raises:
        InvalidFieldError: *scope* is not a ``str``.
    """
    # Checked at run time: callers without a type checker may pass anything.
    if scope is not None and not isinstance(cast(object, scope), str):
        raise InvalidFieldError(
            f"cursor_scope must be a str, got {type(scope).__name__}",
            model=model,
            field="cursor_scope",
        )


def encode_cursor(
    values: Sequence[Any],
    *,
    fingerprint: str,
    secret: bytes | None = None,
    scope: str | None = None,
) -> str:
    """Encode the sort *values* of one row into an opaque cursor string.

    A cursor made with a *scope* is only accepted by `decode_cursor` with the same scope
    (and one made without, only without).
    """
    document: dict[str, Any] = {"f": fingerprint, "v": [_encode_value(v) for v in values]}
    if scope is not None:
        document["s"] = _scope_digest(scope)
    body = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    encoded = base64.urlsafe_b64encode(body).decode().rstrip("=")
    return f"{encoded}.{_checksum(body, secret)}"


def decode_cursor(
    token: str,
    *,
    fingerprint: str,
    types: Sequence[type[Any] | None],
    secret: bytes | None = None,
    model: type[Any] | None = None,
    scope: str | None = None,
) -> list[Any]:
    """Decode a cursor made by `encode_cursor` for the same *fingerprint* and *scope*.

    *types* holds the expected Python type of each value (``None``: not checked).

    Raises:
        InvalidCursorError: The cursor is malformed, fails its checksum, or was made for
            another model, ordering or scope.
    """
    # Checked at run time: a cursor often comes straight from a request.
    if not isinstance(cast(object, token), str):
        raise InvalidCursorError(
            f"a cursor must be a string, got {type(token).__name__}", model=model, field="cursor"
        )
    if len(token) > _MAX_CURSOR_LENGTH:
        raise InvalidCursorError(
            f"malformed cursor (longer than {_MAX_CURSOR_LENGTH} characters)",
            model=model,
            field="cursor",
        )
    encoded, sep, checksum = token.partition(".")
    try:
        if not sep or len(checksum) != 16 or not _CHECKSUM.issuperset(checksum):
            raise ValueError("missing or malformed checksum")
        body = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (ValueError, binascii.Error) as exc:
        raise InvalidCursorError("malformed cursor", model=model, field="cursor") from exc
    if not hmac.compare_digest(checksum, _checksum(body, secret)):
        raise InvalidCursorError(
            "cursor failed its integrity check (edited or damaged)", model=model, field="cursor"
        )
    try:
        document: object = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise InvalidCursorError("malformed cursor", model=model, field="cursor") from exc
    if not isinstance(document, dict):
        raise InvalidCursorError("malformed cursor", model=model, field="cursor")
    fields = cast("dict[str, Any]", document)
    if "f" not in fields or "v" not in fields:
        raise InvalidCursorError("malformed cursor", model=model, field="cursor")
    found = fields["f"]
    raw_values = fields["v"]
    found_scope = fields.get("s")
    if found != fingerprint:
        raise InvalidCursorError(
            "cursor belongs to another model or ordering; cursors are only valid for the "
            "query (model and order_by) that made them",
            model=model,
            field="cursor",
        )
    if found_scope != (None if scope is None else _scope_digest(scope)):
        raise InvalidCursorError(
            "cursor belongs to another scope; cursors are only valid for the query "
            "(and its cursor_scope=, such as the filters it was bound to) that made them",
            model=model,
            field="cursor",
        )
    # isinstance() on an object alias: the Any value keeps no unknown type arguments.
    checked: object = raw_values
    if not isinstance(checked, list) or len(raw_values) != len(types):
        raise InvalidCursorError("malformed cursor", model=model, field="cursor")
    try:
        return [
            _decode_value(raw, expected) for raw, expected in zip(raw_values, types, strict=True)
        ]
    except (ValueError, TypeError, KeyError, InvalidOperation, OverflowError) as exc:
        raise InvalidCursorError(
            f"malformed cursor value: {exc}", model=model, field="cursor"
        ) from exc


def keyset_order(model: type[Any], order_by: Any) -> tuple[tuple[str, bool], ...]:
    """The (attribute key, descending) pairs of a keyset ordering of *model*.

    The columns *order_by* names, then the primary-key columns it does not name
    (ascending), so that every position in the ordering is unique.

    Raises:
        InvalidFieldError: An item that is not a mapped column of *model* (or its
            ``asc()`` / ``desc()``), or a column named twice.
    """
    meta = model_meta(model)
    keys: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for item in order_items(model, order_by):
        _, descending, key = parse_order_item(model, item)
        if key is None:
            raise InvalidFieldError(
                f"paginate_cursor orders by mapped columns of {model.__name__} only "
                f"(names, attributes, or their asc()/desc()); got {item!r}",
                model=model,
                field=repr(item),
                choices=sorted(meta.filterable),
            )
        if key in seen:
            raise InvalidFieldError(
                f"order_by names {key!r} of {model.__name__} twice; a keyset ordering "
                "takes each column once",
                model=model,
                field=key,
                choices=sorted(meta.filterable),
            )
        seen.add(key)
        keys.append((key, descending))
    keys.extend((name, False) for name in meta.pk if name not in seen)
    return tuple(keys)


_RowT = TypeVar("_RowT")


@dataclass(frozen=True)
class KeysetRequest:
    """A validated `paginate_cursor` call: its ordering and decoded position.

    Shared by `AsyncRepository` (which turns it into SQL) and the in-memory fake
    (which evaluates it in Python), so both validate alike and make the same cursors.
    """

    model: type[Any]
    keys: tuple[tuple[str, bool], ...]
    """(attribute key, descending) pairs, the primary key last."""
    limit: int
    after: str | None
    before: str | None
    scope: str | None
    secret: bytes | None
    fingerprint: str
    position: list[Any] | None
    """The sort values of the row named by the cursor, or ``None`` without one."""

    @property
    def backwards(self) -> bool:
        """Whether the page precedes the cursor (``before=``)."""
        return self.before is not None

    @classmethod
    def parse(
        cls,
        model: type[Any],
        order_by: Any,
        *,
        limit: int,
        after: str | None,
        before: str | None,
        scope: str | None,
        secret: bytes | None,
        types: Callable[[str], type[Any] | None] | None = None,
        dialect: Dialect | None = None,
    ) -> KeysetRequest:
        """Validate the arguments of `paginate_cursor` and decode its cursor.

        *types* gives the Python type a cursor value of each key must have (default:
        the column's ``python_type``). A value of a key whose type is the column's own
        is then checked like a filter value on *dialect* (``None``: the fakes), so a
        forged cursor cannot carry a value the column's type does not take.

        Raises:
            InvalidFieldError: A bad ``limit``, order key or ``cursor_scope``, or both
                ``after`` and ``before``.
            InvalidCursorError: A cursor that is malformed, edited, or made for another
                model, ordering or scope.
        """
        check_page_size(model, limit)
        check_scope(model, scope)
        check_secret(model.__name__, secret)
        if after is not None and before is not None:
            raise InvalidFieldError(
                "pass either after= or before=, not both", model=model, field="before"
            )
        keys = keyset_order(model, order_by)
        fingerprint = ordering_fingerprint(model, keys)
        token = after if after is not None else before
        position: list[Any] | None = None
        if token is not None:
            python_types = model_meta(model).python_types
            expected = [(types or python_types.__getitem__)(key) for key, _ in keys]
            position = decode_cursor(
                token,
                fingerprint=fingerprint,
                types=expected,
                secret=secret,
                model=model,
                scope=scope,
            )
            for index, ((key, _), kind) in enumerate(zip(keys, expected, strict=True)):
                if position[index] is None or kind is not python_types[key]:
                    continue
                try:
                    position[index] = check_value(
                        model,
                        key,
                        position[index],
                        dialect=dialect,
                        label=f"cursor value for {key!r}",
                        field=key,
                    )
                except InvalidFieldError as exc:
                    raise InvalidCursorError(
                        f"malformed cursor: {exc}", model=model, field="cursor"
                    ) from None
        return cls(
            model=model,
            keys=keys,
            limit=limit,
            after=after,
            before=before,
            scope=scope,
            secret=secret,
            fingerprint=fingerprint,
            position=position,
        )

    def cursor(self, values: Sequence[Any]) -> str:
        """The cursor of the row with sort *values*."""
        return encode_cursor(
            values, fingerprint=self.fingerprint, secret=self.secret, scope=self.scope
        )

    def page(
        self,
        fetched: Sequence[_RowT],
        *,
        item: Callable[[_RowT], ModelT],
        values: Callable[[_RowT], Sequence[Any]],
    ) -> CursorPage[ModelT]:
        """The page made of *fetched*: up to ``limit + 1`` rows in walking order.

        Rows are in the ordering's direction, or the reverse for ``before=``; a row
        beyond ``limit`` only shows that more rows follow.
        """
        more = len(fetched) > self.limit
        rows = list(fetched[: self.limit])
        if self.position is not None and rows and list(values(rows[0])) == self.position:
            # The row the cursor names came back: the database compares the values
            # differently from how it returned them, and paging on would loop.
            raise InvalidCursorError(
                f"the database returned the cursor's own {self.model.__name__} row again; "
                "its sort values do not compare as they were read back",
                model=self.model,
                field="cursor",
            )
        if self.backwards:
            rows.reverse()
        items = [item(row) for row in rows]
        if self.backwards:
            next_cursor = self.cursor(values(rows[-1])) if rows else None
            previous_cursor = self.cursor(values(rows[0])) if rows and more else None
        else:
            next_cursor = self.cursor(values(rows[-1])) if rows and more else None
            previous_cursor = (
                self.cursor(values(rows[0])) if rows and self.after is not None else None
            )
        return CursorPage(
            items=items, limit=self.limit, next_cursor=next_cursor, previous_cursor=previous_cursor
        )
