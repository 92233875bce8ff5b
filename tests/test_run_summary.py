"""The end of a test run: a short summary of backends, skips and deselections (tests/conftest.py).

Each test runs pytest in a subprocess on a small suite that uses this suite's conftest.py,
with the server URL variables set as the test needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parent / "conftest.py"

SUITE = """
import pytest


def test_on_the_default_backends(backend: str) -> None:
    assert backend in {"sqlite", "postgresql"}


@pytest.mark.backends("sqlite")
def test_on_sqlite_only(backend: str) -> None:
    assert backend == "sqlite"


@pytest.mark.parametrize("order", [["a", "b"]], ids=str)
def test_with_brackets_in_its_id(backend: str, order: list[str]) -> None:
    assert order == ["a", "b"]


@pytest.mark.heavy
def test_heavy() -> None:
    pass


@pytest.mark.skip(reason="not today")
def test_skipped() -> None:
    pass
"""

INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
markers =
    heavy: a long test, deselected by default
addopts = -m "not heavy"
"""


def run_suite(tmp_path: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text(INI, encoding="utf-8")
    (tmp_path / "test_suite.py").write_text(SUITE, encoding="utf-8")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SQLA_UOW_TEST_") and not key.startswith("PYTEST_")
    }
    env.update(environ)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """The small suite run with no server configured."""
    return run_suite(tmp_path_factory.mktemp("suite"))


class TestRunSummary:
    def test_says_which_backends_ran_and_how_to_enable_the_others(
        self, default_run: subprocess.CompletedProcess[str]
    ) -> None:
        run = default_run
        assert run.returncode == 0, run.stdout + run.stderr
        lines = run.stdout.splitlines()
        assert "sqlite      3 ran" in lines
        assert (
            "postgresql  0 ran, 2 skipped: not configured; to run it, export "
            "SQLA_UOW_TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test"
        ) in lines
        assert "skipped     1: not today" in lines
        assert "SKIPPED" not in run.stdout  # one line per reason, not one per test

    def test_explains_what_is_deselected_and_how_to_run_it(
        self, default_run: subprocess.CompletedProcess[str]
    ) -> None:
        lines = default_run.stdout.splitlines()
        assert (
            "deselected  4 test x backend pairs that a test's @pytest.mark.backends(...) "
            "rules out (they never run)"
        ) in lines
        assert "deselected  1 by -m 'not heavy'; to run them: pytest -m 'heavy'" in lines
        assert lines[-1].startswith("3 passed, 3 skipped, 5 deselected")

    def test_a_required_backend_that_is_not_configured_fails_the_run(self, tmp_path: Path) -> None:
        run = run_suite(tmp_path, SQLA_UOW_TEST_REQUIRE="postgresql")
        assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout
        assert "but SQLA_UOW_TEST_REQUIRE names postgresql" in run.stdout

    @pytest.mark.backends("postgresql")
    @pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
    def test_a_configured_backend_is_reported_as_run(self, backend: str, tmp_path: Path) -> None:
        assert backend == "postgresql"
        url = os.environ["SQLA_UOW_TEST_POSTGRES_URL"]
        run = run_suite(tmp_path, SQLA_UOW_TEST_POSTGRES_URL=url)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "postgresql  2 ran" in run.stdout.splitlines()
