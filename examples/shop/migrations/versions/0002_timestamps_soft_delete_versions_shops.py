"""Timestamps on users and orders, soft-deleted users, order versions and shops.

- ``users``: ``updated_at``, ``deleted_at`` (indexed);
- ``orders``: ``updated_at``, ``version`` (1 for the orders there already) and
  ``shop_id`` (the default shop, 1, for the orders there already); the index of a
  user's orders by date becomes the index of a user's orders in a shop by date;
- ``created_at`` of both: the database's UTC clock as default (the one
  `sqla_uow.mixins.TimestampMixin` declares), microseconds on MySQL / MariaDB.

Existing rows get ``updated_at = created_at``. On SQLite, which cannot alter a column
in place, each table is copied (Alembic's batch mode).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 09:55:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_CLOCK = {
    "postgresql": "statement_timestamp()",
    "mysql": "(UTC_TIMESTAMP(6))",
    "mariadb": "(UTC_TIMESTAMP(6))",
    "sqlite": "(strftime('%Y-%m-%d %H:%M:%f', 'now') || '000')",
}
"""What ``TimestampMixin`` gives as the columns' default on each database (its
``UtcNow``), written out here as a migration must not change with the library."""

TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
"""The type of ``UtcDateTime`` columns (microseconds on MySQL / MariaDB)."""

OLD_TIMESTAMP = sa.DateTime(timezone=True)
"""The type of ``created_at`` in revision 0001."""


def utc_clock() -> sa.TextClause:
    """The server default of a UTC timestamp column on the database being migrated."""
    return sa.text(UTC_CLOCK[op.get_context().dialect.name])


def upgrade() -> None:
    clock = utc_clock()
    for table in ("users", "orders"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                "created_at",
                existing_type=OLD_TIMESTAMP,
                type_=TIMESTAMP,
                server_default=clock,
                existing_nullable=False,
            )
            batch.add_column(
                sa.Column("updated_at", TIMESTAMP, server_default=clock, nullable=False)
            )
            if table == "users":
                batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True)))
                batch.create_index(batch.f("ix_users_deleted_at"), ["deleted_at"])
            else:
                # Existing orders: shop 1 (the default shop), version 1.
                batch.add_column(
                    sa.Column("shop_id", sa.Integer(), server_default="1", nullable=False)
                )
                batch.add_column(
                    sa.Column("version", sa.Integer(), server_default="1", nullable=False)
                )
                # Created first: MySQL keeps an index on user_id for the foreign key.
                batch.create_index(
                    batch.f("ix_orders_user_id_shop_id_created_at"),
                    ["user_id", "shop_id", "created_at"],
                )
                batch.drop_index(batch.f("ix_orders_user_id_created_at"))
        op.execute(sa.text(f"UPDATE {table} SET updated_at = created_at"))
    # New orders name their shop (the repository's scope fills it in) and start at
    # version 1 (the mapper's default): the columns keep no server default.
    with op.batch_alter_table("orders") as batch:
        for column in ("shop_id", "version"):
            batch.alter_column(
                column, existing_type=sa.Integer(), server_default=None, existing_nullable=False
            )


def downgrade() -> None:
    for table in ("orders", "users"):
        with op.batch_alter_table(table) as batch:
            if table == "users":
                batch.drop_index(batch.f("ix_users_deleted_at"))
                batch.drop_column("deleted_at")
            else:
                batch.create_index(
                    batch.f("ix_orders_user_id_created_at"), ["user_id", "created_at"]
                )
                batch.drop_index(batch.f("ix_orders_user_id_shop_id_created_at"))
                batch.drop_column("version")
                batch.drop_column("shop_id")
            batch.drop_column("updated_at")
            batch.alter_column(
                "created_at",
                existing_type=TIMESTAMP,
                type_=OLD_TIMESTAMP,
                server_default=sa.func.now(),
                existing_nullable=False,
            )
