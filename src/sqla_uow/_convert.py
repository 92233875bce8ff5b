"""Parsing of request values (query-string text and JSON values) to a column's Python type.

A `Converter` is built once per filterable column from its SQLAlchemy type and turns
what a client sent into a value the database takes for that column: integers within
the column's width, finite ``Decimal`` and ``float``, ``bool``, ``UUID``, ISO dates,
times and datetimes (timezone-aware for a zoned column), enum names, and text that
the database can store (valid UTF-8 without U+0000). What a request may spell
differently (``yes`` for true, a ``+`` read as a space, surrounding blanks) is
parsed here; whether the value fits the column is the column's value rule
(`sqla_uow._values`), the same that checks filter values. A value that does not
convert raises `ConversionError` with a message for the client; the caller names
the parameter in the `InvalidFieldError` it raises.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import BigInteger, Date, Enum, Integer, Numeric, SmallInteger, Time, Uuid
from sqlalchemy.types import TypeDecorator, TypeEngine

from ._values import ValueMismatch, ValueRule, check_text, int_rule, rule_for_type

__all__ = ["BOOLEAN", "MAX_TEXT_LENGTH", "TEXT", "ConversionError", "Converter", "converter_for"]

MAX_TEXT_LENGTH = 1000
"""The longest text value a filter takes, in characters."""

_MAX_DECIMAL_EXPONENT = 38  # within what every database's DECIMAL / NUMERIC compares
_PLUS_AS_SPACE = re.compile(r"(.*\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:?\d\d)")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class ConversionError(ValueError):
    """A request value that does not convert to the column's type (message for the client)."""


