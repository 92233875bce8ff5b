"""``COPY ... FROM STDIN`` through PostgreSQL's two async drivers, asyncpg and psycopg 3.

`PostgreSQLBackend.copy_rows` sends the rows through the function of its driver, on the
session's own connection and inside its transaction; both raise the driver's error.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Float
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import Column, Table

from sqla_uow._compat import asyncpg_in_transaction

__all__ = ["asyncpg_copy", "psycopg_copy", "psycopg_copy_types"]


async def asyncpg_copy(
    dbapi_connection: Any, table: Table, names: list[str], value_rows: list[tuple[Any, ...]]
) -> None:
    """asyncpg's ``copy_records_to_table`` (binary; asyncpg reads the column types)."""
    async with asyncpg_in_transaction(dbapi_connection) as driver_connection:
        await driver_connection.copy_records_to_table(
            table.name, schema_name=table.schema, columns=names, records=value_rows
        )


# -- psycopg ----------------------------------------------------------------------------
# The binary format carries each value in its column's own binary form: psycopg needs the
# columns' types (``Copy.set_types``) and the server applies no cast. It is taken when
# every value is of a Python type the column type's binary dumper takes as it is;
# otherwise the text format, where the server parses each value as its column's type (an
# ``int`` or a ``float`` for a ``numeric`` column, a ``str`` for a ``uuid``, a naive
# datetime for a ``timestamptz``, taken in the session's time zone, ...). Rows of
# strings and integers only go in the text format too, which psycopg writes faster there
# (measured: 20,000 rows of two strings and an integer, text 58 ms, binary 72 ms; with
# numeric, uuid, timestamptz, date and boolean columns as well, text 144 ms, binary 91 ms).

_BINARY_VALUES: dict[str, frozenset[type]] = {
    **dict.fromkeys(("int2", "int4", "int8"), frozenset({int})),
    "numeric": frozenset({Decimal, int}),
    "float8": frozenset({float, int}),
    **dict.fromkeys(("varchar", "text"), frozenset({str})),
    "bool": frozenset({bool}),
    "uuid": frozenset({uuid.UUID}),
    **dict.fromkeys(("timestamp", "timestamptz"), frozenset({datetime.datetime})),
    "date": frozenset({datetime.date}),
    "time": frozenset({datetime.time}),
    "interval": frozenset({datetime.timedelta}),
}
"""The PostgreSQL types the binary format serves, and the Python types of their values.

Not ``float4`` nor ``timetz``, whose binary dumpers turn a float out of range into
infinity and refuse a naive time (the server refuses the one and converts the other).
Integers out of their column's range, which the binary dumpers would wrap around, are
refused before (`row_values`)."""

_MODIFIERS = re.compile(r"\s*\([^)]*\)")


def psycopg_copy_types(dialect: Dialect, columns: Sequence[Column[Any]]) -> tuple[str | None, ...]:
    """The names psycopg knows *columns*' PostgreSQL types by (``varchar``, ``int4``,
    ``timestamptz``, ...), in order; None for a type the binary format does not serve
    here (``CHAR``, say)."""
    names: list[str | None] = []
    for col in columns:
        compiled = col.type.compile(dialect=dialect).lower()
        name = " ".join(_MODIFIERS.sub("", compiled).split())
        if isinstance(col.type, Float) and name == "float":
            # FLOAT(p): real up to 24 binary digits of precision, double precision above.
            precision = col.type.precision
            name = "float4" if precision is not None and precision <= 24 else "float8"
        elif name.startswith("interval"):  # INTERVAL DAY TO SECOND
            name = "interval"
        name = _PSYCOPG_NAMES.get(name, name)
        names.append(name if name in _BINARY_VALUES else None)
    return tuple(names)


_TEXT_FASTER = frozenset({"int2", "int4", "int8", "varchar", "text"})
"""The types of the rows psycopg writes faster in the text format than in the binary one."""

_PSYCOPG_NAMES = {
    "smallint": "int2",
    "integer": "int4",
    "bigint": "int8",
    "real": "float4",
    "double precision": "float8",
    "decimal": "numeric",
    "character varying": "varchar",
    "boolean": "bool",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
    "time without time zone": "time",
    "time with time zone": "timetz",
}
"""SQL's names of the types `psycopg_copy_types` serves, as psycopg's registry names them."""


async def psycopg_copy(
    driver_connection: Any,
    statement: str,
    types: tuple[str | None, ...],
    value_rows: list[tuple[Any, ...]],
) -> None:
    """*statement* (``COPY t (columns) FROM STDIN``) with *value_rows*, through psycopg's
    ``cursor.copy``: binary when every column's type (*types*, see `psycopg_copy_types`)
    takes its values as they are, and some are neither strings nor integers; text otherwise.

    psycopg begins the transaction if no statement has yet.
    """
    binary = bool(value_rows) and _binary(types, value_rows)
    if binary:
        statement += " (FORMAT BINARY)"
    async with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        if binary:
            copy.set_types(types)
        write_row = copy.write_row
        for row in value_rows:
            await write_row(row)


def _binary(types: tuple[str | None, ...], value_rows: list[tuple[Any, ...]]) -> bool:
    """Whether *value_rows* go in the binary format: every column's type is one it serves
    (*types*) and takes the column's values as they are, and some column holds neither
    strings nor integers.

    A naive datetime for a ``timestamptz`` column sends the rows in the text format, where
    the server takes it in the session's time zone, as for an ``INSERT``.
    """
    if all(name in _TEXT_FASTER for name in types):
        return False
    for name, values in zip(types, zip(*value_rows, strict=True), strict=True):
        if name is None:
            return False
        kinds = set(map(type, values))
        kinds.discard(type(None))
        if not kinds <= _BINARY_VALUES[name]:
            return False
        if name == "timestamptz" and any(
            value is not None and value.tzinfo is None for value in values
        ):
            return False
    return True
