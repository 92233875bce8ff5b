"""Importing this module puts ``tests/`` on ``sys.path``, so that the benchmarks use the models
the tests share (``models.items``), as ``python benchmarks/<script>.py`` from the repository."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