def _impl(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    """The type a `TypeDecorator` stores as (the type itself otherwise)."""
    if isinstance(type_, TypeDecorator):
        return _impl(type_.impl_instance)
    return type_


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ConversionError(f"expected text, got {_kind(value)}")
    if len(value) > MAX_TEXT_LENGTH:
        raise ConversionError(f"text longer than {MAX_TEXT_LENGTH} characters")
    try:
        return check_text(value, "text")
    except ValueMismatch as exc:
        raise ConversionError(f"expected {exc.expected}") from None


def _checked(rule: ValueRule, value: Any, message: str) -> Any:
    """*value* checked by the column's *rule*; *message* for the client when it refuses."""
    try:
        return rule.check(value)
    except ValueMismatch:
        raise ConversionError(message) from None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class Converter:
    """Turns one request value into a value of one column's Python type.

    Attributes:
        type_name: What the value must be, for messages and the OpenAPI schema
            (``"integer"``, ``"decimal"``, ``"date-time"``, ...).
        json_schema: The JSON schema of one value.
    """

    def __init__(
        self,
        convert: Callable[[object], Any],
        type_name: str,
        json_schema: dict[str, Any],
        *,
        choices: Sequence[str] = (),
    ) -> None:
        self._convert = convert
        self.type_name = type_name
        self.json_schema = json_schema
        self.choices: tuple[str, ...] = tuple(choices)

    def __call__(self, value: object) -> Any:
        """The converted value; `ConversionError` when *value* does not convert."""
        return self._convert(value)


def _int_converter(bits: int) -> Converter:
    rule = int_rule(bits)

    def convert(value: object) -> int:
        if isinstance(value, bool):
            raise ConversionError("expected an integer, got a boolean")
        given: Any = value
        if isinstance(value, str):
            given = value.strip()
        elif isinstance(value, float) and value.is_integer():
            given = int(value)
        try:
            number: int = rule.check(given)
        except ValueMismatch as exc:
            if exc.expected == rule.expected:  # an integer, out of the column's range
                raise ConversionError(f"integer out of range: expected {exc.expected}") from None
            raise ConversionError(f"expected an integer, got {_repr(value)}") from None
        return number

    schema = {"type": "integer", "format": f"int{bits}"}
    return Converter(convert, "integer", schema)


def _decimal(value: object) -> Decimal:
    if isinstance(value, bool):
        raise ConversionError("expected a number, got a boolean")
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 100:
            raise ConversionError("number longer than 100 characters")
    elif isinstance(value, (int, float, Decimal)):
        text = str(value)
    else:
        raise ConversionError(f"expected a number, got {_kind(value)}")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ConversionError(f"expected a number, got {text[:40]!r}") from None
    if number.is_finite() and number and abs(number.adjusted()) > _MAX_DECIMAL_EXPONENT:
        raise ConversionError(f"number out of range (more than {_MAX_DECIMAL_EXPONENT} digits)")
    checked: Decimal = _checked(_DECIMAL, number, "expected a finite number")
    return checked


_DECIMAL = rule_for_type(Numeric(), None)


def _float(value: object) -> float:
    number = float(_decimal(value))
    if not math.isfinite(number):  # pragma: no cover - _decimal bounds the exponent
        raise ConversionError("expected a finite number")
    return number


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ConversionError(f"expected true or false, got {_repr(value)}")


def _repr(value: object) -> str:
    return repr(value[:40]) if isinstance(value, str) else _kind(value)


_UUID = rule_for_type(Uuid(as_uuid=True), None)
_DATE = rule_for_type(Date(), None)
_TIME = rule_for_type(Time(), None)


def _uuid(value: object) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    text = _text(value)
    checked: uuid.UUID = _checked(_UUID, text, f"expected a UUID, got {text[:40]!r}")
    return checked


def _date(value: object) -> dt.date:
    text = _text(value)
    checked: dt.date = _checked(
        _DATE, text, f"expected an ISO date (2024-01-31), got {text[:40]!r}"
    )
    return checked


def _time(value: object) -> dt.time:
    text = _text(value)
    checked: dt.time = _checked(_TIME, text, f"expected an ISO time (13:45:00), got {text[:40]!r}")
    return checked


def _datetime_converter(*, aware: bool) -> Converter:
    def convert(value: object) -> dt.datetime:
        text = _text(value).strip()
        # An unescaped "+" of the zone reads as a space in a query string.
        decoded = _PLUS_AS_SPACE.fullmatch(text)
        if decoded is not None:
            text = f"{decoded[1]}+{decoded[2]}"
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ConversionError(
                f"expected an ISO date-time (2024-01-31T13:45:00+00:00), got {text[:40]!r}"
            ) from None
        if aware and moment.tzinfo is None:
            raise ConversionError(
                f"expected a date-time with a time zone (2024-01-31T13:45:00+00:00), got {text!r}"
            )
        if moment.tzinfo is not None:
            # In UTC: a database without a zoned type (SQLite) compares the stored text.
            moment = moment.astimezone(dt.timezone.utc)
            if not aware:  # a column without a zone stores UTC by convention
                moment = moment.replace(tzinfo=None)
        return moment

    return Converter(convert, "date-time", {"type": "string", "format": "date-time"})


def _enum_converter(type_: Enum) -> Converter:
    enum_class: Any = type_.enum_class
    names: list[str] = list(type_.enums)
    rule = rule_for_type(type_, None)

    def convert(value: object) -> Any:
        if enum_class is not None and isinstance(value, enum_class):
            return value
        text = _text(value)
        return _checked(rule, text, f"expected one of {', '.join(names)}, got {text[:40]!r}")

    return Converter(convert, "enum", {"type": "string", "enum": names}, choices=names)


def _python_type(type_: TypeEngine[Any]) -> type[Any] | None:
    try:
        found: type[Any] = type_.python_type
    except NotImplementedError:
        return None
    return found


def converter_for(type_: TypeEngine[Any]) -> Converter:
    """The `Converter` for values of a column of SQLAlchemy type *type_*.

    A type without a known Python type takes text (a database compares it with the
    column's own type).
    """
    stored = _impl(type_)
    if isinstance(stored, Enum):
        return _enum_converter(stored)
    python_type = _python_type(type_)
    if python_type is bool:
        return Converter(_bool, "boolean", {"type": "boolean"})
    if isinstance(stored, Integer) or python_type is int:
        if isinstance(stored, SmallInteger):
            return _int_converter(16)
        return _int_converter(64 if isinstance(stored, BigInteger) else 32)
    if isinstance(stored, Numeric) or python_type in (Decimal, float):
        if python_type is float:
            return Converter(_float, "number", {"type": "number"})
        return Converter(_decimal, "decimal", {"type": "string", "format": "decimal"})
    if python_type is uuid.UUID:
        return Converter(_uuid, "uuid", {"type": "string", "format": "uuid"})
    if python_type is dt.datetime:
        aware = bool(getattr(stored, "timezone", False))
        return _datetime_converter(aware=aware)
    if python_type is dt.date:
        return Converter(_date, "date", {"type": "string", "format": "date"})
    if python_type is dt.time:
        return Converter(_time, "time", {"type": "string", "format": "time"})
    return Converter(_text, "string", {"type": "string"})


TEXT = Converter(_text, "string", {"type": "string"})
"""The converter of pattern values (``like``, ``contains``, ...): text of any column."""

BOOLEAN = Converter(_bool, "boolean", {"type": "boolean"})
"""The converter of ``is_null`` values."""
