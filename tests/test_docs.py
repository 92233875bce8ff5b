"""Every ```python block of the documentation and of README.md runs here.

Conventions:

- A page is one program: its blocks run in order in one namespace, so a later block reuses
  the models and objects of an earlier one. Top-level ``await`` is allowed.
- No page writes into the working directory: pages use an in-memory SQLite database
  (``sqlite+aiosqlite://``) or, where they need a second connection, a file in a new
  temporary folder, and say so. Each page runs in an empty working directory, which must
  still be empty afterwards.
- An HTML comment on the line before a fence marks a block (invisible on the site):
  ``<!-- docs-test: skip (reason) -->`` never runs the block (kept few: counted below);
  ``<!-- docs-test: postgresql -->`` runs the block only in the page's PostgreSQL run,
  which exists when ``SQLA_UOW_TEST_POSTGRES_URL`` is set; every
  ``postgresql+asyncpg://...`` URL literal in such a block is replaced by this test
  session's private database there (with the session's driver), and every
  ``postgresql+psycopg://...`` literal by the same database with the psycopg driver.
- A block that calls ``asyncio.run(...)`` at its top level is a complete program: it runs
  in a worker thread, where no event loop is running.
- A ``#> text`` comment (after a ``print`` call, or on the lines below it) is output:
  the block must print ``text`` (the comparison is "contains", line by line), or, where
  the block only defines the function that prints it, a later block that calls it.
- Blocks in other languages (``text``, ``bash``, ``toml``) are never run.
- Every page's program is also type-checked with ``mypy --strict`` (top-level ``await``,
  ``async with`` and ``async for`` allowed), one mypy run for all pages; the pages of
  ``PYRIGHT_PAGES`` with strict pyright too. A block that is a fragment the type checker
  cannot follow is marked ``<!-- docs-test: untyped (reason) -->``: it runs, but is not
  type-checked (kept few: counted below). Skipped blocks are not type-checked either.
- A page listed in ``COMPLETE_PROGRAMS`` says its blocks, pasted one after the other into
  a file, make a program: that file runs with ``python`` and prints the ``#>`` output.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import gc
import inspect
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import types
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import MetaData
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<kind>[a-z]+)\s*(?P<reason>.*?)\s*-->\s*$")
_EXPECTED = re.compile(r"#> ?(.+)$", re.MULTILINE)
_PG_URL = re.compile(r"postgresql\+asyncpg://[^\"'\s]+")
_PSYCOPG_URL = re.compile(r"postgresql\+psycopg://[^\"'\s]+")

# Blocks that do not run, by page. Adding a skip means adding it here: keep this short.
EXPECTED_SKIPS: dict[str, int] = {
    "docs/explanation/scaling-out.md": 1,
    "docs/explanation/why-unit-of-work.md": 1,
}
# Blocks that run but are not type-checked, by page; the same rule.
EXPECTED_UNTYPED: dict[str, int] = {
    "docs/how-to/integration-tests.md": 1,  # a second definition of a fixture, in its place
    "docs/how-to/migrating.md": 9,  # the hand-written code the page starts from
    "docs/how-to/repositories.md": 1,
}
MARKERS = {None, "skip", "postgresql", "untyped"}
# How the docs are type-checked: strict, with the project's mypy configuration; a page is
# a program with top-level await (real syntax errors still stop mypy: it exits with 2).
MYPY_ARGS = ["--strict", "--disable-error-code=top-level-await", "--disable-error-code=syntax"]
_MYPY_LINE = re.compile(
    r"^(?P<file>[^:\n]+\.py):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*)$"
)


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    source: str
    marker: str | None  # "skip", "postgresql", "untyped" or None
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
COMPLETE_PROGRAMS = [ROOT / "README.md", DOCS / "tutorial.md"]
PYRIGHT_PAGES = [ROOT / "README.md"]  # type-checked with strict pyright as well
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
    printed = io.StringIO()  # what the page's blocks printed so far
    expected: list[tuple[Block, str, int]] = []  # not printed yet: block, text, from where
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
                if block.marker not in {None, "postgresql", "untyped"}:
                    pytest.fail(f"{block.where}: unknown docs-test marker {block.marker!r}")
                start = printed.tell()
                await _run_block(block, namespace, printed, postgres_url=postgres_url)
                expected += [(block, text, start) for text in expected_output(block.source)]
                output = printed.getvalue()
                expected = [item for item in expected if item[1] not in output[item[2] :]]
                ran += 1
            if expected:
                block, text, start = expected[0]
                raise AssertionError(
                    f"docs block at {block.where} should print {text!r}; it printed "
                    f"(with the blocks after it):\n{printed.getvalue()[start:]}"
                )
        finally:
            await _dispose_leftovers(namespace)
            sys.modules.pop(name, None)
            namespace.clear()
            gc.collect()
    return ran


async def _run_block(
    block: Block, namespace: dict[str, object], output: io.StringIO, *, postgres_url: str | None
) -> None:
    source = block.source
    if postgres_url is not None and block.marker == "postgresql":
        source = _PG_URL.sub(postgres_url, source)
        psycopg_url = make_url(postgres_url).set(drivername="postgresql+psycopg")
        source = _PSYCOPG_URL.sub(psycopg_url.render_as_string(hide_password=False), source)
    # Pad with blank lines so tracebacks point at the right line of the page.
    padded = "\n" * (block.line) + source
    code = compile(padded, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
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


def typed_program(path: Path) -> str:
    """The page's type-checked blocks as one module, each block at its line of the page."""
    lines: list[str] = []
    for block in python_blocks(path):
        if block.marker in {"skip", "untyped"}:
            continue
        lines += [""] * (block.line - len(lines))
        lines += block.source.splitlines()
    return "\n".join(lines) + "\n"


