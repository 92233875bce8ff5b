"""Every ```python block of the documentation and of README.md runs here.

Conventions:

- A page is one program: its blocks run in order in one namespace, so a later block reuses
  the models and objects of an earlier one. Top-level ``await`` is allowed.
- Each page runs in a fresh temporary working directory, so the relative SQLite URL the
  snippets use (``sqlite+aiosqlite:///shop.db``) names a new, empty database per page.
- An HTML comment on the line before a fence marks a block (invisible on the site):
  ``<!-- docs-test: skip (reason) -->`` never runs the block (kept few: counted below);
  ``<!-- docs-test: postgresql -->`` runs the block only in the page's PostgreSQL run,
  which exists when ``SQLA_UOW_TEST_POSTGRES_URL`` is set; every
  ``postgresql+asyncpg://...`` URL literal in the page is replaced by this test session's
  private database there.
- A block that calls ``asyncio.run(...)`` at its top level is a complete program: it runs
  in a worker thread, where no event loop is running.
- A ``#> text`` comment (after a ``print`` call, or on the lines below it) is output:
  the block must print ``text`` (the comparison is "contains", line by line).
- Blocks in other languages (``text``, ``bash``, ``toml``) are never run.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import gc
import inspect
import io
import re
import sys
import textwrap
import types
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<kind>[a-z]+)\s*(?P<reason>.*?)\s*-->\s*$")
_EXPECTED = re.compile(r"#> ?(.+)$", re.MULTILINE)
_PG_URL = re.compile(r"postgresql\+asyncpg://[^\"'\s]+")

# Blocks that do not run, by page. Adding a skip means adding it here: keep this short.
EXPECTED_SKIPS: dict[str, int] = {
    "docs/explanation/why-unit-of-work.md": 1,
    "docs/how-to/retries.md": 1,
}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    source: str
    marker: str | None  # "skip", "postgresql" or None
    reason: str

    @property
    def where(self) -> str:
        return f"{_page_id(self.path)}:{self.line}"


def extract_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with the marker comment before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        match = _FENCE_OPEN.match(lines[index])
        if match is None:
            index += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].strip()
        start = index
        body: list[str] = []
        index += 1
        closing = re.compile(rf"^{re.escape(indent)}{fence[0]}{{{len(fence)},}}\s*$")
        while index < len(lines) and not closing.match(lines[index]):
            body.append(lines[index])
            index += 1
        index += 1  # past the closing fence
        language = info.split()[0].lstrip(".{").rstrip("}") if info else ""
        previous = lines[start - 1] if start > 0 else ""
        marker = _MARKER.match(previous)
        blocks.append(
            Block(
                path=path,
                line=start + 1,
                language=language,
                source=textwrap.dedent("\n".join(body)) + "\n",
                marker=marker["kind"] if marker else None,
                reason=marker["reason"] if marker else "",
            )
        )
    return blocks


def documented_pages() -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def python_blocks(path: Path) -> list[Block]:
    return [block for block in extract_blocks(path) if block.language in {"python", "py"}]


def _page_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


PAGES = [page for page in documented_pages() if python_blocks(page)]
POSTGRES_PAGES = [
    page for page in PAGES if any(b.marker == "postgresql" for b in python_blocks(page))
]


async def run_page(path: Path, *, postgres_url: str | None) -> int:
    """Run the Python blocks of *path* as one program; return how many blocks ran."""
    name = "docs_" + re.sub(r"\W", "_", _page_id(path))
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    namespace = module.__dict__
    ran = 0
    with warnings.catch_warnings():
        # Pages that demonstrate MissingGreenlet (an implicit load in async code) leave
        # the driver's never-awaited coroutine behind; that warning is the point there.
        warnings.filterwarnings(
            "ignore", message="coroutine '.*' was never awaited", category=RuntimeWarning
        )
        try:
            for block in python_blocks(path):
                if block.marker == "skip":
                    continue
                if block.marker == "postgresql" and postgres_url is None:
                    continue
                if block.marker not in {None, "postgresql"}:
                    pytest.fail(f"{block.where}: unknown docs-test marker {block.marker!r}")
                await _run_block(block, namespace, postgres_url=postgres_url)
                ran += 1
        finally:
            await _dispose_leftovers(namespace)
            sys.modules.pop(name, None)
            namespace.clear()
            gc.collect()
    return ran


async def _run_block(
    block: Block, namespace: dict[str, object], *, postgres_url: str | None
) -> None:
    source = block.source
    if postgres_url is not None:
        source = _PG_URL.sub(postgres_url, source)
    # Pad with blank lines so tracebacks point at the right line of the page.
    padded = "\n" * (block.line) + source
    code = compile(padded, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            if _calls_asyncio_run(source):
                # A complete program (``asyncio.run(main())``) needs a thread without a loop.
                await asyncio.to_thread(exec, code, namespace)
            else:
                result = eval(code, namespace)  # the documentation's own code
                if inspect.iscoroutine(result):
                    await result
    except Exception as exc:
        raise AssertionError(f"docs block at {block.where} failed: {exc!r}") from exc
    printed = output.getvalue()
    for expected in expected_output(source):
        assert expected in printed, (
            f"docs block at {block.where} should print {expected!r}; it printed:\n{printed}"
        )


def expected_output(source: str) -> list[str]:
    """The ``#> text`` comments of a block: text its ``print`` calls must have printed."""
    return [match.strip() for match in _EXPECTED.findall(source)]


