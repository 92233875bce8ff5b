"""Typing tests: assert_type lines checked by mypy (and pyright), never executed."""
