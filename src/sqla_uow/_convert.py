"""Parsing of request values (query-string text and JSON values) to a column's Python type.

A `Converter` is built once per filterable column from its SQLAlchemy type and turns
what a client sent into a value the database takes for that column: integers within
the column's width, finite ``Decimal`` and ``float``, ``bool``, ``UUID``, ISO dates,
times and datetimes (timezone-aware for a zoned column), enum names, and text that
the database can store (valid UTF-8 without U+0000). A value that does not convert
raises `ConversionError` with a message for the client; the caller names the
parameter in the `InvalidFieldError` it raises.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import BigInteger, Enum, Integer, Numeric, SmallInteger
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["BOOLEAN", "MAX_TEXT_LENGTH", "TEXT", "ConversionError", "Converter", "converter_for"]

MAX_TEXT_LENGTH = 1000
"""The longest text value a filter takes, in characters."""

_MAX_DECIMAL_EXPONENT = 38  # within what every database's DECIMAL / NUMERIC compares
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,40}")
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
    if "\x00" in value:
        raise ConversionError("text must not contain the NUL character (U+0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConversionError("text is not valid Unicode (a lone surrogate)") from None
    return value


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
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def convert(value: object) -> int:
        if isinstance(value, bool):
            raise ConversionError("expected an integer, got a boolean")
        if isinstance(value, str):
            text = value.strip()
            if _INT_TEXT.fullmatch(text) is None:
                raise ConversionError(f"expected an integer, got {value[:40]!r}")
            number = int(text)
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        else:
            raise ConversionError(f"expected an integer, got {_kind(value)}")
        if not low <= number <= high:
            raise ConversionError(f"integer out of range: must be from {low} to {high}")
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
    if not number.is_finite():
        raise ConversionError("expected a finite number")
    if number and abs(number.adjusted()) > _MAX_DECIMAL_EXPONENT:
        raise ConversionError(f"number out of range (more than {_MAX_DECIMAL_EXPONENT} digits)")
    return number


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


def _uuid(value: object) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    text = _text(value)
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ConversionError(f"expected a UUID, got {text[:40]!r}") from None


def _date(value: object) -> dt.date:
    text = _text(value)
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConversionError(f"expected an ISO date (2024-01-31), got {text[:40]!r}") from None


def _time(value: object) -> dt.time:
    text = _text(value)
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise ConversionError(f"expected an ISO time (13:45:00), got {text[:40]!r}") from None


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

    def convert(value: object) -> Any:
        if enum_class is not None and isinstance(value, enum_class):
            return value
        text = _text(value)
        if text not in names:
            raise ConversionError(f"expected one of {', '.join(names)}, got {text[:40]!r}")
        return enum_class[text] if enum_class is not None else text

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
