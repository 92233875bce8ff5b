"""The models shared by the tests, the typing tests and the benchmarks.

Each module is one small schema with its own declarative ``Base``, so a test creates only the
tables it uses (its ``metadata`` fixture returns that module's ``Base.metadata``):

- `models.shop`: users, their orders and products (a version counter); the shapes of the
  README and of "Architecture Patterns with Python".
- `models.accounts`: one ``accounts`` table with a balance, for the transaction tests.
- `models.items`: a bulk-load item (unique code, name, quantity), for the benchmarks.
- `models.catalog`: customers, orders and tags with every column type a FilterSet converts.

Models that exist for one test's special mapping (composite keys, renamed columns, exotic
types, server defaults) stay in that test's module. The folder is on ``sys.path`` in pytest
(``tests/`` holds the root conftest), on mypy's and pyright's search path (``pyproject.toml``),
and the benchmark scripts put it there themselves.
"""