def check_types(pages: list[Path], folder: Path) -> dict[str, list[str]]:
    """Type-check the programs of *pages* in one mypy run: the errors of each, by page."""
    modules: dict[str, str] = {}
    for path in pages:
        name = "docs_" + re.sub(r"\W", "_", _page_id(path)) + ".py"
        (folder / name).write_text(typed_program(path), encoding="utf-8")
        modules[name] = _page_id(path)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            *MYPY_ARGS,
            "--no-error-summary",
            f"--cache-dir={ROOT / '.mypy_cache' / 'docs'}",
            *(str(folder / name) for name in modules),
        ],
        cwd=ROOT,  # the project's [tool.mypy] configuration applies
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    errors: dict[str, list[str]] = {page: [] for page in modules.values()}
    for line in run.stdout.splitlines():
        match = _MYPY_LINE.match(line)
        if match is None or Path(match["file"]).name not in modules:
            continue
        page = modules[Path(match["file"]).name]
        errors[page].append(f"{page}:{match['line']}: {match['kind']}: {match['text']}")
    if run.returncode not in {0, 1} or (run.returncode == 1 and not any(errors.values())):
        pytest.fail(f"mypy could not check the docs:\n{run.stdout}{run.stderr}")
    return errors


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The ``mypy --strict`` errors of every documented page, by page."""
    return check_types(PAGES, tmp_path_factory.mktemp("docs_typing"))


@pytest.fixture
def page_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty working directory, to see whether a page writes files into it."""
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
        assert ran == sum(1 for b in python_blocks(path) if b.marker in {None, "untyped"})
        left = sorted(os.listdir(page_cwd))
        assert not left, f"{_page_id(path)} wrote {left} into the working directory"

    @pytest.mark.parametrize("path", COMPLETE_PROGRAMS, ids=_page_id)
    def test_page_pasted_into_a_file_runs_with_python(self, path: Path, tmp_path: Path) -> None:
        program = tmp_path / "program.py"
        source = "\n\n".join(b.source for b in python_blocks(path) if b.marker is None)
        program.write_text(source, encoding="utf-8")
        run = subprocess.run(
            [sys.executable, str(program)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        for expected in expected_output(source):
            assert expected in run.stdout, f"{_page_id(path)} should print {expected!r}"
        assert os.listdir(tmp_path) == ["program.py"], "the program wrote into its directory"

    @pytest.mark.backends("postgresql")
    @pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
    @pytest.mark.parametrize("path", POSTGRES_PAGES, ids=_page_id)
    async def test_page_runs_on_postgresql(
        self, path: Path, backend: str, postgres_url: str, page_cwd: Path
    ) -> None:
        ran = await run_page(path, postgres_url=postgres_url)
        assert ran == sum(1 for b in python_blocks(path) if b.marker != "skip")


class TestDocumentationTypes:
    @pytest.mark.parametrize("path", PAGES, ids=_page_id)
    def test_page_passes_mypy_strict(self, path: Path, mypy_errors: dict[str, list[str]]) -> None:
        errors = mypy_errors[_page_id(path)]
        assert not errors, "mypy --strict finds:\n" + "\n".join(errors)

    @pytest.mark.parametrize("path", PYRIGHT_PAGES, ids=_page_id)
    def test_page_passes_pyright_strict(self, path: Path, tmp_path: Path) -> None:
        (tmp_path / "program.py").write_text(typed_program(path), encoding="utf-8")
        config = {"typeCheckingMode": "strict", "pythonVersion": "3.10"}
        (tmp_path / "pyrightconfig.json").write_text(json.dumps(config), encoding="utf-8")
        run = subprocess.run(
            [sys.executable, "-m", "pyright", f"--pythonpath={sys.executable}", "program.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert run.returncode == 0, f"pyright --strict on {_page_id(path)}:\n{run.stdout}"
        assert "0 errors" in run.stdout, run.stdout

    def test_reports_an_error_at_its_line_of_the_page(self, tmp_path: Path) -> None:
        page = tmp_path / "page.md"
        page.write_text(
            "```python\nx: int = 1\n```\n\ntext\n\n```python\ny: str = x\n```\n\n"
            "<!-- docs-test: untyped (a fragment) -->\n```python\nz: str = x\n```\n",
            encoding="utf-8",
        )
        folder = tmp_path / "typed"
        folder.mkdir()
        errors = check_types([page], folder)
        assert errors == {
            str(page): [
                f"{page}:8: error: Incompatible types in assignment (expression has type "
                '"int", variable has type "str")  [assignment]'
            ]
        }


class TestDocumentationConventions:
    @pytest.mark.parametrize(
        ("marker", "listed"), [("skip", EXPECTED_SKIPS), ("untyped", EXPECTED_UNTYPED)]
    )
    def test_skipped_and_untyped_blocks_are_few_and_listed(
        self, marker: str, listed: dict[str, int]
    ) -> None:
        counts: dict[str, int] = {}
        total = 0
        for path in documented_pages():
            for block in python_blocks(path):
                total += 1
                if block.marker == marker:
                    assert block.reason, f"{block.where}: a {marker} marker needs a reason"
                    counts[_page_id(path)] = counts.get(_page_id(path), 0) + 1
        assert counts == listed
        assert sum(counts.values()) * 10 <= total, f"more than one block in ten is {marker}"

    def test_every_marker_is_known(self) -> None:
        for path in documented_pages():
            for block in extract_blocks(path):
                assert block.marker in MARKERS, block.where

    def test_the_readme_links_are_absolute(self) -> None:
        # PyPI renders README.md without the repository around it: a relative link breaks.
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        targets = re.findall(r"\]\(([^)\s]+)\)", readme) + re.findall(r"<(\w+:[^>\s]+)>", readme)
        assert targets, "README.md has links"
        relative = [target for target in targets if not target.startswith("https://")]
        assert not relative, f"README.md links that break on PyPI: {relative}"

    def test_the_sdist_ships_what_the_readme_commands_need(self) -> None:
        pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
        section = pyproject.split("[tool.hatch.build.targets.sdist]", 1)[1].split("\n[", 1)[0]
        include = set(re.findall(r'"([^"]+)"', section))
        # make demo, make test, make docs and .venv/bin/nox, run from the unpacked sdist
        needed = {"Makefile", "noxfile.py", "src/", "tests/", "examples/", "docs/", "mkdocs.yml"}
        assert needed <= include, f"the sdist lacks {sorted(needed - include)}"

    def test_every_page_is_in_the_navigation(self) -> None:
        nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
        for path in DOCS.rglob("*.md"):
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

    async def test_output_of_a_function_may_come_from_a_later_block_that_calls_it(
        self, tmp_path: Path, page_cwd: Path
    ) -> None:
        page = tmp_path / "page.md"
        page.write_text(
            '```python\ndef greet() -> None:\n    print("hi")  #> hi\n```\n\n'
            "```python\ngreet()\n```\n",
            encoding="utf-8",
        )
        assert await run_page(page, postgres_url=None) == 2
        # Output printed before the block with the comment does not count.
        page.write_text(
            '```python\nprint("early")\n```\n\n```python\nprint("late")  #> early\n```\n',
            encoding="utf-8",
        )
        with pytest.raises(AssertionError, match=r"page\.md:5 should print 'early'"):
            await run_page(page, postgres_url=None)

    def test_the_reference_lists_every_public_name(self) -> None:
        import sqla_uow
        import sqla_uow.exceptions

        directives = _reference_directives()
        listed = set(directives.get("sqla_uow", [])) | {
            name.removeprefix("sqla_uow.") for name in directives if name != "sqla_uow"
        }
        expected = set(sqla_uow.__all__) - set(sqla_uow.exceptions.__all__) - {"__version__"}
        assert listed == expected, "docs/reference/api.md must list sqla_uow's public names"

    def test_the_reference_lists_every_repository_method_reads_first(self) -> None:
        from sqla_uow import AsyncRepository

        listed = _reference_directives()["sqla_uow.AsyncRepository"]
        public = {
            name
            for name, value in inspect.getmembers(AsyncRepository)
            if not name.startswith("_") and callable(value)
        }
        assert sorted(listed) == sorted(public), "AsyncRepository's methods in api.md"
        assert (
            listed.index("paginate_cursor") < listed.index("create") < listed.index("create_many")
        )


def _reference_directives() -> dict[str, list[str]]:
    """The ``::: name`` directives of docs/reference/api.md, with their ``members`` lists."""
    reference = (DOCS / "reference" / "api.md").read_text(encoding="utf-8")
    directives: dict[str, list[str]] = {}
    current: list[str] = []
    for line in reference.splitlines():
        if line.startswith("::: "):
            current = directives.setdefault(line.removeprefix("::: ").strip(), [])
        elif match := re.match(r"^\s+- (\w+)$", line):
            current.append(match[1])
    return directives
