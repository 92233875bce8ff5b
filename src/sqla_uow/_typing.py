"""Type variables shared by the repository modules."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["ModelT"]

ModelT = TypeVar("ModelT")
"""The mapped class a repository (or page of results) holds."""
