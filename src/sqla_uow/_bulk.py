"""Dialect-aware bulk writes: insert, update, delete and upsert many rows per statement.

`BulkOperationsMixin` gives `AsyncRepository` its bulk methods. Every method validates
all rows before any SQL is sent, sends one statement per chunk of rows (never one per
row), flushes the session's pending changes first, and never commits.

The methods live in one mixin per family (`_bulk_inserts`, `_bulk_changes`,
`_bulk_upserts`) over `_bulk_base.BulkBase`; rows are checked by `_rows`, the model read
through `_model.ModelMeta`, and everything that differs between databases (statement
forms, parameter limits, execution options) is asked of the `_dialects` backend.

How each statement is built:

- ``create_many``: SQLAlchemy's "insertmanyvalues" ``INSERT ... RETURNING`` with
  ``sort_by_parameter_order=True``, which SQLAlchemy documents as returning rows in
  parameter order (PostgreSQL and MariaDB use an ordered ``INSERT ... SELECT`` form for
  autoincrement keys). SQLite has no such form, so there the statement assigns the keys
  itself, inside one ``INSERT ... SELECT``: key = (largest key before the statement) +
  (position of the row in the chunk), the same value SQLite's own ROWID algorithm picks.
  Rows are matched to input positions by their key value, never by RETURNING order.
- ``insert_many``: an executemany ``INSERT`` per chunk (no RETURNING); on SQLite one
  multi-row ``INSERT ... VALUES`` per chunk, sent through the driver with the bind
  processing done here (the compiled one-row statement's ``VALUES`` list repeated).
- both on PostgreSQL (asyncpg, psycopg), where `_bulk_copy` serves the call: ``COPY ... FROM
  STDIN`` of all rows on the session's connection, ``create_many``'s keys drawn from the
  key's sequence first, its objects built from the values written.
- ``update_many``: an executemany ``UPDATE ... WHERE pk = ?`` (SQLite, MySQL / MariaDB)
  or one ``UPDATE ... FROM (VALUES ...)`` per chunk (PostgreSQL, whose asyncpg driver
  reports no row count for executemany).
- ``upsert_many``: ``INSERT ... ON CONFLICT (...) DO UPDATE`` / ``DO NOTHING``
  (PostgreSQL, SQLite) or ``INSERT ... ON DUPLICATE KEY UPDATE`` (MySQL / MariaDB): an
  executemany on SQLite, ``INSERT ... SELECT FROM (VALUES ...)`` per chunk on
  PostgreSQL, insertmanyvalues with RETURNING (to count rows) on MariaDB.
- ``delete_many`` / ``delete_where``: ORM-enabled ``DELETE ... WHERE pk IN (...)``.

Bulk statements bypass the unit of work. To keep the session truthful, objects already
in its identity map are synchronised: deleted ones leave the session; updated and
upserted ones get the written values as their loaded state (attributes with an
``onupdate`` default are expired after `update_many`). Rows of models mapped to
several tables (joined inheritance) are not supported by the SQLite and PostgreSQL
statement forms built here.
"""

from __future__ import annotations

from ._bulk_changes import ChangeMixin
from ._bulk_inserts import DEFAULT_CHUNK_SIZE, InsertMixin
from ._bulk_upserts import UpsertMixin
from ._typing import ModelT

__all__ = ["DEFAULT_CHUNK_SIZE", "BulkOperationsMixin"]


class BulkOperationsMixin(InsertMixin[ModelT], ChangeMixin[ModelT], UpsertMixin[ModelT]):
    """Bulk inserts, updates, deletes and upserts for a repository of ``ModelT``.

    Mixed into `AsyncRepository`; it needs ``model`` (the mapped class) and ``session``
    (an `AsyncSession`). Every method checks all rows before it sends SQL, flushes the
    session's pending changes first, sends one statement per chunk, and never commits.
    Integrity violations raise `ConflictError` with the driver's error chained.

    Example:
        ```python
        users = UserRepository(session)
        created = await users.create_many([{"email": "a@x.io"}, {"email": "b@x.io"}])
        await users.update_many([{"id": created[0].id, "name": "Ann"}])
        await users.upsert_many(rows, on_conflict=("email",))
        await users.delete_many([u.id for u in created])
        ```
    """
