"""Declarative mixins for models the repositories treat specially.

`SoftDeleteMixin` gives a model a ``deleted_at`` column: the repository's deletes set it,
and every read and write skips the rows where it is set.
"""

from __future__ import annotations

from ._soft_delete import SoftDeleteMixin

__all__ = ["SoftDeleteMixin"]
