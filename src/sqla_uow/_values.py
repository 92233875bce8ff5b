"""Caller values checked against a column's type before any SQL is sent.

One rule per column (and dialect) decides which Python values a filter, a primary key
or a cursor may carry for that column. A rule returns the value to bind, converted
where the conversion is exact (a ``str`` holding an integer, a UUID, a decimal number
or an ISO date for such a column), and refuses everything else with `ValueMismatch`,
which callers turn into `InvalidFieldError` or `InvalidCursorError`.

What each kind of column takes:

- integers: ``int`` (never ``bool``) or a ``str`` of decimal digits, within the width
  of the column: 16 bits for ``SmallInteger``, 64 for ``BigInteger``, and for
  ``Integer`` 32 on PostgreSQL and MySQL / MariaDB, 64 on SQLite and in the fakes;
- ``Numeric``: ``int``, ``float`` or ``Decimal``, or a ``str`` holding a number;
  finite, at most 1000 digits either side of the point; ``Float`` the same, within
  the range of a float;
- ``Boolean``: ``bool`` only;
- strings: ``str`` only, without NUL characters and encodable as UTF-8;
- ``Enum``: a member of its enum class or a member's name (a listed string for an
  ``Enum`` of strings);
- ``Uuid``: ``uuid.UUID`` or its string form;
- ``DateTime`` / ``Date`` / ``Time``: the matching ``datetime`` type or an ISO 8601
  string (a ``datetime`` is not a ``Date`` value); a column without ``timezone=True``
  refuses aware datetimes;
- ``Interval``: ``timedelta``; ``LargeBinary``: ``bytes``, ``bytearray`` or
  ``memoryview``;
- a ``TypeDecorator``: whatever its ``process_bind_param`` turns into a value its
  implementation type takes (the caller's value is bound unchanged);
- other types (JSON, ARRAY, custom types): any value.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.default import DefaultDialect

from ._dialects import backend_for

__all__ = [
    "INT_TEXT",
    "ValueMismatch",
    "ValueRule",
    "check_text",
    "describe",
    "int_rule",
    "rule_for_type",
]

INT_TEXT = re.compile(r"[+-]?[0-9]{1,40}")
"""An integer's decimal digits, as text (at most 40 of them)."""
_NUMBER_TEXT = re.compile(
    r"[+-]?(?:[0-9]{1,1000}(?:\.[0-9]{0,1000})?|\.[0-9]{1,1000})(?:[eE][+-]?[0-9]{1,5})?"
)
_MAX_DIGITS = 1000
_MAX_ISO_TEXT = 64
_NEUTRAL_DIALECT = DefaultDialect()
_WIDE = Context(prec=3 * _MAX_DIGITS)
"""Enough precision to round any accepted number to a column's scale exactly."""


