"""Development sessions: ``.venv/bin/nox -l`` lists them, ``.venv/bin/nox -s tests`` runs one.

nox is installed into ``.venv`` by the first ``make`` command (``make nox-list`` lists the
sessions). Server backends run when their URL variables are set (see tests/conftest.py)::

    export SQLA_UOW_TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test
    .venv/bin/nox -s tests_postgres
"""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typing", "tests"]

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+aiomysql://root@127.0.0.1:3306/test"


def install(session: nox.Session, *groups: str, package: bool = True) -> None:
    """Install the given dependency groups, and the package itself (editable).

    Dependency groups need pip 25.1 or newer, so pip is upgraded first.
    """
    session.install("--upgrade", "pip")
    args = [arg for group in groups for arg in ("--group", group)]
    session.install(*(["-e", "."] if package else []), *args)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite on each supported Python (SQLite always; servers when configured)."""
    install(session, "test", "examples")
    session.run("pytest", *session.posargs)


@nox.session
def tests_postgres(session: nox.Session) -> None:
    """The test suite with PostgreSQL required (a skipped PostgreSQL test fails)."""
    install(session, "test", "examples")
    env = {
        "SQLA_UOW_TEST_POSTGRES_URL": os.environ.get("SQLA_UOW_TEST_POSTGRES_URL", POSTGRES_URL),
        "SQLA_UOW_TEST_REQUIRE": "postgresql",
    }
    session.run("pytest", *session.posargs, env=env)


@nox.session
def reliability(session: nox.Session) -> None:
    """Fault, fuzz and soak tests (``-m reliability``) with PostgreSQL and MariaDB required."""
    install(session, "test", "examples")
    env = {
        "SQLA_UOW_TEST_POSTGRES_URL": os.environ.get("SQLA_UOW_TEST_POSTGRES_URL", POSTGRES_URL),
        "SQLA_UOW_TEST_MARIADB_URL": os.environ.get("SQLA_UOW_TEST_MARIADB_URL", MARIADB_URL),
        "SQLA_UOW_TEST_REQUIRE": "postgresql,mariadb",
    }
    session.run("pytest", "-m", "reliability", *session.posargs, env=env)


@nox.session(python="3.10")
def tests_min_deps(session: nox.Session) -> None:
    """The test suite against the lowest supported SQLAlchemy 2.0."""
    install(session, "test", "examples")
    session.install("SQLAlchemy[asyncio]==2.0.30")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    install(session, "lint", package=False)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict and pyright over src/ and typing_tests/."""
    install(session, "typing", "test", "examples")
    session.run("mypy")
    session.run("pyright", "src", "typing_tests")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with ``mkdocs build --strict``."""
    install(session, "docs")
    session.run("mkdocs", "build", "--strict")


@nox.session
def examples(session: nox.Session) -> None:
    """Run the user/order demo and the example tests."""
    install(session, "test", "examples")
    session.run("python", "examples/demo.py")
    session.run("pytest", "tests", "-k", "examples", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Repository throughput against hand-written SQLAlchemy, measured in the same run."""
    install(session, "test", "bench")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def bench_stream(session: nox.Session) -> None:
    """Peak memory of ``stream()`` from 10k to 1M rows, and compiled-cache hits of bulk writes."""
    install(session, "test")
    session.run("python", "benchmarks/stream.py", *session.posargs)


@nox.session
def build(session: nox.Session) -> None:
    """Build the wheel and sdist and check their metadata."""
    session.install("build", "twine")
    session.run("python", "-m", "build", "--outdir", "dist", ".")
    session.run("python", "-m", "twine", "check", "--strict", *_dist_files())


def _dist_files() -> list[str]:
    return [os.path.join("dist", name) for name in sorted(os.listdir("dist"))]