def _calls_asyncio_run(source: str) -> bool:
    """Whether *source* calls ``asyncio.run(...)`` at its top level."""
    for node in ast.parse(source).body:
        call = node.value if isinstance(node, ast.Expr) else None
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "run"
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "asyncio"
        ):
            return True
    return False


async def _dispose_leftovers(namespace: dict[str, object]) -> None:
    """Dispose engines a page left open (pages close theirs; this keeps a failure local)."""
    for value in list(namespace.values()):
        try:
            engine = getattr(value, "engine", value)
        except Exception:  # an object whose attributes need a state it is not in
            continue
        if isinstance(engine, AsyncEngine):
            await engine.dispose()


@pytest.fixture
def page_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty working directory: ``sqlite+aiosqlite:///shop.db`` is a new database."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
async def postgres_url(database_url: str) -> AsyncIterator[str]:
    """The session's private PostgreSQL database, emptied after the page ran."""
    yield database_url
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            reflected = MetaData()
            await conn.run_sync(reflected.reflect)
            await conn.run_sync(reflected.drop_all)
    finally:
        await engine.dispose()


class TestDocumentationSnippets:
    @pytest.mark.parametrize("path", PAGES, ids=_page_id)
    async def test_page_runs_on_sqlite(self, path: Path, page_cwd: Path) -> None:
        ran = await run_page(path, postgres_url=None)
        assert ran == sum(1 for b in python_blocks(path) if b.marker is None)

    @pytest.mark.backends("postgresql")
    @pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
    @pytest.mark.parametrize("path", POSTGRES_PAGES, ids=_page_id)
    async def test_page_runs_on_postgresql(
        self, path: Path, backend: str, postgres_url: str, page_cwd: Path
    ) -> None:
        ran = await run_page(path, postgres_url=postgres_url)
        assert ran == sum(1 for b in python_blocks(path) if b.marker != "skip")


class TestDocumentationConventions:
    def test_skipped_blocks_are_few_and_listed(self) -> None:
        skips: dict[str, int] = {}
        total = 0
        for path in documented_pages():
            for block in python_blocks(path):
                total += 1
                if block.marker == "skip":
                    assert block.reason, f"{block.where}: a skip needs a reason"
                    skips[_page_id(path)] = skips.get(_page_id(path), 0) + 1
        assert skips == EXPECTED_SKIPS
        assert sum(skips.values()) * 10 <= total, "more than one block in ten is skipped"

    def test_every_marker_is_known(self) -> None:
        for path in documented_pages():
            for block in extract_blocks(path):
                assert block.marker in {None, "skip", "postgresql"}, block.where

    def test_every_page_is_in_the_navigation(self) -> None:
        nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
        for path in DOCS.rglob("*.md"):
            if path.name.startswith("_"):
                continue  # a fragment waiting to be folded into a page, not a page
            relative = path.relative_to(DOCS).as_posix()
            assert relative in nav, f"{relative} is not in mkdocs.yml's nav"

    def test_extracts_indented_blocks_and_markers(self, tmp_path: Path) -> None:
        page = tmp_path / "page.md"
        page.write_text(
            "text\n\n<!-- docs-test: skip (a fragment) -->\n```python\nx = 1\n```\n\n"
            '=== "Tab"\n\n    ```python title="a.py"\n    y = 2\n    ```\n\n```text\nout\n```\n',
            encoding="utf-8",
        )
        blocks = extract_blocks(page)
        assert [(b.language, b.marker, b.source) for b in blocks] == [
            ("python", "skip", "x = 1\n"),
            ("python", None, "y = 2\n"),
            ("text", None, "out\n"),
        ]
        assert blocks[0].reason == "(a fragment)"

    async def test_runs_blocks_in_order_in_one_namespace_and_reports_failures(
        self, tmp_path: Path, page_cwd: Path
    ) -> None:
        page = tmp_path / "page.md"
        page.write_text(
            "```python\nimport asyncio\nx = 1\n```\n\n"
            "```python\nawait asyncio.sleep(0)\nx += 1\n```\n\n"
            "<!-- docs-test: skip (not run) -->\n```python\nraise SystemExit\n```\n\n"
            "```python\nassert x == 3, x\n```\n",
            encoding="utf-8",
        )
        with pytest.raises(AssertionError, match=r"page\.md:16 failed: AssertionError\(2\)"):
            await run_page(page, postgres_url=None)

    async def test_checks_printed_output_against_the_expected_comments(
        self, tmp_path: Path, page_cwd: Path
    ) -> None:
        page = tmp_path / "page.md"
        page.write_text('```python\nprint("hello")  #> hello\n```\n', encoding="utf-8")
        assert await run_page(page, postgres_url=None) == 1
        page.write_text('```python\nprint("hello")\n#> goodbye\n```\n', encoding="utf-8")
        with pytest.raises(AssertionError, match="should print 'goodbye'"):
            await run_page(page, postgres_url=None)

    def test_the_reference_lists_every_public_name(self) -> None:
        import sqla_uow
        import sqla_uow.exceptions

        reference = (DOCS / "reference" / "api.md").read_text(encoding="utf-8")
        listed = set(re.findall(r"^\s+- (\w+)$", reference, re.MULTILINE))
        expected = set(sqla_uow.__all__) - set(sqla_uow.exceptions.__all__) - {"__version__"}
        assert listed == expected, "docs/reference/api.md must list sqla_uow's public names"