class ValueMismatch(Exception):
    """A value a rule refuses; ``expected`` says what the column takes."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


@dataclass(frozen=True)
class ValueRule:
    """What one column takes: ``check`` returns the value to bind or raises `ValueMismatch`."""

    kind: str
    """``int``, ``float``, ``decimal``, ``bool``, ``str``, ``enum``, ``uuid``, ``datetime``,
    ``date``, ``time``, ``timedelta``, ``bytes`` or ``any``."""
    expected: str
    """What the column takes, for messages (``an integer from ... to ...``)."""
    check: Callable[[Any], Any]
    passes: Callable[[list[Any]], bool] | None = None
    """Whether every value of a whole column (``None`` entries skipped) passes ``check``
    unchanged, tested at once; False or no test: ``check`` each value. What bulk writes
    use, where the per-value calls are most of the cost."""

    @property
    def is_text(self) -> bool:
        """Whether ``like`` / ``ilike`` patterns apply to the column."""
        return self.kind in ("str", "any")


def describe(value: Any) -> str:
    """A short rendering of a refused value for messages: its repr (cut) and type."""
    try:
        shown = repr(value)
    except Exception:  # a broken __repr__ of a caller's object
        shown = "<unprintable>"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{shown} ({type(value).__name__})"


def int_rule(bits: int) -> ValueRule:
    """The rule of a *bits*-wide integer column: ``expected`` names its range."""
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    in_range = f"an integer from {low} to {high} (a {bits}-bit column)"

    def check(value: Any) -> Any:
        if type(value) is not int:
            if isinstance(value, str) and INT_TEXT.fullmatch(value):
                value = int(value)
            elif not isinstance(value, int) or isinstance(value, bool):
                # The same words on every database: the width only matters in range.
                raise ValueMismatch("an integer (int, or its decimal digits as a str)")
        if not low <= value <= high:
            raise ValueMismatch(in_range)
        return value

    def passes(values: list[Any]) -> bool:
        present = _present(values, int)
        return present is not None and (not present or low <= min(present) <= max(present) <= high)

    return ValueRule("int", in_range, check, passes)


def _present(values: list[Any], kind: type[Any]) -> list[Any] | None:
    """*values* without ``None`` when all the others are exactly of type *kind*, else None."""
    types = set(map(type, values))
    if types == {kind}:
        return values
    if types == {kind, _NONE}:
        return [value for value in values if value is not None]
    return [] if types == {_NONE} else None


_NONE = type(None)


def _finite_decimal(value: Decimal, expected: str) -> Decimal:
    if not value.is_finite() or (value and abs(value.adjusted()) > _MAX_DIGITS):
        raise ValueMismatch(expected)
    return value


def _decimal_rule() -> ValueRule:
    expected = "a finite number (int, float, Decimal or numeric text) of at most 1000 digits"

    def check(value: Any) -> Any:
        if isinstance(value, Decimal):
            return _finite_decimal(value, expected)
        if isinstance(value, bool):
            raise ValueMismatch(expected)
        if isinstance(value, int):
            if value.bit_length() > 3300:  # about 1000 decimal digits
                raise ValueMismatch(expected)
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueMismatch(expected)
            return value
        if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value):
            try:
                return _finite_decimal(Decimal(value), expected)
            except InvalidOperation:
                raise ValueMismatch(expected) from None
        raise ValueMismatch(expected)

    return ValueRule("decimal", expected, check)


def _float_rule() -> ValueRule:
    expected = "a finite number (int, float, Decimal or numeric text) within the range of a float"

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueMismatch(expected)
        if isinstance(value, str):
            if not _NUMBER_TEXT.fullmatch(value):
                raise ValueMismatch(expected)
            converted: Any = float(value)
        elif isinstance(value, (int, float, Decimal)):
            converted = value
        else:
            raise ValueMismatch(expected)
        try:
            as_float = float(converted)
        except (OverflowError, ValueError):
            raise ValueMismatch(expected) from None
        if not math.isfinite(as_float):
            raise ValueMismatch(expected)
        return converted

    return ValueRule("float", expected, check)


def _bool_rule() -> ValueRule:
    expected = "True or False"

    def check(value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueMismatch(expected)
        return value

    def passes(values: list[Any]) -> bool:
        return _present(values, bool) is not None

    return ValueRule("bool", expected, check, passes)


def check_text(value: Any, expected: str = "a str") -> str:
    """*value* if it is a ``str`` a database can store: no NUL, encodable as UTF-8.

    Raises:
        ValueMismatch: Another type, a NUL character or a lone surrogate.
    """
    if not isinstance(value, str):
        raise ValueMismatch(expected)
    if "\x00" in value:
        raise ValueMismatch(f"{expected} without NUL characters (U+0000)")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueMismatch(f"{expected} of valid Unicode (not a lone surrogate)") from None
    return value


def _texts_pass(values: list[Any], length: int | None = None) -> bool:
    """Whether every value is a ``str`` `check_text` takes as it is (of at most *length*
    characters), or ``None``: tested on all of them at once."""
    present = _present(values, str)
    if present is None:
        return False
    joined = "".join(present)
    if "\x00" in joined:
        return False
    if not joined.isascii():
        try:
            joined.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return length is None or not present or max(map(len, present)) <= length


def _str_rule() -> ValueRule:
    return ValueRule("str", "a str", check_text, _texts_pass)


def _enum_rule(column_type: sqltypes.Enum) -> ValueRule:
    enum_class: Any = column_type.enum_class
    if enum_class is not None:
        members: dict[str, Any] = dict(enum_class.__members__)
        expected = f"a {enum_class.__name__} member or one of: {', '.join(members)}"

        def check_member(value: Any) -> Any:
            if isinstance(value, enum_class):
                return value
            if isinstance(value, str) and value in members:
                return members[value]
            raise ValueMismatch(expected)

        return ValueRule("enum", expected, check_member)
    choices = tuple(str(choice) for choice in column_type.enums)
    allowed = frozenset(choices)
    expected = f"one of: {', '.join(choices)}"

    def check_choice(value: Any) -> Any:
        if isinstance(value, str) and value in allowed:
            return value
        raise ValueMismatch(expected)

    return ValueRule("enum", expected, check_choice)


def _uuid_rule(as_uuid: bool) -> ValueRule:
    expected = "a UUID (uuid.UUID or its string form)"

    def check(value: Any) -> Any:
        if isinstance(value, uuid.UUID):
            return value if as_uuid else str(value)
        if isinstance(value, str) and len(value) <= 45:
            try:
                parsed = uuid.UUID(value)
            except ValueError:
                raise ValueMismatch(expected) from None
            return parsed if as_uuid else str(parsed)
        raise ValueMismatch(expected)

    return ValueRule("uuid", expected, check)


def _datetime_rule(timezone: bool) -> ValueRule:
    expected = "a datetime or an ISO 8601 string" + (
        "" if timezone else " without a time zone (the column stores naive datetimes)"
    )

    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) <= _MAX_ISO_TEXT:
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                raise ValueMismatch(expected) from None
        if not isinstance(value, dt.datetime):
            raise ValueMismatch(expected)
        if not timezone and value.tzinfo is not None:
            raise ValueMismatch(expected)
        return value

    return ValueRule("datetime", expected, check)


def _date_rule() -> ValueRule:
    expected = "a date (not a datetime) or an ISO 8601 date string"

    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) <= _MAX_ISO_TEXT:
            try:
                value = dt.date.fromisoformat(value)
            except ValueError:
                raise ValueMismatch(expected) from None
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise ValueMismatch(expected)
        return value

    return ValueRule("date", expected, check)


def _time_rule() -> ValueRule:
    expected = "a time or an ISO 8601 time string"

    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) <= _MAX_ISO_TEXT:
            try:
                value = dt.time.fromisoformat(value)
            except ValueError:
                raise ValueMismatch(expected) from None
        if not isinstance(value, dt.time):
            raise ValueMismatch(expected)
        return value

    return ValueRule("time", expected, check)


def _instance_rule(kind: str, types: tuple[type[Any], ...], expected: str) -> ValueRule:
    def check(value: Any) -> Any:
        if not isinstance(value, types):
            raise ValueMismatch(expected)
        return value

    return ValueRule(kind, expected, check)


def _any(value: Any) -> Any:
    return value


def _all_pass(values: list[Any]) -> bool:
    return True


def _decorated_rule(
    column_type: sqltypes.TypeDecorator[Any], dialect: Dialect | None, *, write: bool
) -> ValueRule:
    bind_dialect = dialect if dialect is not None else _NEUTRAL_DIALECT
    impl_type: Any = (
        column_type.load_dialect_impl(dialect) if dialect is not None else column_type.impl_instance
    )
    # The implementation's rule (with its length and precision, for a write) applies to
    # what process_bind_param makes of the value; the caller's value is bound unchanged.
    inner = rule_for_type(impl_type, dialect, write=write)
    process: Callable[[Any, Dialect], Any] = column_type.process_bind_param
    refused = f"a value {type(column_type).__name__} accepts"

    def check(value: Any) -> Any:
        try:
            processed = process(value, bind_dialect)
        except Exception as exc:  # the decorator's own refusal of the value
            raise ValueMismatch(f"{refused} (it raised {type(exc).__name__})") from None
        if processed is not None:
            inner.check(processed)
        return value

    return ValueRule(inner.kind, inner.expected, check)


def _written(rule: ValueRule, column_type: Any) -> ValueRule:
    """*rule* plus the limits a stored value must keep: string length, numeric precision."""
    length = getattr(column_type, "length", None)
    if rule.kind == "str" and isinstance(length, int):
        expected = f"a str of at most {length} characters"

        def check_length(value: Any) -> Any:
            checked = rule.check(value)
            if len(checked) > length:
                raise ValueMismatch(expected)
            return checked

        def passes(values: list[Any]) -> bool:
            return _texts_pass(values, length)

        plain = rule.passes is _texts_pass  # not a TypeDecorator's rule
        return ValueRule(rule.kind, expected, check_length, passes if plain else None)
    return _within_precision(rule, column_type)


def _within_precision(rule: ValueRule, column_type: Any) -> ValueRule:
    """*rule* plus the range of ``Numeric(p, s)``, for values stored or compared.

    A compared value must fit too: PostgreSQL's drivers send it cast to the column's
    type, and a number beyond its precision fails there as an overflow.
    """
    precision = getattr(column_type, "precision", None)
    scale = getattr(column_type, "scale", None) or 0
    if rule.kind == "decimal" and isinstance(precision, int) and isinstance(scale, int):
        bound = Decimal(10 ** (precision - scale))
        step = Decimal(1).scaleb(-scale)
        expected = (
            f"a number of at most {precision - scale} digits before the point, once "
            f"rounded to {scale} after it (NUMERIC({precision}, {scale}))"
        )

        def check_precision(value: Any) -> Any:
            checked = rule.check(value)
            try:
                rounded = Decimal(checked).quantize(step, context=_WIDE)
            except InvalidOperation:
                raise ValueMismatch(expected) from None
            if abs(rounded) >= bound:
                raise ValueMismatch(expected)
            return checked

        return ValueRule(rule.kind, expected, check_precision)
    return rule


def rule_for_type(column_type: Any, dialect: Dialect | None, *, write: bool = False) -> ValueRule:
    """The rule for values compared with (or, *write*, stored in) a column of *column_type*.

    *dialect* ``None`` stands for no database (the in-memory fakes): ``Integer`` is then
    64 bits wide, as on SQLite. A value to store must also fit the column's declared
    length (``String(n)``); stored and compared values must fit its precision
    (``Numeric(p, s)``).
    """
    if isinstance(column_type, sqltypes.TypeDecorator):
        return _decorated_rule(column_type, dialect, write=write)  # pyright: ignore[reportUnknownArgumentType]
    rule = _rule_for_type(column_type, dialect)
    return _written(rule, column_type) if write else _within_precision(rule, column_type)


def _rule_for_type(column_type: Any, dialect: Dialect | None) -> ValueRule:
    if isinstance(column_type, sqltypes.Boolean):
        return _bool_rule()
    if isinstance(column_type, sqltypes.Enum):
        return _enum_rule(column_type)
    if isinstance(column_type, sqltypes.SmallInteger):
        return int_rule(16)
    if isinstance(column_type, sqltypes.BigInteger):
        return int_rule(64)
    if isinstance(column_type, sqltypes.Integer):
        return int_rule(backend_for(dialect).integer_bits if dialect is not None else 64)
    if isinstance(column_type, sqltypes.Float):
        return _float_rule()
    if isinstance(column_type, sqltypes.Numeric):
        return _decimal_rule()
    if isinstance(column_type, sqltypes.String):
        return _str_rule()
    if isinstance(column_type, sqltypes.Uuid):
        return _uuid_rule(bool(column_type.as_uuid))  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
    if isinstance(column_type, sqltypes.DateTime):
        return _datetime_rule(bool(column_type.timezone))
    if isinstance(column_type, sqltypes.Date):
        return _date_rule()
    if isinstance(column_type, sqltypes.Time):
        return _time_rule()
    if isinstance(column_type, sqltypes.Interval):
        return _instance_rule("timedelta", (dt.timedelta,), "a timedelta")
    if isinstance(column_type, sqltypes.LargeBinary):
        return _instance_rule("bytes", (bytes, bytearray, memoryview), "bytes")
    return ValueRule("any", "any value", _any, _all_pass)
