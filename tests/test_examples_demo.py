"""The demo script and the serve command run the way examples/README.md says."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEMO = EXAMPLES / "demo.py"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from _shop import clean_shop_engine  # noqa: E402
from shop.models import Base  # noqa: E402

STORY = [
    "Schema migrated to the newest revision.",
    "== Register users (unit of work)",
    "Ann <ann@demo.example> active=True",
    "refused with ConflictError: unique violation writing User",
    "the order was refused: an order may cost at most 10000.00",
    "Carol in the database afterwards: False (nothing left behind)",
    "the service joined the unit of work's transaction: True",
    "imported 5 users with one INSERT",
    "upserted 2 users: user1 renamed, Erin added",
    "users page 1/3 (of 9): Ann, Bob, Dave, Erin",
    "users page 3/3 (of 9): User 5",
    "Ann's orders, newest first, page 1: Cable, Monitor",
    "Ann's orders, newest first, page 2: Keyboard",
    "a new order is refused: user",
    "3 orders, total 248.89, average 82.96",
    "renamed to Ann Smith: updated_at moved on: True",
    "created_at unchanged: True",
    "the second, still at version 1, is refused: kind=stale",
    "the order is as the first left it: status=paid, version 2",
    "Ann has 1 order(s)",
    "in shop 1 (the default): Ann has 3 orders",
    "deleted: not found any more",
    "their orders are kept: 1",
    "restored: Dave is back (deleted_at=None)",
    "Done.",
]


def run_demo(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python examples/demo.py`` as ``make demo`` runs it, from *cwd*."""
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    environ.update(env, PYTHONWARNINGS="error")
    return subprocess.run(
        [sys.executable, str(DEMO)],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_tells_the_story(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for line in STORY:
        assert line in result.stdout, f"{line!r} missing from:\n{result.stdout}"


class TestDemo:
    def test_runs_twice_on_the_default_sqlite_file(self, tmp_path: Path) -> None:
        first = run_demo(tmp_path)
        second = run_demo(tmp_path)

        assert_tells_the_story(first)
        assert "Database: sqlite+aiosqlite:///shop.db" in first.stdout
        assert "Removed 0 user(s) left by an earlier run." in first.stdout
        assert (tmp_path / "shop.db").is_file()
        assert_tells_the_story(second)
        assert "Removed 9 user(s) left by an earlier run." in second.stdout

    @pytest.mark.backends("postgresql")
    async def test_runs_twice_on_the_database_of_database_url(
        self, database_url: str, tmp_path: Path
    ) -> None:
        try:
            first = run_demo(tmp_path, DATABASE_URL=database_url)
            second = run_demo(tmp_path, DATABASE_URL=database_url)

            assert_tells_the_story(first)
            assert f"Database: {database_url.partition('://')[0]}://" in first.stdout
            assert_tells_the_story(second)
            assert "Removed 9 user(s) left by an earlier run." in second.stdout
        finally:
            engine = create_async_engine(database_url)
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.drop_all)
                await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
            await engine.dispose()


def walk_through() -> str:
    """The curl walk-through of examples/README.md (its bash block that uses curl)."""
    readme = (EXAMPLES / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL)
    (block,) = [block for block in blocks if "curl" in block]
    return block


def json_documents(text: str) -> list[Any]:
    """The JSON documents printed one after another (curl adds no newline)."""
    decoder = json.JSONDecoder()
    documents: list[Any] = []
    position = 0
    while position < len(text.rstrip()):
        document, position = decoder.raw_decode(text, position)
        documents.append(document)
        while position < len(text) and text[position].isspace():
            position += 1
    return documents


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def uvicorn(port: int, environ: dict[str, str], log: Path, *options: str) -> subprocess.Popen[str]:
    """``uvicorn shop.app:app --app-dir examples`` from the repository root, output to *log*."""
    command = [sys.executable, "-m", "uvicorn", "shop.app:app", "--app-dir", "examples"]
    with log.open("w") as output:
        return subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port), *options],
            cwd=ROOT,
            env=environ,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def shop_environ(**variables: str) -> dict[str, str]:
    """The environment of a served shop: this one, without the shop's own variables."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    environ.update(variables)
    return environ


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """The documented serve command on a free port, with a SQLite file of its own."""
    port = free_port()
    environ = shop_environ(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}")
    log = tmp_path / "uvicorn.log"
    process = uvicorn(port, environ, log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base_url}/users", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"uvicorn did not start:\n{log.read_text()}")
                time.sleep(0.2)
        yield base_url
    finally:
        stop(process)


class TestServe:
    def test_the_documented_command_serves_the_api(self, server: str) -> None:
        created = httpx.post(f"{server}/users", json={"email": "ann@example.com", "name": "Ann"})
        listed = httpx.get(f"{server}/users")
        missing = httpx.get(f"{server}/users/4242")

        assert created.status_code == 201
        assert listed.status_code == 200
        assert [user["email"] for user in listed.json()["items"]] == ["ann@example.com"]
        assert missing.status_code == 404

    def test_the_curl_walk_through_runs_again_and_again(self, server: str) -> None:
        # The users the demo (or anyone) made first: the walk-through must not assume id 1.
        for name in ("Zed", "Yan"):
            httpx.post(f"{server}/users", json={"email": f"{name}@example.com", "name": name})
        script = walk_through().replace("localhost:8000", server.removeprefix("http://"))

        runs = [
            subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            for _ in range(2)
        ]

        for run in runs:
            assert run.returncode == 0, run.stderr
            order, profile, other_shop = json_documents(run.stdout)
            assert (order["title"], order["price"]) == ("Book", "12.50")
            assert profile["id"] == order["user_id"]
            assert order["user_id"] not in (1, 2)  # Zed's and Yan's
            assert profile["summary"] == {"count": 1, "total": "12.50", "average": "12.50"}
            assert (order["shop_id"], other_shop["items"]) == (1, [])
        assert len({json_documents(run.stdout)[1]["id"] for run in runs}) == 2

    def test_production_without_a_cursor_secret_stops_at_startup(self, tmp_path: Path) -> None:
        environ = shop_environ(
            DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}", SHOP_ENV="production"
        )
        log = tmp_path / "uvicorn.log"
        process = uvicorn(free_port(), environ, log)
        try:
            process.wait(timeout=60)
        finally:
            stop(process)

        assert process.returncode != 0
        assert "SettingsError: SHOP_CURSOR_SECRET is not set" in log.read_text()
        assert not (tmp_path / "serve.db").exists()

    @pytest.mark.backends("sqlite", "postgresql")
    async def test_two_workers_start_on_an_empty_database(
        self, database_url: str, tmp_path: Path
    ) -> None:
        # Both workers run the migrations at startup: one migrates, the other waits for
        # the lock and finds the schema up to date. Production mode, with its secret.
        async with clean_shop_engine(database_url) as engine:
            port = free_port()
            environ = shop_environ(
                DATABASE_URL=database_url, SHOP_ENV="production", SHOP_CURSOR_SECRET="s" * 32
            )
            log = tmp_path / "uvicorn.log"
            process = uvicorn(port, environ, log, "--workers", "2")
            try:
                deadline = time.monotonic() + 90
                while log.read_text().count("Application startup complete.") < 2:
                    if process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"two workers did not start:\n{log.read_text()}")
                    await asyncio.sleep(0.2)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                    created = await client.post(
                        "/users", json={"email": "ann@example.com", "name": "Ann"}
                    )
            finally:
                stop(process)
            output = log.read_text()

            assert created.status_code == 201, created.text
            assert "Traceback" not in output
            assert "startup failed" not in output
            async with engine.connect() as conn:
                versions = (
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).all()
                tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            assert [tuple(row) for row in versions] == [("0002",)]
            assert {"users", "orders"} <= tables
